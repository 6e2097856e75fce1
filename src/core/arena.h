/* The request arena: bump allocation from blocks, released all at once
 * when the request ends. The first block is kept across requests, so a
 * request that fits in it never calls malloc. */
#ifndef VIE_CORE_ARENA_H
#define VIE_CORE_ARENA_H

#include <stddef.h>

typedef struct arena_block {
    struct arena_block *next;
    size_t cap;
    _Alignas(16) char data[];
} arena_block;

typedef struct vie_arena {
    arena_block *first; /* kept across resets */
    arena_block *extra; /* blocks added by this request, freed on reset */
    char *ptr, *end;
} vie_arena;

/* first_cap: bytes of the block kept for the arena's life. */
int arena_init(vie_arena *a, size_t first_cap);
void arena_destroy(vie_arena *a);
/* Free every extra block and rewind the first. */
void arena_reset(vie_arena *a);
/* 16-byte aligned; NULL when out of memory. */
void *arena_alloc(vie_arena *a, size_t size);
/* Copy of s[0..len) with a NUL after it. */
char *arena_strndup(vie_arena *a, const char *s, size_t len);
/* Bytes handed out since the last reset (tests, introspection). */
size_t arena_used(const vie_arena *a);

#endif
