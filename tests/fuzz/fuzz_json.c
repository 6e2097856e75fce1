/* libFuzzer target for json_check.c: it must never read past its input
 * (each run gets an exact-size copy, so ASan sees any overrun), report an
 * offset within the input, and be consistent with itself:
 * - an error at offset k means the bytes before k are a well-formed
 *   prefix: cut there, the input is either accepted or refused at k;
 * - an accepted text stays accepted with whitespace around it, and is
 *   refused at its end when a comma follows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mw/json_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool check_copy(const uint8_t *data, size_t size, const char *pre, const char *post,
                       json_error *e)
{
    size_t a = strlen(pre), b = strlen(post), n = a + size + b;
    char *buf = malloc(n ? n : 1);
    if (!buf) abort();
    memcpy(buf, pre, a);
    if (size) memcpy(buf + a, data, size);
    memcpy(buf + a + size, post, b);
    bool ok = json_check(buf, n, e);
    free(buf);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error e = {0, NULL};
    bool ok = check_copy(data, size, "", "", &e);
    if (!ok) {
        if (e.offset > size || !e.msg) abort();
        if (e.offset < size) {
            json_error p = {0, NULL};
            if (!check_copy(data, e.offset, "", "", &p) && p.offset != e.offset) abort();
        }
        return 0;
    }
    json_error w;
    if (!check_copy(data, size, " \n", "\t ", &w)) abort();
    if (check_copy(data, size, "", ",", &w) || w.offset != size) abort();
    return 0;
}
