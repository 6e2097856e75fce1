/* Request metrics, and the Prometheus text exposition of every counter.
 * All counters live in the app's shared-memory segment, so any worker's
 * /metrics shows totals across all workers. */
#include "core/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"

const double metric_bucket_bounds[METRIC_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const double layer_bucket_bounds[METRIC_BUCKETS] = {0.000001, 0.000005, 0.00001, 0.000025, 0.00005,
                                                    0.0001,   0.00025,  0.0005,  0.001,    0.0025,
                                                    0.005,    0.01,     0.1,     1};

static const char *const method_names[] = {"OTHER",  "GET",   "HEAD",    "POST",  "PUT",
                                           "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"};

static uint64_t answered(const route_counters *n)
{
    uint64_t sum = 0;
    for (int i = 0; i < 500; i++)
        sum += n->by_status[i];
    return sum;
}

uint64_t metrics_requests_answered(vie_app *app)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < app->n_routes; i++)
        sum += answered(app->routes[i]->n);
    for (int m = 0; m <= HTTP_M_CONNECT; m++)
        sum += answered(&app->unmatched[m]);
    return sum;
}

void metrics_request_start(vie_ctx *c)
{
    c->app->stats->in_flight++;
    c->in_flight = true;
}

void metrics_request_done(vie_ctx *c)
{
    vie_app *app = c->app;
    if (c->in_flight) {
        app->stats->in_flight--;
        c->in_flight = false;
    }
    int status = c->res.status;
    if (status < 100 || status > 599) return; /* nothing was answered */
    route_counters *n =
        c->route && c->route != app->fallback && !c->auto_status
            ? c->route->n
            : &app->unmatched[c->req.method_id <= HTTP_M_CONNECT ? c->req.method_id : HTTP_M_OTHER];
    n->by_status[status - 100]++;
    uint64_t ns = c->start_ns ? clock_now_ns() - c->start_ns : 0;
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < METRIC_BUCKETS && s > metric_bucket_bounds[b])
        b++;
    n->buckets[b]++;
    n->duration_us += ns / 1000;
}

/* ------------------------------------------------------------------ */
/* Exposition                                                          */

/* A label value: backslash, double quote and newline escaped. */
void metrics_label(vie_buf *b, const char *s)
{
    while (*s) {
        size_t run = strcspn(s, "\\\"\n"); /* plain bytes, copied in one go */
        buf_append(b, s, run);
        s += run;
        if (!*s) break;
        buf_append(b, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
        s++;
    }
}

void metrics_help(vie_buf *b, const char *name, const char *type, const char *text)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void route_requests(vie_buf *b, const char *pattern, const char *method,
                           const route_counters *n)
{
    for (int i = 0; i < 500; i++) {
        uint64_t v = n->by_status[i];
        if (!v) continue;
        buf_printf(b, "vie_requests_total{route=\"");
        metrics_label(b, pattern);
        buf_printf(b, "\",method=\"%s\",status=\"%d\"} %llu\n", method, i + 100,
                   (unsigned long long)v);
    }
}

static void route_histogram(vie_buf *b, const char *pattern, const char *method,
                            const route_counters *n)
{
    uint64_t counts[METRIC_BUCKETS + 1], total = 0;
    for (int i = 0; i <= METRIC_BUCKETS; i++)
        total += counts[i] = n->buckets[i];
    if (!total) return;
    uint64_t cum = 0;
    for (int i = 0; i <= METRIC_BUCKETS; i++) {
        cum += counts[i];
        buf_printf(b, "vie_request_duration_seconds_bucket{route=\"");
        metrics_label(b, pattern);
        if (i < METRIC_BUCKETS)
            buf_printf(b, "\",method=\"%s\",le=\"%g\"} %llu\n", method, metric_bucket_bounds[i],
                       (unsigned long long)cum);
        else
            buf_printf(b, "\",method=\"%s\",le=\"+Inf\"} %llu\n", method, (unsigned long long)cum);
    }
    buf_printf(b, "vie_request_duration_seconds_sum{route=\"");
    metrics_label(b, pattern);
    buf_printf(b, "\",method=\"%s\"} %.6f\n", method, (double)n->duration_us / 1e6);
    buf_printf(b, "vie_request_duration_seconds_count{route=\"");
    metrics_label(b, pattern);
    buf_printf(b, "\",method=\"%s\"} %llu\n", method, (unsigned long long)total);
}

/* One counter per layer (and per route for the handler), from an offset
 * into the counters structs. */
static void per_layer(vie_buf *b, vie_app *app, const char *name, const char *text,
                      size_t layer_off, size_t route_off)
{
    metrics_help(b, name, "counter", text);
    for (size_t i = 0; i < app->n_layers; i++) {
        const layer *l = app->layers[i];
        uint64_t v = *(const _Atomic uint64_t *)((const char *)l->n + layer_off);
        buf_printf(b, "%s{layer=\"", name);
        metrics_label(b, l->mw.name);
        buf_printf(b, "\"} %llu\n", (unsigned long long)v);
    }
    if (route_off == (size_t)-1) return;
    for (size_t i = 0; i < app->n_routes; i++) {
        const route_entry *r = app->routes[i];
        uint64_t v = *(const _Atomic uint64_t *)((const char *)r->n + route_off);
        if (!v) continue;
        buf_printf(b, "%s{layer=\"handler\",route=\"", name);
        metrics_label(b, r->label);
        buf_printf(b, "\"} %llu\n", (unsigned long long)v);
    }
}

static void layer_histograms(vie_buf *b, vie_app *app)
{
    metrics_help(b, "vie_layer_duration_seconds", "histogram",
                 "Time in each layer: before hook, any wait it parked on, after hook.");
    for (size_t i = 0; i < app->n_layers; i++) {
        const layer *l = app->layers[i];
        uint64_t cum = 0;
        for (int k = 0; k <= METRIC_BUCKETS; k++) {
            cum += l->n->buckets[k];
            buf_printf(b, "vie_layer_duration_seconds_bucket{layer=\"");
            metrics_label(b, l->mw.name);
            if (k < METRIC_BUCKETS)
                buf_printf(b, "\",le=\"%g\"} %llu\n", layer_bucket_bounds[k],
                           (unsigned long long)cum);
            else
                buf_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        buf_printf(b, "vie_layer_duration_seconds_sum{layer=\"");
        metrics_label(b, l->mw.name);
        buf_printf(b, "\"} %.9f\n", (double)l->n->duration_ns / 1e9);
        buf_printf(b, "vie_layer_duration_seconds_count{layer=\"");
        metrics_label(b, l->mw.name);
        buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
}

int metrics_add_source(vie_app *app, void (*fn)(vie_buf *b, void *arg), void *arg)
{
    if (!app || !fn) return VIE_EINVAL;
    if (app->frozen) return app_refuse_frozen(app, "metrics_add_source", "source");
    if (app->n_msources == app->cap_msources) {
        size_t cap = app->cap_msources ? app->cap_msources * 2 : 8;
        metrics_source *m = realloc(app->msources, cap * sizeof *m);
        if (!m) return VIE_ENOMEM;
        app->msources = m;
        app->cap_msources = cap;
    }
    app->msources[app->n_msources++] = (metrics_source){fn, arg};
    return VIE_OK;
}

char *vie_app_metrics(vie_app *app)
{
    if (!app) return NULL;
    vie_buf b = {0};
    const vie_stats *s = app->stats;

    metrics_help(&b, "vie_requests_total", "counter",
                 "Requests answered, by route, method and status.");
    for (size_t i = 0; i < app->n_routes; i++)
        route_requests(&b, app->routes[i]->pattern, app->routes[i]->method, app->routes[i]->n);
    for (int m = 0; m <= HTTP_M_CONNECT; m++)
        route_requests(&b, "", method_names[m], &app->unmatched[m]);

    metrics_help(&b, "vie_request_duration_seconds", "histogram",
                 "Time from a complete request head to the end of its response.");
    for (size_t i = 0; i < app->n_routes; i++)
        route_histogram(&b, app->routes[i]->pattern, app->routes[i]->method, app->routes[i]->n);
    for (int m = 0; m <= HTTP_M_CONNECT; m++)
        route_histogram(&b, "", method_names[m], &app->unmatched[m]);

    metrics_help(&b, "vie_requests_in_flight", "gauge", "Requests being served now, all workers.");
    buf_printf(&b, "vie_requests_in_flight %lld\n", (long long)s->in_flight);

    per_layer(&b, app, "vie_panics_total", "vie_panic and VIE_ASSERT, contained.",
              offsetof(layer_counters, panics), offsetof(route_counters, panics));
    per_layer(&b, app, "vie_crashes_total", "Crash signals inside a layer or handler.",
              offsetof(layer_counters, crashes), offsetof(route_counters, crashes));
    per_layer(&b, app, "vie_chain_breaks_total",
              "Layers that stopped a request without answering; handlers that did not answer.",
              offsetof(layer_counters, chain_breaks), offsetof(route_counters, unanswered));
    per_layer(&b, app, "vie_next_after_done_total", "Layers that continued after answering.",
              offsetof(layer_counters, next_after_done), (size_t)-1);
    per_layer(&b, app, "vie_async_timeouts_total", "Layers parked past their async deadline.",
              offsetof(layer_counters, async_timeouts), (size_t)-1);

    metrics_help(&b, "vie_ctx_conflicts_total", "counter",
                 "Refused writes of typed request values.");
    for (size_t k = 0; k < app->n_keys; k++) {
        if (!app->keys[k]) continue;
        buf_printf(&b, "vie_ctx_conflicts_total{key=\"");
        metrics_label(&b, app->keys[k]->name);
        buf_printf(&b, "\"} %llu\n", (unsigned long long)app->key_conflicts[k]);
    }

    static const struct {
        const char *name, *help;
        size_t off;
    } totals[] = {
        {"vie_requires_refused_total", "Routes reached without a layer they require.",
         offsetof(vie_stats, requires_refused)},
        {"vie_deadline_exceeded_total", "Requests past their deadline (504).",
         offsetof(vie_stats, deadline_exceeded)},
        {"vie_stale_refs_total", "vie_ref uses after their request ended (refused).",
         offsetof(vie_stats, stale_refs)},
        {"vie_writer_refusals_total", "Response calls refused by the writer's state machine.",
         offsetof(vie_stats, writer_refusals)},
        {"vie_bad_requests_total", "Malformed requests answered 4xx/5xx.",
         offsetof(vie_stats, bad_requests)},
        {"vie_connections_refused_total", "Connections refused over max_connections.",
         offsetof(vie_stats, conn_refused_limit)},
        {"vie_client_gone_total", "Requests cancelled because the client went away.",
         offsetof(vie_stats, client_gone)},
        {"vie_worker_restarts_total", "Workers the supervisor replaced.",
         offsetof(vie_stats, worker_restarts)},
    };
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        metrics_help(&b, totals[i].name, "counter", totals[i].help);
        buf_printf(
            &b, "%s %llu\n", totals[i].name,
            (unsigned long long)*(const _Atomic uint64_t *)((const char *)s + totals[i].off));
    }
    if (app->layer_histograms) layer_histograms(&b, app);
    for (size_t i = 0; i < app->n_msources; i++)
        app->msources[i].fn(&b, app->msources[i].arg);
    if (buf_reserve(&b, 1) != 0) {
        buf_free(&b);
        return NULL;
    }
    b.data[b.len] = '\0';
    return b.data;
}

vie_status vie_metrics_handler(vie_ctx *c, void *arg)
{
    (void)arg;
    char *text = vie_app_metrics(c->app);
    if (!text) return vie_send_problem(c, 500, "out of memory");
    vie_status st =
        vie_send(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
    return st;
}
