/* Request metrics (metrics.c): recorded in shared memory at request start
 * and end; rendered by vie_app_metrics. */
#ifndef VIE_CORE_METRICS_H
#define VIE_CORE_METRICS_H

#include "core/ctx.h"

#define VIE_MAX_KEYS 1024

/* A request was dispatched: it is in flight. */
void metrics_request_start(vie_ctx *c);
/* Requests answered so far, all workers (summed from the per-route
 * counters, so the hot path keeps one shared counter fewer). */
uint64_t metrics_requests_answered(vie_app *app);
/* Its response is complete (or it was cancelled): count status and time. */
void metrics_request_done(vie_ctx *c);

#endif
