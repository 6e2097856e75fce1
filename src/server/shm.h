/* The shared-memory segment: one anonymous MAP_SHARED mapping made when
 * the app is created, before any worker is forked, so every counter in it
 * is shared by the supervisor and all workers and updated with atomics.
 * Allocation is a bump pointer during configuration; nothing is freed
 * until the app is. The mapping reserves address space only: untouched
 * pages cost no memory. */
#ifndef VIE_SERVER_SHM_H
#define VIE_SERVER_SHM_H

#include <stdbool.h>
#include <stddef.h>

typedef struct shm_region shm_region;

shm_region *shm_create(size_t size);
void shm_destroy(shm_region *r);
/* Zeroed, 64-byte aligned (no false sharing between counters of
 * different objects); NULL when the region is full. */
void *shm_alloc(shm_region *r, size_t size);

/* Shared memory that outlives an app, found again by (scope, name, size):
 * a circuit breaker or a rate-limit table keeps its state when a config
 * reload builds the next app in the same scope. One process-wide region,
 * mapped at first use (apps are built before their workers fork) and
 * never unmapped. *fresh tells whether the memory is new (zeroed).
 * NULL when the region is full. Not thread-safe: call while configuring. */
void *shm_named(unsigned long scope, const char *name, size_t size, bool *fresh);

#endif
