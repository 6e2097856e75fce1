/* The event loop of one process: listen, accept, sweep timeouts, stop. */
#include "server/server.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/inflight.h"
#include "http/conn.h"
#include "server/crash.h"
#include "server/supervisor.h"

/* ------------------------------------------------------------------ */
/* Buffer pool                                                         */

void *buf_pool_get(buf_pool *p)
{
    void *b = p->free;
    if (b) {
        p->free = *(void **)b;
        p->n_free--;
        return b;
    }
    return malloc(p->size);
}

void buf_pool_put(buf_pool *p, void *b)
{
    if (p->n_free >= p->max_free) {
        free(b);
        return;
    }
    *(void **)b = p->free;
    p->free = b;
    p->n_free++;
}

static void buf_pool_destroy(buf_pool *p)
{
    while (p->free) {
        void *n = *(void **)p->free;
        free(p->free);
        p->free = n;
    }
    p->n_free = 0;
}

/* ------------------------------------------------------------------ */
/* Listening                                                           */

/* "HOST:PORT" or "[V6]:PORT" into a sockaddr. */
int server_parse_listen(const char *spec, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec) return -1;
    size_t hl = (size_t)(colon - spec);
    const char *h = spec;
    if (spec[0] == '[') {
        if (hl < 2 || spec[hl - 1] != ']') return -1;
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host) return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) return -1;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
    return -1;
}

#define REFUSE_503_BODY                                                                            \
    "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"                  \
    "\"detail\":\"too many connections\"}"
_Static_assert(sizeof REFUSE_503_BODY - 1 == 97, "update the Content-Length of refuse_503");
static const char refuse_503[] =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: application/problem+json\r\n"
    "Content-Length: 97\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" REFUSE_503_BODY;

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Over the connection limit: accept (so the client is not left hanging
 * in the backlog), answer 503 with a best-effort write, close. */
static void refuse_connection(server *s)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) return;
    uv_tcp_init(&s->loop, t);
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t) == 0) {
        uv_buf_t b = uv_buf_init((char *)refuse_503, sizeof refuse_503 - 1);
        uv_try_write((uv_stream_t *)t, &b, 1);
    }
    uv_close((uv_handle_t *)t, free_handle);
    s->app->stats->conn_refused_limit++;
    uint64_t suppressed;
    if (log_ratelimit_allow(&s->limit_log, server_now(s), &suppressed))
        LOG_WARN("max_connections (%u) reached: refusing new connections with 503 "
                 "(%llu more refused since the last line)",
                 s->app->opt.max_connections, (unsigned long long)suppressed);
}

static void on_connection(uv_stream_t *l, int status)
{
    server *s = l->data;
    if (status < 0) {
        LOG_WARN("accept failed: %s", uv_strerror(status));
        return;
    }
    if (s->n_conns >= s->app->opt.max_connections) {
        refuse_connection(s);
        return;
    }
    vie_conn *c = calloc(1, sizeof *c);
    if (!c) {
        refuse_connection(s);
        return;
    }
    c->srv = s;
    uv_tcp_init(&s->loop, &c->tcp);
    c->tcp.data = c;
    s->n_conns++;
    dlist_push_back(&s->conns, &c->all);
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        conn_abort(c, "accept failed");
        return;
    }
    conn_start(c);
}

/* ------------------------------------------------------------------ */
/* Timeouts                                                            */

static void on_tick(uv_timer_t *t)
{
    server *s = t->data;
    uint64_t now = server_now(s);
    if (now - s->watchdog_last_ms >= 1000) {
        s->watchdog_last_ms = now;
        inflight_watchdog(s->app, s->app->opt.watchdog_ms);
    }
    for (int k = TO_IDLE; k < TO_KINDS; k++) {
        dlink *head = &s->timeouts[k].head;
        while (!dlist_empty(head)) {
            vie_conn *c = container_of(head->next, vie_conn, tl);
            if (c->deadline > now) break;
            conn_on_timeout(c);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_drain_timeout(uv_timer_t *t)
{
    server *s = t->data;
    LOG_WARN("drain timeout: closing %u connection(s) still open", s->n_conns);
    while (!dlist_empty(&s->conns))
        conn_abort(container_of(s->conns.next, vie_conn, all), NULL);
}

void server_begin_stop(server *s)
{
    if (!s->stopping) {
        s->stopping = true;
        LOG_INFO("stopping: no new connections; %u open connection(s) finish their requests",
                 s->n_conns);
        if (s->listening) {
            uv_close((uv_handle_t *)&s->listener, NULL);
            s->listening = false;
        }
        dlink *n = s->conns.next;
        while (n != &s->conns) {
            dlink *next = n->next;
            conn_begin_stop(container_of(n, vie_conn, all));
            n = next;
        }
        uv_timer_start(&s->drain, on_drain_timeout, s->app->opt.drain_timeout_ms, 0);
        /* Sweep often while draining, so graces end on time. */
        uv_timer_start(&s->tick, on_tick, 50, 50);
    }
    if (s->n_conns == 0) uv_stop(&s->loop);
}

void server_tainted(server *s)
{
    if (s->app->opt.workers > 0) {
        LOG_ERROR("this worker contained a crash and may be damaged: it stops accepting, lets "
                  "its requests finish, and exits for the supervisor to replace it");
        server_begin_stop(s);
    } else if (!s->taint_logged) {
        s->taint_logged = true;
        LOG_ERROR("this process contained a crash and may be damaged; with no supervisor "
                  "(workers: 0) it goes on serving: run with workers to have it replaced");
    }
}

static void on_wakeup(uv_async_t *a)
{
    server_begin_stop(a->data);
}

static void on_sigusr1(uv_signal_t *h, int signum)
{
    (void)signum;
    server *s = h->data;
    LOG_INFO("SIGUSR1: reopening log files");
    app_run_hooks(s->app, VIE_EV_REOPEN, &s->loop);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    LOG_WARN("SIGHUP ignored: reloading the config needs a supervisor (workers >= 1); "
             "restart this process instead");
}

static void on_signal(uv_signal_t *h, int signum)
{
    LOG_INFO("received %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    server_begin_stop(h->data);
}

/* ------------------------------------------------------------------ */
/* Run                                                                 */

static uint32_t tick_interval(const vie_options *o)
{
    uint32_t m = o->keepalive_timeout_ms;
    if (o->header_timeout_ms < m) m = o->header_timeout_ms;
    if (o->body_timeout_ms < m) m = o->body_timeout_ms;
    if (o->write_timeout_ms < m) m = o->write_timeout_ms;
    m /= 4;
    return m < 10 ? 10 : m > 1000 ? 1000 : m;
}

static int server_init(server *s, vie_app *app)
{
    const vie_options *o = &app->opt;
    memset(s, 0, sizeof *s);
    s->app = app;
    int rc = uv_loop_init(&s->loop);
    if (rc != 0) {
        LOG_ERROR("cannot create the event loop: %s", uv_strerror(rc));
        return VIE_EIO;
    }
    dlist_init(&s->conns);
    uint32_t ms[TO_KINDS] = {0,
                             o->keepalive_timeout_ms,
                             o->header_timeout_ms,
                             o->body_timeout_ms,
                             o->write_timeout_ms,
                             2000,
                             500};
    if (ms[TO_LINGER] > o->header_timeout_ms) ms[TO_LINGER] = o->header_timeout_ms;
    for (int k = 0; k < TO_KINDS; k++) {
        dlist_init(&s->timeouts[k].head);
        s->timeouts[k].ms = ms[k];
    }
    /* Larger than the head limit, so the parser reports 431 before the
     * buffer can fill with an incomplete head. */
    size_t rsize = ((size_t)o->max_header_bytes + 4096 + 4095) & ~(size_t)4095;
    s->rbufs = (buf_pool){.size = rsize, .max_free = 1024};
    s->obufs = (buf_pool){.size = 16384, .max_free = 1024};
    ctx_pool_init(&s->ctxs, app, &s->loop);
    s->limit_log.interval_ms = 1000;

    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_init(&s->loop, &s->drain);
    s->drain.data = s;
    uv_unref((uv_handle_t *)&s->drain);
    uv_async_init(&s->loop, &s->wakeup, on_wakeup);
    s->wakeup.data = s;
    if (o->handle_signals) {
        uv_signal_init(&s->loop, &s->sigint);
        uv_signal_init(&s->loop, &s->sigterm);
        s->sigint.data = s->sigterm.data = s;
        uv_signal_start(&s->sigint, on_signal, SIGINT);
        uv_signal_start(&s->sigterm, on_signal, SIGTERM);
        uv_signal_init(&s->loop, &s->sigusr1);
        s->sigusr1.data = s;
        uv_signal_start(&s->sigusr1, on_sigusr1, SIGUSR1);
        /* One process alone (workers: 0): SIGHUP must not kill it. A
         * worker ignores SIGHUP already (its supervisor reloads). */
        struct sigaction old;
        if (sigaction(SIGHUP, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            uv_signal_init(&s->loop, &s->sighup);
            s->sighup.data = s;
            uv_signal_start(&s->sighup, on_sighup, SIGHUP);
        }
        /* A worker starts with these blocked (supervisor.c): let them in. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
    }
    return VIE_OK;
}

/* Log the address a listening socket is bound to; returns its port. */
static int log_bound(uv_os_fd_t fd)
{
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    char ip[64] = "?";
    if (getsockname(fd, (struct sockaddr *)&bound, &len) != 0) return 0;
    if (bound.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof ip);
        int port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        LOG_INFO("listening on http://[%s]:%d", ip, port);
        return port;
    }
    uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof ip);
    int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    LOG_INFO("listening on http://%s:%d", ip, port);
    return port;
}

int server_listen_socket(const vie_options *o, int *fd_out)
{
    struct sockaddr_storage ss;
    if (server_parse_listen(o->listen, &ss) != 0) {
        LOG_ERROR("cannot listen on \"%s\": expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080",
                  o->listen);
        return VIE_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, o->backlog) != 0) {
        int err = errno;
        LOG_ERROR("cannot listen on %s: %s", o->listen, uv_strerror(uv_translate_sys_error(err)));
        if (fd >= 0) close(fd);
        return VIE_EIO;
    }
    log_bound(fd);
    *fd_out = fd;
    return VIE_OK;
}

/* Listen on the app's address, or on an inherited listening socket. */
static int server_listen(server *s, int fd)
{
    const vie_options *o = &s->app->opt;
    int rc;
    if (fd < 0) {
        rc = server_listen_socket(o, &fd);
        if (rc != VIE_OK) return rc;
    }
    rc = uv_tcp_open(&s->listener, fd);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, o->backlog, on_connection);
    if (rc != 0) {
        LOG_ERROR("cannot accept on %s: %s", o->listen, uv_strerror(rc));
        return VIE_EIO;
    }
    s->listening = true;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    return VIE_OK;
}

static void server_destroy(server *s)
{
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s->loop) != 0) LOG_WARN("event loop closed with handles still open");
    ctx_pool_destroy(&s->ctxs);
    buf_pool_destroy(&s->rbufs);
    buf_pool_destroy(&s->obufs);
}

int server_serve(vie_app *app, int listen_fd)
{
    signal(SIGPIPE, SIG_IGN); /* a peer that goes away is an error code, not a death */
    if (crash_install(app->opt.on_crash) != 0)
        LOG_WARN("cannot install the crash handlers: a crash will kill this process");
    server *s = malloc(sizeof *s);
    if (!s) return VIE_ENOMEM;
    int rc = server_init(s, app);
    if (rc != VIE_OK) {
        free(s);
        return rc;
    }
    rc = server_listen(s, listen_fd);
    if (rc == VIE_OK) {
        uv_timer_start(&s->tick, on_tick, tick_interval(&app->opt), tick_interval(&app->opt));
        atomic_store(&app->srv, s);
        /* A stop asked for before the loop existed is honoured now. */
        if (atomic_exchange(&app->stop_requested, false)) server_begin_stop(s);
        app_run_hooks(app, VIE_EV_WORKER_START, &s->loop);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        /* Drained: the hooks' handles (unref'd, so they did not hold the
         * loop open) are closed by the stop hooks or by server_destroy. */
        app_run_hooks(app, VIE_EV_WORKER_STOP, &s->loop);
        atomic_store(&app->srv, NULL);
        atomic_store(&app->stop_requested, false);
        LOG_INFO("stopped");
    }
    server_destroy(s);
    free(s);
    return rc;
}

int vie_app_run(vie_app *app)
{
    if (!app) return VIE_EINVAL;
    if (atomic_load(&app->srv)) {
        LOG_ERROR("vie_app_run refused: the app is already running");
        return VIE_ESTATE;
    }
    int rc = vie_app_freeze(app);
    if (rc != VIE_OK) return rc;
    if (app->opt.workers > 0) return supervisor_run(app);
    return server_serve(app, -1);
}

void vie_app_stop(vie_app *app)
{
    if (!app) return;
    atomic_store(&app->stop_requested, true);
    server *s = atomic_load(&app->srv);
    if (s)
        uv_async_send(&s->wakeup);
    else if (atomic_load(&app->supervising))
        kill(getpid(), SIGTERM); /* its sigtimedwait takes it */
}

int vie_app_port(const vie_app *app)
{
    if (!app) return 0;
    server *s = atomic_load(&((vie_app *)app)->srv);
    return s ? s->port : 0;
}
