/* libFuzzer target for path.c: normalization and percent-decoding must
 * never crash or overrun, never grow their input, and normalization must
 * produce a path with no dot segment that normalizes to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_normalized(const char *out, size_t n)
{
    if (n == 0 || out[0] != '/') abort();
    /* no "." or ".." segment is left */
    if (path_has_dot_segment(out + 1, n - 1)) abort();
    /* no escape of an unreserved character is left either, so without '%'
     * the result is what path_is_normal accepts */
    if (!memchr(out, '%', n) && !path_is_normal(out, n)) abort();

    /* idempotent, and in place gives the same bytes */
    char *again = malloc(n);
    if (!again) abort();
    memcpy(again, out, n);
    ssize_t m = path_normalize(again, n, again);
    if (m != (ssize_t)n || memcmp(again, out, n) != 0) abort();
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    /* exactly size bytes (at least one for malloc), so ASan sees any overrun */
    char *out = malloc(size ? size : 1);
    if (!out) abort();

    ssize_t n = path_normalize(in, size, out);
    if (n < -1 || n > (ssize_t)size) abort();
    if (n >= 0) check_normalized(out, (size_t)n);
    if (path_is_normal(in, size) && (n != (ssize_t)size || memcmp(out, in, size) != 0)) abort();

    /* in place agrees with out of place */
    char *copy = malloc(size ? size : 1);
    if (!copy) abort();
    memcpy(copy, in, size);
    ssize_t n2 = path_normalize(copy, size, copy);
    if (n2 != n || (n > 0 && memcmp(copy, out, (size_t)n) != 0)) abort();

    ssize_t d = path_decode(in, size, out);
    if (d < -1 || d > (ssize_t)size) abort();
    if (d >= 0) {
        (void)path_has_dot_segment(out, (size_t)d);
        /* %00 is refused, so a decoded value holds no NUL unless sent raw */
        if (!memchr(in, '\0', size) && memchr(out, '\0', (size_t)d)) abort();
    }

    ssize_t q = path_decode_query(in, size, copy);
    if (q != d) abort(); /* '+' -> ' ' keeps lengths and validity */
    if (q >= 0) {
        /* same bytes as path_decode but for the '+' it turned into spaces */
        for (ssize_t i = 0; i < q; i++) {
            if (copy[i] != out[i] && !(out[i] == '+' && copy[i] == ' ')) abort();
        }
    }

    (void)path_has_dot_segment(in, size);
    free(copy);
    free(out);
    return 0;
}
