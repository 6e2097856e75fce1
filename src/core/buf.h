/* A growable byte buffer: the connection's pending output, a dechunked
 * body. Appends are amortized O(1). */
#ifndef VIE_CORE_BUF_H
#define VIE_CORE_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct vie_buf {
    char *data;
    size_t len;
    size_t cap;
} vie_buf;

/* Make room for at least n more bytes; -1 when out of memory. */
int buf_reserve(vie_buf *b, size_t n);
void buf_free(vie_buf *b);
/* Append printf-formatted text; on failure nothing is appended. */
void buf_printf(vie_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline int buf_append(vie_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n && buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

#define buf_append_lit(b, s) buf_append((b), (s), sizeof(s) - 1)

#endif
