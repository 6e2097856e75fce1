/* The request context: the parsed request, the routing result, the
 * response state and the request arena. One per in-flight request, taken
 * from a per-loop pool so serving a request does not call malloc. */
#ifndef VIE_CORE_CTX_H
#define VIE_CORE_CTX_H

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
    const char *actor; /* who runs now, for logs: the route label */
    bool keep_alive;   /* the connection stays open after this response */
    vie_arena arena;
    http_header headers[]; /* limits.max_headers entries */
};

/* A free list of contexts sized for one app's limits. */
typedef struct ctx_pool {
    vie_app *app;
    vie_ctx *free; /* linked through ->conn while free */
    size_t n_free, max_free;
} ctx_pool;

void ctx_pool_init(ctx_pool *p, vie_app *app, size_t max_free);
void ctx_pool_destroy(ctx_pool *p);
/* A clean context whose response goes to out; NULL when out of memory. */
vie_ctx *ctx_acquire(ctx_pool *p, vie_buf *out);
/* Reset the arena and return the context to the pool. */
void ctx_release(ctx_pool *p, vie_ctx *c);

#endif
