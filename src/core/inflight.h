/* In-flight requests, visible to every worker: a table in the app's
 * shared memory with a region of slots per worker. A request takes a slot
 * when it is dispatched and gives it back when it ends; the executor
 * stores which layer it is in and since when. /debug/requests reads all
 * regions; each worker's watchdog reads its own. */
#ifndef VIE_CORE_INFLIGHT_H
#define VIE_CORE_INFLIGHT_H

#include <stdatomic.h>
#include <stdint.h>

#include "vie/vie.h"

#define INFLIGHT_REGIONS 64  /* workers alive at once, two generations included */
#define INFLIGHT_SLOTS   256 /* tracked requests per worker; more are served, not shown */

typedef struct inflight_slot {
    _Atomic int32_t pid;             /* 0: free */
    _Atomic int32_t pos;             /* chain position; chain length = the handler */
    uint32_t route;                  /* index in app->routes (same in every worker) */
    _Atomic uint64_t layer_enter_ns; /* when it entered its current position */
    uint64_t start_ns;
    bool reported; /* the watchdog has logged it */
    char method[12];
    char path[72];
    vie_ctx *owner; /* meaningful in the owning process only */
} inflight_slot;

struct vie_app;
struct vie_ctx;

/* This process's region (the supervisor gives each worker one). */
void inflight_set_region(struct vie_app *app, int region);
/* Take a slot for c (NULL when the region is full: not tracked). */
inflight_slot *inflight_take(struct vie_ctx *c);
void inflight_give(struct vie_ctx *c);
/* Log requests of this process stuck longer than threshold_ms in one
 * layer, once each, with their trail. */
void inflight_watchdog(struct vie_app *app, uint32_t threshold_ms);
/* GET /debug/requests */
vie_status inflight_debug_handler(vie_ctx *c, void *arg);

#endif
