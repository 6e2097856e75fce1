/* circuit_breaker: the layer around the pure machine of breaker.c
 * (vie_mw.h documents the behaviour; breaker.h the machine).
 *
 * Shared state: the machine's cb_core and a process-shared robust mutex
 * in app_shared_state(app, "circuit_breaker:<name>"), the window in a
 * second entry named after its layout. Both live in the named shared
 * region, mapped before any worker forks, so every worker (and the next
 * generation after a reload) sees the same breaker. Critical sections are
 * one call into breaker.c: no I/O, no user code; transitions are logged
 * after the unlock by the worker that made them.
 *
 * A reload keeps the state when the window's layout is the same; another
 * layout starts afresh (logged). Registration only reads an existing
 * state; a configuration is applied (new layout, new mode) when its first
 * worker starts, so a reload refused later, or `vie check`, changes
 * nothing, and each registration is numbered so an older generation's
 * worker starting late never undoes a newer one. While the old
 * generation drains, its workers find a layout that is not theirs and let
 * calls through unjudged rather than write into a window laid out
 * differently.
 *
 * Per request: the before hook takes a permit and keeps it, with the
 * start time, in request memory reached through a key; the after hook
 * (which runs whatever happened after the breaker) records the result.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/app.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/log.h"
#include "core/metrics.h"
#include "mw/breaker.h"
#include "mw/mw.h"

#define CB_MAGIC         0x63627231u /* "cbr1": the shared state is initialised */
#define CB_MAX_FILE      (1u << 20)
#define CB_MAX_STATUSES  64
#define CB_MAX_WAIT_MS   3600000u
#define CB_MAX_OPEN_MS   86400000u
#define CB_MAX_PROBES    1000u
#define CB_DEFAULT_CTYPE "text/plain; charset=utf-8"

/* In shared memory (app_shared_state): the lock and the machine. */
typedef struct cb_shared {
    pthread_mutex_t mu; /* PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST */
    uint32_t magic;
    uint64_t registrations; /* configurations registered so far (each gets the next number) */
    uint64_t applied;       /* the newest one that started serving */
    cb_core core;
} cb_shared;

typedef struct cbl cbl;
struct cbl {
    char *name;
    cb_config cfg;
    uint32_t min_calls_asked; /* before the clamp, for the INFO line */
    cb_shared *sh;            /* NULL: no shared memory: every call passes */
    void *win;
    uint64_t gen; /* this configuration's number in sh->registrations */
    uint64_t (*clock_ns)(void);
    uint64_t statuses[10]; /* failure_statuses, a bit per status 0..639 */
    int fb_status;
    char *fb_body; /* NULL: problem+json */
    size_t fb_len;
    char *fb_type;
    char *fb_file; /* for the INFO line */
    uint32_t fb_retry_after_s;
    char *detail[3]; /* problem details: open, half-open, forced open */
    cbl *next_in_app;
    /* This process's. */
    bool warned_stale;
    bool warned_lock;
};

/* One breaker's permit for one request, in request memory. */
typedef struct cb_call {
    cbl *owner;
    cb_permit permit;
    uint64_t start_ns;
    struct cb_call *next; /* the other breakers on the request's chain */
} cb_call;

/* The permits of a request: one key for every breaker and every app (its
 * slot is process-wide); each breaker finds its own in the list. */
VIE_KEY(cb_calls, cb_call *, VIE_KEY_OVERWRITE);

static uint64_t mono_ns(void)
{
    return clock_now_ns();
}

static cb machine(cbl *l)
{
    return (cb){.cfg = &l->cfg, .core = &l->sh->core, .win = l->win};
}

/* ------------------------------------------------------------------ */
/* The shared lock                                                     */

static bool cb_lock(cbl *l)
{
    int rc = pthread_mutex_lock(&l->sh->mu);
    if (rc == 0) return true;
    if (rc == EOWNERDEAD) {
        /* A process died inside a critical section: the totals may be
         * half-updated. Recount them from the window (if it is ours) and
         * go on. */
        if (cb_layout_matches(&l->sh->core, &l->cfg)) {
            cb m = machine(l);
            cb_recount(&m);
        }
        pthread_mutex_consistent(&l->sh->mu);
        LOG_WARN("circuit_breaker %s: a process died holding the breaker's lock: its window was "
                 "recounted",
                 l->name);
        return true;
    }
    if (!l->warned_lock)
        LOG_ERROR("circuit_breaker %s: cannot take the breaker's lock (%s): calls pass unjudged",
                  l->name, strerror(rc));
    l->warned_lock = true;
    return false;
}

static void cb_unlock(cbl *l)
{
    pthread_mutex_unlock(&l->sh->mu);
}

/* Is the shared window laid out for this layer's configuration? Not when
 * a newer generation changed it while this one drains. Under the lock. */
static bool current(cbl *l)
{
    if (cb_layout_matches(&l->sh->core, &l->cfg)) return true;
    if (!l->warned_stale)
        LOG_WARN("circuit_breaker %s: a newer configuration changed the window: this generation "
                 "lets calls through unjudged until it stops",
                 l->name);
    l->warned_stale = true;
    return false;
}

static void log_events(cbl *l, const cb_events *ev)
{
    for (int i = 0; i < ev->n; i++) {
        char msg[512];
        cb_format_event(&ev->ev[i], &l->cfg, msg, sizeof msg);
        if (ev->ev[i].to == CB_OPEN || ev->ev[i].to == CB_FORCED_OPEN)
            LOG_WARN("circuit_breaker %s: %s", l->name, msg);
        else
            LOG_INFO("circuit_breaker %s: %s", l->name, msg);
    }
}

/* ------------------------------------------------------------------ */
/* The layer                                                           */

static vie_status fallback(vie_ctx *c, cbl *l, const cb_permit *p)
{
    uint64_t secs = 0;
    int which = 0;
    switch (p->refused_by) {
    case CB_OPEN:
        secs = (p->retry_after_ns + CB_NS_PER_S - 1) / CB_NS_PER_S; /* rounded up */
        if (secs == 0) secs = 1;
        which = 0;
        break;
    case CB_HALF_OPEN:
        secs = 1; /* the probes should answer soon */
        which = 1;
        break;
    default:
        secs = l->fb_retry_after_s;
        which = 2;
        break;
    }
    if (secs) {
        char v[24];
        snprintf(v, sizeof v, "%llu", (unsigned long long)secs);
        vie_header_add(c, "Retry-After", v);
    }
    if (l->fb_body) return vie_send(c, l->fb_status, l->fb_type, l->fb_body, l->fb_len);
    return vie_send_problem(c, l->fb_status, l->detail[which]);
}

static vie_status cb_before(vie_ctx *c, void *state)
{
    cbl *l = state;
    if (!l->sh || l->cfg.mode == CB_MODE_DISABLED) return VIE_NEXT;
    uint64_t now = l->clock_ns();
    cb_events ev = {0};
    if (!cb_lock(l)) return VIE_NEXT;
    if (!current(l)) {
        cb_unlock(l);
        return VIE_NEXT;
    }
    cb m = machine(l);
    cb_permit p = cb_acquire(&m, now, &ev);
    cb_unlock(l);
    log_events(l, &ev);
    if (p.kind == CB_REFUSED) return fallback(c, l, &p);
    if (p.kind == CB_UNTRACKED) return VIE_NEXT;
    cb_call *head = cb_calls_get(c); /* the breakers before this one on the chain */
    cb_call *rec = vie_alloc(c, sizeof *rec);
    if (rec) *rec = (cb_call){.owner = l, .permit = p, .start_ns = now, .next = head};
    if (!rec || cb_calls_set(c, rec) != VIE_OK) {
        /* Out of request memory: let it through unjudged, and give a
         * probe slot back so the half-open period can still end. */
        if (cb_lock(l)) {
            cb_release(&m, &p);
            cb_unlock(l);
        }
        return VIE_NEXT;
    }
    return VIE_NEXT;
}

static bool listed(const cbl *l, int status)
{
    return status >= 0 && status < 640 && (l->statuses[status / 64] >> (status % 64)) & 1;
}

static void cb_after(vie_ctx *c, void *state)
{
    cbl *l = state;
    /* The list is built by the before hooks, each pushing its own. */
    cb_call *rec = NULL;
    for (cb_call *r = cb_calls_get(c); r; r = r->next)
        if (r->owner == l) {
            rec = r;
            break;
        }
    if (!rec || !l->sh) return;
    uint64_t now = l->clock_ns();
    int status = vie_response_status(c);
    bool gone = c->cancelled && status == 499; /* the client left: no verdict */
    bool failure = status >= 500 || listed(l, status) || c->truncated;
    uint64_t d = now > rec->start_ns ? now - rec->start_ns : 0;
    cb_events ev = {0};
    if (!cb_lock(l)) return;
    if (current(l)) {
        cb m = machine(l);
        if (gone)
            cb_release(&m, &rec->permit);
        else
            cb_record(&m, &rec->permit, failure, d, now, &ev);
    }
    cb_unlock(l);
    rec->owner = NULL; /* once */
    log_events(l, &ev);
}

/* ------------------------------------------------------------------ */
/* Metrics: one source per app for all its breakers                    */

typedef struct cb_snapshot {
    cb_state state, shadow;
    bool is_shadow;
    uint64_t kinds[CB_N_KINDS];
    uint64_t transitions[CB_N_STATES][CB_N_STATES];
} cb_snapshot;

static bool snapshot(cbl *l, cb_snapshot *s)
{
    memset(s, 0, sizeof *s);
    if (!l->sh || !cb_lock(l)) return false;
    const cb_core *core = &l->sh->core;
    s->state = cb_effective_state(core);
    s->shadow = (cb_state)core->state;
    s->is_shadow = core->mode == CB_MODE_METRICS_ONLY;
    memcpy(s->kinds, core->kinds, sizeof s->kinds);
    memcpy(s->transitions, core->transitions, sizeof s->transitions);
    cb_unlock(l);
    return true;
}

static void cb_metrics(vie_buf *b, void *arg)
{
    static const char *const kinds[CB_N_KINDS] = {"success", "failure", "slow", "not_permitted"};
    /* Always shown (0 until they happen): the machine's own transitions. */
    static const int usual[][2] = {{CB_CLOSED, CB_OPEN},
                                   {CB_OPEN, CB_HALF_OPEN},
                                   {CB_HALF_OPEN, CB_OPEN},
                                   {CB_HALF_OPEN, CB_CLOSED}};
    size_t n = 0;
    for (cbl *l = arg; l; l = l->next_in_app)
        n++;
    cb_snapshot *snaps = calloc(n ? n : 1, sizeof *snaps);
    bool *ok = calloc(n ? n : 1, sizeof *ok);
    if (!snaps || !ok) {
        free(snaps);
        free(ok);
        return;
    }
    size_t i = 0;
    for (cbl *l = arg; l; l = l->next_in_app, i++)
        ok[i] = snapshot(l, &snaps[i]);

    metrics_help(b, "vie_circuit_state", "gauge",
                 "Circuit breaker state: 1 for the current one, 0 for the others.");
    i = 0;
    for (cbl *l = arg; l; l = l->next_in_app, i++)
        for (int s = 0; ok[i] && s < CB_N_STATES; s++) {
            buf_printf(b, "vie_circuit_state{breaker=\"");
            metrics_label(b, l->name);
            buf_printf(b, "\",state=\"%s\"} %d\n", cb_state_name((cb_state)s),
                       snaps[i].state == (cb_state)s);
        }
    metrics_help(b, "vie_circuit_state_code", "gauge",
                 "Circuit breaker state: 0 closed, 1 open, 2 half_open, 3 disabled, 4 "
                 "forced_open, 5 metrics_only.");
    i = 0;
    for (cbl *l = arg; l; l = l->next_in_app, i++) {
        if (!ok[i]) continue;
        buf_printf(b, "vie_circuit_state_code{breaker=\"");
        metrics_label(b, l->name);
        buf_printf(b, "\"} %d\n", (int)snaps[i].state);
    }
    bool any_shadow = false;
    for (i = 0; i < n; i++)
        any_shadow |= ok[i] && snaps[i].is_shadow;
    if (any_shadow) {
        metrics_help(b, "vie_circuit_shadow_state_code", "gauge",
                     "The state a metrics_only circuit breaker would be in: 0 closed, 1 open, "
                     "2 half_open.");
        i = 0;
        for (cbl *l = arg; l; l = l->next_in_app, i++) {
            if (!ok[i] || !snaps[i].is_shadow) continue;
            buf_printf(b, "vie_circuit_shadow_state_code{breaker=\"");
            metrics_label(b, l->name);
            buf_printf(b, "\"} %d\n", (int)snaps[i].shadow);
        }
    }
    metrics_help(b, "vie_circuit_calls_total", "counter",
                 "Calls through the circuit breaker: success and failure are the calls recorded, "
                 "slow the slow ones among them, not_permitted the refused.");
    i = 0;
    for (cbl *l = arg; l; l = l->next_in_app, i++)
        for (int k = 0; ok[i] && k < CB_N_KINDS; k++) {
            buf_printf(b, "vie_circuit_calls_total{breaker=\"");
            metrics_label(b, l->name);
            buf_printf(b, "\",kind=\"%s\"} %llu\n", kinds[k],
                       (unsigned long long)snaps[i].kinds[k]);
        }
    metrics_help(b, "vie_circuit_transitions_total", "counter",
                 "Circuit breaker state transitions.");
    i = 0;
    for (cbl *l = arg; l; l = l->next_in_app, i++) {
        if (!ok[i]) continue;
        for (int f = 0; f < CB_N_STATES; f++)
            for (int t = 0; t < CB_N_STATES; t++) {
                bool always = false;
                for (size_t u = 0; u < sizeof usual / sizeof usual[0]; u++)
                    always |= usual[u][0] == f && usual[u][1] == t;
                uint64_t v = snaps[i].transitions[f][t];
                if (!v && !always) continue;
                buf_printf(b, "vie_circuit_transitions_total{breaker=\"");
                metrics_label(b, l->name);
                buf_printf(b, "\",from=\"%s\",to=\"%s\"} %llu\n", cb_state_name((cb_state)f),
                           cb_state_name((cb_state)t), (unsigned long long)v);
            }
    }
    free(snaps);
    free(ok);
}

static int metrics_join(vie_app *app, cbl *l)
{
    for (size_t i = 0; i < app->n_msources; i++) {
        if (app->msources[i].fn != cb_metrics) continue;
        cbl *last = app->msources[i].arg;
        while (last->next_in_app)
            last = last->next_in_app;
        last->next_in_app = l;
        return VIE_OK;
    }
    return metrics_add_source(app, cb_metrics, l);
}

/* ------------------------------------------------------------------ */
/* Validation, shared by the C API and YAML                            */

typedef enum cb_sec { SEC_ROOT, SEC_WINDOW, SEC_HALF_OPEN, SEC_P99, SEC_FALLBACK } cb_sec;

typedef struct cb_problem {
    const char *option; /* the vie_circuit_breaker_opts member */
    cb_sec sec;
    const char *key; /* the YAML key in sec */
    int item;        /* failure_statuses' entry at fault, or -1 */
    char msg[320];
} cb_problem;

#define PROBLEM(pr, opt, s, k, ...)                                                                \
    do {                                                                                           \
        (pr)->option = (opt);                                                                      \
        (pr)->sec = (s);                                                                           \
        (pr)->key = (k);                                                                           \
        (pr)->item = -1;                                                                           \
        snprintf((pr)->msg, sizeof(pr)->msg, __VA_ARGS__);                                         \
        return false;                                                                              \
    } while (0)

static bool rate_ok(double v)
{
    return v > 0 && v <= 100; /* NaN fails */
}

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

static bool cb_check(const vie_circuit_breaker_opts *o, cb_problem *pr)
{
    if ((unsigned)o->mode > VIE_CIRCUIT_MODE_METRICS_ONLY)
        PROBLEM(pr, "mode", SEC_ROOT, "mode", "unknown mode %d", (int)o->mode);
    if ((unsigned)o->window > VIE_CIRCUIT_WINDOW_TIME)
        PROBLEM(pr, "window", SEC_WINDOW, "type", "unknown window type %d", (int)o->window);
    if (o->window == VIE_CIRCUIT_WINDOW_COUNT &&
        (o->window_size < 1 || o->window_size > CB_MAX_COUNT))
        PROBLEM(pr, "window_size", SEC_WINDOW, "size", "a count window holds 1 to %u calls, got %u",
                CB_MAX_COUNT, o->window_size);
    if (o->window == VIE_CIRCUIT_WINDOW_TIME &&
        (o->window_size < 1 || o->window_size > CB_MAX_TIME))
        PROBLEM(pr, "window_size", SEC_WINDOW, "size",
                "a time window spans 1 to %u seconds, got %u", CB_MAX_TIME, o->window_size);
    if (o->min_calls < 1)
        PROBLEM(pr, "min_calls", SEC_ROOT, "min_calls", "expected at least 1, got 0");
    if (!rate_ok(o->failure_rate))
        PROBLEM(pr, "failure_rate", SEC_ROOT, "failure_rate",
                "expected a percentage above 0 and at most 100, got %g", o->failure_rate);
    if (!rate_ok(o->slow_rate))
        PROBLEM(pr, "slow_rate", SEC_ROOT, "slow_rate",
                "expected a percentage above 0 and at most 100, got %g", o->slow_rate);
    if (o->slow_ms < 1 || o->slow_ms > CB_MAX_WAIT_MS)
        PROBLEM(pr, "slow_ms", SEC_ROOT, "slow_duration",
                "expected a duration from 1ms to 1h, got %u ms", o->slow_ms);
    if (o->open_wait_ms < 1 || o->open_wait_ms > CB_MAX_WAIT_MS)
        PROBLEM(pr, "open_wait_ms", SEC_ROOT, "open_wait",
                "expected a duration from 1ms to 1h, got %u ms", o->open_wait_ms);
    if (!(o->open_wait_multiplier >= 1 && o->open_wait_multiplier <= 100))
        PROBLEM(pr, "open_wait_multiplier", SEC_ROOT, "open_wait_multiplier",
                "expected 1 to 100, got %g", o->open_wait_multiplier);
    if (o->open_wait_multiplier > 1 && o->open_wait_max_ms == 0)
        PROBLEM(pr, "open_wait_max_ms", SEC_ROOT, "open_wait_multiplier",
                "a multiplier of %g needs open_wait_max (the longest wait of the back-off)",
                o->open_wait_multiplier);
    if (o->open_wait_max_ms && o->open_wait_max_ms < o->open_wait_ms)
        PROBLEM(pr, "open_wait_max_ms", SEC_ROOT, "open_wait_max",
                "open_wait_max (%u ms) must not be below open_wait (%u ms)", o->open_wait_max_ms,
                o->open_wait_ms);
    if (o->open_wait_max_ms > CB_MAX_OPEN_MS)
        PROBLEM(pr, "open_wait_max_ms", SEC_ROOT, "open_wait_max",
                "expected at most 24h, got %u ms", o->open_wait_max_ms);
    if (o->half_open_calls < 1 || o->half_open_calls > CB_MAX_PROBES)
        PROBLEM(pr, "half_open_calls", SEC_HALF_OPEN, "calls", "expected 1 to %u probes, got %u",
                CB_MAX_PROBES, o->half_open_calls);
    if (o->half_open_max_wait_ms == 0)
        PROBLEM(pr, "half_open_max_wait_ms", SEC_HALF_OPEN, "max_wait",
                "must be above 0: without it a breaker whose probes never complete would stay "
                "half-open forever");
    if (o->half_open_max_wait_ms > CB_MAX_WAIT_MS)
        PROBLEM(pr, "half_open_max_wait_ms", SEC_HALF_OPEN, "max_wait",
                "expected a duration from 1ms to 1h, got %u ms", o->half_open_max_wait_ms);
    int i = 0;
    for (const int *s = o->failure_statuses; s && *s; s++, i++) {
        if (i >= CB_MAX_STATUSES)
            PROBLEM(pr, "failure_statuses", SEC_ROOT, "failure_statuses", "at most %d statuses",
                    CB_MAX_STATUSES);
        if (*s < 400 || *s > 599) {
            pr->option = "failure_statuses", pr->sec = SEC_ROOT, pr->key = "failure_statuses";
            pr->item = i;
            snprintf(pr->msg, sizeof pr->msg,
                     "failure_statuses[%d]: expected a status from 400 to 599, got %d", i, *s);
            return false;
        }
    }
    if (o->p99_ms > CB_MAX_WAIT_MS)
        PROBLEM(pr, "p99_ms", SEC_P99, "latency", "expected a duration from 1ms to 1h, got %u ms",
                o->p99_ms);
    if (o->p99_ms && !(o->p99_error_rate >= 0 && o->p99_error_rate < 100))
        PROBLEM(pr, "p99_error_rate", SEC_P99, "error_rate",
                "expected a percentage from 0 to below 100 (the rule needs a rate above it), got "
                "%g",
                o->p99_error_rate);
    if (!o->p99_ms && o->p99_error_rate != 0)
        PROBLEM(pr, "p99_error_rate", SEC_P99, "error_rate",
                "an error rate for the p99 rule needs its latency (p99_ms)");
    int st = o->fallback_status;
    if (st < 200 || st > 599 || st == 204 || st == 304)
        PROBLEM(pr, "fallback_status", SEC_FALLBACK, "status",
                "expected a status from 200 to 599 with a body (not 204 or 304), got %d", st);
    if (o->fallback_body && o->fallback_file)
        PROBLEM(pr, "fallback_file", SEC_FALLBACK, "file", "give a body or a file, not both");
    if (!o->fallback_body && !o->fallback_file && st < 400)
        PROBLEM(pr, "fallback_status", SEC_FALLBACK, "status",
                "the default answer is problem+json, which needs a status from 400 to 599; "
                "give a body or a file for %d",
                st);
    if (o->fallback_file && !*o->fallback_file)
        PROBLEM(pr, "fallback_file", SEC_FALLBACK, "file", "an empty path");
    if (o->fallback_content_type) {
        if (!o->fallback_body && !o->fallback_file)
            PROBLEM(pr, "fallback_content_type", SEC_FALLBACK, "content_type",
                    "a content type needs a body or a file (the default answer is "
                    "problem+json)");
        if (!*o->fallback_content_type || has_ctl(o->fallback_content_type))
            PROBLEM(pr, "fallback_content_type", SEC_FALLBACK, "content_type",
                    "must be a non-empty header value without control characters");
    }
    if (o->fallback_retry_after_s > 86400)
        PROBLEM(pr, "fallback_retry_after_s", SEC_FALLBACK, "retry_after",
                "expected at most 86400 seconds (a day), got %u", o->fallback_retry_after_s);
    return true;
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */

static void cbl_free(void *state)
{
    cbl *l = state;
    if (!l) return;
    free(l->name);
    free(l->fb_body);
    free(l->fb_type);
    free(l->fb_file);
    for (int i = 0; i < 3; i++)
        free(l->detail[i]);
    free(l);
}

void vie_circuit_breaker_opts_init(vie_circuit_breaker_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->mode = VIE_CIRCUIT_MODE_NORMAL;
    o->window = VIE_CIRCUIT_WINDOW_COUNT;
    o->window_size = 100;
    o->min_calls = 10;
    o->failure_rate = 50;
    o->slow_rate = 100;
    o->slow_ms = 60000;
    o->open_wait_ms = 60000;
    o->open_wait_multiplier = 1;
    o->half_open_calls = 10;
    o->half_open_max_wait_ms = 60000;
    o->fallback_status = 503;
}

/* Read path whole (at most CB_MAX_FILE bytes) into *out. */
static bool read_whole(const char *path, char **out, size_t *len, char *why, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, n, "fallback file %s cannot be read: %s", path, strerror(errno));
        return false;
    }
    char *buf = malloc(CB_MAX_FILE + 1);
    size_t got = buf ? fread(buf, 1, CB_MAX_FILE + 1, f) : 0;
    bool err = !buf || ferror(f);
    int e = errno;
    fclose(f);
    if (err) {
        free(buf);
        snprintf(why, n, "fallback file %s cannot be read: %s", path,
                 buf ? strerror(e) : "out of memory");
        return false;
    }
    if (got > CB_MAX_FILE) {
        free(buf);
        snprintf(why, n, "fallback file %s is over 1 MiB", path);
        return false;
    }
    *out = buf;
    *len = got;
    return true;
}

static char *dupf(const char *fmt, const char *a)
{
    size_t n = strlen(fmt) + strlen(a) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, a);
    return s;
}

/* The layer's private state from validated options. NULL with why set. */
static cbl *cbl_new(const char *name, const vie_circuit_breaker_opts *o, char *why, size_t n)
{
    cbl *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(why, n, "out of memory");
        return NULL;
    }
    l->name = strdup(name);
    l->detail[0] = dupf("circuit breaker %s is open", name);
    l->detail[1] = dupf("circuit breaker %s is half-open and its probes are in flight", name);
    l->detail[2] = dupf("circuit breaker %s is forced open", name);
    cb_config *c = &l->cfg;
    c->mode = (cb_mode)o->mode;
    c->window = o->window == VIE_CIRCUIT_WINDOW_TIME ? CB_WINDOW_TIME : CB_WINDOW_COUNT;
    c->window_size = o->window_size;
    l->min_calls_asked = o->min_calls;
    c->min_calls = c->window == CB_WINDOW_COUNT && o->min_calls > o->window_size ? o->window_size
                                                                                 : o->min_calls;
    c->failure_rate = o->failure_rate;
    c->slow_rate = o->slow_rate;
    c->slow_ns = (uint64_t)o->slow_ms * 1000000u;
    c->open_wait_ns = (uint64_t)o->open_wait_ms * 1000000u;
    c->open_wait_max_ns =
        (uint64_t)(o->open_wait_max_ms ? o->open_wait_max_ms : o->open_wait_ms) * 1000000u;
    c->open_wait_multiplier = o->open_wait_multiplier;
    c->half_open_calls = o->half_open_calls;
    c->half_open_max_wait_ns = (uint64_t)o->half_open_max_wait_ms * 1000000u;
    c->p99_ns = (uint64_t)o->p99_ms * 1000000u;
    c->p99_error_rate = o->p99_ms ? o->p99_error_rate : 0;
    for (const int *s = o->failure_statuses; s && *s; s++)
        l->statuses[*s / 64] |= 1ull << (*s % 64);
    l->fb_status = o->fallback_status;
    l->fb_retry_after_s = o->fallback_retry_after_s;
    l->clock_ns = o->clock_ns ? o->clock_ns : mono_ns;
    bool oom = !l->name || !l->detail[0] || !l->detail[1] || !l->detail[2];
    if (o->fallback_body) {
        l->fb_len = strlen(o->fallback_body);
        l->fb_body = strdup(o->fallback_body);
        oom |= !l->fb_body;
    } else if (o->fallback_file) {
        l->fb_file = strdup(o->fallback_file);
        oom |= !l->fb_file;
        if (!oom && !read_whole(o->fallback_file, &l->fb_body, &l->fb_len, why, n)) {
            cbl_free(l);
            return NULL;
        }
    }
    if (l->fb_body) {
        l->fb_type = strdup(o->fallback_content_type ? o->fallback_content_type : CB_DEFAULT_CTYPE);
        oom |= !l->fb_type;
    }
    if (oom) {
        snprintf(why, n, "out of memory");
        cbl_free(l);
        return NULL;
    }
    return l;
}

static void describe_window(cb_window_kind k, uint32_t size, uint64_t unit, char *out, size_t n)
{
    char p[48] = "";
    if (unit) {
        char d[24];
        cb_format_duration(unit, d, sizeof d);
        snprintf(p, sizeof p, ", p99 histogram at %s", d);
    }
    if (k == CB_WINDOW_COUNT)
        snprintf(out, n, "count of %u calls%s", size, p);
    else
        snprintf(out, n, "time of %u s%s", size, p);
}

/* The effective settings in one line. */
static void log_settings(const cbl *l, const char *state_note)
{
    const cb_config *c = &l->cfg;
    char win[80], slow[24], wait[24], wmax[24], hmax[24], p99[24];
    describe_window(c->window, c->window_size, 0, win, sizeof win);
    cb_format_duration(c->slow_ns, slow, sizeof slow);
    cb_format_duration(c->open_wait_ns, wait, sizeof wait);
    cb_format_duration(c->open_wait_max_ns, wmax, sizeof wmax);
    cb_format_duration(c->half_open_max_wait_ns, hmax, sizeof hmax);
    char backoff[64] = "";
    if (c->open_wait_multiplier > 1)
        snprintf(backoff, sizeof backoff, " (x%g per re-open, up to %s)", c->open_wait_multiplier,
                 wmax);
    char rule[96] = "off";
    if (c->p99_ns) {
        cb_format_duration(c->p99_ns, p99, sizeof p99);
        snprintf(rule, sizeof rule, "p99 > %s and failure rate > %g%%", p99, c->p99_error_rate);
    }
    char statuses[CB_MAX_STATUSES * 5 + 8] = "5xx";
    size_t at = strlen(statuses);
    for (int s = 400; s < 600 && at + 6 < sizeof statuses; s++)
        if (listed(l, s) && s < 500)
            at += (size_t)snprintf(statuses + at, sizeof statuses - at, ", %d", s);
    char fb[600];
    if (!l->fb_body)
        snprintf(fb, sizeof fb, "%d problem+json", l->fb_status);
    else if (l->fb_file)
        snprintf(fb, sizeof fb, "%d %s from %s (%zu bytes)", l->fb_status, l->fb_type, l->fb_file,
                 l->fb_len);
    else
        snprintf(fb, sizeof fb, "%d %s (%zu bytes)", l->fb_status, l->fb_type, l->fb_len);
    char clamp[64] = "";
    if (c->min_calls != l->min_calls_asked)
        snprintf(clamp, sizeof clamp, " (clamped from %u)", l->min_calls_asked);
    LOG_INFO("circuit_breaker %s: mode %s; window %s; min_calls %u%s; opens at failure rate >= "
             "%g%% or slow rate >= %g%% (slow: %s or more; failures: %s); p99 rule %s; open_wait "
             "%s%s; half_open %u probes within %s; fallback %s; state %s",
             l->name, cb_mode_name(c->mode), win, c->min_calls, clamp, c->failure_rate,
             c->slow_rate, slow, statuses, rule, wait, backoff, c->half_open_calls, hmax, fb,
             state_note);
}

/* Find or make the shared state. An existing one is only read here: the
 * configuration is applied to it (cb_start) when it starts serving, so a
 * reload that is refused later, or `vie check`, changes nothing. */
static int attach_shared(vie_app *app, cbl *l)
{
    char key[512];
    snprintf(key, sizeof key, "circuit_breaker:%s", l->name);
    bool fresh = false, wfresh = false;
    cb_shared *sh = app_shared_state(app, key, sizeof *sh, &fresh);
    snprintf(key, sizeof key, "circuit_breaker:%s:window:%s:%u", l->name,
             l->cfg.window == CB_WINDOW_COUNT ? "count" : "time", l->cfg.window_size);
    void *win = sh ? app_shared_state(app, key, cb_window_bytes(&l->cfg), &wfresh) : NULL;
    if (!sh || !win) return VIE_ENOMEM;
    l->sh = sh;
    l->win = win;
    char note[160];
    if (fresh || sh->magic != CB_MAGIC) {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        int rc = pthread_mutex_init(&sh->mu, &a);
        pthread_mutexattr_destroy(&a);
        if (rc != 0) {
            LOG_ERROR("circuit_breaker %s: cannot make its shared lock: %s", l->name, strerror(rc));
            l->sh = NULL;
            return VIE_ENOMEM;
        }
        cb m = machine(l);
        cb_init(&m, l->clock_ns());
        sh->registrations = sh->applied = l->gen = 1;
        sh->magic = CB_MAGIC;
        snprintf(note, sizeof note, "%s (new)", cb_state_upper(cb_effective_state(&sh->core)));
        log_settings(l, note);
        return VIE_OK;
    }
    if (!cb_lock(l)) {
        l->sh = NULL;
        return VIE_ENOMEM;
    }
    l->gen = ++sh->registrations;
    bool same = cb_layout_matches(&sh->core, &l->cfg);
    cb_state st = cb_effective_state(&sh->core);
    cb_unlock(l);
    if (same)
        snprintf(note, sizeof note, "%s (kept from the previous configuration)",
                 cb_state_upper(st));
    else
        snprintf(note, sizeof note,
                 "%s now; the window changed: it starts afresh when this "
                 "configuration serves",
                 cb_state_upper(st));
    log_settings(l, note);
    return VIE_OK;
}

/* WORKER_START (and the test kit's begin): apply this configuration to
 * the shared state, unless a newer one already did (an older generation's
 * worker starting late must not undo it). The first worker applies; the
 * others find nothing to change. */
static void cb_start(vie_app *app, void *loop, void *arg)
{
    cbl *l = arg;
    l->warned_stale = false;
    if (!l->sh || !cb_lock(l)) return;
    cb_shared *sh = l->sh;
    if (l->gen < sh->applied) {
        cb_unlock(l);
        return;
    }
    sh->applied = l->gen;
    uint64_t now = l->clock_ns();
    cb m = machine(l);
    cb_core *s = &sh->core;
    cb_events ev = {0};
    bool relaid = false;
    cb_state was = cb_effective_state(s);
    char from[80], to[80];
    if (!cb_layout_matches(s, &l->cfg)) {
        describe_window((cb_window_kind)s->window_kind, s->window_size, s->hist_unit_ns, from,
                        sizeof from);
        describe_window(l->cfg.window, l->cfg.window_size, l->cfg.p99_ns, to, sizeof to);
        cb_relayout(&m, now);
        relaid = true;
    }
    cb_apply_mode(&m, now, &ev);
    cb_unlock(l);
    if (relaid)
        LOG_WARN("circuit_breaker %s: the window changed (%s -> %s): its state starts afresh "
                 "(it was %s)",
                 l->name, from, to, cb_state_upper(was));
    log_events(l, &ev);
}

/* Validate, build and register. On VIE_EINVAL pr says why (the C API
 * logs it, YAML points at the key). */
static int cb_use(vie_app *app, const vie_layer_opts *lo, const vie_circuit_breaker_opts *o,
                  cb_problem *pr)
{
    const char *name = mw_name(lo, "circuit_breaker");
    pr->option = NULL;
    pr->msg[0] = 0;
    if (!cb_check(o, pr)) return VIE_EINVAL;
    char why[300];
    cbl *l = cbl_new(name, o, why, sizeof why);
    if (!l) {
        if (!strcmp(why, "out of memory")) {
            LOG_ERROR("circuit_breaker %s: out of memory", name);
            return VIE_ENOMEM;
        }
        pr->option = "fallback_file", pr->sec = SEC_FALLBACK, pr->key = "file", pr->item = -1;
        snprintf(pr->msg, sizeof pr->msg, "%s", why);
        return VIE_EINVAL;
    }
    if (l->cfg.min_calls != o->min_calls)
        LOG_WARN("circuit_breaker %s: min_calls %u exceeds the window of %u calls: using %u", name,
                 o->min_calls, o->window_size, l->cfg.min_calls);
    int rc = vie_key_register(app, &cb_calls_key);
    if (rc != VIE_OK) {
        cbl_free(l);
        return rc;
    }
    vie_middleware base = {
        .name = "circuit_breaker",
        .phase = VIE_GUARD,
        .before = cb_before,
        .after = cb_after,
        .free_state = cbl_free,
    };
    /* Registered before the shared state is touched: a refused name (a
     * duplicate) must not change the state of the breaker that has it. */
    rc = mw_register(app, lo, &base, l); /* frees l on failure; the core logged why */
    if (rc != VIE_OK) return rc;
    if ((rc = attach_shared(app, l)) != VIE_OK) {
        LOG_ERROR("circuit_breaker %s: no shared memory for its state: it lets every call through",
                  name);
        return rc;
    }
    if ((rc = vie_app_hook_add(app, VIE_EV_WORKER_START, cb_start, l)) != VIE_OK ||
        (rc = metrics_join(app, l)) != VIE_OK) {
        LOG_ERROR("circuit_breaker %s: cannot add its start hook or metrics: %s", name,
                  vie_strerror(rc));
        return rc;
    }
    return VIE_OK;
}

int vie_use_circuit_breaker(vie_app *app, const vie_layer_opts *lo,
                            const vie_circuit_breaker_opts *o)
{
    vie_circuit_breaker_opts def;
    if (!o) {
        vie_circuit_breaker_opts_init(&def);
        o = &def;
    }
    const char *name = mw_name(lo, "circuit_breaker");
    if (!app) {
        LOG_ERROR("vie_use_circuit_breaker refused: the app is NULL");
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_use_circuit_breaker", name);
    cb_problem pr;
    int rc = cb_use(app, lo, o, &pr);
    if (rc == VIE_EINVAL && pr.option)
        LOG_ERROR("circuit_breaker %s: option %s: %s", name, pr.option, pr.msg);
    return rc;
}

/* For the unit tests: the breaker's shared lock (a test kills a process
 * holding it). NULL when there is no such breaker. */
pthread_mutex_t *mw_circuit_breaker_mutex(vie_app *app, const char *name);
pthread_mutex_t *mw_circuit_breaker_mutex(vie_app *app, const char *name)
{
    for (size_t i = 0; app && i < app->n_layers; i++) {
        const layer *ly = app->layers[i];
        if (ly->mw.after == cb_after && !strcmp(ly->mw.name, name)) {
            cbl *l = ly->state;
            return l->sh ? &l->sh->mu : NULL;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

/* failure_statuses: a list of integers (one integer is a list of one),
 * 0-terminated in cx memory. */
static void read_statuses(cfg_params *p, const int **out)
{
    const cfg_node *n = cfg_get_node(p, "failure_statuses");
    if (!n) return;
    const cfg_node *one = n->kind == CFG_SCALAR ? n : NULL;
    size_t count = one ? 1 : n->kind == CFG_SEQ ? n->n : 0;
    if (!one && n->kind != CFG_SEQ) {
        cfg_error(p, "failure_statuses", "expected a list of statuses, got %s", cfg_kind_name(n));
        return;
    }
    if (count > CB_MAX_STATUSES) {
        cfg_error(p, "failure_statuses", "at most %d statuses, got %zu", CB_MAX_STATUSES, count);
        return;
    }
    int *v = cfg_alloc(p->cx, (count + 1) * sizeof *v);
    size_t i = 0;
    for (const cfg_node *it = one ? one : n->first; it && i < count;
         it = one ? NULL : it->next, i++) {
        const char *t = it->kind == CFG_SCALAR ? it->text : NULL;
        int s = t && !it->quoted && strlen(t) == 3 && strspn(t, "0123456789") == 3 ? atoi(t) : -1;
        if (s < 400 || s > 599) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "failure_statuses[%zu]: expected a status from 400 to 599, got %s%.40s%s%s", i,
                     t ? "\"" : "", t ? t : cfg_kind_name(it), t ? "\"" : "",
                     t && it->quoted ? " (quoted: write the status as a number)" : "");
            if (one)
                cfg_error(p, "failure_statuses", "%s", msg);
            else
                cfg_error_item(p, "failure_statuses", (int)i, "%s", msg);
            return;
        }
        v[i] = s;
    }
    *out = v;
}

/* Whole seconds as an integer (30), or a duration ("30s", "1m"). */
static void read_seconds(cfg_params *p, const char *key, uint32_t *out, uint32_t min, uint32_t max)
{
    const cfg_node *n = cfg_get_node(p, key);
    if (!n) return;
    if (n->kind == CFG_SCALAR && !n->quoted && n->text && *n->text &&
        strspn(n->text, "0123456789") == strlen(n->text)) {
        cfg_get_u32(p, key, out, min, max, *out);
        return;
    }
    uint32_t ms;
    if (!cfg_get_ms(p, key, &ms, min * 1000u, max * 1000u, *out * 1000u)) return;
    if (ms % 1000)
        cfg_error(p, key, "expected whole seconds (30, \"30s\"), got %u ms", ms);
    else
        *out = ms / 1000;
}

/* A relative file is relative to the YAML file that names it. */
static const char *config_relative(cfg_params *p, const char *key, const char *path)
{
    if (!path || path[0] == '/') return path;
    const cfg_node *n = cfg_get_node(p, key);
    const char *file = n ? n->mark.file : NULL;
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (!slash) return path;
    size_t dl = (size_t)(slash - file) + 1;
    char *full = cfg_alloc(p->cx, dl + strlen(path) + 1);
    memcpy(full, file, dl);
    strcpy(full + dl, path);
    return full;
}

int mw_circuit_breaker_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    static const char *const modes[] = {"normal", "disabled", "forced_open", "metrics_only", NULL};
    static const char *const windows[] = {"count", "time", NULL};
    vie_circuit_breaker_opts o;
    vie_circuit_breaker_opts_init(&o);
    int mode = 0, kind = 0;
    cfg_get_enum(p, "mode", &mode, modes, 0);
    o.mode = (vie_circuit_mode)mode;

    cfg_params w;
    cfg_params_sub(p, "window", &w);
    cfg_get_enum(&w, "type", &kind, windows, 0);
    o.window = (vie_circuit_window)kind;
    if (kind == VIE_CIRCUIT_WINDOW_COUNT)
        cfg_get_u32(&w, "size", &o.window_size, 1, CB_MAX_COUNT, 100);
    else
        read_seconds(&w, "size", &o.window_size, 1, CB_MAX_TIME); /* default 100, as in C */
    cfg_get_u32(p, "min_calls", &o.min_calls, 1, UINT32_MAX, 10);
    cfg_get_percent(p, "failure_rate", &o.failure_rate, 50);
    cfg_get_percent(p, "slow_rate", &o.slow_rate, 100);
    cfg_get_ms(p, "slow_duration", &o.slow_ms, 1, CB_MAX_WAIT_MS, 60000);
    cfg_get_ms(p, "open_wait", &o.open_wait_ms, 1, CB_MAX_WAIT_MS, 60000);
    cfg_get_ms(p, "open_wait_max", &o.open_wait_max_ms, 1, CB_MAX_OPEN_MS, 0);
    cfg_get_double(p, "open_wait_multiplier", &o.open_wait_multiplier, 1, 100, 1);

    cfg_params h;
    cfg_params_sub(p, "half_open", &h);
    cfg_get_u32(&h, "calls", &o.half_open_calls, 1, CB_MAX_PROBES, 10);
    cfg_get_ms(&h, "max_wait", &o.half_open_max_wait_ms, 0, CB_MAX_WAIT_MS, 60000);

    read_statuses(p, &o.failure_statuses);

    cfg_params q;
    cfg_params_sub(p, "p99", &q);
    bool has_lat = cfg_has(&q, "latency"), has_err = cfg_has(&q, "error_rate");
    if (has_lat || has_err) {
        cfg_require(&q, "latency");
        cfg_require(&q, "error_rate");
    }
    cfg_get_ms(&q, "latency", &o.p99_ms, 1, CB_MAX_WAIT_MS, 0);
    cfg_get_percent(&q, "error_rate", &o.p99_error_rate, 0);

    cfg_params f;
    cfg_params_sub(p, "fallback", &f);
    cfg_get_int(&f, "status", &o.fallback_status, 200, 599, 503);
    cfg_get_str(&f, "body", &o.fallback_body, NULL);
    cfg_get_str(&f, "file", &o.fallback_file, NULL);
    cfg_get_str(&f, "content_type", &o.fallback_content_type, NULL);
    read_seconds(&f, "retry_after", &o.fallback_retry_after_s, 0, 86400);

    int sub_errors = cfg_params_finish(&w) + cfg_params_finish(&h) + cfg_params_finish(&q) +
                     cfg_params_finish(&f);
    /* The config builder judges an instance by its own reader's count:
     * the sections' errors are the instance's too. */
    p->errors += sub_errors;
    if (sub_errors + cfg_params_finish(p)) return VIE_EINVAL;

    o.fallback_file = config_relative(&f, "file", o.fallback_file);
    if (app->frozen)
        return app_refuse_frozen(app, "vie_use_circuit_breaker", mw_name(lo, "circuit_breaker"));
    cb_problem pr;
    int rc = cb_use(app, lo, &o, &pr);
    if (rc == VIE_EINVAL && pr.option) {
        cfg_params *sec = pr.sec == SEC_WINDOW      ? &w
                          : pr.sec == SEC_HALF_OPEN ? &h
                          : pr.sec == SEC_P99       ? &q
                          : pr.sec == SEC_FALLBACK  ? &f
                                                    : p;
        /* At the key at fault when it was given, else at the map. */
        cfg_error_item(sec, cfg_has(sec, pr.key) ? pr.key : NULL, pr.item, "%s", pr.msg);
        if (sec != p) p->errors++; /* as above */
    } else if (rc != VIE_OK) {
        cfg_error(p, NULL, "cannot register the circuit_breaker layer: %s", vie_strerror(rc));
    }
    return rc;
}
