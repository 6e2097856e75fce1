/* fault: injected delays and aborts for chaos tests (vie_mw.h).
 *
 * A matched request is delayed with probability delay_percent, then
 * aborted with abort_percent; trusted clients can ask for either with
 * X-Vie-Fault-Delay / X-Vie-Fault-Abort. A delay parks the request
 * (VIE_PENDING) on a libuv timer and resumes it from the timer callback,
 * so the loop never blocks. The abort is decided after the delay.
 *
 * Timers: a uv_timer_t must stay valid until its close callback, which
 * may run after the request ended, so timers never live in request
 * memory. Each process keeps a pool of them, made at the first delay
 * that finds the pool empty (at most max_active_faults are ever in use),
 * stopped and reused per request and closed only in the WORKER_STOP hook.
 * A cancelled request (deadline, client gone) stops its timer and gives
 * it back; nothing is closed or freed on the request path.
 *
 * Random draws: a generator per layer and per process (core/rand.h),
 * seeded from seed at WORKER_START; with workers > 0 the seed is mixed
 * with the worker's pid (the core gives layers no worker index), so
 * workers draw different streams. With workers: 0 a run is replayable:
 * the same seed and the same requests give the same faults. Seed 0 draws
 * a seed from the system, logged so the run can be replayed.
 *
 * Shared counters (/metrics): delays, aborts, overflows, untrusted fault
 * headers and the active delays, in the app's shared memory. Each worker
 * also records its own active delays in a slot, so a worker that dies
 * with delays in progress does not hold max_active_faults forever: the
 * next worker to start gives them back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/app.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/inflight.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rand.h"
#include "mw/mw.h"
#include "server/shm.h"

#define FAULT_MAX_MS       3600000u /* every delay is capped at an hour */
#define FAULT_CHUNK        16       /* timers made at once when the pool is empty */
#define FAULT_WORKER_SLOTS INFLIGHT_REGIONS
#define FAULT_DELAY_HEADER "X-Vie-Fault-Delay"
#define FAULT_ABORT_HEADER "X-Vie-Fault-Abort"

/* One worker's share of the active delays (see the top comment). */
typedef struct fault_worker_slot {
    _Atomic int32_t pid; /* 0: free */
    _Atomic uint64_t active;
} fault_worker_slot;

/* In shared memory: totals across workers. */
typedef struct fault_counters {
    _Atomic uint64_t delays;    /* delays started */
    _Atomic uint64_t aborts;    /* answers injected */
    _Atomic uint64_t overflow;  /* delays skipped at max_active_faults */
    _Atomic uint64_t untrusted; /* fault headers from clients outside trusted_cidrs */
    _Atomic uint64_t active;    /* delays in progress */
    fault_worker_slot workers[FAULT_WORKER_SLOTS];
} fault_counters;

typedef struct fault_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t bits;
} fault_cidr;

typedef struct fault fault;
typedef struct fault_chunk fault_chunk;

/* A delay in progress, or a free timer of the pool. */
typedef struct fault_timer {
    uv_timer_t t; /* initialized once, stopped and reused, closed at WORKER_STOP */
    fault *f;
    fault_chunk *chunk;
    struct fault_timer *next_free;
    vie_ref ref;
    int abort_status; /* from X-Vie-Fault-Abort; 0: draw after the delay */
    bool in_use;
} fault_timer;

struct fault_chunk {
    fault_chunk *next;
    int open; /* timers whose close callback has not run: the last frees the chunk */
    fault_timer timers[FAULT_CHUNK];
};

struct fault {
    char *name;
    char *detail; /* "fault injected by <name>" */
    double delay_percent, abort_percent;
    vie_delay_kind kind;
    uint32_t ms, min_ms, max_ms, stddev_ms;
    double mu, sigma; /* lognormal */
    int abort_status;
    uint32_t max_active;
    char **routes; /* NULL-terminated */
    size_t n_routes;
    uint8_t *route_on; /* by route index, made at freeze: is the route listed? */
    size_t n_route_on;
    char *match_header, *match_value;
    fault_cidr *cidrs;
    size_t n_cidrs;
    uint64_t seed; /* configured, or drawn when 0 */
    vie_app *app;
    fault_counters *n;  /* in shm */
    fault *next_in_app; /* the app's fault layers, for its one metrics source */

    /* This process's (each worker's copy after the fork). */
    rng rng;
    uv_loop_t *loop; /* set at WORKER_START; NULL: delays are skipped */
    fault_chunk *chunks;
    fault_timer *free_timers;
    fault_worker_slot *wslot;
    bool stopped; /* after WORKER_STOP: no timers to park on */
    bool warned_no_loop;
    log_ratelimit untrusted_rl;
};

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

/* Parse "10.0.0.0/8", "::1/128" or a bare address (all its bits). On
 * failure why says what is wrong. */
static bool cidr_parse(const char *s, fault_cidr *out, char *why, size_t n)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    char addr[INET6_ADDRSTRLEN];
    if (alen == 0 || alen >= sizeof addr) {
        snprintf(why, n, "expected an address with an optional /prefix length");
        return false;
    }
    memcpy(addr, s, alen);
    addr[alen] = 0;
    memset(out, 0, sizeof *out);
    int max;
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        snprintf(why, n, "\"%s\" is not an IPv4 or IPv6 address", addr);
        return false;
    }
    int bits = max;
    if (slash) {
        const char *p = slash + 1;
        bits = 0;
        if (!*p || strlen(p) > 3) bits = -1;
        for (; bits >= 0 && *p; p++)
            bits = *p >= '0' && *p <= '9' ? bits * 10 + (*p - '0') : -1;
        if (bits < 0 || bits > max) {
            snprintf(why, n, "the prefix length must be a number from 0 to %d", max);
            return false;
        }
    }
    out->bits = (uint8_t)bits;
    /* Host bits set ("10.0.0.1/8") usually mean a typo in the address or
     * the length: refuse rather than guess. */
    for (int i = bits; i < max; i++) {
        if (out->addr[i / 8] & (0x80 >> (i % 8))) {
            fault_cidr net = *out;
            for (int j = bits; j < max; j++)
                net.addr[j / 8] &= (uint8_t) ~(0x80 >> (j % 8));
            char text[INET6_ADDRSTRLEN];
            inet_ntop(out->family, net.addr, text, sizeof text);
            snprintf(why, n, "host bits are set after /%d: did you mean %s/%d?", bits, text, bits);
            return false;
        }
    }
    return true;
}

static bool cidr_contains(const fault_cidr *c, int family, const uint8_t *a)
{
    if (c->family != family) return false;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)full) != 0) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

/* Is the text address ip inside one of cidrs? An IPv4-mapped IPv6
 * address (a dual-stack listener's view of an IPv4 client) counts as its
 * IPv4 address. */
static bool ip_in(const fault_cidr *cidrs, size_t n, const char *ip, size_t len)
{
    char text[INET6_ADDRSTRLEN];
    if (!n || len == 0 || len >= sizeof text) return false;
    memcpy(text, ip, len);
    text[len] = 0;
    uint8_t a[16];
    int family;
    if (inet_pton(AF_INET, text, a) == 1) {
        family = AF_INET;
    } else if (inet_pton(AF_INET6, text, a) == 1) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        family = AF_INET6;
        if (memcmp(a, mapped, 12) == 0) {
            memmove(a, a + 12, 4);
            family = AF_INET;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&cidrs[i], family, a)) return true;
    return false;
}

/* For the unit tests, which cannot give the test kit a client address:
 * -1 when cidr does not parse, else whether ip is inside it. */
int mw_fault_cidr_match(const char *cidr, const char *ip);
int mw_fault_cidr_match(const char *cidr, const char *ip)
{
    fault_cidr c;
    char why[128];
    if (!cidr || !ip || !cidr_parse(cidr, &c, why, sizeof why)) return -1;
    return ip_in(&c, 1, ip, strlen(ip)) ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Validation, shared by the C API and YAML                            */

/* Where a problem is: the C option and the YAML section and key. */
typedef enum fault_sec { SEC_ROOT, SEC_DELAY, SEC_ABORT, SEC_MATCH } fault_sec;

typedef struct fault_problem {
    const char *option; /* the vie_fault_opts member */
    fault_sec sec;
    const char *key; /* the YAML key in sec */
    int item;        /* a list's entry at fault, or -1 */
    char msg[256];
} fault_problem;

#define PROBLEM(pr, opt, s, k, ...)                                                                \
    do {                                                                                           \
        (pr)->option = (opt);                                                                      \
        (pr)->sec = (s);                                                                           \
        (pr)->key = (k);                                                                           \
        (pr)->item = -1;                                                                           \
        snprintf((pr)->msg, sizeof(pr)->msg, __VA_ARGS__);                                         \
        return false;                                                                              \
    } while (0)

static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar(s[i])) return false;
    return true;
}

/* A routes entry: a pattern "/x" or a label "GET /x". */
static bool route_entry_ok(const char *r)
{
    if (r[0] == '/') return !strchr(r, ' ');
    const char *sp = strchr(r, ' ');
    return sp && is_token(r, (size_t)(sp - r)) && sp[1] == '/' && !strchr(sp + 1, ' ');
}

static bool percent_ok(double v)
{
    return v >= 0 && v <= 100; /* NaN fails */
}

static bool fault_check(const vie_fault_opts *o, fault_problem *pr)
{
    if (!percent_ok(o->delay_percent))
        PROBLEM(pr, "delay_percent", SEC_DELAY, "percent", "expected 0 to 100, got %g",
                o->delay_percent);
    if (!percent_ok(o->abort_percent))
        PROBLEM(pr, "abort_percent", SEC_ABORT, "percent", "expected 0 to 100, got %g",
                o->abort_percent);
    if (o->abort_status < 400 || o->abort_status > 599)
        PROBLEM(pr, "abort_status", SEC_ABORT, "status",
                "expected a status from 400 to 599, got %d", o->abort_status);
    if ((unsigned)o->delay_kind > VIE_DELAY_LOGNORMAL)
        PROBLEM(pr, "delay_kind", SEC_DELAY, "kind", "unknown delay kind %d", (int)o->delay_kind);
    const struct {
        const char *option, *key;
        uint32_t v;
    } ms[] = {{"delay_ms", "ms", o->delay_ms},
              {"delay_min_ms", "min_ms", o->delay_min_ms},
              {"delay_max_ms", "max_ms", o->delay_max_ms},
              {"delay_stddev_ms", "stddev_ms", o->delay_stddev_ms},
              {"delay_p50_ms", "p50_ms", o->delay_p50_ms},
              {"delay_p99_ms", "p99_ms", o->delay_p99_ms}};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (ms[i].v > FAULT_MAX_MS)
            PROBLEM(pr, ms[i].option, SEC_DELAY, ms[i].key,
                    "expected at most 1h (%u ms), got %u ms", FAULT_MAX_MS, ms[i].v);
    if (o->delay_percent > 0) {
        switch (o->delay_kind) {
        case VIE_DELAY_FIXED:
            if (o->delay_ms == 0)
                PROBLEM(pr, "delay_ms", SEC_DELAY, "ms",
                        "a fixed delay needs ms > 0 (a 0 ms delay injects nothing)");
            break;
        case VIE_DELAY_UNIFORM:
            if (o->delay_min_ms > o->delay_max_ms)
                PROBLEM(pr, "delay_min_ms", SEC_DELAY, "min_ms",
                        "min_ms (%u) must not be above max_ms (%u)", o->delay_min_ms,
                        o->delay_max_ms);
            if (o->delay_max_ms == 0)
                PROBLEM(pr, "delay_max_ms", SEC_DELAY, "max_ms",
                        "a uniform delay needs max_ms > 0 (0 ms injects nothing)");
            break;
        case VIE_DELAY_NORMAL:
            if (o->delay_ms == 0 && o->delay_stddev_ms == 0)
                PROBLEM(pr, "delay_ms", SEC_DELAY, "ms",
                        "a normal delay needs a mean (ms) or a stddev_ms above 0");
            break;
        case VIE_DELAY_LOGNORMAL:
            if (o->delay_p50_ms == 0)
                PROBLEM(pr, "delay_p50_ms", SEC_DELAY, "p50_ms",
                        "a lognormal delay needs p50_ms > 0");
            if (o->delay_p99_ms < o->delay_p50_ms)
                PROBLEM(pr, "delay_p99_ms", SEC_DELAY, "p99_ms",
                        "p99_ms (%u) must not be below p50_ms (%u)", o->delay_p99_ms,
                        o->delay_p50_ms);
            break;
        }
    }
    int i = 0;
    for (const char *const *r = o->routes; r && *r; r++, i++)
        if (!route_entry_ok(*r)) {
            pr->option = "routes", pr->sec = SEC_ROOT, pr->key = "routes", pr->item = i;
            snprintf(pr->msg, sizeof pr->msg,
                     "routes[%d] \"%s\" is neither a pattern (\"/x\") nor a route label "
                     "(\"GET /x\")",
                     i, *r);
            return false;
        }
    if (o->match_header && !is_token(o->match_header, strlen(o->match_header)))
        PROBLEM(pr, "match_header", SEC_MATCH, "header", "\"%s\" is not a header name",
                o->match_header);
    if (o->match_value && !o->match_header)
        PROBLEM(pr, "match_value", SEC_MATCH, "value", "a value needs a header to compare with");
    i = 0;
    for (const char *const *c = o->trusted_cidrs; c && *c; c++, i++) {
        fault_cidr cidr;
        char why[160];
        if (!cidr_parse(*c, &cidr, why, sizeof why)) {
            pr->option = "trusted_cidrs", pr->sec = SEC_ROOT, pr->key = "trusted_cidrs";
            pr->item = i;
            snprintf(pr->msg, sizeof pr->msg, "trusted_cidrs[%d] \"%s\": %s", i, *c, why);
            return false;
        }
    }
    if (o->max_active_faults == 0)
        PROBLEM(pr, "max_active_faults", SEC_ROOT, "max_active_faults",
                "expected at least 1 (use a delay percent of 0 for no delays)");
    return true;
}

/* ------------------------------------------------------------------ */
/* Active delays, across workers                                       */

static bool active_acquire(fault *f)
{
    uint64_t cur = atomic_load_explicit(&f->n->active, memory_order_relaxed);
    do {
        if (cur >= f->max_active) return false;
    } while (!atomic_compare_exchange_weak(&f->n->active, &cur, cur + 1));
    if (f->wslot) f->wslot->active++;
    return true;
}

static void active_release(fault *f)
{
    if (f->wslot) f->wslot->active--;
    f->n->active--;
}

/* This worker's slot; first give back the delays of workers that died
 * holding some (their pid is gone, or reused by this very process). */
static void worker_slot_claim(fault *f)
{
    int32_t me = (int32_t)getpid();
    f->wslot = NULL;
    for (int i = 0; i < FAULT_WORKER_SLOTS; i++) {
        fault_worker_slot *s = &f->n->workers[i];
        int32_t pid = atomic_load(&s->pid);
        if (pid <= 0) continue;
        if (pid != me && !(kill(pid, 0) != 0 && errno == ESRCH)) continue;
        if (!atomic_compare_exchange_strong(&s->pid, &pid, -1)) continue; /* another claims it */
        uint64_t held = atomic_exchange(&s->active, 0);
        if (held) {
            f->n->active -= held;
            LOG_WARN("fault %s: %llu delays of worker %d, which ended with them in progress, are "
                     "released",
                     f->name, (unsigned long long)held, (int)pid);
        }
        atomic_store(&s->pid, 0);
    }
    for (int i = 0; i < FAULT_WORKER_SLOTS && !f->wslot; i++) {
        int32_t zero = 0;
        if (atomic_compare_exchange_strong(&f->n->workers[i].pid, &zero, me))
            f->wslot = &f->n->workers[i];
    }
}

/* ------------------------------------------------------------------ */
/* The timer pool                                                      */

static fault_timer *timer_take(fault *f)
{
    if (!f->free_timers) {
        fault_chunk *ch = calloc(1, sizeof *ch);
        if (!ch) return NULL;
        for (int i = 0; i < FAULT_CHUNK; i++) {
            fault_timer *t = &ch->timers[i];
            uv_timer_init(f->loop, &t->t);
            uv_unref((uv_handle_t *)&t->t); /* the connection holds the loop, not a fault */
            t->t.data = t;
            t->f = f;
            t->chunk = ch;
            t->next_free = f->free_timers;
            f->free_timers = t;
        }
        ch->open = FAULT_CHUNK;
        ch->next = f->chunks;
        f->chunks = ch;
    }
    fault_timer *t = f->free_timers;
    f->free_timers = t->next_free;
    t->next_free = NULL;
    t->in_use = true;
    return t;
}

static void timer_give(fault *f, fault_timer *t)
{
    t->in_use = false;
    t->ref = (vie_ref){0};
    t->next_free = f->free_timers;
    f->free_timers = t;
}

static void on_timer_closed(uv_handle_t *h)
{
    fault_timer *t = h->data;
    fault_chunk *ch = t->chunk;
    if (--ch->open == 0) free(ch);
}

/* ------------------------------------------------------------------ */
/* The layer                                                           */

static bool route_matches(const fault *f, vie_ctx *c)
{
    if (!f->routes) return true;
    const route_entry *r = c->route; /* the 404 chain's index is past the table */
    return r && r->index < f->n_route_on && f->route_on[r->index];
}

static bool request_matches(const fault *f, vie_ctx *c)
{
    if (!route_matches(f, c)) return false;
    if (!f->match_header) return true;
    vie_str v = vie_header(c, f->match_header);
    if (!v.ptr) return false;
    if (!f->match_value) return true;
    return v.len == strlen(f->match_value) && memcmp(v.ptr, f->match_value, v.len) == 0;
}

/* A header's decimal value in [min, max], or -1. */
static int64_t header_number(vie_str v, int64_t min, int64_t max)
{
    if (v.len == 0 || v.len > 10) return -1;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') return -1;
        n = n * 10 + (v.ptr[i] - '0');
    }
    return n >= min && n <= max ? n : -1;
}

static uint32_t cap_ms(double ms)
{
    if (!(ms > 0)) return 0; /* negative (normal) and NaN */
    if (ms >= FAULT_MAX_MS) return FAULT_MAX_MS;
    return (uint32_t)(ms + 0.5);
}

static uint32_t draw_delay(fault *f)
{
    switch (f->kind) {
    case VIE_DELAY_FIXED: return f->ms;
    case VIE_DELAY_UNIFORM:
        return cap_ms(f->min_ms + rng_uniform(&f->rng) * (double)(f->max_ms - f->min_ms));
    case VIE_DELAY_NORMAL: /* truncated at 0 */
        return cap_ms(f->ms + (double)f->stddev_ms * rng_normal(&f->rng));
    case VIE_DELAY_LOGNORMAL: return cap_ms(rng_lognormal(&f->rng, f->mu, f->sigma));
    }
    return 0;
}

/* The abort decision, after any delay: VIE_DONE with the answer, or
 * VIE_NEXT. hdr_status: a trusted X-Vie-Fault-Abort, 0 if none. */
static vie_status decide_abort(fault *f, vie_ctx *c, int hdr_status)
{
    int status = hdr_status;
    if (!status && rng_chance(&f->rng, f->abort_percent)) status = f->abort_status;
    if (!status) return VIE_NEXT;
    f->n->aborts++;
    return vie_send_problem(c, status, f->detail);
}

static void on_delay_done(uv_timer_t *h)
{
    fault_timer *t = h->data;
    fault *f = t->f;
    vie_ref ref = t->ref;
    int hdr_status = t->abort_status;
    timer_give(f, t);
    active_release(f);
    /* Live: a cancelled request stops its timer in on_cancel. */
    vie_ctx *c = vie_ref_get(ref);
    if (!c) return;
    vie_resume(ref, decide_abort(f, c, hdr_status));
}

/* The request is cancelled while delayed (deadline, client gone). */
static void on_cancel(void *arg)
{
    fault_timer *t = arg;
    uv_timer_stop(&t->t);
    timer_give(t->f, t);
    active_release(t->f);
}

/* A disabled layer's hook (a layer must have one). */
static vie_status fault_pass(vie_ctx *c, void *state)
{
    return VIE_NEXT;
}

static vie_status fault_before(vie_ctx *c, void *state)
{
    fault *f = state;
    if (!request_matches(f, c)) return VIE_NEXT;

    int64_t hdr_delay = -1;
    int hdr_status = 0;
    vie_str hd = vie_header(c, FAULT_DELAY_HEADER);
    vie_str ha = vie_header(c, FAULT_ABORT_HEADER);
    if (hd.ptr || ha.ptr) {
        vie_str ip = f->n_cidrs ? vie_client_ip(c) : (vie_str){"", 0};
        if (!ip_in(f->cidrs, f->n_cidrs, ip.ptr, ip.len)) {
            /* Ignored (a client outside must not slow the service down),
             * counted, and logged now and then so a wrong trusted_cidrs
             * shows. */
            f->n->untrusted++;
            uint64_t sup;
            if (log_ratelimit_allow(&f->untrusted_rl, clock_now_ns() / 1000000, &sup))
                LOG_INFO("fault %s: fault headers from %.*s ignored: not in trusted_cidrs "
                         "(%llu more since the last line)",
                         f->name, ip.len ? (int)ip.len : 9, ip.len ? ip.ptr : "(no addr)",
                         (unsigned long long)sup);
        } else {
            /* A trusted client asked for a fault: a malformed ask is
             * answered, not silently ignored. */
            if (hd.ptr && (hdr_delay = header_number(hd, 0, FAULT_MAX_MS)) < 0)
                return vie_send_problem(c, 400,
                                        FAULT_DELAY_HEADER
                                        " must be a number of milliseconds from 0 to 3600000");
            if (ha.ptr && (hdr_status = (int)header_number(ha, 400, 599)) < 0)
                return vie_send_problem(c, 400,
                                        FAULT_ABORT_HEADER " must be a status from 400 to 599");
        }
    }

    uint32_t ms = 0;
    if (hdr_delay >= 0)
        ms = (uint32_t)hdr_delay;
    else if (rng_chance(&f->rng, f->delay_percent))
        ms = draw_delay(f);
    if (ms > 0) {
        uv_loop_t *loop = vie_loop(c);
        if (!loop || loop != f->loop) {
            if (!f->warned_no_loop && !f->stopped)
                LOG_WARN("fault %s: no timers on this loop (its WORKER_START hook did not run "
                         "here): delays are skipped",
                         f->name);
            f->warned_no_loop = true;
        } else if (!active_acquire(f)) {
            f->n->overflow++;
        } else {
            fault_timer *t = timer_take(f);
            if (!t) {
                active_release(f);
                LOG_ERROR("fault %s: out of memory for a timer: delay skipped", f->name);
            } else {
                t->ref = vie_ref_of(c);
                t->abort_status = hdr_status;
                f->n->delays++;
                vie_on_cancel(c, on_cancel, t);
                uv_update_time(loop); /* the cached time may be stale: the delay would shrink */
                uv_timer_start(&t->t, on_delay_done, ms, 0);
                return VIE_PENDING;
            }
        }
    }
    return decide_abort(f, c, hdr_status);
}

/* ------------------------------------------------------------------ */
/* Worker events                                                       */

/* At freeze, when the routes exist: the routes list becomes a table by
 * route index (no string compare per request), and an entry that names
 * no route refuses the start, since it would never inject a fault. */
static int fault_freeze_check(vie_app *app, void *arg)
{
    fault *f = arg;
    if (!f->routes) return 0;
    free(f->route_on);
    f->n_route_on = 0;
    f->route_on = calloc(app->n_routes + 1, 1);
    if (!f->route_on) {
        LOG_ERROR("fault %s: out of memory for its route table", f->name);
        return 1;
    }
    f->n_route_on = app->n_routes;
    int problems = 0;
    for (size_t i = 0; i < f->n_routes; i++) {
        const char *want = f->routes[i];
        bool found = false;
        for (size_t k = 0; k < app->n_routes; k++) {
            const route_entry *r = app->routes[k];
            if (want[0] == '/' ? strcmp(r->pattern, want) : strcmp(r->label, want)) continue;
            f->route_on[r->index] = 1; /* a pattern names the route of every method */
            found = true;
        }
        if (!found) {
            LOG_ERROR("fault %s: routes entry \"%s\" matches no route (a label \"GET /x\" or a "
                      "full pattern \"/x\")",
                      f->name, want);
            problems++;
        }
    }
    return problems;
}

static void fault_start(vie_app *app, void *loop, void *arg)
{
    fault *f = arg;
    f->loop = loop;
    f->chunks = NULL;
    f->free_timers = NULL;
    f->stopped = false;
    f->warned_no_loop = false;
    uint64_t seed = app->opt.workers > 0 ? rng_mix(f->seed, (uint64_t)getpid()) : f->seed;
    rng_seed(&f->rng, seed);
    worker_slot_claim(f);
}

static void fault_stop(vie_app *app, void *loop, void *arg)
{
    fault *f = arg;
    /* From here on nothing parks on these timers (a resumed request can
     * let its connection's next request in, synchronously). */
    fault_chunk *chunks = f->chunks;
    f->loop = NULL;
    f->stopped = true;
    /* After the drain nothing should be delayed; a request that still is
     * goes on now rather than wait on a timer that is about to close. */
    for (fault_chunk *ch = chunks; ch; ch = ch->next)
        for (int i = 0; i < FAULT_CHUNK; i++) {
            fault_timer *t = &ch->timers[i];
            if (!t->in_use) continue;
            vie_ref ref = t->ref;
            uv_timer_stop(&t->t);
            timer_give(f, t);
            active_release(f);
            LOG_WARN("fault %s: a request was still delayed at the worker's stop: resumed",
                     f->name);
            vie_resume(ref, VIE_NEXT);
        }
    fault_chunk *ch = chunks;
    f->chunks = NULL;
    f->free_timers = NULL;
    for (fault_chunk *next; ch; ch = next) {
        next = ch->next; /* the chunk may be freed by the last close callback, later */
        for (int i = 0; i < FAULT_CHUNK; i++)
            uv_close((uv_handle_t *)&ch->timers[i].t, on_timer_closed);
    }
    if (f->wslot) atomic_store(&f->wslot->pid, 0);
    f->wslot = NULL;
}

/* ------------------------------------------------------------------ */
/* Metrics: one source per app for all its fault layers, so each series
 * has one HELP/TYPE header. */

static void fault_metrics(vie_buf *b, void *arg)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } series[] = {
        {"vie_fault_delays_injected_total", "counter", "Requests the fault layer delayed.",
         offsetof(fault_counters, delays)},
        {"vie_fault_aborts_injected_total", "counter", "Requests the fault layer answered.",
         offsetof(fault_counters, aborts)},
        {"vie_fault_overflow_total", "counter",
         "Delays skipped because max_active_faults were in progress.",
         offsetof(fault_counters, overflow)},
        {"vie_fault_untrusted_headers_total", "counter",
         "Requests with fault headers from clients outside trusted_cidrs (ignored).",
         offsetof(fault_counters, untrusted)},
        {"vie_fault_active", "gauge", "Delays in progress.", offsetof(fault_counters, active)},
    };
    for (size_t s = 0; s < sizeof series / sizeof series[0]; s++) {
        metrics_help(b, series[s].name, series[s].type, series[s].help);
        for (const fault *f = arg; f; f = f->next_in_app) {
            uint64_t v = *(const _Atomic uint64_t *)((const char *)f->n + series[s].off);
            buf_printf(b, "%s{layer=\"", series[s].name);
            metrics_label(b, f->name);
            buf_printf(b, "\"} %llu\n", (unsigned long long)v);
        }
    }
}

/* Add f to the app's list, making the metrics source with the first. */
static int metrics_join(vie_app *app, fault *f)
{
    for (size_t i = 0; i < app->n_msources; i++) {
        if (app->msources[i].fn != fault_metrics) continue;
        fault *last = app->msources[i].arg;
        while (last->next_in_app)
            last = last->next_in_app;
        last->next_in_app = f;
        return VIE_OK;
    }
    return metrics_add_source(app, fault_metrics, f);
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */

static void fault_free(void *state)
{
    fault *f = state;
    if (!f) return;
    for (size_t i = 0; i < f->n_routes; i++)
        free(f->routes[i]);
    free(f->routes);
    free(f->route_on);
    free(f->cidrs);
    free(f->match_header);
    free(f->match_value);
    free(f->detail);
    free(f->name);
    free(f);
}

void vie_fault_opts_init(vie_fault_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->delay_kind = VIE_DELAY_FIXED;
    o->abort_status = 503;
    o->max_active_faults = 100;
}

static const char *const kind_names[] = {"fixed", "uniform", "normal", "lognormal", NULL};

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = true;
    return d;
}

static fault *fault_new(vie_app *app, const char *name, const vie_fault_opts *o)
{
    fault *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    bool oom = false;
    f->app = app;
    f->name = dup_or_null(name, &oom);
    size_t dl = strlen(name) + sizeof "fault injected by ";
    f->detail = malloc(dl);
    if (f->detail) snprintf(f->detail, dl, "fault injected by %s", name);
    f->delay_percent = o->delay_percent;
    f->abort_percent = o->abort_percent;
    f->kind = o->delay_kind;
    f->ms = o->delay_ms;
    f->min_ms = o->delay_min_ms;
    f->max_ms = o->delay_max_ms;
    f->stddev_ms = o->delay_stddev_ms;
    if (o->delay_kind == VIE_DELAY_LOGNORMAL && o->delay_p50_ms)
        rng_lognormal_params(o->delay_p50_ms, o->delay_p99_ms, &f->mu, &f->sigma);
    f->abort_status = o->abort_status;
    f->max_active = o->max_active_faults;
    for (const char *const *r = o->routes; r && *r; r++)
        f->n_routes++;
    if (o->routes) {
        f->routes = calloc(f->n_routes + 1, sizeof *f->routes);
        if (!f->routes) oom = true;
        for (size_t i = 0; f->routes && i < f->n_routes; i++)
            f->routes[i] = dup_or_null(o->routes[i], &oom);
    }
    f->match_header = dup_or_null(o->match_header, &oom);
    f->match_value = dup_or_null(o->match_value, &oom);
    size_t nc = 0;
    for (const char *const *c = o->trusted_cidrs; c && *c; c++)
        nc++;
    if (nc) {
        f->cidrs = calloc(nc, sizeof *f->cidrs);
        if (!f->cidrs) oom = true;
        char why[160];
        for (size_t i = 0; f->cidrs && i < nc; i++)
            cidr_parse(o->trusted_cidrs[i], &f->cidrs[i], why, sizeof why); /* checked */
        f->n_cidrs = f->cidrs ? nc : 0;
    }
    f->untrusted_rl.interval_ms = 10000;
    f->n = shm_alloc(app->shm, sizeof *f->n);
    if (oom || !f->detail || !f->n) {
        fault_free(f);
        return NULL;
    }
    f->seed = o->seed;
    if (!f->seed) {
        f->seed = rng_entropy_seed();
        LOG_INFO("fault %s: seed 0: drew seed %llu from the system (set it to replay this run "
                 "with workers: 0)",
                 name, (unsigned long long)f->seed);
    }
    rng_seed(&f->rng, f->seed);
    return f;
}

int vie_use_fault(vie_app *app, const vie_layer_opts *lo, const vie_fault_opts *o)
{
    vie_fault_opts def;
    if (!o) {
        vie_fault_opts_init(&def);
        o = &def;
    }
    const char *name = mw_name(lo, "fault");
    if (!app) {
        LOG_ERROR("vie_use_fault refused: the app is NULL");
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_use_fault", name);
    fault_problem pr;
    if (!fault_check(o, &pr)) {
        LOG_ERROR("fault %s: option %s: %s", name, pr.option, pr.msg);
        return VIE_EINVAL;
    }
    vie_middleware base = {
        .name = "fault",
        .phase = VIE_GUARD,
        /* A delay is one VIE_PENDING of up to an hour: the layer's own
         * async limit must not cut it (the request deadline still does). */
        .async_timeout_ms = FAULT_MAX_MS + 1000,
    };
    if (!o->enabled) {
        /* In the chain, so names, order and requires stay as configured;
         * every request passes untouched. */
        base.before = fault_pass;
        int rc = mw_register(app, lo, &base, NULL);
        if (rc == VIE_OK) LOG_INFO("fault %s: disabled", name);
        return rc;
    }
    fault *f = fault_new(app, name, o);
    if (!f) {
        LOG_ERROR("fault %s: out of memory (or shared memory) for the layer", name);
        return VIE_ENOMEM;
    }
    base.before = fault_before;
    base.free_state = fault_free;
    int rc = mw_register(app, lo, &base, f); /* frees f on failure */
    if (rc != VIE_OK) return rc;
    /* Registered: f belongs to the app from here on. */
    if ((rc = app_add_freeze_check(app, fault_freeze_check, f)) != VIE_OK ||
        (rc = vie_app_hook_add(app, VIE_EV_WORKER_START, fault_start, f)) != VIE_OK ||
        (rc = vie_app_hook_add(app, VIE_EV_WORKER_STOP, fault_stop, f)) != VIE_OK ||
        (rc = metrics_join(app, f)) != VIE_OK) {
        LOG_ERROR("fault %s: cannot add its worker hooks or metrics: %s", name, vie_strerror(rc));
        return rc;
    }
    if (o->delay_percent <= 0 && o->abort_percent <= 0 && !f->n_cidrs)
        LOG_WARN("fault %s: enabled, but every percent is 0 and no trusted_cidrs are set: it "
                 "injects nothing",
                 name);
    else
        LOG_WARN("fault %s: ENABLED: delay %g%% (%s), abort %g%% with %d, %zu trusted CIDRs, "
                 "seed %llu",
                 name, o->delay_percent, kind_names[o->delay_kind], o->abort_percent,
                 o->abort_status, f->n_cidrs, (unsigned long long)f->seed);
    return VIE_OK;
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

int mw_fault_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_fault_opts o;
    vie_fault_opts_init(&o);
    cfg_get_bool(p, "enabled", &o.enabled, false);
    cfg_get_u64(p, "seed", &o.seed, 0, UINT64_MAX, 0);

    cfg_params d;
    cfg_params_sub(p, "delay", &d);
    cfg_get_percent(&d, "percent", &o.delay_percent, 0);
    int kind = VIE_DELAY_FIXED;
    cfg_get_enum(&d, "kind", &kind, kind_names, VIE_DELAY_FIXED);
    o.delay_kind = (vie_delay_kind)kind;
    cfg_get_ms(&d, "ms", &o.delay_ms, 0, FAULT_MAX_MS, 0);
    cfg_get_ms(&d, "min_ms", &o.delay_min_ms, 0, FAULT_MAX_MS, 0);
    cfg_get_ms(&d, "max_ms", &o.delay_max_ms, 0, FAULT_MAX_MS, 0);
    cfg_get_ms(&d, "stddev_ms", &o.delay_stddev_ms, 0, FAULT_MAX_MS, 0);
    cfg_get_ms(&d, "p50_ms", &o.delay_p50_ms, 0, FAULT_MAX_MS, 0);
    cfg_get_ms(&d, "p99_ms", &o.delay_p99_ms, 0, FAULT_MAX_MS, 0);
    /* Each kind's keys: required when delays are on, refused with another
     * kind (a p99_ms beside kind: fixed is a mistake, not a no-op). */
    static const char *const kind_keys[][3] = {
        [VIE_DELAY_FIXED] = {"ms", NULL, NULL},
        [VIE_DELAY_UNIFORM] = {"min_ms", "max_ms", NULL},
        [VIE_DELAY_NORMAL] = {"ms", "stddev_ms", NULL},
        [VIE_DELAY_LOGNORMAL] = {"p50_ms", "p99_ms", NULL},
    };
    static const char *const all_keys[] = {"ms",        "min_ms", "max_ms",
                                           "stddev_ms", "p50_ms", "p99_ms"};
    for (size_t i = 0; i < sizeof all_keys / sizeof all_keys[0]; i++) {
        bool mine = false;
        for (int k = 0; k < 2 && kind_keys[kind][k]; k++)
            mine |= strcmp(kind_keys[kind][k], all_keys[i]) == 0;
        if (mine && o.delay_percent > 0) cfg_require(&d, all_keys[i]);
        if (!mine && cfg_has(&d, all_keys[i]))
            cfg_error(&d, all_keys[i], "%s is not a setting of kind %s (it takes %s%s%s)",
                      all_keys[i], kind_names[kind], kind_keys[kind][0],
                      kind_keys[kind][1] ? " and " : "",
                      kind_keys[kind][1] ? kind_keys[kind][1] : "");
    }

    cfg_params a;
    cfg_params_sub(p, "abort", &a);
    cfg_get_percent(&a, "percent", &o.abort_percent, 0);
    cfg_get_int(&a, "status", &o.abort_status, 400, 599, 503);

    cfg_params m;
    cfg_params_sub(p, "match", &m);
    cfg_get_str(&m, "header", &o.match_header, NULL);
    cfg_get_str(&m, "value", &o.match_value, NULL);

    cfg_get_strv(p, "routes", &o.routes);
    cfg_get_strv(p, "trusted_cidrs", &o.trusted_cidrs);
    cfg_get_u32(p, "max_active_faults", &o.max_active_faults, 1, UINT32_MAX, 100);

    int errors = cfg_params_finish(&d) + cfg_params_finish(&a) + cfg_params_finish(&m);
    errors += cfg_params_finish(p);
    if (errors) return VIE_EINVAL;

    fault_problem pr;
    if (!fault_check(&o, &pr)) {
        cfg_params *sec = pr.sec == SEC_DELAY   ? &d
                          : pr.sec == SEC_ABORT ? &a
                          : pr.sec == SEC_MATCH ? &m
                                                : p;
        cfg_error_item(sec, pr.key, pr.item, "%s", pr.msg);
        return VIE_EINVAL;
    }
    int rc = vie_use_fault(app, lo, &o);
    if (rc != VIE_OK) cfg_error(p, NULL, "cannot register the fault layer: %s", vie_strerror(rc));
    return rc;
}
