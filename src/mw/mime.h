/* Content types by file extension, for static files. */
#ifndef VIE_MW_MIME_H
#define VIE_MW_MIME_H

#include <stddef.h>

/* The media type of a file called name[0..len) by its extension
 * (case-insensitive; text types carry "; charset=utf-8"), or
 * "application/octet-stream" when the extension is unknown or missing.
 * The string is constant. */
const char *mime_type(const char *name, size_t len);

/* How many extensions the table knows, and the i-th (NULL past the end):
 * for tests. */
size_t mime_count(void);
const char *mime_ext_at(size_t i);

#endif
