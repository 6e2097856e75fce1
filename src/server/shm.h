/* The shared-memory segment: one anonymous MAP_SHARED mapping made when
 * the app is created, before any worker is forked, so every counter in it
 * is shared by the supervisor and all workers and updated with atomics.
 * Allocation is a bump pointer during configuration; nothing is freed
 * until the app is. The mapping reserves address space only: untouched
 * pages cost no memory. */
#ifndef VIE_SERVER_SHM_H
#define VIE_SERVER_SHM_H

#include <stddef.h>

typedef struct shm_region shm_region;

shm_region *shm_create(size_t size);
void shm_destroy(shm_region *r);
/* Zeroed, 64-byte aligned (no false sharing between counters of
 * different objects); NULL when the region is full. */
void *shm_alloc(shm_region *r, size_t size);

#endif
