/* A strict RFC 8259 JSON well-formedness check for request bodies: no
 * allocation, iterative (an explicit stack of at most JSON_CHECK_MAX_DEPTH
 * nested arrays and objects, refused deeper), and the byte offset of the
 * first error so a client can find it.
 *
 * Strict means: one value with optional whitespace around it (any value,
 * not only an object or array); no trailing commas, comments, single
 * quotes, NaN or Infinity; numbers without leading zeros or a bare '.';
 * strings of valid UTF-8 (no overlong forms, no encoded surrogates,
 * nothing past U+10FFFF) without raw control characters, with only the
 * eight escapes and \uXXXX; a \u escape of a surrogate must be a high one
 * followed by a low one: lone surrogates are refused (they cannot be
 * turned into UTF-8, and parsers disagree about them). A byte order mark
 * is refused. Duplicate object keys are accepted (RFC 8259 allows them). */
#ifndef VIE_MW_JSON_CHECK_H
#define VIE_MW_JSON_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_CHECK_MAX_DEPTH 64

typedef struct json_error {
    size_t offset;   /* of the first byte that cannot be accepted (len: the end came early) */
    const char *msg; /* constant: "expected ',' or ']'" */
} json_error;

/* True when s[0..len) is one well-formed JSON text; else false with err
 * (may be NULL) filled. */
bool json_check(const char *s, size_t len, json_error *err);

#endif
