/* Vie: an HTTP/1.1 server library whose pipeline cannot fail silently.
 *
 * A program makes an app, registers routes, and runs it:
 *
 *     static vie_status hello(vie_ctx *c, void *arg)
 *     {
 *         return vie_send_text(c, 200, "Hello, World!");
 *     }
 *
 *     int main(void)
 *     {
 *         vie_app *app = vie_app_new(NULL);
 *         vie_route(app, "GET", "/", hello, NULL);
 *         int rc = vie_app_run(app); // until SIGINT or SIGTERM
 *         vie_app_free(app);
 *         return rc == VIE_OK ? 0 : 1;
 *     }
 *
 * Conventions:
 * - Functions that can fail return an int: VIE_OK (0) or a negative
 *   vie_err, and log a line that says what was refused and why.
 * - Strings from the request are vie_str slices: not NUL-terminated, valid
 *   until the request ends. Absent values have ptr == NULL.
 * - Handlers return a vie_status: the vie_send_* helpers return VIE_DONE.
 * - An app is CONFIGURING until vie_app_run (or vie_app_start) and FROZEN
 *   after it: late registration returns VIE_EFROZEN and is logged, never
 *   silently dropped.
 */
#ifndef VIE_VIE_H
#define VIE_VIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define VIE_API          __attribute__((visibility("default")))
#define VIE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define VIE_UNUSED       __attribute__((unused))
#define VIE_NORETURN     __attribute__((noreturn))
#else
#define VIE_UNUSED
#define VIE_NORETURN
#define VIE_API
#define VIE_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ */
/* Basic types                                                         */

typedef struct vie_app vie_app;
typedef struct vie_ctx vie_ctx;

/* A byte slice. Not NUL-terminated. ptr == NULL means "absent"; an empty
 * but present value has ptr != NULL and len == 0. */
typedef struct vie_str {
    const char *ptr;
    size_t len;
} vie_str;

/* Error codes returned by functions that can fail. */
typedef enum vie_err {
    VIE_OK = 0,
    VIE_EINVAL = -1,    /* an argument is invalid (the log says which) */
    VIE_ENOMEM = -2,    /* out of memory */
    VIE_EFROZEN = -3,   /* the app is already started: registration refused */
    VIE_ECONFLICT = -4, /* a route conflicts with one already registered */
    VIE_ESTATE = -5,    /* not allowed in the response's current state */
    VIE_EIO = -6,       /* a socket or system call failed (bind, listen...) */
    VIE_ESTALE = -7,    /* a vie_ref to a request that has ended */
    VIE_ECONFIG = -8,   /* the pipeline is invalid: the app refuses to start (the log says why) */
} vie_err;

/* A short constant description of a vie_err ("app is frozen"). */
VIE_API const char *vie_strerror(int err);

/* What a handler (and, with the pipeline, a middleware) returns. */
typedef enum vie_status {
    VIE_NEXT = 0,    /* go on to the next layer */
    VIE_DONE = 1,    /* a response was written; stop here */
    VIE_PENDING = 2, /* continues asynchronously: vie_resume() later */
} vie_status;

typedef vie_status (*vie_handler_fn)(vie_ctx *c, void *arg);

/* ------------------------------------------------------------------ */
/* App                                                                 */

/* What a crash signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) inside a
 * layer or handler does. See the README, "When a handler crashes". */
typedef enum vie_on_crash {
    VIE_ON_CRASH_RECOVER = 0, /* answer the culprit 500, then the worker drains and is replaced */
    VIE_ON_CRASH_EXIT,        /* answer the culprit 500 from the signal handler and die */
} vie_on_crash;

/* Server options. Start from vie_options_init() and change what you need;
 * every limit has a safe default. Sizes are bytes, times milliseconds. */
typedef struct vie_options {
    const char *listen;              /* "HOST:PORT"; default "127.0.0.1:8080"; port 0 = ephemeral */
    int backlog;                     /* listen(2) backlog; default 511 */
    uint32_t max_connections;        /* beyond: answered 503 and closed, logged; default 10000 */
    uint32_t max_request_line;       /* beyond: 414; default 8192 */
    uint32_t max_header_bytes;       /* whole head; beyond: 431; default 16384 */
    uint32_t max_headers;            /* header count; beyond: 431; default 100 */
    uint64_t max_body;               /* request body; beyond: 413; default 16 MiB */
    uint32_t keepalive_timeout_ms;   /* idle between requests; default 60000 */
    uint32_t header_timeout_ms;      /* from the first byte to the end of the head; default 10000 */
    uint32_t body_timeout_ms;        /* between two reads of a body; default 30000 */
    uint32_t write_timeout_ms;       /* between two writes to a slow reader; default 30000 */
    uint32_t max_keepalive_requests; /* per connection, 0 = unlimited; default 0 */
    uint32_t drain_timeout_ms;       /* on stop, in-flight work gets this long; default 10000 */
    bool handle_signals;             /* vie_app_run stops on SIGINT/SIGTERM; default true */
    uint32_t
        request_timeout_ms; /* deadline of each request from its head; 504 after; default 60000 */
    uint32_t
        async_timeout_ms;  /* default longest VIE_PENDING of a layer; 504 after; default 30000 */
    int workers;           /* worker processes under a supervisor; 0: this process alone */
    vie_on_crash on_crash; /* default VIE_ON_CRASH_RECOVER */
    uint32_t restart_backoff_max_ms; /* crash-loop back-off ceiling; default 30000 */
    bool debug;                      /* print every route's pipeline at start */
    bool debug_endpoints;            /* serve GET /debug/pipeline and /debug/requests (JSON) */
    uint32_t watchdog_ms;            /* log a request stuck this long in one layer; default 10000 */
} vie_options;

VIE_API void vie_options_init(vie_options *o);

/* Create an app. opt may be NULL for the defaults; it is copied (the
 * listen string too). Returns NULL only when out of memory. */
VIE_API vie_app *vie_app_new(const vie_options *opt);

/* Free an app that is not running. */
VIE_API void vie_app_free(vie_app *app);

/* Register a route. method is an HTTP method token ("GET", "POST",
 * "PURGE"...); pattern starts with '/' and its segments are static text,
 * ":name" (one segment) or "*name" (the rest of the path, last only).
 * Static segments win over params, params over catch-alls. HEAD is
 * answered by the GET route (without a body) unless a HEAD route exists.
 * Returns VIE_OK, VIE_EINVAL (bad pattern or method), VIE_ECONFLICT (same
 * method and shape as an earlier route: the log names both) or
 * VIE_EFROZEN. */
VIE_API int vie_route(vie_app *app, const char *method, const char *pattern, vie_handler_fn fn,
                      void *arg);

/* Freeze the app, bind its listener and serve until vie_app_stop (or
 * SIGINT/SIGTERM when handle_signals is set); in-flight requests finish
 * within drain_timeout_ms. Returns VIE_OK after a clean stop, or an
 * error (VIE_EIO when the address cannot be bound: the log says why). */
VIE_API int vie_app_run(vie_app *app);

/* Ask a running app to stop gracefully. Safe from any thread and from a
 * handler. */
VIE_API void vie_app_stop(vie_app *app);

/* The port the app listens on once bound (useful with port 0), else 0. */
VIE_API int vie_app_port(const vie_app *app);

/* Validate and freeze the app without serving: sort every route's chain,
 * check names, requirements and cycles, assign key slots. Returns VIE_OK,
 * or VIE_ECONFIG after logging every problem found, each naming the
 * culprits. vie_app_run calls it; call it yourself to check early. */
VIE_API int vie_app_freeze(vie_app *app);

/* ------------------------------------------------------------------ */
/* Middleware: before and after hooks, never a next() to forget        */
/*
 * A layer is a static description plus a state. Its before hook returns
 * VIE_NEXT (go on), VIE_DONE (it answered: the chain stops) or
 * VIE_PENDING (it continues later through vie_resume). The after hooks of
 * every layer whose before hook ran are called in reverse order, whatever
 * happened, and see the final status. The executor refuses, logs (naming
 * the layer) and counts: VIE_DONE without a response (500), VIE_NEXT after
 * a response (the chain stops), a VIE_PENDING not resumed in time (504),
 * a route reached without the layers it requires (500).
 *
 * Order is declared, never implied by registration calls: at freeze each
 * chain (app layers + group layers + route) is sorted by phase, then by
 * the constraints, then by registration order, and refused on a cycle, an
 * unknown name, a duplicate name or a constraint against the phases.
 */

typedef enum vie_phase {
    VIE_OBSERVE = 0, /* logs, ids, metrics, tracing */
    VIE_GUARD = 1,   /* rate limits, circuit breakers, auth, timeouts */
    VIE_APP = 2,     /* validation, business logic */
} vie_phase;

typedef struct vie_key vie_key;

typedef struct vie_middleware {
    /* Unique in the app, [a-z0-9_.-]+. A name "auth.api" also answers to
     * "auth" in requires lists (a family of instances). */
    const char *name;
    vie_phase phase;
    vie_status (*before)(vie_ctx *c, void *state); /* optional */
    void (*after)(vie_ctx *c, void *state);        /* optional: runs in reverse */
    /* NULL-terminated name lists (copied at registration). requires: each
     * must be in every chain this layer is in, and runs before it.
     * runs_before / runs_after: order against layers when both are in a
     * chain; an unknown name is an error (a typo must not pass). */
    const char *const *requires;
    const char *const *runs_before;
    const char *const *runs_after;
    /* Keys of policy VIE_KEY_OWNER that only this layer may write. */
    vie_key *const *owns;
    /* Longest VIE_PENDING before the request gets 504; 0: the app's. */
    uint32_t async_timeout_ms;
    /* Frees state when the app is freed; optional. */
    void (*free_state)(void *state);
} vie_middleware;

typedef struct vie_group vie_group;

/* Add a layer to every route of the app. */
VIE_API int vie_use(vie_app *app, const vie_middleware *mw, void *state);

/* A group of routes under a path prefix ("" for none) with layers of its
 * own, nested in parent (NULL: the app). The layers of a group apply to
 * all its routes whatever the order of the calls. *out is NULL on error. */
VIE_API int vie_group_new(vie_app *app, vie_group *parent, const char *prefix, vie_group **out);
VIE_API int vie_group_use(vie_group *g, const vie_middleware *mw, void *state);

typedef struct vie_route_opts {
    vie_group *group;            /* NULL: the app */
    const char *const *requires; /* layers that must have run before the handler */
    uint32_t timeout_ms;         /* this route's request deadline; 0: the app's */
    /* The handler blocks (disk, a synchronous library): it runs on libuv's
     * thread pool and its answer is handed back to the loop. It must not
     * touch the loop (no vie_loop, no vie_resume); vie_panic and crash
     * signals in it are contained as anywhere else. The request deadline
     * cannot interrupt it. */
    bool blocking;
} vie_route_opts;

/* vie_route with options; the pattern is relative to the group's prefix. */
VIE_API int vie_route_with(vie_app *app, const char *method, const char *pattern, vie_handler_fn fn,
                           void *arg, const vie_route_opts *opts);

/* ------------------------------------------------------------------ */
/* Asynchronous layers, cleanup, cancellation                          */

/* A handle on a request that survives it: resuming or reading through a
 * ref whose request has ended is refused (VIE_ESTALE, logged), never a
 * use-after-free. */
typedef struct vie_ref {
    vie_ctx *ctx;
    uint64_t gen;
} vie_ref;

VIE_API vie_ref vie_ref_of(vie_ctx *c);
/* The request, or NULL (logged) when it has ended. */
VIE_API vie_ctx *vie_ref_get(vie_ref ref);
/* Continue a request parked by VIE_PENDING: st is VIE_NEXT (go on) or
 * VIE_DONE (the layer answered). */
VIE_API int vie_resume(vie_ref ref, vie_status st);
/* Fail the request from inside a before hook, an after hook or a handler:
 * the stack unwinds to the executor (siglongjmp), the client gets 500
 * problem+json (or, if the response had begun, the connection closes
 * instead of a misleading end), the after hooks of the layers entered and
 * the defers run, one log line names the layer and the message, and
 * app-wide and per-layer panic counters grow. The process goes on
 * serving. Memory the failing code malloc'd and did not hand to
 * vie_defer leaks: use vie_alloc or vie_defer. Called anywhere else (a
 * libuv callback, a defer), there is nowhere safe to go: it logs and
 * aborts. */
VIE_API VIE_NORETURN void vie_panic(vie_ctx *c, const char *fmt, ...) VIE_PRINTF(2, 3);
VIE_API VIE_NORETURN void vie_panic_at_(vie_ctx *c, const char *file, int line, const char *what);
/* vie_panic with the file, the line and the condition when cond is false. */
#define VIE_ASSERT(c, cond) ((cond) ? (void)0 : vie_panic_at_((c), __FILE__, __LINE__, #cond))

/* Called by a layer's before hook that lets the request through without
 * doing its work (an auth bypass for a health check, a limiter switched
 * off): a route that requires this layer then refuses the request (500,
 * logged) instead of running unprotected. */
VIE_API void vie_bypass(vie_ctx *c);
/* While parked, fn(arg) is called if the request is cancelled (deadline,
 * client gone): stop the async work; a later vie_resume is refused. */
VIE_API int vie_on_cancel(vie_ctx *c, void (*fn)(void *arg), void *arg);
VIE_API bool vie_cancelled(const vie_ctx *c);
/* Run fn(arg) when the request ends, after the after hooks and the
 * response: LIFO, exactly once, on every path (normal, short-circuit,
 * error, deadline, client gone). */
VIE_API int vie_defer(vie_ctx *c, void (*fn)(void *arg), void *arg);
/* The libuv loop (uv_loop_t *) serving the request, for timers and I/O. */
VIE_API void *vie_loop(const vie_ctx *c);

/* ------------------------------------------------------------------ */
/* Typed request values                                                */
/*
 *     VIE_KEY(user, const struct user *, VIE_KEY_WRITE_ONCE);
 *     vie_key_register(app, &user_key);
 *     user_set(c, u);                // checked by the compiler
 *     const struct user *u = user_get(c);
 *
 * A key's address is its identity: two keys never collide by spelling.
 * Values are at most 8 bytes (store a pointer to anything larger, e.g. in
 * vie_alloc memory). A refused write returns VIE_ECONFLICT, logs both
 * writers and counts. In a header shared by several files, use
 * VIE_KEY_DECLARE there and VIE_KEY_DEFINE in one .c file.
 */

typedef enum vie_key_policy {
    VIE_KEY_WRITE_ONCE = 0, /* the first write wins; a second is refused */
    VIE_KEY_OWNER,          /* only the layer that owns it (vie_middleware.owns) writes */
    VIE_KEY_OVERWRITE,      /* any layer, any number of times */
} vie_key_policy;

struct vie_key {
    const char *name;
    vie_key_policy policy;
    void (*destroy)(void *value); /* optional: called with the value's address at request end */
    uint32_t slot;                /* set at registration: the dense index */
    uint64_t conflicts;           /* refused writes */
};

VIE_API int vie_key_register(vie_app *app, vie_key *key);
VIE_API int vie_ctx_set(vie_ctx *c, vie_key *key, const void *value, size_t size);
VIE_API bool vie_ctx_get(const vie_ctx *c, const vie_key *key, void *value, size_t size);
VIE_API bool vie_ctx_has(const vie_ctx *c, const vie_key *key);

#define VIE_KEY_ACCESSORS_(name, type)                                                             \
    VIE_UNUSED static inline int name##_set(vie_ctx *c, type v)                                    \
    {                                                                                              \
        _Static_assert(sizeof(type) <= 8, "a key holds at most 8 bytes: store a pointer");         \
        return vie_ctx_set(c, &name##_key, &v, sizeof v);                                          \
    }                                                                                              \
    VIE_UNUSED static inline type name##_get(const vie_ctx *c)                                     \
    {                                                                                              \
        type v = {0};                                                                              \
        vie_ctx_get(c, &name##_key, &v, sizeof v);                                                 \
        return v;                                                                                  \
    }                                                                                              \
    VIE_UNUSED static inline bool name##_has(const vie_ctx *c)                                     \
    {                                                                                              \
        return vie_ctx_has(c, &name##_key);                                                        \
    }

#define VIE_KEY(name, type, policy)                                                                \
    static vie_key name##_key = {#name, policy, NULL, 0, 0};                                       \
    VIE_KEY_ACCESSORS_(name, type)
#define VIE_KEY_DECLARE(name, type)                                                                \
    extern vie_key name##_key;                                                                     \
    VIE_KEY_ACCESSORS_(name, type)
#define VIE_KEY_DEFINE(name, policy) vie_key name##_key = {#name, policy, NULL, 0, 0}

/* ------------------------------------------------------------------ */
/* The trail and introspection                                         */

/* One layer (or the handler) of a request, as it ran. Times are from the
 * monotonic clock, in nanoseconds. */
typedef struct vie_trail_entry {
    const char *layer; /* layer name, or the route ("GET /users/:id") for the handler */
    vie_phase phase;
    int outcome;       /* a vie_status, or -1 while running, -2 when refused or timed out */
    uint64_t enter_ns; /* before hook entered */
    uint64_t leave_ns; /* before hook returned (or the async work resumed) */
    uint64_t after_ns; /* after hook duration, 0 if none */
} vie_trail_entry;

VIE_API size_t vie_trail_count(const vie_ctx *c);
VIE_API bool vie_trail_at(const vie_ctx *c, size_t i, vie_trail_entry *e);
/* The layer running now ("GET /x" for the handler, "vie" outside). */
VIE_API const char *vie_current_layer(const vie_ctx *c);
/* The route's label ("GET /users/:id"), NULL before routing. */
VIE_API const char *vie_route_label(const vie_ctx *c);

typedef enum vie_format {
    VIE_FORMAT_TEXT = 0,
    VIE_FORMAT_JSON,
    VIE_FORMAT_MERMAID,
} vie_format;

/* Every counter of the app in the Prometheus text format (version 0.0.4):
 * requests by route, method and status, a duration histogram, requests in
 * flight, panics, crashes, chain breaks, key conflicts, worker restarts.
 * The counters are in memory shared by all workers, so any worker shows
 * the totals. Returns a malloc'd string (free it). */
VIE_API char *vie_app_metrics(vie_app *app);
/* A handler serving vie_app_metrics: vie_route(app, "GET", "/metrics",
 * vie_metrics_handler, NULL). */
VIE_API vie_status vie_metrics_handler(vie_ctx *c, void *arg);

/* Every route's effective chain with phases, constraints and why each
 * layer follows the previous one. Freezes the app if needed. Returns a
 * malloc'd string (free it), NULL if the app does not validate. */
VIE_API char *vie_app_describe(vie_app *app, vie_format format);

/* ------------------------------------------------------------------ */
/* Request                                                             */

VIE_API vie_str vie_method(const vie_ctx *c);
/* The normalized path: "." and ".." resolved, unreserved escapes
 * decoded; other escapes ("%2F") kept as sent. */
VIE_API vie_str vie_path(const vie_ctx *c);
/* The raw query string without '?'; absent (ptr NULL) when there was none. */
VIE_API vie_str vie_query(const vie_ctx *c);
/* The first query parameter called name, percent- and '+'-decoded.
 * A key without '=' gives an empty value. Absent when not there or badly
 * encoded. */
VIE_API vie_str vie_query_param(vie_ctx *c, const char *name);
/* The first header field called name (case-insensitive), OWS trimmed. */
VIE_API vie_str vie_header(const vie_ctx *c, const char *name);
/* Iterate header fields: returns false past the end. */
VIE_API bool vie_header_at(const vie_ctx *c, size_t i, vie_str *name, vie_str *value);
/* The path parameter called name (":name" or "*name"), percent-decoded. */
VIE_API vie_str vie_param(vie_ctx *c, const char *name);
/* The request body, whole (Content-Length or dechunked). Empty if none. */
VIE_API vie_str vie_body(const vie_ctx *c);
/* The peer's IP address as text ("127.0.0.1", "::1"); empty when the
 * request did not come from a socket (the test kit). */
VIE_API vie_str vie_client_ip(vie_ctx *c);
/* 0 for HTTP/1.0, 1 for HTTP/1.1. */
VIE_API int vie_http_minor(const vie_ctx *c);
/* Memory that lives until the request ends (the request arena). NULL
 * only when out of memory. */
VIE_API void *vie_alloc(vie_ctx *c, size_t size);

/* ------------------------------------------------------------------ */
/* Response                                                            */
/*
 * The response is a state machine, NONE -> HEAD -> BODY -> ENDED:
 * status and headers may be set until the head goes out (the first
 * vie_write or vie_end), the body until vie_end. A call out of order
 * returns VIE_ESTATE and logs the request and the call it refused: no
 * second status line, no header after the head, no byte after the end.
 *
 * Content-Length, Transfer-Encoding, Connection and Date are Vie's to set;
 * vie_header_add refuses them (VIE_EINVAL). A body without a declared
 * length is sent chunked (HTTP/1.1) or close-delimited (HTTP/1.0). Bodies
 * of HEAD requests and of 1xx, 204 and 304 responses are never sent.
 */

/* Set the status (100-599) of a response whose head has not gone out. */
VIE_API int vie_set_status(vie_ctx *c, int status);
/* Add a header field. name must be a token, value must hold no CR, LF or
 * NUL (no response splitting). */
VIE_API int vie_header_add(vie_ctx *c, const char *name, const char *value);
/* Declare the body length before the first vie_write: the response is then
 * sent with Content-Length and the writes must add up to it exactly. */
VIE_API int vie_set_content_length(vie_ctx *c, uint64_t length);
/* Write body bytes; the first call sends the head. */
VIE_API int vie_write(vie_ctx *c, const void *data, size_t len);
/* End the response (sends the head if not sent yet). */
VIE_API int vie_end(vie_ctx *c);

/* Send a whole response in one call. Return VIE_DONE, so a handler can
 * `return vie_send_text(c, 200, "ok");`. A refused call (a response was
 * already sent) is logged and counted. */
VIE_API vie_status vie_send(vie_ctx *c, int status, const char *content_type, const void *body,
                            size_t len);
/* text/plain; charset=utf-8 */
VIE_API vie_status vie_send_text(vie_ctx *c, int status, const char *text);
/* application/json; the caller supplies valid JSON */
VIE_API vie_status vie_send_json(vie_ctx *c, int status, const char *json);
/* application/problem+json (RFC 9457): {"type":"about:blank","title":
 * <reason phrase>,"status":status,"detail":detail}. detail may be NULL.
 * Every error Vie itself answers has this shape. */
VIE_API vie_status vie_send_problem(vie_ctx *c, int status, const char *detail);

/* The status of the response (0 until set). */
VIE_API int vie_response_status(const vie_ctx *c);
/* True once a response has been started (the head is out or set to go). */
VIE_API bool vie_responded(const vie_ctx *c);

/* The standard reason phrase of a status ("Not Found"), "Unknown" else. */
VIE_API const char *vie_reason_phrase(int status);

/* ------------------------------------------------------------------ */
/* Logging                                                             */

typedef enum vie_log_level {
    VIE_LOG_DEBUG = 0,
    VIE_LOG_INFO,
    VIE_LOG_WARN,
    VIE_LOG_ERROR,
    VIE_LOG_OFF,
} vie_log_level;

/* Lines below this level are not written (default VIE_LOG_INFO). */
VIE_API void vie_log_set_level(vie_log_level level);
/* Write one line to stderr: "<UTC time> <LEVEL> <message>". */
VIE_API void vie_log(vie_log_level level, const char *fmt, ...) VIE_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif
#endif
