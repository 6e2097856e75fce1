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

/* A generated id is 32 lowercase hex digits (128 random bits; each
 * worker reseeds at start). An incoming id is kept only when it is 1 to
 * 128 characters of [A-Za-z0-9] and "-._:+/=@": nothing that could split
 * a header or a log line or need escaping; anything else is replaced. */
typedef struct vie_request_id_opts {
    const char *header;   /* default "X-Request-Id"; an HTTP token, at most 64 */
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
    const char *tracestate; /* as received (every field joined with ','), when the
                               traceparent was valid and it is well-formed (at most 32
                               members, 512 characters); else NULL */
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

/* {"time","request_id","trace_id","span_id","method","path","route",
 * "status","bytes","duration_ms","client","layers":[{"name","us"}...]}:
 * the ids when request_id / trace set them, layers when trail is on.
 * An after hook (it sees the final status). Lines are buffered per
 * process and written on libuv's thread pool, one write at a time while
 * a second buffer fills; when both are full a line is dropped and
 * counted (vie_access_log_dropped_total{layer}, beside
 * vie_access_log_lines_total{layer}). The file is opened at
 * registration (a path that cannot be opened is refused then), again in
 * each worker, and reopened on SIGUSR1. */
typedef struct vie_access_log_opts {
    const char *path;     /* NULL or "-": standard output; else a file, appended */
    uint32_t buffer_size; /* bytes buffered before a write: 256 .. 64 MiB; default 65536 */
    uint32_t flush_ms;    /* longest a line waits: 1 .. 60000; default 1000 */
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
/*
 * The deadline counts from the end of the request head and replaces the
 * server's request timeout (longer or shorter); a route's own timeout
 * (vie_route_opts.timeout_ms, `timeout:` on a YAML route) is more
 * specific and wins. The executor answers 504 when the deadline passes
 * before a later layer runs or while one is parked (VIE_PENDING: an
 * upstream, a fault delay). A layer or handler running synchronously is
 * not interrupted: its answer stands.
 * YAML: timeout (a duration, required, 1ms .. 1h).
 */

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
 * variable, or a C array; the sources add up. At least one credential is
 * required and a token given twice is refused. Blanks around principal
 * and token are trimmed; both are visible ASCII (a token may hold ':').
 * A bad entry is refused naming its place (file:line, "$VAR entry 2",
 * tokens[1]), never the token; in YAML a relative tokens_file is relative
 * to the YAML file. Tokens are kept only as keyed hashes (SipHash-2-4-128
 * under a random key per layer) and a presented token is compared with
 * every one in constant time. The principal is what the `vie_principal`
 * key holds once a request is let in (the stored string: it lives as
 * long as the app). The key has one owner per app: one auth layer per
 * app, a second is refused.
 *
 * Answers, in application/problem+json:
 *   bearer   no Authorization header, or another scheme: 401 with
 *              WWW-Authenticate: Bearer realm="vie"
 *            a wrong token: 401, Bearer realm="vie", error="invalid_token"
 *            "Bearer" without a token, two Authorization headers: 400,
 *              Bearer realm="vie", error="invalid_request" (RFC 6750)
 *   api_key  no header: 401 with
 *              WWW-Authenticate: ApiKey realm="vie", header="X-Api-Key"
 *            a wrong or empty key, two headers: 401, the same with
 *              error="invalid_key"
 * /metrics: vie_auth_decisions_total{layer,result="allowed|missing|invalid"}.
 * YAML: scheme (bearer|api_key), header, tokens_file, tokens_env, tokens
 * (a list), realm.
 */

typedef enum vie_auth_scheme {
    VIE_AUTH_BEARER = 0, /* Authorization: Bearer <token> */
    VIE_AUTH_API_KEY,    /* <header>: <token> */
} vie_auth_scheme;

typedef struct vie_auth_opts {
    vie_auth_scheme scheme;
    const char *header;        /* bearer: "Authorization"; api_key: "X-Api-Key" */
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
 * layer does), so a preflight meets the same layers as the request.
 *
 * A preflight is allowed when its origin is listed, its method is listed
 * or CORS-safelisted (GET, HEAD, POST), and every header it asks for is
 * in allow_headers (case-insensitive): 204 with
 * Access-Control-Allow-Origin (the origin, or "*"), -Allow-Methods,
 * -Allow-Headers, -Max-Age, and -Allow-Credentials when set; else 403
 * naming the origin, method or header refused. Other requests from a
 * listed origin get Access-Control-Allow-Origin, -Allow-Credentials and
 * -Expose-Headers before the handler runs; from another origin, no CORS
 * header (the browser blocks the answer) and the request goes on. Every
 * response of the layer's routes carries Vary: Origin. Origins are
 * "scheme://host[:port]" as browsers send them (compared in lowercase)
 * or "null"; no paths, no wildcard patterns.
 * YAML: allow_origins (required), allow_methods, allow_headers,
 * expose_headers, allow_credentials, max_age (integer seconds, or a
 * duration in whole seconds: "10m"; at most 1 day). */

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
/* 413 when the Content-Length or the bytes received (a chunked body)
 * exceed max_bytes (1 .. 1 TiB). The server reads a body (up to its
 * max_body) before the pipeline runs: this keeps a large body from the
 * handler, not off the wire. YAML: max_bytes (a size: 512, 16KiB). */

typedef struct vie_body_limit_opts {
    uint64_t max_bytes; /* required */
} vie_body_limit_opts;

VIE_API void vie_body_limit_opts_init(vie_body_limit_opts *o);
VIE_API int vie_use_body_limit(vie_app *app, const vie_layer_opts *lo,
                               const vie_body_limit_opts *o);

/* ------------------------------------------------------------------ */
/* security_headers                                                    */
/* Added to every response of the layer's routes before the handler runs
 * (so also to the answers of later layers). Values holding CR, LF or
 * another control byte are refused, and so is a layer with every header
 * off. YAML: hsts_max_age (integer seconds, or "365d", "8760h"; at most
 * ten years; 0: not sent), hsts_include_subdomains (needs hsts_max_age),
 * frame_options (DENY | SAMEORIGIN; false: not sent), nosniff,
 * referrer_policy (a policy or a comma list of them; false: not sent),
 * content_security_policy, permissions_policy. A null value reads as
 * absent (the default), as everywhere in the config. */

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
 * YAML: require_headers, require_query, content_types (lists, or one
 * string), json_body.
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
 * With several limiters on a route the response carries one set of
 * RateLimit fields: the tightest (lowest remaining), or the refusing one's.
 *
 * With VIE_RATE_KEY_PRINCIPAL the layer requires "auth" (a layer named
 * auth or auth.*), so a pipeline without it is refused at start; a
 * request that reaches it without a principal shares one bucket (logged
 * once per worker).
 *
 * Backends. local: the table above, shared by the workers of one server.
 * redis: one limit for every server using the same Redis. The same GCRA
 * steps run atomically in a Lua script (EVALSHA), in microseconds, on
 * the key prefix + "ip:<address>", "header:<value>", "principal:<key>",
 * "route:<label>" or "-" (absent; a value over 200 bytes is replaced by
 * "#" and a hash of it); the key expires a second after its bucket is
 * full again. Each worker keeps one hiredis connection to each Redis
 * (limiters with the same address, password and db share it), made when
 * the worker starts (never by vie check; an unreachable Redis at start
 * is not an error) and made again with back-off (100 ms doubling to 2 s)
 * when it drops or answers nothing for max(1 s, 10 x timeout). The
 * request waits for the decision on the loop (the layer's own async
 * limit is timeout + 1 s). A backend error (timeout, connection, or an
 * error reply) is decided by on_backend_error: allow lets the request
 * through without RateLimit fields; deny answers 503 problem+json with
 * Retry-After: 1 (in shadow mode both pass). Such requests are counted
 * in vie_ratelimit_backend_errors_total{limiter, kind="timeout|
 * connection|reply"}, not in decisions_total, and logged once per
 * incident per worker: a WARN line at the first error, an INFO line at
 * the first answer after a second without errors. rate is at most
 * 1000000 per second with redis (one request per microsecond).
 *
 * YAML: rate (a number per second, or "100/s", "6000/m", "10/h"; required),
 * burst, key (ip|header|principal|route), header, max_keys (local),
 * enforce, backend (local|redis), redis: {address, prefix, timeout,
 * password, db}, clock (redis|local), on_backend_error (allow|deny).
 */

typedef enum vie_rate_key {
    VIE_RATE_KEY_IP = 0,    /* the client's address */
    VIE_RATE_KEY_HEADER,    /* a header's value (absent: one shared bucket) */
    VIE_RATE_KEY_PRINCIPAL, /* the vie_principal key (requires auth) */
    VIE_RATE_KEY_ROUTE,     /* one bucket per route */
} vie_rate_key;

typedef enum vie_rate_backend {
    VIE_RATE_BACKEND_LOCAL = 0, /* shared memory: the workers of one server */
    VIE_RATE_BACKEND_REDIS,     /* a Redis server: every server using it */
} vie_rate_backend;

typedef struct vie_rate_redis_opts {
    /* "host:port" (an IPv4 address; a host name, resolved off the loop
     * at each connect to its first IPv4 address, else its first IPv6
     * one; or "[IPv6]:port") or "unix:/path"; NULL: "127.0.0.1:6379". */
    const char *address;
    const char *prefix;   /* of every key, at most 128 bytes; NULL: "vie:rl:<layer name>:" */
    uint32_t timeout_ms;  /* per decision, at most 10000; 0: 20 */
    const char *password; /* AUTH at connect (at most 512 bytes); NULL: none */
    uint32_t db;          /* SELECT at connect when not 0; at most 65535 */
    /* false (clock: redis, the default): the script reads Redis TIME, one
     * clock for every server. true (clock: local): the server passes its
     * own time (clock_ns, else CLOCK_REALTIME). */
    bool local_clock;
} vie_rate_redis_opts;

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
    /* NULL: the monotonic clock (and CLOCK_REALTIME for the Redis
     * backend's clock: local); tests drive their own. */
    uint64_t (*clock_ns)(void);
    vie_rate_backend backend;  /* default VIE_RATE_BACKEND_LOCAL */
    vie_rate_redis_opts redis; /* backend redis only */
    /* Backend redis: a backend error lets the request through (false,
     * the default: availability first) or refuses it with 503 (true). */
    bool deny_on_backend_error;
} vie_rate_limit_opts;

VIE_API void vie_rate_limit_opts_init(vie_rate_limit_opts *o);
VIE_API int vie_use_rate_limit(vie_app *app, const vie_layer_opts *lo,
                               const vie_rate_limit_opts *o);

/* ------------------------------------------------------------------ */
/* fault: injected delays and aborts, for chaos tests                  */
/*
 * Off unless enabled (a disabled layer stays in the chain and passes
 * every request). Each request the rule matches (routes, match_header;
 * others pass untouched) is delayed with probability delay_percent and
 * aborted with abort_percent (decided after the delay): abort_status,
 * problem+json "fault injected by <layer>". Delays park the request on a
 * timer: they never block the loop; each is capped at 1 h and the
 * request deadline still applies (504). Random draws come from a
 * generator seeded with seed, so a run can be replayed (workers: 0;
 * seed 0 draws a seed and logs it). With workers each worker mixes the
 * seed with its pid and draws its own sequence. At most
 * max_active_faults requests are delayed at once, across workers;
 * beyond, delays are skipped and counted (vie_fault_overflow_total).
 *
 * Header-driven faults (X-Vie-Fault-Delay: <ms> 0..3600000,
 * X-Vie-Fault-Abort: <status> 400..599) replace the draw of their own
 * kind, for matched requests from clients in trusted_cidrs only (an
 * IPv4-mapped IPv6 address counts as IPv4). From other clients they are
 * ignored and counted (vie_fault_untrusted_headers_total); a trusted
 * client's malformed value is answered 400.
 *
 * /metrics: vie_fault_delays_injected_total, vie_fault_aborts_injected_total,
 * vie_fault_overflow_total, vie_fault_untrusted_headers_total and the
 * gauge vie_fault_active, each by {layer}.
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
    double abort_percent; /* 0..100 */
    int abort_status;     /* default 503 */
    /* Labels or full patterns ("GET /x", "/x"); NULL: all. One that names
     * no route refuses the start (checked at freeze). */
    const char *const *routes;
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
 * GET and HEAD only (others: 405). sendfile(2) for bodies; a strong ETag
 * from size, modification time (ns) and inode; Last-Modified; If-Match and
 * If-Unmodified-Since (412); If-None-Match (weak comparison, lists, "*")
 * and, without it, If-Modified-Since (304); one byte range "a-b", "a-" or
 * "-n" (206 with Content-Range; when unsatisfiable, 416 with a
 * Content-Range that gives the size; If-Range with an ETag or the exact
 * Last-Modified); several ranges or a malformed Range get the whole file
 * (200, no multipart); content types by extension. A directory is served through
 * its index file, after a 301 to its slash form; without an index, 404
 * (never a listing).
 *
 * No path leaves root: files are opened beneath root's descriptor; empty,
 * "." and ".." components, a leading '/' and NUL bytes are refused, and no
 * symlink under root is followed, even one that stays inside (404, as
 * nginx's disable_symlinks on). root itself may be a symlink. Missing,
 * unreadable and non-regular files are 404; errors are problem+json.
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

/* Send a file's bytes [offset, offset + len) as the body with status
 * (200..599); headers added before stay. fd (a regular file) is read, not
 * closed: vie dups it, and closes its copy when the body is out or the
 * connection closes. The head goes out with the answers before it, then
 * the bytes with sendfile(2), before any later answer on the connection;
 * small bodies (and every body under the test kit) are read at once. A
 * range past the file's end is refused (500, logged); a file that shrinks
 * while it is sent closes the connection (the length cannot be taken
 * back). HEAD sends the head with Content-Length only. */
VIE_API vie_status vie_send_file(vie_ctx *c, int status, const char *content_type, int fd,
                                 uint64_t offset, uint64_t len);

/* ------------------------------------------------------------------ */
/* slo: objectives, burn-rate alerts, and the actions they trigger     */
/*
 * Objectives per route: availability (a request is bad when its status is
 * 500 or more) and/or latency (bad when slower than threshold, measured
 * from the complete request head to the end of the response; the
 * objective is that percentile % are faster). The error budget is 100% -
 * objective; the burn rate over a window is (bad / total in the window) /
 * budget (0 without requests). An objective names a route label ("GET
 * /api/users/:id"), or, without one, covers every route the layer is on.
 * Requests no route matched, requests cancelled before an answer (status
 * 0) and the layer's own degraded answers are not counted.
 *
 * Alerts (Google SRE workbook): each has a long and a short window and a
 * burn factor, and fires when BOTH windows burn at least the factor (>=),
 * for any objective. Default: "fast" (1h and 5m at 14.4) and "slow" (6h
 * and 30m at 6). Windows are multiplied by window_scale (0.001 makes 1h
 * 3.6 s) for tests and demos. Counts live in shared memory in buckets of
 * (shortest window / 12), so every worker counts into the same windows
 * and a config reload that keeps the objectives and the windows keeps the
 * counts (and the actions in force).
 *
 * Every evaluate_every one worker evaluates (the first to claim the
 * period). When an alert has fired hold evaluations in a row, the actions
 * start; when no alert has fired for hold evaluations in a row, they stop.
 * Each start and stop is logged with the burn rates and counted:
 *   tighten  the named rate_limit layers' rate is multiplied by factor
 *            (0 < factor <= 1), back to 1 when the actions stop;
 *   degrade  the named routes (each must be covered by this layer) are
 *            answered by the layer with their fallback (default 503
 *            problem+json) and Retry-After, without reaching the handler.
 *
 * GET /debug/slo (when debug_endpoint, the default; once per app, for all
 * its slo layers): JSON with the objectives, the burn rate of every window,
 * the alerts firing, the hold counters and the actions in force.
 * /metrics: vie_slo_burn_rate{slo,objective,sli,window},
 * vie_slo_alert_firing{slo,alert}, vie_slo_actions_total{slo,action,target},
 * vie_slo_requests_total{slo,objective,sli,result="good|bad"},
 * vie_slo_degraded_total{slo,route}, vie_slo_problems{slo}.
 *
 * Route names (objectives, degrade) and rate_limit names (tighten) are
 * resolved at freeze: one that names no route, a route this layer does
 * not cover, or no layer is logged as an error naming it (with a "did you
 * mean"), and the app refuses to start (VIE_ECONFIG; `vie check` exits 3).
 *
 * YAML: objectives (a list of {name, route, availability, latency:
 * {percentile, threshold}}), alerts (a list of {name, long, short,
 * burn}), window_scale, evaluate_every, hold, min_requests, actions: {tighten: [{rate_limit,
 * factor}], degrade: [{route, status, body, content_type, retry_after}]},
 * debug_endpoint.
 */

#define VIE_SLO_MAX_OBJECTIVES 16
#define VIE_SLO_MAX_ALERTS     8
#define VIE_SLO_MAX_ACTIONS    32 /* tighten and degrade entries, each */

typedef struct vie_slo_objective {
    const char *name;              /* required, unique: 1 to 64 of [A-Za-z0-9_.:-] */
    const char *route;             /* a route label "GET /x"; NULL: every route the layer covers */
    double availability;           /* percent, e.g. 99.9; 0: none; else (0, 100) */
    double latency_percentile;     /* percent, e.g. 99; 0: none; else (0, 100) */
    uint32_t latency_threshold_ms; /* with a percentile: 1 ms .. 1 h */
} vie_slo_objective;

typedef struct vie_slo_alert {
    const char *name;           /* required, unique, as an objective's */
    uint32_t long_ms, short_ms; /* before window_scale; 0 < short <= long <= 30 days */
    double burn;                /* the factor both windows must reach: (0, 1e6] */
} vie_slo_alert;

typedef struct vie_slo_tighten {
    const char *rate_limit; /* a rate_limit layer's name */
    double factor;          /* (0, 1]: its rate is multiplied by this while in force */
} vie_slo_tighten;

typedef struct vie_slo_degrade {
    const char *route;        /* a route label "GET /x" this layer covers */
    int status;               /* 200..599; default (0) 503 */
    const char *body;         /* NULL: problem+json naming the layer */
    const char *content_type; /* with body; default "text/plain; charset=utf-8" */
    uint32_t retry_after_s;   /* Retry-After; 0: hold x evaluate_every, at least 1 s */
} vie_slo_degrade;

typedef struct vie_slo_opts {
    const vie_slo_objective *objectives; /* required: 1 .. VIE_SLO_MAX_OBJECTIVES */
    size_t n_objectives;
    const vie_slo_alert *alerts; /* NULL: the default fast and slow alerts */
    size_t n_alerts;
    double window_scale;        /* (0, 1]; default 1; every scaled window must be >= 1 ms */
    uint32_t evaluate_every_ms; /* 1 ms .. 1 h; 0: 10 s x window_scale (at least 1 ms) */
    uint32_t hold;              /* evaluations: 1 .. 1000; default 3 */
    /* An alert fires only when its long window holds at least this many
     * requests (0, the default: any): on a quiet route one bad request
     * would otherwise burn the whole budget. */
    uint32_t min_requests;
    const vie_slo_tighten *tighten;
    size_t n_tighten;
    const vie_slo_degrade *degrade;
    size_t n_degrade;
    bool debug_endpoint; /* GET /debug/slo; default true */
    /* The windows' clock; NULL: Vie's monotonic clock (the one request
     * durations are measured on). Tests drive their own, and then no
     * timer evaluates: they step the evaluation themselves. */
    uint64_t (*clock_ns)(void);
} vie_slo_opts;

VIE_API void vie_slo_opts_init(vie_slo_opts *o);
VIE_API int vie_use_slo(vie_app *app, const vie_layer_opts *lo, const vie_slo_opts *o);

/* ------------------------------------------------------------------ */
/* circuit_breaker: stop calling what keeps failing                    */
/*
 * A guard in front of the layers and handler after it. It watches their
 * results over a sliding window and, once too many fail or are slow,
 * answers the fallback itself for a while (OPEN), then lets a few probes
 * through (HALF_OPEN) and closes again when they succeed. resilience4j's
 * semantics, with its traps fixed:
 *
 * - States (metrics show these integers; the order is fixed): CLOSED=0,
 *   OPEN=1, HALF_OPEN=2, and the modes DISABLED=3 (everything passes,
 *   nothing is recorded), FORCED_OPEN=4 (everything gets the fallback) and
 *   METRICS_ONLY=5 (shadow mode: the breaker records, transitions and logs
 *   as if enforcing, but lets every call through; a call it would have
 *   refused is counted not_permitted and its result ignored). Neither
 *   disabled nor metrics_only calls vie_bypass: switching a breaker off
 *   lets traffic through rather than turn a route that requires it into
 *   500s.
 * - Window: the last window_size calls (COUNT) or the last window_size
 *   seconds in one-second buckets (TIME; the current second is one of
 *   them). No rate is computed before min_calls calls are in the window.
 *   A min_calls above a COUNT window's size is not silently clamped: the
 *   registration logs "min_calls 200 exceeds the window of 100 calls:
 *   using 100". Every breaker logs its effective settings at
 *   registration (one INFO line).
 * - A call is accounted when the request ends (the after hook, which runs
 *   also when a later layer answered or the handler panicked). It is a
 *   failure when its final status is >= 500 (a 504 deadline, the 500 of
 *   a panic or a contained crash), is in failure_statuses, or its
 *   response broke off after it began; else a success, whoever answered
 *   it (a 401 from an auth layer after the breaker is a success unless
 *   401 is listed). It is slow when it took slow_ms or more (from the
 *   breaker's before hook to its after hook), whether it failed or not:
 *   a slow failure counts in both rates. A request whose client went
 *   away (499) is neither: it is not counted, and a probe slot it held is
 *   given back.
 * - CLOSED -> OPEN when failure rate >= failure_rate or slow rate >=
 *   slow_rate (both ">=": 8 failures of 16 calls open a 50% breaker), or
 *   by the combined rule: p99 latency > p99_ms AND failure rate >
 *   p99_error_rate (both strict; p99 is the nearest-rank 99th
 *   percentile, decided exactly at p99_ms from a latency histogram kept
 *   per window bucket).
 * - OPEN for open_wait_ms, or with back-off open_wait_ms * multiplier^k
 *   for the k-th consecutive re-open from HALF_OPEN, at most
 *   open_wait_max_ms. The first call after that turns it HALF_OPEN (the
 *   state changes on calls, not on a timer: with no traffic a scrape
 *   still shows open).
 * - HALF_OPEN lets half_open_calls probes through, counted across every
 *   worker (never more in flight), and refuses the rest. When all have
 *   completed: their failure or slow rate >= its threshold -> OPEN again
 *   (k + 1), else CLOSED with an empty window. If they have not all
 *   completed within half_open_max_wait_ms (which must be above 0) it
 *   goes back to OPEN (k + 1): a breaker never sticks half-open.
 * - A refused request gets the fallback: fallback_status (default 503)
 *   with fallback_body or the bytes of fallback_file (read once at
 *   registration; refused if unreadable or over 1 MiB) as
 *   fallback_content_type (default text/plain; charset=utf-8), or, with
 *   neither, problem+json ("circuit breaker NAME is open"). Retry-After:
 *   the seconds until the next half-open, rounded up (OPEN); 1 (HALF_OPEN
 *   with every probe slot taken); fallback_retry_after_s, or none when
 *   0 (FORCED_OPEN).
 * - The state is shared by all workers (shared memory under a robust
 *   process-shared mutex: a worker dying with it held costs nothing but
 *   a recount) and survives a config reload by layer name
 *   (vie_app_inherit): an open breaker stays open. A reload that changes
 *   the window (type, size) or p99_ms starts it afresh, logged; one that
 *   changes the mode logs and counts that transition. Both happen when the
 *   new configuration starts serving (its first worker), not when it is
 *   read: a config refused later, or `vie check`, changes nothing. Leaving
 *   disabled or forced_open starts CLOSED with an empty window.
 * - Every transition is logged once, by the worker that made it, with its
 *   trigger and rates: "circuit_breaker api: CLOSED -> OPEN: failure rate
 *   62.5% >= 50% over 16 calls (slow 0.0%); open for 500ms".
 * /metrics: vie_circuit_state{breaker,state="closed|open|half_open|
 * disabled|forced_open|metrics_only"} (1 for the current state, 0 for the
 * others), vie_circuit_state_code{breaker} (the integer above),
 * vie_circuit_calls_total{breaker,kind="success|failure|slow|
 * not_permitted"} (success + failure are the calls recorded, slow the
 * slow ones among them, not_permitted the refused),
 * vie_circuit_transitions_total{breaker,from,to}, and for a metrics_only
 * breaker vie_circuit_shadow_state_code{breaker} (its machine's state).
 * These counters survive reloads with the state.
 * YAML: mode (normal|disabled|forced_open|metrics_only), window: {type:
 * count|time, size (calls; or seconds: 30 or "30s")}, min_calls,
 * failure_rate, slow_rate (percent: 50 or "50%"), slow_duration,
 * open_wait, open_wait_max, open_wait_multiplier, half_open: {calls,
 * max_wait}, failure_statuses (a list of statuses 400..599), p99:
 * {latency, error_rate}, fallback: {status, body, file (relative to the
 * YAML file), content_type, retry_after (seconds)}.
 */

typedef enum vie_circuit_state {
    VIE_CIRCUIT_CLOSED = 0,
    VIE_CIRCUIT_OPEN = 1,
    VIE_CIRCUIT_HALF_OPEN = 2,
    VIE_CIRCUIT_DISABLED = 3,
    VIE_CIRCUIT_FORCED_OPEN = 4,
    VIE_CIRCUIT_METRICS_ONLY = 5,
} vie_circuit_state;

typedef enum vie_circuit_mode {
    VIE_CIRCUIT_MODE_NORMAL = 0,
    VIE_CIRCUIT_MODE_DISABLED,
    VIE_CIRCUIT_MODE_FORCED_OPEN,
    VIE_CIRCUIT_MODE_METRICS_ONLY,
} vie_circuit_mode;

typedef enum vie_circuit_window {
    VIE_CIRCUIT_WINDOW_COUNT = 0, /* the last window_size calls */
    VIE_CIRCUIT_WINDOW_TIME,      /* the last window_size seconds */
} vie_circuit_window;

typedef struct vie_circuit_breaker_opts {
    vie_circuit_mode mode;     /* default NORMAL */
    vie_circuit_window window; /* default COUNT */
    uint32_t window_size;      /* calls 1..100000 or seconds 1..3600; default 100 */
    uint32_t min_calls;        /* >= 1; default 10 (clamped to a COUNT window, logged) */
    double failure_rate;       /* percent, (0, 100]; default 50 */
    double slow_rate;          /* percent, (0, 100]; default 100 */
    uint32_t slow_ms;          /* a call this long or longer is slow: 1 ms .. 1 h; default 60000 */
    uint32_t open_wait_ms;     /* 1 ms .. 1 h; default 60000 */
    double open_wait_multiplier;    /* back-off factor, 1 .. 100; default 1 (a fixed wait) */
    uint32_t open_wait_max_ms;      /* the longest wait, open_wait .. 24 h; required with a
                                       multiplier above 1; 0: open_wait */
    uint32_t half_open_calls;       /* probes: 1 .. 1000; default 10 */
    uint32_t half_open_max_wait_ms; /* 1 ms .. 1 h, never 0; default 60000 */
    const int *failure_statuses;    /* more failures: statuses 400..599, 0-terminated; NULL: none */
    uint32_t p99_ms;                /* the combined rule: 0 (default) off, else 1 ms .. 1 h */
    double p99_error_rate;          /* percent, [0, 100): with p99_ms */
    int fallback_status;            /* 200..599 but 204 and 304; default 503 (a problem+json
                                       answer needs 400..599) */
    const char *fallback_body;      /* NULL: problem+json (or the file) */
    const char *fallback_file;      /* read at registration; not with a body */
    const char *fallback_content_type; /* with a body or file; default text/plain; charset=utf-8 */
    uint32_t fallback_retry_after_s;   /* FORCED_OPEN's Retry-After, 0 .. 86400; 0: none */
    uint64_t (*clock_ns)(void);        /* NULL: the monotonic clock; tests drive their own */
} vie_circuit_breaker_opts;

VIE_API void vie_circuit_breaker_opts_init(vie_circuit_breaker_opts *o);
VIE_API int vie_use_circuit_breaker(vie_app *app, const vie_layer_opts *lo,
                                    const vie_circuit_breaker_opts *o);

#ifdef __cplusplus
}
#endif
#endif
