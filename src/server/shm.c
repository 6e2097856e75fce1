#include "server/shm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/log.h"

struct shm_region {
    char *base;
    size_t size;
    size_t used;
};

shm_region *shm_create(size_t size)
{
    shm_region *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->base =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r->base == MAP_FAILED) {
        LOG_ERROR("cannot map %zu bytes of shared memory", size);
        free(r);
        return NULL;
    }
    r->size = size;
    return r;
}

void shm_destroy(shm_region *r)
{
    if (!r) return;
    munmap(r->base, r->size);
    free(r);
}

void *shm_alloc(shm_region *r, size_t size)
{
    size_t at = (r->used + 63) & ~(size_t)63;
    if (size > r->size || at > r->size - size) {
        LOG_ERROR("shared memory is full (%zu bytes): raise its size", r->size);
        return NULL;
    }
    r->used = at + size;
    return r->base + at; /* fresh anonymous pages are zero */
}

/* The region of shm_named and its directory. The directory is ordinary
 * memory: it is read only while building an app, in the process that
 * builds it, and workers inherit a copy with the fork. */
#define NAMED_REGION_SIZE ((size_t)256 << 20)

typedef struct named_entry {
    unsigned long scope;
    size_t size;
    void *p;
    char name[];
} named_entry;

static shm_region *named_region;
static named_entry **named;
static size_t n_named, cap_named;

void *shm_named(unsigned long scope, const char *name, size_t size, bool *fresh)
{
    *fresh = false;
    for (size_t i = 0; i < n_named; i++)
        if (named[i]->scope == scope && named[i]->size == size && !strcmp(named[i]->name, name))
            return named[i]->p;
    if (!named_region && !(named_region = shm_create(NAMED_REGION_SIZE))) return NULL;
    if (n_named == cap_named) {
        size_t cap = cap_named ? cap_named * 2 : 16;
        named_entry **v = realloc(named, cap * sizeof *v);
        if (!v) return NULL;
        named = v;
        cap_named = cap;
    }
    size_t len = strlen(name);
    named_entry *e = malloc(sizeof *e + len + 1);
    void *p = e ? shm_alloc(named_region, size) : NULL;
    if (!p) {
        free(e);
        return NULL;
    }
    *e = (named_entry){.scope = scope, .size = size, .p = p};
    memcpy(e->name, name, len + 1);
    named[n_named++] = e;
    *fresh = true;
    return p;
}
