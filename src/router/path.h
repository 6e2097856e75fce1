/* Request path normalization and percent-decoding.
 *
 * Routing happens on a normalized path so that no spelling of ".." can
 * reach past a prefix: percent-encoded unreserved characters are decoded
 * (RFC 3986 6.2.2.2, so "%2e%2E" is ".."), "." and ".." segments are
 * resolved (RFC 3986 5.2.4), and a ".." that would climb above the root
 * makes the path invalid. Other escapes ("%2F", "%20") stay encoded so that
 * segment boundaries are those the client sent; param values are decoded
 * after matching.
 */
#ifndef VIE_ROUTER_PATH_H
#define VIE_ROUTER_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* True when path needs no work: no '%', no "." or ".." segment. This is the
 * common case and costs one scan, no copy. */
bool path_is_normal(const char *path, size_t len);

/* Normalize path into out (which holds at least len bytes). Returns the
 * new length, or -1 when the path is invalid: not starting with '/', a
 * malformed escape, "%00", or ".." above the root. A final "." or ".."
 * segment leaves a trailing '/' ("/a/b/.." is "/a/"). The result is never
 * longer than the input, and out may be path itself (in place). The decode
 * functions below may work in place too. */
ssize_t path_normalize(const char *path, size_t len, char *out);

/* Percent-decode a param value into out (at least len bytes). Returns the
 * decoded length, or -1 on a malformed escape or "%00". '+' is kept as is
 * (it means space only in query strings; see path_decode_query). */
ssize_t path_decode(const char *in, size_t len, char *out);

/* As path_decode, for application/x-www-form-urlencoded query components:
 * '+' decodes to a space. */
ssize_t path_decode_query(const char *in, size_t len, char *out);

/* True when a decoded value contains a "." or ".." segment (between '/'
 * separators or at either end): what a catch-all param must never hold
 * when it is used as a file path. */
bool path_has_dot_segment(const char *s, size_t len);

#endif
