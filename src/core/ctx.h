/* The request context: the parsed request, the routing result, the
 * response state and the request arena. One per in-flight request, taken
 * from a per-loop pool so serving a request does not call malloc. */
#ifndef VIE_CORE_CTX_H
#define VIE_CORE_CTX_H

#include <setjmp.h>
#include <uv.h>

#include "core/app.h"
#include "core/arena.h"
#include "core/buf.h"
#include "http/parser.h"
#include "router/router.h"
#include "vie/vie.h"

typedef enum resp_state {
    RESP_NONE = 0, /* nothing sent: status and headers may change */
    RESP_HEAD,     /* head sent, body may follow */
    RESP_BODY,     /* some body sent */
    RESP_ENDED,    /* complete */
} resp_state;

typedef struct vie_response {
    int status;
    uint8_t state;        /* resp_state */
    bool has_length;      /* vie_set_content_length was called */
    bool chunked;         /* framing chosen when the head went out */
    bool close_delimited; /* HTTP/1.0 without a length: the close ends the body */
    bool no_body;         /* HEAD, 1xx, 204, 304: body bytes are counted, not sent */
    uint64_t content_length;
    uint64_t body_bytes; /* bytes the handler wrote (sent or not) */
    char *hdrs;          /* "Name: value\r\n"... added before the head, in the arena */
    uint32_t hdrs_len, hdrs_cap;
} vie_response;

struct vie_conn;

typedef enum exec_state {
    EXEC_IDLE = 0, /* not dispatched yet */
    EXEC_RUNNING,  /* in the executor loop */
    EXEC_PARKED,   /* a layer returned VIE_PENDING */
    EXEC_DONE,     /* after hooks and defers ran */
} exec_state;

typedef struct defer_node {
    struct defer_node *next;
    void (*fn)(void *arg);
    void *arg;
} defer_node;

/* One typed value of a request; valid when set is true. */
typedef struct key_slot {
    uint64_t value;
    const char *writer; /* the layer (or route) that wrote it */
    bool set;
} key_slot;

struct vie_ctx {
    vie_app *app;
    struct vie_conn *conn; /* NULL when the request did not come from a socket */
    vie_buf *out;          /* where response bytes are appended */
    http_request req;
    vie_str path; /* normalized */
    const route_entry *route;
    router_match match;
    vie_str body;
    vie_response res;
    const char *actor; /* who runs now, for logs: a layer name or the route label */
    bool keep_alive;   /* the connection stays open after this response */

    /* The executor's state (executor.c). */
    uint8_t exec;               /* exec_state */
    int8_t early_resume;        /* a vie_resume that came while its layer was still running */
    bool in_hook;               /* inside a before hook or the handler */
    bool was_parked;            /* completes outside dispatch: tell the owner */
    bool cancelled;             /* deadline or client gone */
    bool in_flight;             /* counted in the in-flight gauge */
    int crash_signal;           /* the crash signal being unwound, 0 for a panic */
    int raw_fd;                 /* the socket, for answers from a signal handler; -1 if none */
    struct inflight_slot *slot; /* its row in /debug/requests, if any */
    /* A blocking handler on the thread pool (executor.c). */
    bool blocking_running;
    bool blocking_failed;
    vie_status blocking_status;
    vie_buf blocking_out;
    vie_buf *blocking_saved_out;
    uv_work_t work;
    struct ctx_pool *orphan_pool; /* set when the owner left while the thread ran */
    bool truncated;               /* a response that began went wrong: close, don't finish it */
    /* No route's handler: the handler step answers auto_status (an OPTIONS'
     * 204, or 400, 404, 405, 501 through the app-wide layers), with Allow
     * when set (dispatch.c). */
    int auto_status;
    const char *auto_allow;
    const char *auto_detail; /* the problem's detail */
    bool panic_armed;        /* panic_jmp is a live jump point */
    const char *panic_msg;
    sigjmp_buf panic_jmp;          /* where vie_panic unwinds to (executor.c) */
    bool parked_for_deadline;      /* the park timer stands for the request deadline */
    uint32_t pos;                  /* the layer running or parked; chain.n is the handler */
    uint32_t entered;              /* layers whose before hook ran: their after hooks run */
    const layer *cur;              /* the layer running, NULL in the handler */
    uint64_t ran[VIE_LAYER_WORDS]; /* bit per layer id: its before hook ran */
    uint64_t start_ns;             /* when the head was complete */
    uint64_t deadline_ns;          /* request deadline, UINT64_MAX for none */
    vie_trail_entry *trail;        /* chain.n + 1 entries, in the arena */
    uint32_t n_trail;
    void (*cancel_fn)(void *arg);
    void *cancel_arg;
    defer_node *defers;
    key_slot *slots; /* app key count entries, in the arena, made on first write */
    /* Told when a request that parked completes (the connection flushes). */
    void (*on_complete)(vie_ctx *c);

    /* Kept across requests (not cleared by ctx_acquire). */
    uint64_t gen; /* bumped when a request ends: refs to it go stale */
    vie_ctx *all_next;
    uv_loop_t *loop;
    uv_timer_t timer; /* a parked request's deadline */
    vie_arena arena;
    http_header headers[]; /* limits.max_headers entries */
};

/* A free list of contexts sized for one app's limits. Contexts are never
 * freed while the pool lives, so a stale vie_ref always points to a
 * context whose generation tells it is stale, never to freed memory. */
typedef struct ctx_pool {
    vie_app *app;
    uv_loop_t *loop; /* NULL: contexts cannot park (unit tests) */
    vie_ctx *free;   /* linked through ->conn while free */
    vie_ctx *all;    /* every context, linked through ->all_next */
    size_t n_free, n_all;
} ctx_pool;

void ctx_pool_init(ctx_pool *p, vie_app *app, uv_loop_t *loop);
void ctx_pool_destroy(ctx_pool *p);
/* A clean context whose response goes to out; NULL when out of memory. */
vie_ctx *ctx_acquire(ctx_pool *p, vie_buf *out);
/* Destroy the values of keys that have a destructor (keys.c). */
void keys_destroy_values(vie_ctx *c);

/* Reset the arena, make refs to it stale, and return it to the pool. */
void ctx_release(ctx_pool *p, vie_ctx *c);

#endif
