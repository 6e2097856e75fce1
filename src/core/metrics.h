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

/* A built-in adds series to /metrics: fn appends Prometheus text (use
 * metrics_help and metrics_label) to b on every scrape. Counters it shows
 * must be in the app's shared memory (shm_alloc(app->shm, ...)) to be
 * totals across workers. */
int metrics_add_source(vie_app *app, void (*fn)(struct vie_buf *b, void *arg), void *arg);
/* "# HELP name text" and "# TYPE name type". */
void metrics_help(struct vie_buf *b, const char *name, const char *type, const char *text);
/* A label value with backslash, double quote and newline escaped. */
void metrics_label(struct vie_buf *b, const char *s);

#endif
