/* Vie's built-in middleware, usable from C and from YAML (vie serve -c).
 *
 * Each built-in has an options struct, an _init function that fills the
 * defaults, and a vie_use_* function that validates the options, makes
 * the layer and registers it. Options are copied: the caller's strings
 * may go away after the call. A bad option is refused with VIE_EINVAL and
 * a log line naming the layer and the option.
 *
 *     vie_request_id_opts rid;
 *     vie_request_id_opts_init(&rid);
 *     vie_use_request_id(app, NULL, &rid);          // every route
 *
 *     vie_layer_opts lo = {.name = "auth.api", .group = api};
 *     vie_auth_opts auth;
 *     vie_auth_opts_init(&auth);
 *     auth.tokens_env = "API_TOKENS";
 *     vie_use_auth(app, &lo, &auth);                // the routes of api
 *
 * The README has one section per built-in with its YAML form.
 */
#ifndef VIE_VIE_MW_H
#define VIE_VIE_MW_H

#include "vie/vie.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a built-in layer goes and how it is ordered. NULL (or all zero)
 * means: named after its type, on every route, in its type's phase. */
typedef struct vie_layer_opts {
    const char *name; /* default: the type ("request_id"); "auth.api" is in family "auth" */
    vie_group *group; /* NULL: the app (every route) */
    bool phase_set;   /* use phase instead of the type's own */
    vie_phase phase;
    const char *const *requires; /* NULL-terminated, as in vie_middleware */
    const char *const *runs_before;
    const char *const *runs_after;
} vie_layer_opts;

/* Change a request's deadline to ms after its head arrived (0: none).
 * The executor answers 504 when the deadline passes before a layer or
 * while one is parked; a handler running synchronously is not
 * interrupted. */
VIE_API int vie_deadline_set(vie_ctx *c, uint32_t ms);

/* Body bytes of the response so far (of the whole body once ended). */
VIE_API uint64_t vie_response_bytes(const vie_ctx *c);

/* ------------------------------------------------------------------ */
/* App events, for layers with per-process resources (files, timers)   */

typedef enum vie_app_event {
    VIE_EV_WORKER_START = 0, /* a worker's loop is ready (also with workers: 0) */
    VIE_EV_WORKER_STOP,      /* it drained and is about to close: flush, close */
    VIE_EV_REOPEN,           /* SIGUSR1: reopen log files (after rotation) */
    VIE_EV_APP_FREE,         /* vie_app_free, after the layers: loop is NULL */
} vie_app_event;

/* fn(app, loop (a uv_loop_t *), arg) runs in every worker process on ev,
 * on the worker's loop, in registration order (stop: in reverse). */
typedef void (*vie_app_hook)(vie_app *app, void *loop, void *arg);
VIE_API int vie_app_hook_add(vie_app *app, vie_app_event ev, vie_app_hook fn, void *arg);

/* Config reload. Under a supervisor (workers > 0), SIGHUP calls fn(arg)
 * for the app of the next generation: a new app (vie_app_new, not
 * started; it is frozen by the supervisor), or NULL to keep serving the
 * current one (fn logs why). The new generation starts from the new app,
 * the old one drains, and the supervisor frees the previous app (use
 * VIE_EV_APP_FREE to free what it holds). The listening socket stays: a
 * changed listen address needs a restart. Counters start again from zero
 * in the new app. Without fn, SIGHUP restarts the workers on the same app. */
VIE_API int vie_app_on_reload(vie_app *app, vie_app *(*fn)(void *arg), void *arg);

/* Make app (new, nothing registered yet) the successor of from: state
 * the built-ins keep across reloads (circuit breakers, rate-limit
 * buckets, by layer name) is shared with from's instead of starting
 * afresh. */
VIE_API int vie_app_inherit(vie_app *app, const vie_app *from);

/* ------------------------------------------------------------------ */
/* request_id: generate or propagate X-Request-Id                      */

typedef struct vie_request_id_opts {
    const char *header;   /* default "X-Request-Id" */
    bool trust_incoming;  /* keep a well-formed incoming id; default true */
    bool response_header; /* echo the id in the response; default true */
} vie_request_id_opts;

VIE_API void vie_request_id_opts_init(vie_request_id_opts *o);
VIE_API int vie_use_request_id(vie_app *app, const vie_layer_opts *lo,
                               const vie_request_id_opts *o);
/* The request's id, NUL-terminated, in request memory; NULL if none. */
VIE_KEY_DECLARE(vie_request_id, const char *)

/* ------------------------------------------------------------------ */
/* trace: W3C Trace Context (traceparent, tracestate)                  */

typedef struct vie_trace_context {
    char trace_id[33];      /* 32 lowercase hex */
    char parent_id[17];     /* the caller's span ("" when this request started the trace) */
    char span_id[17];       /* this request's span, 16 lowercase hex */
    uint8_t flags;          /* bit 0: sampled */
    const char *tracestate; /* as received (validated), NULL if none */
} vie_trace_context;

typedef struct vie_trace_opts {
    bool response_header; /* send traceparent back; default true */
    bool sample;          /* the sampled flag of traces this layer starts; default true */
} vie_trace_opts;

VIE_API void vie_trace_opts_init(vie_trace_opts *o);
VIE_API int vie_use_trace(vie_app *app, const vie_layer_opts *lo, const vie_trace_opts *o);
VIE_KEY_DECLARE(vie_trace, const vie_trace_context *)

/* ------------------------------------------------------------------ */
/* access_log: one JSON line per request                               */

typedef struct vie_access_log_opts {
    const char *path;     /* NULL or "-": standard output; else a file, appended */
    uint32_t buffer_size; /* bytes buffered before a write; default 65536 */
    uint32_t flush_ms;    /* longest a line waits; default 1000 */
    bool trail;           /* include every layer with its microseconds; default true */
} vie_access_log_opts;

VIE_API void vie_access_log_opts_init(vie_access_log_opts *o);
VIE_API int vie_use_access_log(vie_app *app, const vie_layer_opts *lo,
                               const vie_access_log_opts *o);

/* ------------------------------------------------------------------ */
/* metrics: GET /metrics, with per-layer duration histograms           */
/* Not a layer: the executor measures every layer (a layer could not
 * time those before it). This registers the route and turns the
 * per-layer histograms on. */

typedef struct vie_metrics_opts {
    const char *path;      /* default "/metrics" */
    bool layer_histograms; /* vie_layer_duration_seconds{layer}; default true */
} vie_metrics_opts;

VIE_API void vie_metrics_opts_init(vie_metrics_opts *o);
VIE_API int vie_use_metrics(vie_app *app, const vie_metrics_opts *o);

/* ------------------------------------------------------------------ */
/* timeout: a deadline for the routes it covers -> 504                  */

typedef struct vie_timeout_opts {
    uint32_t timeout_ms; /* required: 1 ms .. 1 h */
} vie_timeout_opts;

VIE_API void vie_timeout_opts_init(vie_timeout_opts *o);
VIE_API int vie_use_timeout(vie_app *app, const vie_layer_opts *lo, const vie_timeout_opts *o);

/* ------------------------------------------------------------------ */
/* auth: API keys or bearer tokens, compared in constant time          */
/*
 * Credentials are "principal:token" entries: lines of a file (blank lines
 * and lines starting with '#' skipped), a comma-separated environment
 * variable, or a C array. The principal is what the `vie_principal` key
 * holds once a request is let in. Missing or wrong credentials get 401
 * with WWW-Authenticate.
 */

typedef enum vie_auth_scheme {
    VIE_AUTH_BEARER = 0, /* Authorization: Bearer <token> */
    VIE_AUTH_API_KEY,    /* <header>: <token> */
} vie_auth_scheme;

typedef struct vie_auth_opts {
    vie_auth_scheme scheme;
    const char *header;        /* api_key: default "X-Api-Key" */
    const char *tokens_file;   /* read at registration */
    const char *tokens_env;    /* name of an environment variable */
    const char *const *tokens; /* NULL-terminated "principal:token" */
    const char *realm;         /* default "vie" */
} vie_auth_opts;

VIE_API void vie_auth_opts_init(vie_auth_opts *o);
VIE_API int vie_use_auth(vie_app *app, const vie_layer_opts *lo, const vie_auth_opts *o);
/* Who the request authenticated as, NUL-terminated; NULL if not. */
VIE_KEY_DECLARE(vie_principal, const char *)

/* ------------------------------------------------------------------ */
/* cors                                                                */
/* Preflights (OPTIONS with Origin and Access-Control-Request-Method)
 * are answered 204 by the layer; Vie routes OPTIONS on any path that has
 * routes through that path's pipeline (answering 204 with Allow when no
 * layer does), so a preflight meets the same layers as the request. */

typedef struct vie_cors_opts {
    const char *const *allow_origins;  /* exact origins, or "*"; required */
    const char *const *allow_methods;  /* default GET, HEAD, POST */
    const char *const *allow_headers;  /* default: none beyond the safelisted */
    const char *const *expose_headers; /* default: none */
    bool allow_credentials;            /* not with "*" (refused) */
    uint32_t max_age_s;                /* preflight cache; default 600 */
} vie_cors_opts;

VIE_API void vie_cors_opts_init(vie_cors_opts *o);
VIE_API int vie_use_cors(vie_app *app, const vie_layer_opts *lo, const vie_cors_opts *o);

/* ------------------------------------------------------------------ */
/* body_limit: 413 past a size (tighter than the server's max_body)    */

typedef struct vie_body_limit_opts {
    uint64_t max_bytes; /* required */
} vie_body_limit_opts;

VIE_API void vie_body_limit_opts_init(vie_body_limit_opts *o);
VIE_API int vie_use_body_limit(vie_app *app, const vie_layer_opts *lo,
                               const vie_body_limit_opts *o);

/* ------------------------------------------------------------------ */
/* security_headers                                                    */

typedef struct vie_security_headers_opts {
    uint32_t hsts_max_age_s;             /* Strict-Transport-Security; 0: not sent; default 0 */
    bool hsts_include_subdomains;        /* default false */
    const char *frame_options;           /* X-Frame-Options; default "DENY"; NULL: not sent */
    bool nosniff;                        /* X-Content-Type-Options: nosniff; default true */
    const char *referrer_policy;         /* default "no-referrer"; NULL: not sent */
    const char *content_security_policy; /* default NULL: not sent */
    const char *permissions_policy;      /* default NULL: not sent */
} vie_security_headers_opts;

VIE_API void vie_security_headers_opts_init(vie_security_headers_opts *o);
VIE_API int vie_use_security_headers(vie_app *app, const vie_layer_opts *lo,
                                     const vie_security_headers_opts *o);

/* ------------------------------------------------------------------ */
/* validate: refuse malformed requests before the handler              */
/*
 * Checked in this order; the first failure answers (problem+json):
 * require_headers (400 naming every missing one; a header sent empty is
 * present), require_query (400 likewise), then, for a request with a
 * body (not empty), content_types (415 naming the accepted types) and
 * json_body (400 with the byte offset of the first error). At least one
 * rule is required.
 */

typedef struct vie_validate_opts {
    const char *const *require_headers; /* each must be present: else 400 */
    /* A body's media type (parameters ignored, case-insensitive) must be
     * one of these, "type/subtype" or "type/ *" (no space): else 415, also
     * when the body has no Content-Type. */
    const char *const *content_types;
    /* A body must be well-formed JSON, strict RFC 8259 (no trailing
     * commas, no lone surrogate escapes, at most 64 levels of nesting):
     * else 400. Any Content-Type: pair with content_types to require
     * application/json. */
    bool json_body;
    const char *const *require_query; /* query parameters that must be present: else 400 */
} vie_validate_opts;

VIE_API void vie_validate_opts_init(vie_validate_opts *o);
VIE_API int vie_use_validate(vie_app *app, const vie_layer_opts *lo, const vie_validate_opts *o);

/* ------------------------------------------------------------------ */
/* rate_limit: GCRA (a token bucket of rate and burst)                 */
/*
 * From a full bucket, burst requests pass at once, then one every
 * 1/rate seconds; an idle key refills to burst. The buckets are in the
 * app's shared memory: all workers enforce one limit. Past it: 429
 * problem+json with Retry-After (seconds, rounded up). Every response the
 * layer lets through or refuses carries RateLimit-Limit (burst),
 * RateLimit-Remaining and RateLimit-Reset (seconds until the bucket is
 * full again, rounded up). Metrics: vie_ratelimit_decisions_total{limiter,
 * result="allowed|limited|shadow_limited"} and
 * vie_ratelimit_evictions_total{limiter}.
 *
 * With VIE_RATE_KEY_PRINCIPAL the layer requires "auth" (a layer named
 * auth or auth.*), so a pipeline without it is refused at start; a
 * request that reaches it without a principal shares one bucket (logged
 * once per worker).
 */

typedef enum vie_rate_key {
    VIE_RATE_KEY_IP = 0,    /* the client's address */
    VIE_RATE_KEY_HEADER,    /* a header's value (absent: one shared bucket) */
    VIE_RATE_KEY_PRINCIPAL, /* the vie_principal key (requires auth) */
    VIE_RATE_KEY_ROUTE,     /* one bucket per route */
} vie_rate_key;

typedef struct vie_rate_limit_opts {
    double rate;        /* requests per second, sustained; required: (0, 1e9] */
    uint32_t burst;     /* requests allowed at once; default 1 */
    vie_rate_key key;   /* default VIE_RATE_KEY_IP */
    const char *header; /* VIE_RATE_KEY_HEADER: which one (only then) */
    /* Keys kept, across workers: rounded up to a power of two (at least
     * 8), in sets of 8 by hash; a full set drops its stalest key (counted
     * as an eviction when its bucket was not full again). Default 65536,
     * at most 1048576 (16 bytes each, in shared memory). */
    uint32_t max_keys;
    /* Default true. false (shadow mode): decide and count what would be
     * refused (shadow_limited; a log line at most once a second per
     * worker), but let everything through, without RateLimit headers. */
    bool enforce;
    uint64_t (*clock_ns)(void); /* NULL: the monotonic clock; tests drive their own */
} vie_rate_limit_opts;

VIE_API void vie_rate_limit_opts_init(vie_rate_limit_opts *o);
VIE_API int vie_use_rate_limit(vie_app *app, const vie_layer_opts *lo,
                               const vie_rate_limit_opts *o);

/* ------------------------------------------------------------------ */
/* fault: injected delays and aborts, for chaos tests                  */
/*
 * Off unless enabled. Each request the rule matches is delayed with
 * probability delay_percent and aborted with abort_percent (the delay
 * first). Delays park the request on a timer: they never block the
 * loop. Random draws come from a generator seeded with seed, so a run
 * can be replayed (workers: 0). At most max_active_faults requests are
 * delayed at once, across workers; beyond, faults are skipped and
 * counted (faults_overflow).
 *
 * Header-driven faults (X-Vie-Fault-Delay: <ms>, X-Vie-Fault-Abort:
 * <status>) apply only to clients in trusted_cidrs.
 */

typedef enum vie_delay_kind {
    VIE_DELAY_FIXED = 0, /* delay_ms */
    VIE_DELAY_UNIFORM,   /* between delay_min_ms and delay_max_ms */
    VIE_DELAY_NORMAL,    /* mean delay_ms, standard deviation delay_stddev_ms, >= 0 */
    VIE_DELAY_LOGNORMAL, /* median delay_p50_ms and 99th percentile delay_p99_ms */
} vie_delay_kind;

typedef struct vie_fault_opts {
    bool enabled;
    uint64_t seed;        /* 0: from the system's entropy */
    double delay_percent; /* 0..100 */
    vie_delay_kind delay_kind;
    uint32_t delay_ms, delay_min_ms, delay_max_ms, delay_stddev_ms;
    uint32_t delay_p50_ms, delay_p99_ms;
    double abort_percent;             /* 0..100 */
    int abort_status;                 /* default 503 */
    const char *const *routes;        /* route labels or patterns ("GET /x", "/x"); NULL: all */
    const char *match_header;         /* only requests with this header ... */
    const char *match_value;          /* ... equal to this (NULL: any value) */
    const char *const *trusted_cidrs; /* header-driven faults from these only; NULL: none */
    uint32_t max_active_faults;       /* default 100 */
} vie_fault_opts;

VIE_API void vie_fault_opts_init(vie_fault_opts *o);
VIE_API int vie_use_fault(vie_app *app, const vie_layer_opts *lo, const vie_fault_opts *o);

/* ------------------------------------------------------------------ */
/* static files                                                        */
/*
 * A handler that serves files under root, for a route whose last segment
 * is a catch-all named "path" (the pattern "/assets/" followed by "*path").
 * sendfile(2) for bodies; ETag and
 * If-None-Match, Last-Modified and If-Modified-Since, single byte Range
 * (206, 416), content types by extension; no path leaves root (dot
 * segments, symlinks out of root and NUL bytes are refused).
 */

typedef struct vie_static_opts {
    const char *root;          /* required: a directory */
    const char *index;         /* served for a directory; default "index.html"; "" none */
    const char *cache_control; /* Cache-Control value; default NULL: not sent */
    const char *param;         /* the catch-all's name; default "path" */
    bool etag;                 /* default true */
} vie_static_opts;

typedef struct vie_static vie_static;

VIE_API void vie_static_opts_init(vie_static_opts *o);
VIE_API int vie_static_new(const vie_static_opts *o, vie_static **out);
VIE_API void vie_static_free(vie_static *s);
/* Pass s as the handler's arg: vie_route(app, "GET", pattern,
 * vie_static_handler, s). */
VIE_API vie_status vie_static_handler(vie_ctx *c, void *arg);

/* Send a file's bytes [offset, offset + len) as the body with status;
 * headers added before stay. fd is read, not closed: vie dups it. */
VIE_API vie_status vie_send_file(vie_ctx *c, int status, const char *content_type, int fd,
                                 uint64_t offset, uint64_t len);

#ifdef __cplusplus
}
#endif
#endif
