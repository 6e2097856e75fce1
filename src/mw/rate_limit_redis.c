/* rate_limit's Redis backend: the GCRA script, one hiredis asynchronous
 * connection per worker on its libuv loop, and the requests parked while
 * Redis decides (see rate_limit_redis.h).
 *
 * Lifetimes. A parked request is a slot from a per-connection pool: its
 * timer (the request's timeout) is made once and closed at WORKER_STOP,
 * like fault's. A slot is free again only when both the request is done
 * with it (answer, timeout, or the request cancelled) and hiredis is (the
 * reply callback ran: hiredis calls every callback exactly once, with a
 * NULL reply when the connection goes away). So a late reply, or one
 * after the client left, finds its slot and is dropped; the request is
 * reached only through its vie_ref while the slot says it waits.
 *
 * Connection states: DOWN (waiting for the back-off timer), RESOLVING (a
 * host name, with uv_getaddrinfo: never a blocking lookup on the loop),
 * CONNECTING (TCP connect, then AUTH, SELECT, CLIENT SETNAME vie.rl.<pid>
 * and SCRIPT LOAD, pipelined) and READY (the script's SHA is known).
 * Requests that come while it connects wait in a queue (never sent
 * before AUTH and SELECT have succeeded, so a decision never lands in the
 * wrong database); while DOWN they fail at once. The same timer is the
 * back-off and the connect watchdog.
 */
#include "mw/rate_limit_redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
/* The adapter is used as is, but for its poll callback (see poll_cb). */
#include <hiredis/adapters/libuv.h>

#include "core/clock.h"
#include "core/log.h"
#include "vie/vie_mw.h"

#define RLR_CHUNK          32   /* slots allocated at a time */
#define RLR_MAX_PENDING    8192 /* decisions sent or queued per connection */
#define RLR_CONNECT_MS     2000 /* connect + setup, before giving up */
#define RLR_BACKOFF_MIN_MS 100  /* first retry after a failure */
#define RLR_BACKOFF_MAX_MS 2000 /* retries at most this far apart */
#define RLR_STALL_MIN_MS   1000 /* no answer this long while waiting: reconnect */
#define MS                 1000000ULL

/* GCRA, as gcra_decide (gcra.c), in microseconds. Lua numbers are
 * doubles: every value here is an integer below 2^53 (the caller keeps
 * now < 2^52 and T * burst <= 2^58 ns), so every step is exact; the
 * division is corrected to an exact floor. */
const char rlr_script[] =
    "local T = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local now\n"
    "if ARGV[3] == '' then\n"
    "  local t = redis.call('TIME')\n"
    "  now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "else\n"
    "  now = tonumber(ARGV[3])\n"
    "end\n"
    "local tau = T * (burst - 1)\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "local base = tat\n"
    "if now > base then base = now end\n"
    "local ahead = base - now\n"
    "if ahead > tau then\n"
    "  return {0, 0, ahead - tau, ahead}\n"
    "end\n"
    "local tat_out = base + T\n"
    "local left = tau - ahead\n"
    "local rem = math.floor(left / T)\n"
    "while rem * T > left do rem = rem - 1 end\n"
    "while (rem + 1) * T <= left do rem = rem + 1 end\n"
    "local px = math.ceil((tat_out - now) / 1000) + " /* slack: */ "1000\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', tat_out), 'PX', string.format('%.0f', px))\n"
    "return {1, rem, 0, ahead + T}\n";

_Static_assert(RLR_EXPIRE_SLACK_MS == 1000, "the script's slack is written out above");

const char *const rlr_error_names[RLR_N_ERRORS] = {"", "timeout", "connection", "reply"};

typedef struct rlr_conn rlr_conn;
typedef struct rlr_chunk rlr_chunk;

typedef struct rlr_slot {
    uv_timer_t timer; /* the request's timeout: made once, closed at WORKER_STOP */
    rlr_conn *conn;
    rlr *lim; /* the limiter deciding */
    rlr_chunk *chunk;
    struct rlr_slot *next, *prev; /* the free list (next), or the queue */
    vie_ref ref;
    bool in_use;
    bool waiting;  /* a request is parked on it */
    bool in_redis; /* hiredis holds a callback with it */
    bool queued;   /* in the connection's queue (waiting for READY) */
    bool retried;  /* NOSCRIPT: the script was loaded and the command sent again */
    bool has_now;
    uint64_t now_us, T_us;
    uint32_t burst;
    uint16_t key_len;
    char key[RLR_KEY_MAX];
} rlr_slot;

struct rlr_chunk {
    rlr_chunk *next;
    int open; /* timers whose close callback has not run: the last frees the chunk */
    rlr_slot slots[RLR_CHUNK];
};

typedef enum conn_state {
    CONN_IDLE = 0, /* no loop: before WORKER_START, after WORKER_STOP */
    CONN_DOWN,
    CONN_RESOLVING,
    CONN_CONNECTING,
    CONN_READY,
} conn_state;

struct rlr_conn {
    /* The configuration (identical in every worker). */
    char *address; /* as configured, for logs */
    char *host;    /* TCP: a host name or an address; NULL for unix */
    char *path;    /* unix: the socket */
    int port;
    char *password;
    uint32_t db;
    int refs; /* limiters using it */

    /* This worker's. */
    uv_loop_t *loop;
    redisAsyncContext *ac;
    conn_state state;
    uv_timer_t timer; /* back-off, and the watchdog of a connect */
    bool timer_open;
    uv_getaddrinfo_t gai;
    bool gai_busy; /* a lookup runs: its callback is still to come */
    uint32_t backoff_ms;
    bool ever_ready;
    char sha[41];
    char last_error[200]; /* why it is not READY, for the requests it fails */
    rlr_slot *queue_head, *queue_tail;
    uint32_t pending; /* slots in use */
    /* Stall detection: decisions hiredis holds, and since when Redis owes
     * an answer (the last answer, or the first command sent after none
     * was outstanding). */
    uint32_t in_redis;
    uint64_t owed_since_ns;
    rlr_chunk *chunks;
    rlr_slot *free_slots;
};

struct rlr {
    char *limiter;
    uint32_t timeout_ms;
    rlr_done_fn done;
    void *owner;
    rlr_config cfg; /* strings point into the conn (or the fields above) */
    char *address, *password;
    rlr_conn *conn; /* after rlr_attach */
    rlr *next;      /* the app's next Redis limiter */
};

static void conn_connect(rlr_conn *k);
static void slot_send(rlr_slot *s, const char **why);

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

static bool parse_port(const char *s, int *port)
{
    if (!*s || strlen(s) > 5) return false;
    int v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        v = v * 10 + (*s - '0');
    }
    if (v < 1 || v > 65535) return false;
    *port = v;
    return true;
}

static bool host_name_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.') return false;
    bool digits_dots = true;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '.' && c != '_') return false;
        if (!(c >= '0' && c <= '9') && c != '.') digits_dots = false;
    }
    if (digits_dots) { /* looks like an IPv4 address: it must be one */
        char buf[16];
        unsigned char a[4];
        if (n >= sizeof buf) return false;
        memcpy(buf, h, n);
        buf[n] = '\0';
        return inet_pton(AF_INET, buf, a) == 1;
    }
    return true;
}

/* Split address into host (malloc'd; brackets removed) and port, or the
 * unix path. Returns why it is refused, or NULL. */
static const char *address_split(const char *a, char **host, int *port, char **path)
{
    static char why[200];
    if (host) *host = NULL;
    if (path) *path = NULL;
    if (!a || !*a) return "the address is empty (\"host:port\" or \"unix:/path\")";
    if (!strncmp(a, "unix:", 5)) {
        const char *p = a + 5;
        if (p[0] != '/') return "a unix socket address is \"unix:\" and an absolute path";
        if (strlen(p) >= 108) return "the unix socket path is longer than 107 bytes";
        if (path && !(*path = strdup(p))) return "out of memory";
        return NULL;
    }
    const char *colon = strrchr(a, ':');
    if (!colon) {
        snprintf(why, sizeof why,
                 "\"%.120s\" has no port: expected \"host:port\" or \"unix:/path\"", a);
        return why;
    }
    const char *h = a;
    size_t hn = (size_t)(colon - a);
    if (h[0] == '[') {
        if (hn < 3 || h[hn - 1] != ']') return "an IPv6 address goes in brackets: \"[::1]:6379\"";
        char buf[64];
        unsigned char a6[16];
        if (hn - 2 >= sizeof buf) return "the IPv6 address is too long";
        memcpy(buf, h + 1, hn - 2);
        buf[hn - 2] = '\0';
        if (inet_pton(AF_INET6, buf, a6) != 1) {
            snprintf(why, sizeof why, "\"%s\" is not an IPv6 address", buf);
            return why;
        }
        h++;
        hn -= 2;
    } else if (memchr(h, ':', hn)) {
        return "an IPv6 address goes in brackets: \"[::1]:6379\"";
    } else if (!host_name_ok(h, hn)) {
        snprintf(why, sizeof why, "\"%.*s\" is neither an IPv4 address nor a host name",
                 (int)(hn > 120 ? 120 : hn), h);
        return why;
    }
    int p;
    if (!parse_port(colon + 1, &p)) {
        snprintf(why, sizeof why, "port \"%.20s\" is not a number from 1 to 65535", colon + 1);
        return why;
    }
    if (port) *port = p;
    if (host && !(*host = strndup(h, hn))) return "out of memory";
    return NULL;
}

const char *rlr_address_check(const char *address)
{
    return address_split(address, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* Slots                                                               */

static rlr_slot *slot_take(rlr_conn *k)
{
    if (!k->free_slots) {
        rlr_chunk *ch = calloc(1, sizeof *ch);
        if (!ch) return NULL;
        for (int i = 0; i < RLR_CHUNK; i++) {
            rlr_slot *s = &ch->slots[i];
            uv_timer_init(k->loop, &s->timer);
            uv_unref((uv_handle_t *)&s->timer); /* the connection holds the loop, not a limiter */
            s->timer.data = s;
            s->conn = k;
            s->chunk = ch;
            s->next = k->free_slots;
            k->free_slots = s;
        }
        ch->open = RLR_CHUNK;
        ch->next = k->chunks;
        k->chunks = ch;
    }
    rlr_slot *s = k->free_slots;
    k->free_slots = s->next;
    s->next = s->prev = NULL;
    s->in_use = true;
    s->waiting = s->in_redis = s->queued = s->retried = false;
    k->pending++;
    return s;
}

/* Free again once neither the request nor hiredis needs it. */
static void slot_settle(rlr_slot *s)
{
    if (!s->in_use || s->waiting || s->in_redis || s->queued) return;
    rlr_conn *k = s->conn;
    s->in_use = false;
    s->ref = (vie_ref){0};
    s->next = k->free_slots;
    k->free_slots = s;
    k->pending--;
}

static void on_slot_timer_closed(uv_handle_t *h)
{
    rlr_slot *s = h->data;
    rlr_chunk *ch = s->chunk;
    if (--ch->open == 0) free(ch);
}

static void queue_push(rlr_conn *k, rlr_slot *s)
{
    s->queued = true;
    s->next = NULL;
    s->prev = k->queue_tail;
    if (k->queue_tail)
        k->queue_tail->next = s;
    else
        k->queue_head = s;
    k->queue_tail = s;
}

static void queue_remove(rlr_conn *k, rlr_slot *s)
{
    if (!s->queued) return;
    if (s->prev)
        s->prev->next = s->next;
    else
        k->queue_head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        k->queue_tail = s->prev;
    s->next = s->prev = NULL;
    s->queued = false;
}

/* The decision is over for the request: free the slot (or leave it to
 * hiredis) first, then tell the limiter, which resumes the request (and
 * may start the next one on the same connection, reusing the slot). */
static void slot_finish(rlr_slot *s, rlr_error err, const gcra_result *r, const char *detail)
{
    if (!s->waiting) return;
    rlr *lim = s->lim;
    vie_ref ref = s->ref;
    s->waiting = false;
    uv_timer_stop(&s->timer);
    queue_remove(s->conn, s);
    slot_settle(s);
    lim->done(lim->owner, ref, err, r, detail);
}

/* The request ended while parked (deadline, client gone): it will not be
 * resumed; a reply still due finds the slot and is dropped. */
static void on_cancel(void *arg)
{
    rlr_slot *s = arg;
    if (!s->waiting) return;
    s->waiting = false;
    uv_timer_stop(&s->timer);
    queue_remove(s->conn, s);
    slot_settle(s);
}

/* ------------------------------------------------------------------ */
/* The connection                                                      */

static uint64_t now_ns(void)
{
    return clock_now_ns();
}

static void timer_arm(rlr_conn *k, uv_timer_cb cb, uint64_t ms)
{
    if (!k->timer_open) return;
    uv_update_time(k->loop);
    uv_timer_start(&k->timer, cb, ms, 0);
}

static void on_backoff_done(uv_timer_t *t)
{
    rlr_conn *k = t->data;
    if (k->state == CONN_DOWN) conn_connect(k);
}

/* Fail every request waiting for the connection. */
static void queue_fail(rlr_conn *k, rlr_error err, const char *why)
{
    while (k->queue_head)
        slot_finish(k->queue_head, err, NULL, why);
}

/* The connection is gone (or never came): fail what waits for it and
 * try again after the back-off. free_ac: the context is still ours to
 * free (not when hiredis is freeing it itself: a failed connect, a
 * dropped connection). */
static void conn_lost(rlr_conn *k, const char *why, bool free_ac)
{
    if (k->state == CONN_IDLE) return;
    if (why && why != k->last_error) snprintf(k->last_error, sizeof k->last_error, "%s", why);
    LOG_DEBUG("rate_limit: Redis at %s: %s (retry in %u ms)", k->address, k->last_error,
              k->backoff_ms ? k->backoff_ms * 2 : RLR_BACKOFF_MIN_MS);
    k->state = CONN_DOWN; /* before the callbacks below: new requests fail at once */
    redisAsyncContext *ac = k->ac;
    k->ac = NULL;
    if (ac && free_ac) redisAsyncFree(ac); /* each pending reply callback runs, with NULL */
    queue_fail(k, RLR_ERR_CONNECTION, k->last_error);
    if (k->state != CONN_DOWN) return; /* a callback above stopped the worker */
    k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : RLR_BACKOFF_MIN_MS;
    if (k->backoff_ms > RLR_BACKOFF_MAX_MS) k->backoff_ms = RLR_BACKOFF_MAX_MS;
    timer_arm(k, on_backoff_done, k->backoff_ms);
}

static void on_watchdog(uv_timer_t *t)
{
    rlr_conn *k = t->data;
    if (k->state == CONN_RESOLVING) {
        uv_cancel((uv_req_t *)&k->gai); /* its callback still comes: it sees DOWN */
        conn_lost(k, "the host name did not resolve within 2 s", true);
    } else if (k->state == CONN_CONNECTING) {
        conn_lost(k, "no answer to the connection and its setup within 2 s", true);
    }
}

/* 0.14.1's libuv adapter drops a poll error (status < 0): a refused
 * connect then hangs forever. Here the error goes to hiredis, which reads
 * the socket's error: the connect callback (or the disconnect) reports
 * it. The rest is the adapter's, with this callback. */
static void poll_cb(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    if (!p->context) return;
    if (status != 0) {
        redisAsyncHandleRead(p->context);
        /* libuv stopped the handle on the error: still connected, watch again */
        if (p->context && p->events) uv_poll_start(&p->handle, p->events, poll_cb);
        return;
    }
    if (events & UV_READABLE) redisAsyncHandleRead(p->context);
    if (p->context && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

static void ev_update(redisLibuvEvents *p)
{
    if (p->events)
        uv_poll_start(&p->handle, p->events, poll_cb);
    else
        uv_poll_stop(&p->handle);
}
static void ev_add_read(void *d)
{
    ((redisLibuvEvents *)d)->events |= UV_READABLE;
    ev_update(d);
}
static void ev_del_read(void *d)
{
    ((redisLibuvEvents *)d)->events &= ~UV_READABLE;
    ev_update(d);
}
static void ev_add_write(void *d)
{
    ((redisLibuvEvents *)d)->events |= UV_WRITABLE;
    ev_update(d);
}
static void ev_del_write(void *d)
{
    ((redisLibuvEvents *)d)->events &= ~UV_WRITABLE;
    ev_update(d);
}

static void on_connected(const redisAsyncContext *ac, int status)
{
    rlr_conn *k = ac->data;
    if (k->ac != ac) return;
    if (status != REDIS_OK) {
        char why[200];
        snprintf(why, sizeof why, "cannot connect: %s", ac->errstr[0] ? ac->errstr : "failed");
        conn_lost(k, why, false); /* hiredis frees ac after this callback */
        return;
    }
    LOG_DEBUG("rate_limit: Redis at %s: connected", k->address);
}

static void on_disconnected(const redisAsyncContext *ac, int status)
{
    rlr_conn *k = ac->data;
    if (k->ac != ac) return; /* one we dropped ourselves */
    char why[200];
    snprintf(why, sizeof why, "the connection was lost: %s",
             ac->errstr[0] ? ac->errstr : "closed by the server");
    conn_lost(k, why, false);
}

/* AUTH and SELECT: an error drops the connection (a decision must never
 * be made in the wrong database or unauthenticated). */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *what)
{
    rlr_conn *k = ac->data;
    redisReply *r = reply;
    if (k->ac != ac || !r) return; /* stale, or the connection failed (reported there) */
    if (r->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof why, "%s failed: %.150s", (const char *)what, r->str);
        conn_lost(k, why, true); /* freed by hiredis once this callback returns */
    }
}

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *privdata)
{
    rlr_conn *k = ac->data;
    redisReply *r = reply;
    if (k->ac != ac || !r) return;
    k->owed_since_ns = now_ns();
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        char why[200];
        snprintf(why, sizeof why, "SCRIPT LOAD failed: %.150s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (k->state == CONN_CONNECTING)
            conn_lost(k, why, true);
        else
            LOG_WARN("rate_limit: Redis at %s: %s", k->address, why);
        return;
    }
    memcpy(k->sha, r->str, 40);
    k->sha[40] = '\0';
    if (k->state != CONN_CONNECTING) return; /* a reload after NOSCRIPT */
    k->state = CONN_READY;
    k->backoff_ms = 0;
    uv_timer_stop(&k->timer);
    if (!k->ever_ready)
        LOG_INFO("rate_limit: Redis at %s: connected, db %u, script %s", k->address, k->db, k->sha);
    else
        LOG_DEBUG("rate_limit: Redis at %s: connected again", k->address);
    k->ever_ready = true;
    /* Send what waited, in order. A send that fails ends its request;
     * stop when the connection itself went (the rest fail there). */
    while (k->queue_head && k->state == CONN_READY) {
        rlr_slot *s = k->queue_head;
        queue_remove(k, s);
        const char *why = NULL;
        slot_send(s, &why);
        if (!s->in_redis) slot_finish(s, RLR_ERR_CONNECTION, NULL, why);
    }
}

static void conn_start_context(rlr_conn *k, const char *ip)
{
    redisAsyncContext *ac =
        k->path ? redisAsyncConnectUnix(k->path) : redisAsyncConnect(ip, k->port);
    char why[200];
    if (!ac) {
        conn_lost(k, "out of memory for a Redis connection", false);
        return;
    }
    if (ac->err) {
        snprintf(why, sizeof why, "cannot connect: %s", ac->errstr);
        redisAsyncFree(ac);
        conn_lost(k, why, false);
        return;
    }
    if (redisLibuvAttach(ac, k->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        conn_lost(k, "cannot watch the Redis socket on the loop", false);
        return;
    }
    redisLibuvEvents *p = ac->ev.data;
    uv_unref((uv_handle_t *)&p->handle); /* the server's handles hold the loop, not this */
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->data = k;
    redisAsyncSetConnectCallback(ac, on_connected);
    redisAsyncSetDisconnectCallback(ac, on_disconnected);
    if (!k->path) redisEnableKeepAlive(&ac->c);
    k->ac = ac;
    k->state = CONN_CONNECTING;
    /* The setup, pipelined behind the connect; READY at the script's SHA. */
    int rc = REDIS_OK;
    if (k->password) {
        const char *argv[] = {"AUTH", k->password};
        size_t lens[] = {4, strlen(k->password)};
        rc = redisAsyncCommandArgv(ac, on_setup_reply, "AUTH", 2, argv, lens);
    }
    if (rc == REDIS_OK && k->db) {
        char db[16];
        snprintf(db, sizeof db, "%u", k->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        rc = redisAsyncCommandArgv(ac, on_setup_reply, "SELECT", 2, argv, lens);
    }
    if (rc == REDIS_OK) {
        /* Named, for CLIENT LIST; the answer is not needed (a server that
         * refuses the command is still usable). */
        char name[32];
        snprintf(name, sizeof name, "vie.rl.%ld", (long)getpid());
        const char *argv[] = {"CLIENT", "SETNAME", name};
        size_t lens[] = {6, 7, strlen(name)};
        rc = redisAsyncCommandArgv(ac, NULL, NULL, 3, argv, lens);
    }
    if (rc == REDIS_OK) {
        const char *argv[] = {"SCRIPT", "LOAD", rlr_script};
        size_t lens[] = {6, 4, sizeof rlr_script - 1};
        rc = redisAsyncCommandArgv(ac, on_script_loaded, NULL, 3, argv, lens);
    }
    if (rc != REDIS_OK) {
        conn_lost(k, "cannot queue the connection's setup commands", true);
        return;
    }
    timer_arm(k, on_watchdog, RLR_CONNECT_MS);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rlr_conn *k = req->data;
    k->gai_busy = false;
    /* The first IPv4 address, else the first IPv6 one: "localhost"
     * means 127.0.0.1, where a Redis bound to it listens, even when the
     * resolver lists ::1 first. */
    char ip[INET6_ADDRSTRLEN] = "";
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *a = status == 0 ? res : NULL; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
        if (a->ai_family == AF_INET6 && !pick) pick = a;
    }
    if (pick)
        inet_ntop(pick->ai_family,
                  pick->ai_family == AF_INET6
                      ? (const void *)&((const struct sockaddr_in6 *)pick->ai_addr)->sin6_addr
                      : (const void *)&((const struct sockaddr_in *)pick->ai_addr)->sin_addr,
                  ip, sizeof ip);
    uv_freeaddrinfo(res);
    if (k->state != CONN_RESOLVING) return; /* given up meanwhile, or stopped */
    if (!ip[0]) {
        char why[200];
        snprintf(why, sizeof why, "cannot resolve \"%s\": %s", k->host,
                 status ? uv_strerror(status) : "no address");
        conn_lost(k, why, false);
        return;
    }
    conn_start_context(k, ip);
}

static bool is_ip(const char *h)
{
    unsigned char a[16];
    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static void conn_connect(rlr_conn *k)
{
    if (k->path || is_ip(k->host)) {
        conn_start_context(k, k->host);
        return;
    }
    if (k->gai_busy) { /* the last lookup has not come back yet: later */
        timer_arm(k, on_backoff_done, RLR_BACKOFF_MIN_MS);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    k->gai.data = k;
    int rc = uv_getaddrinfo(k->loop, &k->gai, on_resolved, k->host, NULL, &hints);
    if (rc != 0) {
        char why[200];
        snprintf(why, sizeof why, "cannot resolve \"%s\": %s", k->host, uv_strerror(rc));
        conn_lost(k, why, false);
        return;
    }
    k->gai_busy = true;
    k->state = CONN_RESOLVING;
    timer_arm(k, on_watchdog, RLR_CONNECT_MS);
}

static void conn_worker_start(vie_app *app, void *loop, void *arg)
{
    rlr_conn *k = arg;
    k->loop = loop;
    k->ac = NULL;
    k->chunks = NULL;
    k->free_slots = NULL;
    k->queue_head = k->queue_tail = NULL;
    k->pending = 0;
    k->in_redis = 0;
    k->backoff_ms = 0;
    k->gai_busy = false;
    k->ever_ready = false;
    k->sha[0] = '\0';
    snprintf(k->last_error, sizeof k->last_error, "not connected yet");
    uv_timer_init(k->loop, &k->timer);
    uv_unref((uv_handle_t *)&k->timer);
    k->timer.data = k;
    k->timer_open = true;
    k->state = CONN_DOWN;
    conn_connect(k);
}

static void conn_worker_stop(vie_app *app, void *loop, void *arg)
{
    rlr_conn *k = arg;
    if (k->state == CONN_IDLE) return;
    /* After the drain nothing should wait on Redis; what still does gets
     * its on_backend_error decision now. */
    k->state = CONN_IDLE;
    redisAsyncContext *ac = k->ac;
    k->ac = NULL;
    if (ac) redisAsyncFree(ac); /* pending replies: NULL, a connection error each */
    snprintf(k->last_error, sizeof k->last_error, "the worker is stopping");
    queue_fail(k, RLR_ERR_CONNECTION, k->last_error);
    if (k->gai_busy) uv_cancel((uv_req_t *)&k->gai); /* its callback sees IDLE */
    uv_timer_stop(&k->timer);
    uv_close((uv_handle_t *)&k->timer, NULL); /* k outlives the loop (freed with the app) */
    k->timer_open = false;
    rlr_chunk *ch = k->chunks;
    k->chunks = NULL;
    k->free_slots = NULL;
    for (rlr_chunk *next; ch; ch = next) {
        next = ch->next; /* the last close callback frees the chunk */
        for (int i = 0; i < RLR_CHUNK; i++) {
            rlr_slot *s = &ch->slots[i];
            if (s->waiting) { /* cannot be: every path above ended it */
                LOG_WARN("rate_limit: a request was still waiting on Redis at the worker's stop");
                s->waiting = false;
            }
            uv_close((uv_handle_t *)&s->timer, on_slot_timer_closed);
        }
    }
    k->loop = NULL;
}

/* ------------------------------------------------------------------ */
/* Decisions                                                           */

/* A reply's integers, as gcra_decide's result. */
static bool parse_reply(const redisReply *r, uint32_t burst, gcra_result *out)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) return false;
    long long v[4];
    for (int i = 0; i < 4; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0) return false;
        v[i] = r->element[i]->integer;
    }
    if (v[0] > 1 || (uint64_t)v[1] >= burst) return false;
    out->allowed = v[0] == 1;
    out->remaining = (uint32_t)v[1];
    out->retry_after_ns = (uint64_t)v[2];
    out->reset_ns = (uint64_t)v[3];
    return true;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    rlr_slot *s = privdata;
    rlr_conn *k = s->conn;
    redisReply *r = reply;
    s->in_redis = false;
    k->in_redis--;
    if (r) k->owed_since_ns = now_ns();
    if (!s->waiting) { /* late: the request timed out or ended */
        slot_settle(s);
        return;
    }
    if (!r) {
        slot_finish(s, RLR_ERR_CONNECTION, NULL,
                    k->state == CONN_READY ? "the connection was lost" : k->last_error);
        return;
    }
    char why[200];
    if (r->type == REDIS_REPLY_ERROR) {
        /* The script cache was flushed (a restart, SCRIPT FLUSH): load it
         * and send once more, on the same connection, in order. */
        if (!strncmp(r->str, "NOSCRIPT", 8) && !s->retried && k->ac == ac &&
            k->state == CONN_READY) {
            s->retried = true;
            const char *argv[] = {"SCRIPT", "LOAD", rlr_script};
            size_t lens[] = {6, 4, sizeof rlr_script - 1};
            const char *err = NULL;
            if (redisAsyncCommandArgv(ac, on_script_loaded, NULL, 3, argv, lens) == REDIS_OK) {
                slot_send(s, &err);
                if (s->in_redis) return;
            }
            snprintf(why, sizeof why, "the script was not loaded and cannot be sent again");
            slot_finish(s, RLR_ERR_REPLY, NULL, why);
            return;
        }
        snprintf(why, sizeof why, "Redis answered: %.160s", r->str);
        slot_finish(s, RLR_ERR_REPLY, NULL, why);
        return;
    }
    gcra_result res;
    if (!parse_reply(r, s->burst, &res)) {
        slot_finish(s, RLR_ERR_REPLY, NULL,
                    "the script's reply is not {allowed, remaining, retry_after, reset}");
        return;
    }
    slot_finish(s, RLR_OK, &res, NULL);
}

/* EVALSHA on the connection; s->in_redis tells whether it went. */
static void slot_send(rlr_slot *s, const char **why)
{
    rlr_conn *k = s->conn;
    if (!k->ac || k->state != CONN_READY) {
        *why = k->last_error;
        return;
    }
    char T[24], burst[16], now[24] = "";
    snprintf(T, sizeof T, "%llu", (unsigned long long)s->T_us);
    snprintf(burst, sizeof burst, "%u", s->burst);
    if (s->has_now) snprintf(now, sizeof now, "%llu", (unsigned long long)s->now_us);
    const char *argv[] = {"EVALSHA", k->sha, "1", s->key, T, burst, now};
    size_t lens[] = {7, 40, 1, s->key_len, strlen(T), strlen(burst), strlen(now)};
    if (redisAsyncCommandArgv(k->ac, on_reply, s, 7, argv, lens) != REDIS_OK) {
        *why = "the command could not be queued on the connection";
        return;
    }
    s->in_redis = true;
    if (k->in_redis++ == 0) k->owed_since_ns = now_ns();
}

static void on_timeout(uv_timer_t *t)
{
    rlr_slot *s = t->data;
    rlr_conn *k = s->conn;
    rlr *lim = s->lim;
    char why[120];
    snprintf(why, sizeof why, "no answer within %u ms", lim->timeout_ms);
    bool sent = s->in_redis;
    slot_finish(s, RLR_ERR_TIMEOUT, NULL, why);
    /* A connection that answers nothing at all for long (a stopped or
     * unreachable server, a half-open TCP connection) is made again. */
    uint64_t stall = (uint64_t)lim->timeout_ms * 10;
    if (stall < RLR_STALL_MIN_MS) stall = RLR_STALL_MIN_MS;
    if (sent && k->state == CONN_READY && k->in_redis > 0 &&
        now_ns() - k->owed_since_ns > stall * MS) {
        snprintf(why, sizeof why, "no answer for more than %llu ms: connecting again",
                 (unsigned long long)stall);
        conn_lost(k, why, true);
    }
}

rlr_error rlr_decide(rlr *b, vie_ctx *c, const char *key, size_t len, uint64_t T_us, uint32_t burst,
                     bool has_now, uint64_t now_us, const char **detail)
{
    rlr_conn *k = b->conn;
    if (!k || !k->loop || vie_loop(c) != k->loop) {
        *detail = "no Redis connection on this loop (the WORKER_START hook did not run here)";
        return RLR_ERR_CONNECTION;
    }
    if (k->state == CONN_DOWN || k->state == CONN_IDLE) {
        *detail = k->last_error;
        return RLR_ERR_CONNECTION;
    }
    if (len > RLR_KEY_MAX) {
        *detail = "the key is too long";
        return RLR_ERR_REPLY;
    }
    if (k->pending >= RLR_MAX_PENDING) {
        *detail = "too many decisions already waiting for Redis";
        return RLR_ERR_TIMEOUT;
    }
    rlr_slot *s = slot_take(k);
    if (!s) {
        *detail = "out of memory for a pending decision";
        return RLR_ERR_CONNECTION;
    }
    s->lim = b;
    s->T_us = T_us;
    s->burst = burst;
    s->has_now = has_now;
    s->now_us = now_us;
    s->key_len = (uint16_t)len;
    memcpy(s->key, key, len);
    if (k->state == CONN_READY) {
        slot_send(s, detail);
        if (!s->in_redis) {
            slot_settle(s);
            return RLR_ERR_CONNECTION;
        }
    } else {
        queue_push(k, s);
    }
    /* Only now that it is under way: a cancel callback must never point
     * at a slot the request is not parked on. */
    s->ref = vie_ref_of(c);
    s->waiting = true;
    vie_on_cancel(c, on_cancel, s);
    uv_update_time(k->loop); /* the cached time may be stale: the timeout would shrink */
    uv_timer_start(&s->timer, on_timeout, b->timeout_ms, 0);
    return RLR_OK;
}

/* ------------------------------------------------------------------ */
/* Limiters                                                            */

rlr *rlr_new(const rlr_config *cfg, rlr_done_fn done, void *owner)
{
    rlr *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->limiter = strdup(cfg->limiter ? cfg->limiter : "rate_limit");
    b->address = strdup(cfg->address ? cfg->address : RLR_DEFAULT_ADDRESS);
    b->password = cfg->password ? strdup(cfg->password) : NULL;
    b->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : RLR_DEFAULT_TIMEOUT;
    b->done = done;
    b->owner = owner;
    b->cfg = *cfg;
    b->cfg.limiter = b->limiter;
    b->cfg.address = b->address;
    b->cfg.password = b->password;
    if (!b->limiter || !b->address || (cfg->password && !b->password)) {
        rlr_free(b);
        return NULL;
    }
    return b;
}

static bool same_server(const rlr *a, const rlr *b)
{
    return !strcmp(a->address, b->address) && a->cfg.db == b->cfg.db &&
           !a->password == !b->password && (!a->password || !strcmp(a->password, b->password));
}

static void conn_free(rlr_conn *k)
{
    if (!k) return;
    free(k->address);
    free(k->host);
    free(k->path);
    free(k->password);
    free(k);
}

int rlr_attach(rlr *b, vie_app *app, rlr *first)
{
    rlr *last = NULL;
    for (rlr *o = first; o; o = o->next) {
        if (!b->conn && o->conn && same_server(o, b)) {
            b->conn = o->conn;
            b->conn->refs++;
        }
        last = o;
    }
    if (last && last != b) last->next = b;
    if (b->conn) return VIE_OK;
    rlr_conn *k = calloc(1, sizeof *k);
    if (!k) return VIE_ENOMEM;
    const char *why = address_split(b->address, &k->host, &k->port, &k->path);
    k->address = strdup(b->address);
    k->password = b->password ? strdup(b->password) : NULL;
    k->db = b->cfg.db;
    k->refs = 1;
    if (why || !k->address || (b->password && !k->password)) {
        LOG_ERROR("rate_limit \"%s\": Redis address %s: %s", b->limiter, b->address,
                  why ? why : "out of memory");
        conn_free(k);
        return why ? VIE_EINVAL : VIE_ENOMEM;
    }
    b->conn = k;
    int rc = vie_app_hook_add(app, VIE_EV_WORKER_START, conn_worker_start, k);
    if (rc == VIE_OK) rc = vie_app_hook_add(app, VIE_EV_WORKER_STOP, conn_worker_stop, k);
    return rc;
}

void rlr_free(rlr *b)
{
    if (!b) return;
    if (b->conn && --b->conn->refs == 0) conn_free(b->conn);
    free(b->limiter);
    free(b->address);
    free(b->password);
    free(b);
}

const char *rlr_address(const rlr *b)
{
    return b->address;
}
