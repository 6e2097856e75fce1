/* One event loop serving one app: the listener, connection accounting,
 * the timeout sweep, buffer pools, graceful stop. */
#ifndef VIE_SERVER_SERVER_H
#define VIE_SERVER_SERVER_H

#include <uv.h>

#include "core/app.h"
#include "core/ctx.h"
#include "core/list.h"
#include "core/log.h"

/* Each timeout kind has one list. A connection enters at the tail with
 * deadline = now + timeout, so every list stays sorted by deadline and the
 * sweep only ever looks at heads: O(1) per connection event, and no timer
 * handle per connection (which would cost memory on idle connections). */
typedef enum timeout_kind {
    TO_NONE = 0,
    TO_IDLE,   /* keep-alive, waiting for the next request */
    TO_HEAD,   /* reading a head: from its first byte (slowloris) */
    TO_BODY,   /* reading a body: since the last read */
    TO_WRITE,  /* waiting for a slow reader: since the last progress */
    TO_LINGER, /* closing: draining what the client still sends */
    TO_GRACE,  /* stopping: a new connection's last chance to send a request */
    TO_KINDS
} timeout_kind;

typedef struct timeout_list {
    dlink head;
    uint32_t ms;
} timeout_list;

/* A free list of fixed-size buffers, so the hot path does not call malloc
 * and idle connections hold no buffer at all. */
typedef struct buf_pool {
    void *free;
    size_t size;
    size_t n_free, max_free;
} buf_pool;

void *buf_pool_get(buf_pool *p);
void buf_pool_put(buf_pool *p, void *b);

typedef struct server {
    vie_app *app;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t tick;
    uv_timer_t drain;
    uv_async_t wakeup;
    uv_signal_t sigint, sigterm, sigusr1, sighup;
    ctx_pool ctxs;
    buf_pool rbufs; /* connection read buffers */
    buf_pool obufs; /* connection output buffers */
    dlink conns;    /* every open connection */
    uint32_t n_conns;
    timeout_list timeouts[TO_KINDS];
    log_ratelimit limit_log;
    bool listening;
    bool stopping;
    bool taint_logged;
    uint64_t watchdog_last_ms;
    int port;
} server;

/* Current loop time in milliseconds. */
static inline uint64_t server_now(server *s)
{
    return uv_now(&s->loop);
}

/* Bind and listen on o->listen (logs the address); the socket is
 * non-blocking and close-on-exec. */
int server_listen_socket(const vie_options *o, int *fd_out);
/* "HOST:PORT" or "[IPv6]:PORT" into ss; 0, or -1 when malformed. */
int server_parse_listen(const char *spec, struct sockaddr_storage *ss);

/* Serve app (frozen) on this process's loop until stopped, on listen_fd
 * (inherited from the supervisor) or, when it is -1, on a socket of its
 * own. */
int server_serve(vie_app *app, int listen_fd);

/* A crash was contained in this process: a worker drains and exits (the
 * supervisor replaces it); a lone process says so and goes on. */
void server_tainted(server *s);

/* Begin a graceful stop: no new connections, idle ones closed, the others
 * finish their request and close; after drain_timeout_ms, all close. */
void server_begin_stop(server *s);

#endif
