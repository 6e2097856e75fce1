#include "server/shm.h"

#include <stdint.h>
#include <stdlib.h>
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
