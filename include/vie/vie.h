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
#else
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
} vie_err;

/* A short constant description of a vie_err ("app is frozen"). */
VIE_API const char *vie_strerror(int err);

/* What a handler (and, with the pipeline, a middleware) returns. */
typedef enum vie_status {
    VIE_NEXT = 0,    /* go on to the next layer */
    VIE_DONE = 1,    /* a response was written; stop here */
    VIE_PENDING = 2, /* continues asynchronously (pipeline issue) */
} vie_status;

typedef vie_status (*vie_handler_fn)(vie_ctx *c, void *arg);

/* ------------------------------------------------------------------ */
/* App                                                                 */

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
