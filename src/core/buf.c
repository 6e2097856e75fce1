#include "core/buf.h"

#include <stdint.h>
#include <stdlib.h>

int buf_reserve(vie_buf *b, size_t n)
{
    if (b->cap - b->len >= n) return 0;
    if (n > SIZE_MAX / 2 - b->len) return -1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void buf_free(vie_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
