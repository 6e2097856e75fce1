/* rate_limit: a GCRA limit per client IP, header value, principal or
 * route, decided on a table in the app's shared memory so every worker
 * enforces one limit (backend local), or by a script in Redis so every
 * server does (backend redis). 429 with Retry-After past it;
 * RateLimit-Limit, -Remaining and -Reset on every response it lets
 * through or refuses. The arithmetic and the table are gcra.c, the Redis
 * transport rate_limit_redis.c; this file is the layer: keys, answers,
 * counters, on_backend_error and its log lines. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/app.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/log.h"
#include "core/metrics.h"
#include "mw/gcra.h"
#include "mw/mw.h"
#include "mw/rate_limit_redis.h"
#include "server/shm.h"

#define RL_MAX_KEYS       ((uint32_t)1 << 20)
#define RL_MAX_RATE       1e9 /* one request per ns: T >= 1 */
#define RL_LOG_PERIOD     1000
#define RL_MAX_RATE_REDIS 1e6  /* one request per µs: the script's T >= 1 */
#define RL_RECOVER_MS     1000 /* an incident ends at an answer this long after its last error */

/* Decisions, and the interval in force, in shared memory: totals
 * across workers, and one rate for all of them. */
typedef struct rl_counters {
    _Atomic uint64_t allowed;
    _Atomic uint64_t limited;
    _Atomic uint64_t shadow_limited;
    _Atomic uint64_t T_ns; /* in force: the configured T, or longer (mw_rate_limit_set_factor) */
    _Atomic uint64_t backend_errors[RLR_N_ERRORS]; /* by rlr_error (0 unused) */
} rl_counters;

typedef struct rl {
    char *name; /* the layer's: the limiter label of the metrics */
    char *header;
    vie_rate_key key;
    double rate;
    uint64_t T_ns; /* as configured; n->T_ns is the one in force */
    uint32_t burst;
    bool enforce;
    uint64_t (*clock_ns)(void);
    uint64_t sip[2];   /* the key of the keyed hash: clients cannot aim at one bucket */
    gcra_table *table; /* shared memory; NULL with backend redis */
    rl_counters *n;    /* shared memory */
    /* Backend redis. */
    rlr *rb;      /* the transport; NULL: backend local */
    char *prefix; /* of every key */
    bool local_clock;
    bool deny_on_error;
    uint64_t (*wall_ns)(void); /* clock: local (clock_ns, else CLOCK_REALTIME) */
    struct rl *next;           /* the app's next limiter, for /metrics */
    bool multi;                /* the app has more than one: their RateLimit fields meet */
    /* Per process (each worker logs for itself). */
    bool warned_principal;
    log_ratelimit shadow_log;
    /* The backend incident in progress (per worker): errors since its
     * first, by kind; the time of its first and of its last error. */
    bool failing;
    uint64_t fail_first_ns, fail_last_ns;
    uint64_t fail_n[RLR_N_ERRORS];
    char limit[16]; /* burst as text, for RateLimit-Limit */
} rl;

/* ------------------------------------------------------------------ */
/* SipHash-2-4 (Aumasson and Bernstein): the key -> bucket hash         */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash(const uint64_t k[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    const unsigned char *end = p + (len & ~(size_t)7);
    for (; p != end; p += 8) {
        uint64_t m;
        memcpy(&m, p, 8); /* little-endian hosts; the value only has to be stable */
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* A different key per kind of value, so an absent header ("-") and a
 * header whose value is "-" or empty are different buckets. */
static uint64_t key_hash(const rl *s, char kind, const char *p, size_t n)
{
    uint64_t k[2] = {s->sip[0] ^ (uint64_t)(unsigned char)kind, s->sip[1]};
    return siphash(k, p, n);
}

static void random_key(uint64_t k[2])
{
    if (getrandom(k, 2 * sizeof *k, 0) == (ssize_t)(2 * sizeof *k)) return;
    /* No entropy source: still unpredictable enough from outside. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)k;
}

/* ------------------------------------------------------------------ */
/* The layer                                                           */

static uint64_t mono_ns(void)
{
    return clock_now_ns();
}

/* The wall clock: clock: local passes it to Redis, where buckets outlive
 * this process and are shared with other machines. */
static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The value the request is limited by, in *v, and its kind: 'i', 'h',
 * 'p', 'r', or '-' (absent: one shared bucket). */
static char request_value(rl *s, vie_ctx *c, vie_str *out)
{
    vie_str v = {NULL, 0};
    char kind = '-';
    switch (s->key) {
    case VIE_RATE_KEY_IP:
        v = vie_client_ip(c);
        kind = 'i';
        break;
    case VIE_RATE_KEY_HEADER:
        v = vie_header(c, s->header);
        kind = 'h';
        break;
    case VIE_RATE_KEY_PRINCIPAL: {
        const char *p = vie_principal_get(c);
        if (p) {
            v = (vie_str){p, strlen(p)};
            kind = 'p';
        } else if (!s->warned_principal) {
            s->warned_principal = true;
            LOG_WARN("rate_limit \"%s\": a request on %s reached the limiter without a principal; "
                     "such requests share one bucket (logged once per worker)",
                     s->name, vie_route_label(c) ? vie_route_label(c) : "(no route)");
        }
        break;
    }
    case VIE_RATE_KEY_ROUTE: {
        const char *r = vie_route_label(c);
        if (r) {
            v = (vie_str){r, strlen(r)};
            kind = 'r';
        }
        break;
    }
    }
    if (!v.ptr) return '-';
    *out = v;
    return kind;
}

static uint64_t request_key(rl *s, vie_ctx *c)
{
    vie_str v = {NULL, 0};
    char kind = request_value(s, c, &v);
    if (kind == '-') return key_hash(s, '-', "", 0); /* absent: one shared bucket */
    return key_hash(s, kind, v.ptr, v.len);
}

/* The Redis key: the prefix, then "ip:<address>", "header:<value>",
 * "principal:<key>", "route:<label>", or "-" when absent. The same in
 * every server, so servers share buckets: a value longer than
 * RLR_MAX_KEY_VALUE becomes "#" and 16 hex digits of a hash with a fixed
 * key (not the per-limiter random key of the local table). */
static size_t redis_key(rl *s, vie_ctx *c, char out[RLR_KEY_MAX])
{
    static const uint64_t fixed[2] = {0x7669652e726c2e31ULL, 0x6b65792068617368ULL};
    vie_str v = {NULL, 0};
    char kind = request_value(s, c, &v);
    size_t n = strlen(s->prefix);
    memcpy(out, s->prefix, n);
    if (kind == '-') {
        out[n++] = '-';
        return n;
    }
    const char *name = kind == 'i'   ? "ip"
                       : kind == 'h' ? "header"
                       : kind == 'p' ? "principal"
                                     : "route";
    size_t nl = strlen(name);
    memcpy(out + n, name, nl);
    n += nl;
    if (v.len > RLR_MAX_KEY_VALUE) {
        n += (size_t)snprintf(out + n, RLR_KEY_MAX - n, "#%016llx",
                              (unsigned long long)siphash(fixed, v.ptr, v.len));
        return n;
    }
    out[n++] = ':';
    memcpy(out + n, v.ptr, v.len);
    return n + v.len;
}

static void add_u64(vie_ctx *c, const char *name, uint64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    vie_header_add(c, name, t);
}

/* The fields a limiter before this one added ("Name: value\r\n" lines
 * of the response being built): with several limiters on a route the
 * client gets one set, the most restrictive (lowest remaining), as the
 * IETF draft advises. Returns whether there were any; *remaining is
 * theirs. */
static bool earlier_fields(vie_ctx *c, uint64_t *remaining)
{
    static const char name[] = "RateLimit-Remaining: ";
    const char *h = c->res.hdrs, *end = h + c->res.hdrs_len;
    for (const char *line = h; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        if ((size_t)(eol - line) > sizeof name && !strncasecmp(line, name, sizeof name - 1)) {
            *remaining = strtoull(line + sizeof name - 1, NULL, 10);
            return true;
        }
        line = eol + 1;
    }
    return false;
}

static void drop_fields(vie_ctx *c)
{
    char *h = c->res.hdrs, *end = h + c->res.hdrs_len, *out = h;
    for (char *line = h; line < end;) {
        char *eol = memchr(line, '\n', (size_t)(end - line));
        char *next = eol ? eol + 1 : end;
        if (strncasecmp(line, "RateLimit-", 10) != 0) {
            memmove(out, line, (size_t)(next - line));
            out += next - line;
        }
        line = next;
    }
    c->res.hdrs_len = (uint32_t)(out - h);
}

static void add_headers(vie_ctx *c, const rl *s, const gcra_result *r)
{
    uint64_t theirs;
    if (s->multi && earlier_fields(c, &theirs)) {
        if (r->allowed && theirs <= r->remaining) return; /* theirs are tighter */
        drop_fields(c);
    }
    vie_header_add(c, "RateLimit-Limit", s->limit);
    add_u64(c, "RateLimit-Remaining", r->remaining);
    add_u64(c, "RateLimit-Reset", gcra_ceil_seconds(r->reset_ns));
}

/* "100 per second", "10 per hour": for the 429's detail. */
static void rate_text(char *out, size_t size, double rate)
{
    if (rate >= 1)
        snprintf(out, size, "%g per second", rate);
    else if (rate * 60 >= 1)
        snprintf(out, size, "%g per minute", rate * 60);
    else
        snprintf(out, size, "%g per hour", rate * 3600);
}

/* What a decision means for the request, whichever backend made it:
 * the same fields, counters, shadow log and 429. T: the interval in
 * force (ns), for the 429's text. */
static vie_status rl_apply(rl *s, vie_ctx *c, const gcra_result *r, uint64_t T)
{
    if (r->allowed) {
        s->n->allowed++;
        if (s->enforce) add_headers(c, s, r);
        return VIE_NEXT;
    }
    if (!s->enforce) {
        /* Shadow mode: the client sees nothing, the operator sees what
         * enforcing would refuse. */
        s->n->shadow_limited++;
        uint64_t suppressed = 0;
        if (log_ratelimit_allow(&s->shadow_log, s->clock_ns() / 1000000, &suppressed)) {
            const char *route = vie_route_label(c);
            LOG_WARN("rate_limit \"%s\" (enforce: false) would have refused a request on %s "
                     "(%llu more not logged since the last line)",
                     s->name, route ? route : "(no route)", (unsigned long long)suppressed);
        }
        return VIE_NEXT;
    }
    s->n->limited++;
    add_headers(c, s, r);
    uint64_t retry = gcra_ceil_seconds(r->retry_after_ns);
    add_u64(c, "Retry-After", retry);
    char rt[48], detail[160];
    rate_text(rt, sizeof rt, T == s->T_ns ? s->rate : 1e9 / (double)T);
    snprintf(detail, sizeof detail,
             "rate limit exceeded (%s requests at once, %s); retry in %llu s", s->limit, rt,
             (unsigned long long)retry);
    return vie_send_problem(c, 429, detail);
}

/* ------------------------------------------------------------------ */
/* Backend redis                                                       */

/* A request the backend could not decide: on_backend_error decides it.
 * One WARN line when an incident starts (per worker), not per request. */
static vie_status backend_error(rl *s, vie_ctx *c, rlr_error e, const char *detail)
{
    s->n->backend_errors[e]++;
    uint64_t now = clock_now_ns();
    s->fail_n[e]++;
    s->fail_last_ns = now;
    if (!s->failing) {
        s->failing = true;
        s->fail_first_ns = now;
        LOG_WARN("rate_limit \"%s\": Redis backend %s failing (%s: %s): requests are %s "
                 "(on_backend_error: %s) until it answers again",
                 s->name, rlr_address(s->rb), rlr_error_names[e], detail ? detail : "no detail",
                 s->deny_on_error && s->enforce ? "refused with 503" : "let through",
                 s->deny_on_error ? "deny" : "allow");
    }
    if (!s->enforce || !s->deny_on_error) return VIE_NEXT;
    vie_header_add(c, "Retry-After", "1");
    char d[160];
    snprintf(d, sizeof d, "rate limit backend unavailable (%s); refused by on_backend_error: deny",
             rlr_error_names[e]);
    return vie_send_problem(c, 503, d);
}

/* An answer in time: the end of an incident once a second has passed
 * since its last error (a backend that fails every other request is one
 * incident, not a line pair per request). */
static void backend_ok(rl *s)
{
    if (!s->failing) return;
    uint64_t now = clock_now_ns();
    if (now - s->fail_last_ns < RL_RECOVER_MS * 1000000ULL) return;
    s->failing = false;
    const uint64_t *f = s->fail_n;
    LOG_INFO("rate_limit \"%s\": Redis backend %s answers again; during the %.1f s incident "
             "%llu requests were decided by on_backend_error (%llu timeout, %llu connection, "
             "%llu reply)",
             s->name, rlr_address(s->rb), (double)(now - s->fail_first_ns) / 1e9,
             (unsigned long long)(f[RLR_ERR_TIMEOUT] + f[RLR_ERR_CONNECTION] + f[RLR_ERR_REPLY]),
             (unsigned long long)f[RLR_ERR_TIMEOUT], (unsigned long long)f[RLR_ERR_CONNECTION],
             (unsigned long long)f[RLR_ERR_REPLY]);
    memset(s->fail_n, 0, sizeof s->fail_n);
}

/* The script's answer (µs) or an error, for a request still parked. */
static void redis_done(void *owner, vie_ref ref, rlr_error err, const gcra_result *r,
                       const char *detail)
{
    rl *s = owner;
    vie_ctx *c = vie_ref_get(ref);
    if (!c) return;
    vie_status st;
    if (err != RLR_OK) {
        st = backend_error(s, c, err, detail);
    } else {
        backend_ok(s);
        gcra_result ns = *r;
        ns.retry_after_ns *= 1000;
        ns.reset_ns *= 1000;
        st = rl_apply(s, c, &ns, atomic_load_explicit(&s->n->T_ns, memory_order_relaxed));
    }
    vie_resume(ref, st);
}

/* The interval in whole µs, as the script counts (at least 1). */
static uint64_t T_us_of(uint64_t T_ns)
{
    uint64_t t = (T_ns + 500) / 1000;
    return t ? t : 1;
}

static vie_status redis_before(rl *s, vie_ctx *c, uint64_t T)
{
    char key[RLR_KEY_MAX];
    size_t n = redis_key(s, c, key);
    uint64_t now_us = s->local_clock ? s->wall_ns() / 1000 : 0;
    if (now_us >= RLR_MAX_NOW_US)
        return backend_error(s, c, RLR_ERR_REPLY, "the local clock is beyond 2^52 microseconds");
    const char *detail = NULL;
    rlr_error e =
        rlr_decide(s->rb, c, key, n, T_us_of(T), s->burst, s->local_clock, now_us, &detail);
    if (e == RLR_OK) return VIE_PENDING;
    return backend_error(s, c, e, detail);
}

static vie_status rl_before(vie_ctx *c, void *state)
{
    rl *s = state;
    uint64_t T = atomic_load_explicit(&s->n->T_ns, memory_order_relaxed);
    if (s->rb) return redis_before(s, c, T);
    gcra_result r;
    gcra_table_decide(s->table, request_key(s, c), T, s->burst, s->clock_ns, &r);
    return rl_apply(s, c, &r, T);
}

static void rl_free(void *state)
{
    rl *s = state;
    if (!s) return;
    rlr_free(s->rb);
    free(s->name);
    free(s->header);
    free(s->prefix);
    free(s);
}

/* One source for all the limiters of an app, so each metric family is
 * written once (HELP and TYPE, then every limiter's series). */
static void rl_metrics(vie_buf *b, void *arg)
{
    static const char *const results[] = {"allowed", "limited", "shadow_limited"};
    metrics_help(b, "vie_ratelimit_decisions_total", "counter",
                 "Rate limit decisions: allowed, limited (answered 429) or shadow_limited (would "
                 "have been refused; enforce: false)");
    for (const rl *s = arg; s; s = s->next) {
        uint64_t v[3] = {s->n->allowed, s->n->limited, s->n->shadow_limited};
        for (int i = 0; i < 3; i++) {
            buf_append_lit(b, "vie_ratelimit_decisions_total{limiter=\"");
            metrics_label(b, s->name);
            buf_printf(b, "\",result=\"%s\"} %llu\n", results[i], (unsigned long long)v[i]);
        }
    }
    bool local = false, redis = false;
    for (const rl *s = arg; s; s = s->next)
        *(s->rb ? &redis : &local) = true;
    if (local) {
        metrics_help(b, "vie_ratelimit_evictions_total", "counter",
                     "Rate limit keys dropped from a full table while their bucket was not yet "
                     "full again (their state was lost; backend local)");
        for (const rl *s = arg; s; s = s->next) {
            if (!s->table) continue;
            buf_append_lit(b, "vie_ratelimit_evictions_total{limiter=\"");
            metrics_label(b, s->name);
            buf_printf(b, "\"} %llu\n", (unsigned long long)gcra_table_evictions(s->table));
        }
    }
    if (redis) {
        metrics_help(b, "vie_ratelimit_backend_errors_total", "counter",
                     "Requests the Redis backend could not decide (decided by on_backend_error "
                     "instead): timeout, connection or reply (an error answer)");
        for (const rl *s = arg; s; s = s->next) {
            if (!s->rb) continue;
            for (int e = RLR_ERR_TIMEOUT; e < RLR_N_ERRORS; e++) {
                buf_append_lit(b, "vie_ratelimit_backend_errors_total{limiter=\"");
                metrics_label(b, s->name);
                buf_printf(b, "\",kind=\"%s\"} %llu\n", rlr_error_names[e],
                           (unsigned long long)s->n->backend_errors[e]);
            }
        }
    }
}

static int link_metrics(vie_app *app, rl *s)
{
    for (size_t i = 0; i < app->n_msources; i++) {
        if (app->msources[i].fn != rl_metrics) continue;
        rl *last = app->msources[i].arg;
        last->multi = s->multi = true;
        while (last->next) {
            last = last->next;
            last->multi = true;
        }
        last->next = s;
        return VIE_OK;
    }
    return metrics_add_source(app, rl_metrics, s);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

void vie_rate_limit_opts_init(vie_rate_limit_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->burst = 1;
    o->key = VIE_RATE_KEY_IP;
    o->max_keys = 65536;
    o->enforce = true;
    o->redis.timeout_ms = RLR_DEFAULT_TIMEOUT;
}

static bool is_token(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 127 || strchr("\"(),/:;<=>?@[\\]{}", *s)) return false;
    return true;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 127) return false;
    return true;
}

/* The Redis backend's options: why they are refused, or NULL. */
static const char *check_redis(const vie_rate_limit_opts *o, const char **opt)
{
    static char why[200];
    const vie_rate_redis_opts *r = &o->redis;
    *opt = "rate";
    if (o->rate > RL_MAX_RATE_REDIS) {
        snprintf(why, sizeof why,
                 "rate must be at most %g per second with backend redis (it counts in "
                 "microseconds), got %g",
                 RL_MAX_RATE_REDIS, o->rate);
        return why;
    }
    *opt = "redis.address";
    const char *bad = rlr_address_check(r->address ? r->address : RLR_DEFAULT_ADDRESS);
    if (bad) {
        snprintf(why, sizeof why, "%s", bad);
        return why;
    }
    *opt = "redis.prefix";
    if (r->prefix && (!*r->prefix || strlen(r->prefix) > RLR_MAX_PREFIX || !printable(r->prefix))) {
        snprintf(why, sizeof why,
                 "the key prefix must be 1 to %d printable characters without spaces",
                 RLR_MAX_PREFIX);
        return why;
    }
    *opt = "redis.timeout";
    if (r->timeout_ms > RLR_MAX_TIMEOUT) {
        snprintf(why, sizeof why, "timeout must be at most %d ms, got %u", RLR_MAX_TIMEOUT,
                 r->timeout_ms);
        return why;
    }
    *opt = "redis.password";
    if (r->password && (!*r->password || strlen(r->password) > RLR_MAX_PASSWORD)) {
        snprintf(why, sizeof why, "the password must be 1 to %d bytes (or absent)",
                 RLR_MAX_PASSWORD);
        return why;
    }
    *opt = "redis.db";
    if (r->db > RLR_MAX_DB) {
        snprintf(why, sizeof why, "db must be from 0 to %d, got %u", RLR_MAX_DB, r->db);
        return why;
    }
    return NULL;
}

/* Why o is refused, or NULL; *opt names the option. */
static const char *check_opts(const vie_rate_limit_opts *o, const char **opt, uint64_t *T_ns)
{
    static char why[160];
    *opt = "rate";
    if (!isfinite(o->rate) || o->rate <= 0 || o->rate > RL_MAX_RATE) {
        snprintf(why, sizeof why, "rate must be more than 0 and at most %g per second, got %g",
                 RL_MAX_RATE, o->rate);
        return why;
    }
    *T_ns = (uint64_t)llround(1e9 / o->rate);
    *opt = "burst";
    if (o->burst < 1) return "burst must be at least 1 (requests allowed at once)";
    if (*T_ns > GCRA_MAX_WINDOW_NS / o->burst) {
        snprintf(why, sizeof why,
                 "refilling a burst of %u at %g per second would take more than 9 years", o->burst,
                 o->rate);
        return why;
    }
    *opt = "key";
    if ((unsigned)o->key > VIE_RATE_KEY_ROUTE) return "key is not a vie_rate_key";
    *opt = "header";
    if (o->key == VIE_RATE_KEY_HEADER && (!o->header || !is_token(o->header)))
        return "key header needs the header's name (a token)";
    if (o->key != VIE_RATE_KEY_HEADER && o->header)
        return "header is only for key header (a header's value as the key)";
    *opt = "max_keys";
    if (o->max_keys < 1 || o->max_keys > RL_MAX_KEYS) {
        snprintf(why, sizeof why, "max_keys must be from 1 to %u, got %u", RL_MAX_KEYS,
                 o->max_keys);
        return why;
    }
    *opt = "backend";
    if ((unsigned)o->backend > VIE_RATE_BACKEND_REDIS) return "backend is not a vie_rate_backend";
    if (o->backend == VIE_RATE_BACKEND_REDIS) return check_redis(o, opt);
    return NULL;
}

/* The backend of the app's first Redis limiter (connections are shared
 * through its list), or NULL. */
static rlr *first_redis(vie_app *app)
{
    for (size_t i = 0; i < app->n_msources; i++) {
        if (app->msources[i].fn != rl_metrics) continue;
        for (const rl *s = app->msources[i].arg; s; s = s->next)
            if (s->rb) return s->rb;
    }
    return NULL;
}

static bool has_auth(const char *const *list)
{
    for (; list && *list; list++)
        if (!strcmp(*list, "auth") || !strncmp(*list, "auth.", 5)) return true;
    return false;
}

int vie_use_rate_limit(vie_app *app, const vie_layer_opts *lo, const vie_rate_limit_opts *o)
{
    const char *name = mw_name(lo, "rate_limit");
    if (!app) {
        LOG_ERROR("rate_limit \"%s\" refused: the app is NULL", name);
        return VIE_EINVAL;
    }
    if (!o) {
        LOG_ERROR("rate_limit \"%s\" refused: options are required (at least rate)", name);
        return VIE_EINVAL;
    }
    const char *opt, *why;
    uint64_t T_ns = 0;
    if ((why = check_opts(o, &opt, &T_ns))) {
        LOG_ERROR("rate_limit \"%s\" refused: option %s: %s", name, opt, why);
        return VIE_EINVAL;
    }
    if (o->backend == VIE_RATE_BACKEND_REDIS && !o->redis.prefix &&
        strlen("vie:rl::") + strlen(name) > RLR_MAX_PREFIX) {
        LOG_ERROR("rate_limit \"%s\" refused: option redis.prefix: the default key prefix "
                  "\"vie:rl:<layer name>:\" would be longer than %d bytes; give a prefix",
                  name, RLR_MAX_PREFIX);
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_use_rate_limit", name);

    rl *s = calloc(1, sizeof *s);
    if (!s) return VIE_ENOMEM;
    s->name = strdup(name);
    s->header = o->header ? strdup(o->header) : NULL;
    s->key = o->key;
    s->rate = o->rate;
    s->T_ns = T_ns;
    s->burst = o->burst;
    s->enforce = o->enforce;
    s->clock_ns = o->clock_ns ? o->clock_ns : mono_ns;
    s->shadow_log.interval_ms = RL_LOG_PERIOD;
    snprintf(s->limit, sizeof s->limit, "%u", o->burst);
    random_key(s->sip);
    s->n = shm_alloc(app->shm, sizeof *s->n);
    if (!s->name || (o->header && !s->header) || !s->n) {
        LOG_ERROR("rate_limit \"%s\" refused: out of memory (or shared memory)", name);
        rl_free(s);
        return VIE_ENOMEM;
    }
    if (o->backend == VIE_RATE_BACKEND_REDIS) {
        /* No table: the buckets are in Redis. No connection either (vie
         * check): the workers connect when they start. */
        const vie_rate_redis_opts *r = &o->redis;
        rlr_config cfg = {.limiter = name,
                          .address = r->address ? r->address : RLR_DEFAULT_ADDRESS,
                          .password = r->password,
                          .db = r->db,
                          .timeout_ms = r->timeout_ms ? r->timeout_ms : RLR_DEFAULT_TIMEOUT};
        s->rb = rlr_new(&cfg, redis_done, s);
        if (r->prefix) {
            s->prefix = strdup(r->prefix);
        } else {
            size_t size = strlen("vie:rl::") + strlen(name) + 1;
            if ((s->prefix = malloc(size))) snprintf(s->prefix, size, "vie:rl:%s:", name);
        }
        s->local_clock = r->local_clock;
        s->deny_on_error = o->deny_on_backend_error;
        s->wall_ns = o->clock_ns ? o->clock_ns : real_ns;
        if (!s->rb || !s->prefix) {
            LOG_ERROR("rate_limit \"%s\" refused: out of memory", name);
            rl_free(s);
            return VIE_ENOMEM;
        }
    } else {
        size_t tsize = gcra_table_size(o->max_keys);
        void *tmem = shm_alloc(app->shm, tsize);
        if (!tmem) {
            LOG_ERROR("rate_limit \"%s\" refused: no memory for its table of %u keys (%zu bytes "
                      "of shared memory)",
                      name, gcra_table_entries(o->max_keys), tsize);
            rl_free(s);
            return VIE_ENOMEM;
        }
        s->table = gcra_table_init(tmem, o->max_keys);
    }
    atomic_store(&s->n->T_ns, T_ns);

    /* key: principal reads what auth wrote: without auth before it every
     * request would share one bucket, so the pipeline must have auth. */
    vie_layer_opts l = lo ? *lo : (vie_layer_opts){0};
    const char *req[34];
    if (o->key == VIE_RATE_KEY_PRINCIPAL && !has_auth(l.requires)) {
        size_t n = 0;
        for (const char *const *r = l.requires; r && *r && n < 32; r++)
            req[n++] = *r;
        if (l.requires && l.requires[n]) {
            LOG_ERROR("rate_limit \"%s\" refused: more than 32 requires", name);
            rl_free(s);
            return VIE_EINVAL;
        }
        req[n++] = "auth";
        req[n] = NULL;
        l.requires = req;
    }
    vie_middleware base = {
        .name = "rate_limit", .phase = VIE_GUARD, .before = rl_before, .free_state = rl_free};
    /* The backend's own timeout must end a wait before the executor's. */
    if (s->rb)
        base.async_timeout_ms =
            (o->redis.timeout_ms ? o->redis.timeout_ms : RLR_DEFAULT_TIMEOUT) + 1000;
    rlr *first = s->rb ? first_redis(app) : NULL;
    int rc = mw_register(app, &l, &base, s);
    if (rc != VIE_OK) return rc; /* s is freed */
    /* Registered: s belongs to the app from here on. */
    if (s->rb && (rc = rlr_attach(s->rb, app, first)) != VIE_OK) {
        LOG_ERROR("rate_limit \"%s\": cannot set up its Redis backend: %s", name, vie_strerror(rc));
        return rc;
    }
    rc = link_metrics(app, s);
    if (rc != VIE_OK)
        LOG_ERROR("rate_limit \"%s\": its metrics are not shown: %s", name, vie_strerror(rc));
    return rc;
}

/* For the slo built-in's tighten action (mw.h). */
bool mw_rate_limit_exists(const vie_app *app, const char *layer_name)
{
    for (size_t i = 0; app && layer_name && i < app->n_layers; i++)
        if (app->layers[i]->mw.before == rl_before && !strcmp(app->layers[i]->mw.name, layer_name))
            return true;
    return false;
}

int mw_rate_limit_set_factor(vie_app *app, const char *layer_name, double factor)
{
    if (!app || !layer_name) {
        LOG_ERROR("mw_rate_limit_set_factor refused: %s is NULL",
                  app ? "the layer name" : "the app");
        return VIE_EINVAL;
    }
    if (!isfinite(factor) || factor <= 0 || factor > 1) {
        LOG_ERROR("rate_limit \"%s\": factor %g refused: it must be more than 0 and at most 1",
                  layer_name, factor);
        return VIE_EINVAL;
    }
    for (size_t i = 0; i < app->n_layers; i++) {
        const layer *l = app->layers[i];
        if (l->mw.before != rl_before || strcmp(l->mw.name, layer_name) != 0) continue;
        rl *s = l->state;
        /* rate * factor: a longer interval, kept within gcra.h's bounds */
        double t = (double)s->T_ns / factor, cap = (double)(GCRA_MAX_WINDOW_NS / s->burst);
        uint64_t T = t >= cap ? GCRA_MAX_WINDOW_NS / s->burst : (uint64_t)llround(t);
        atomic_store(&s->n->T_ns, T < s->T_ns ? s->T_ns : T);
        return VIE_OK;
    }
    LOG_ERROR("mw_rate_limit_set_factor refused: no rate_limit layer is named \"%s\"", layer_name);
    return VIE_EINVAL;
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

/* "100", 2.5, "100/s", "6000/m", "10/h": requests per second. */
static bool parse_rate(const char *t, double *out)
{
    char *end;
    double v = strtod(t, &end);
    if (end == t || !isfinite(v)) return false;
    while (*end == ' ')
        end++;
    double per = 1;
    if (*end == '/') {
        end++;
        while (*end == ' ')
            end++;
        switch (*end++) {
        case 's': per = 1; break;
        case 'm': per = 60; break;
        case 'h': per = 3600; break;
        default: return false;
        }
        while (*end == ' ')
            end++;
    }
    if (*end) return false;
    *out = v / per;
    return true;
}

/* redis: {address, prefix, timeout, password, db}, clock and
 * on_backend_error, which only backend redis takes (and max_keys only
 * local). Returns the errors recorded in the redis map's reader. */
static int redis_from_yaml(cfg_params *p, vie_rate_limit_opts *o)
{
    static const char *const clocks[] = {"redis", "local", NULL};
    static const char *const on_error[] = {"allow", "deny", NULL};
    bool redis = o->backend == VIE_RATE_BACKEND_REDIS;
    if (!redis) {
        static const char *const only[] = {"redis", "clock", "on_backend_error"};
        for (size_t i = 0; i < 3; i++)
            if (cfg_has(p, only[i]))
                cfg_error(p, only[i], "only with backend: redis (this limiter is local)");
        return 0;
    }
    if (cfg_has(p, "max_keys"))
        cfg_error(p, "max_keys",
                  "only with backend: local (with redis the buckets are Redis keys, which "
                  "expire)");
    cfg_params r;
    cfg_params_sub(p, "redis", &r);
    vie_rate_redis_opts *ro = &o->redis;
    if (cfg_get_str(&r, "address", &ro->address, NULL)) {
        const char *why = rlr_address_check(ro->address);
        if (why) cfg_error(&r, "address", "%s", why);
    }
    if (cfg_get_str(&r, "prefix", &ro->prefix, NULL) &&
        (!*ro->prefix || strlen(ro->prefix) > RLR_MAX_PREFIX || !printable(ro->prefix)))
        cfg_error(&r, "prefix", "expected 1 to %d printable characters without spaces",
                  RLR_MAX_PREFIX);
    cfg_get_ms(&r, "timeout", &ro->timeout_ms, 1, RLR_MAX_TIMEOUT, RLR_DEFAULT_TIMEOUT);
    if (cfg_get_str(&r, "password", &ro->password, NULL) &&
        (!*ro->password || strlen(ro->password) > RLR_MAX_PASSWORD))
        cfg_error(&r, "password",
                  "expected 1 to %d bytes (an unset ${VAR} without a default "
                  "is an error; leave the key out for no AUTH)",
                  RLR_MAX_PASSWORD);
    cfg_get_u32(&r, "db", &ro->db, 0, RLR_MAX_DB, 0);
    int errors = cfg_params_finish(&r);
    int clock = 0, deny = 0;
    cfg_get_enum(p, "clock", &clock, clocks, 0);
    ro->local_clock = clock == 1;
    cfg_get_enum(p, "on_backend_error", &deny, on_error, 0);
    o->deny_on_backend_error = deny == 1;
    return errors;
}

int mw_rate_limit_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    static const char *const keys[] = {"ip", "header", "principal", "route", NULL};
    static const char *const backends[] = {"local", "redis", NULL};
    vie_rate_limit_opts o;
    vie_rate_limit_opts_init(&o);

    cfg_require(p, "rate");
    const cfg_node *rn = cfg_get_node(p, "rate");
    if (rn && (rn->kind != CFG_SCALAR || !parse_rate(rn->text, &o.rate)))
        cfg_error(p, "rate",
                  "expected requests per second: a number, or \"N/s\", \"N/m\" or \"N/h\" "
                  "(\"100/s\", \"6000/m\", \"10/h\"), got %s",
                  rn->kind == CFG_SCALAR ? rn->text : cfg_kind_name(rn));
    cfg_get_u32(p, "burst", &o.burst, 1, UINT32_MAX, 1);
    int key = 0;
    cfg_get_enum(p, "key", &key, keys, 0);
    o.key = (vie_rate_key)key;
    cfg_get_str(p, "header", &o.header, NULL);
    cfg_get_u32(p, "max_keys", &o.max_keys, 1, RL_MAX_KEYS, o.max_keys);
    cfg_get_bool(p, "enforce", &o.enforce, true);
    int backend = 0;
    cfg_get_enum(p, "backend", &backend, backends, 0);
    o.backend = (vie_rate_backend)backend;
    int redis_errors = redis_from_yaml(p, &o);
    if (o.key == VIE_RATE_KEY_HEADER && !o.header)
        cfg_error(p, "header", "required with key: header (the name of the header to key on)");
    if (cfg_params_finish(p) || redis_errors) return VIE_EINVAL;

    const char *opt, *why;
    uint64_t T_ns;
    if ((why = check_opts(&o, &opt, &T_ns))) {
        cfg_error(p, opt, "%s", why);
        return VIE_EINVAL;
    }
    int rc = vie_use_rate_limit(app, lo, &o);
    if (rc != VIE_OK)
        cfg_error(p, NULL, "cannot add rate_limit \"%s\": %s", mw_name(lo, "rate_limit"),
                  vie_strerror(rc));
    return rc;
}
