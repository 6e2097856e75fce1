#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static arena_block *block_new(size_t cap)
{
    arena_block *b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->next = NULL;
    b->cap = cap;
    return b;
}

int arena_init(vie_arena *a, size_t first_cap)
{
    a->first = block_new(first_cap);
    a->extra = NULL;
    if (!a->first) return -1;
    a->ptr = a->first->data;
    a->end = a->first->data + first_cap;
    return 0;
}

void arena_reset(vie_arena *a)
{
    while (a->extra) {
        arena_block *n = a->extra->next;
        free(a->extra);
        a->extra = n;
    }
    a->ptr = a->first->data;
    a->end = a->first->data + a->first->cap;
}

void arena_destroy(vie_arena *a)
{
    arena_reset(a);
    free(a->first);
    a->first = NULL;
    a->ptr = a->end = NULL;
}

void *arena_alloc(vie_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    if ((size_t)(a->end - a->ptr) >= size) {
        void *p = a->ptr;
        a->ptr += size;
        return p;
    }
    if (size > SIZE_MAX / 2) return NULL;
    /* Grow geometrically so a request that needs much makes few blocks. */
    size_t cap = a->first->cap * 2;
    if (a->extra && a->extra->cap * 2 > cap) cap = a->extra->cap * 2;
    if (cap < size) cap = size;
    arena_block *b = block_new(cap);
    if (!b) return NULL;
    b->next = a->extra;
    a->extra = b;
    a->ptr = b->data + size;
    a->end = b->data + cap;
    return b->data;
}

char *arena_strndup(vie_arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

size_t arena_used(const vie_arena *a)
{
    size_t n = 0;
    for (arena_block *b = a->extra; b; b = b->next)
        n += b->cap;
    if (a->extra) {
        /* the newest extra block is the current one: count only its use */
        n -= (size_t)(a->end - a->ptr);
        n += (size_t)(a->first->cap);
    } else {
        n += (size_t)(a->ptr - a->first->data);
    }
    return n;
}
