/* slo: service level objectives with multi-window burn-rate alerts that
 * tighten rate limits and degrade routes (vie_mw.h).
 *
 * The arithmetic is burn.c; this file is the layer around it:
 *
 * Counting. The after hook sees the final status and the time since the
 * request head was complete, and adds the request to the buckets of every
 * objective series (an objective's availability and its latency are two
 * series) that covers its route. Buckets live in shared memory found by
 * name (app_shared_state): a reload whose objectives and windows are the
 * same finds the same counts. The name holds a fingerprint of the layout,
 * so a changed layout starts afresh instead of misreading old buckets.
 *
 * Evaluation. Each worker has an unref'd timer that fires at the start of
 * each evaluate_every period; the first worker to claim the period (a CAS
 * on a shared counter, burn_claim) evaluates every alert over every
 * series and steps the hold counters; the state of the alerts and of the
 * actions is shared (a second named segment, keyed by the alerts and the
 * actions), so whichever worker evaluates next carries on. A "busy" word
 * keeps two evaluations from overlapping; one whose owner died is taken
 * over after two periods.
 *
 * Actions. Degrade is a shared flag per route that the before hook reads:
 * while it is set, the layer answers the route's fallback itself. Those
 * answers are not counted (they say nothing of the service), so a
 * degraded route's windows drain and the actions stop after the burn,
 * then start again if the route still fails: a slow probe. Tighten calls
 * mw_rate_limit_set_factor (rate_limit.c), whose factor is shared by the
 * workers; each worker sets it again at its start so a new generation
 * agrees with the state it inherited.
 *
 * Routes are resolved at freeze (they exist only then): a name that
 * matches no route, a route this layer does not cover, or a tighten
 * target that is not a rate_limit layer is logged, naming it, and the app
 * refuses to start. Workers resolve again at their start (the table is
 * per process).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/app.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/writer.h"
#include "mw/burn.h"
#include "mw/mw.h"
#include "server/shm.h"

#define SLO_MAX_SERIES     (VIE_SLO_MAX_OBJECTIVES * 2)
#define SLO_MAX_WINDOWS    (VIE_SLO_MAX_ALERTS * 2)
#define SLO_DAY_MS         86400000u
#define SLO_MAX_WINDOW_MS  (30u * SLO_DAY_MS)
#define SLO_MAX_EVERY_MS   3600000u
#define SLO_MAX_LATENCY_MS 3600000u
#define SLO_MAX_HOLD       1000u
#define SLO_MAX_RETRY_S    86400u
#define SLO_MAX_BURN       1e6
#define SLO_NAME_MAX       64
#define SLO_DEBUG_PATH     "/debug/slo"

_Static_assert(VIE_SLO_MAX_ALERTS <= BURN_MAX_ALERTS, "burn_hold has a streak per alert");
_Static_assert(SLO_MAX_SERIES <= 32, "a route's series are bits of a uint32_t");
_Static_assert(VIE_SLO_MAX_ACTIONS < 256, "a route's degrade entry + 1 fits a uint8_t");

/* For the unit tests: when set, called instead of mw_rate_limit_set_factor. */
extern int (*mw_slo_set_factor_hook)(vie_app *app, const char *layer_name, double factor);
int (*mw_slo_set_factor_hook)(vie_app *app, const char *layer_name, double factor);

typedef enum slo_sli { SLI_AVAILABILITY = 0, SLI_LATENCY } slo_sli;
static const char *const sli_names[] = {"availability", "latency"};

typedef struct slo_objective {
    char *name;
    char *route; /* NULL: every route the layer covers */
} slo_objective;

/* One SLI of one objective, with its ring of buckets. */
typedef struct slo_series {
    uint32_t obj;
    slo_sli sli;
    double target; /* percent */
    double budget; /* (100 - target) / 100 */
    uint32_t threshold_ms;
    uint64_t threshold_ns;
    burn_ring ring;
} slo_series;

typedef struct slo_alert {
    char *name;
    uint32_t long_ms, short_ms; /* as configured (labels) */
    burn_alert a;               /* scaled */
    char long_text[16], short_text[16];
} slo_alert;

typedef struct slo_tighten {
    char *rate_limit;
    double factor;
} slo_tighten;

typedef struct slo_degrade {
    char *route;
    int status;
    char *body;
    char *content_type;
    char *detail; /* the problem+json detail when there is no body */
    uint32_t retry_after_s;
    char retry_text[16];
} slo_degrade;

/* A window the metrics show: one per distinct configured duration. */
typedef struct slo_window {
    uint32_t ms; /* configured */
    uint64_t ns; /* scaled */
    char text[16];
} slo_window;

/* Shared, keyed by the series layout: the counts. The buckets follow,
 * n_series rings of n_buckets each. */
typedef struct slo_counts {
    _Atomic uint64_t dropped;
    _Atomic uint64_t totals[SLO_MAX_SERIES][2]; /* [good, bad] since the layout began */
} slo_counts;

/* Shared, keyed by the alerts and the actions: the evaluation. */
typedef struct slo_eval {
    _Atomic uint64_t last_period; /* burn_claim */
    _Atomic uint64_t busy;        /* the evaluating period + 1, 0: none */
    burn_hold hold;
    _Atomic uint64_t started[2 * VIE_SLO_MAX_ACTIONS]; /* tighten, then degrade */
    _Atomic bool degraded[VIE_SLO_MAX_ACTIONS];
} slo_eval;

/* In the app's own shared memory: this generation's. */
typedef struct slo_app_counters {
    atomic_bool checked; /* the start-up problems were logged */
    _Atomic uint64_t problems;
    _Atomic uint64_t answered[VIE_SLO_MAX_ACTIONS]; /* degraded answers per degrade entry */
} slo_app_counters;

typedef struct slo {
    char *name;
    vie_app *app;
    slo_objective obj[VIE_SLO_MAX_OBJECTIVES];
    size_t n_obj;
    slo_series series[SLO_MAX_SERIES];
    size_t n_series;
    slo_alert alerts[VIE_SLO_MAX_ALERTS];
    size_t n_alerts;
    slo_window windows[SLO_MAX_WINDOWS];
    size_t n_windows;
    slo_tighten tighten[VIE_SLO_MAX_ACTIONS];
    size_t n_tighten;
    slo_degrade degrade[VIE_SLO_MAX_ACTIONS];
    size_t n_degrade;
    double scale;
    uint32_t every_ms;
    uint64_t every_ns;
    uint32_t hold;
    uint64_t width_ns;
    uint32_t n_buckets;
    bool debug;
    bool own_clock; /* the caller's clock: no timer */
    bool manual;    /* the tests evaluate (mw_slo_manual): no timer */
    uint64_t (*clock_ns)(void);
    slo_counts *counts; /* shared */
    slo_eval *ev;       /* shared */
    slo_app_counters *n;
    struct slo *next_in_app;

    /* This process's (each worker's copy after the fork). */
    uv_loop_t *loop;
    uv_timer_t timer;
    bool timer_on;
    uint32_t *route_series; /* by route index: a bit per series */
    uint8_t *route_degrade; /* by route index: degrade entry + 1, 0: none */
    size_t n_route_tab;
    char **problems;
    size_t n_problems;
} slo;

/* The executor's clock (request durations are measured on it; tests
 * replace it with clock_set_source). One calibration for every worker:
 * it is made before the fork. */
static uint64_t exec_ns(void)
{
    return clock_now_ns();
}

/* "1h", "30m", "90s", "250ms": the largest unit that divides ms. */
static void ms_text(uint32_t ms, char *out, size_t cap)
{
    if (ms && ms % SLO_DAY_MS == 0)
        snprintf(out, cap, "%ud", ms / SLO_DAY_MS);
    else if (ms && ms % 3600000u == 0)
        snprintf(out, cap, "%uh", ms / 3600000u);
    else if (ms && ms % 60000u == 0)
        snprintf(out, cap, "%um", ms / 60000u);
    else if (ms && ms % 1000u == 0)
        snprintf(out, cap, "%us", ms / 1000u);
    else
        snprintf(out, cap, "%ums", ms);
}

/* ------------------------------------------------------------------ */
/* Validation, shared by the C API and YAML                            */

typedef struct slo_problem {
    const char *list;   /* "objectives", "alerts", "actions.tighten", "actions.degrade"; NULL */
    int item;           /* in list */
    const char *option; /* the C member */
    const char *key;    /* the YAML key in the item (or at the top), "latency.threshold" */
    char msg[256];
} slo_problem;

#define PROBLEM(pr, l, i, opt, k, ...)                                                             \
    do {                                                                                           \
        (pr)->list = (l);                                                                          \
        (pr)->item = (i);                                                                          \
        (pr)->option = (opt);                                                                      \
        (pr)->key = (k);                                                                           \
        snprintf((pr)->msg, sizeof(pr)->msg, __VA_ARGS__);                                         \
        return false;                                                                              \
    } while (0)

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SLO_NAME_MAX) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("_.:-", *s)))
            return false;
    return true;
}

static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* "GET /x": a method token, one space, a path without blanks. */
static bool label_ok(const char *r)
{
    const char *sp = r ? strchr(r, ' ') : NULL;
    if (!sp || sp == r || sp[1] != '/') return false;
    for (const char *p = r; p < sp; p++)
        if (!is_tchar(*p)) return false;
    for (const char *p = sp + 1; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return false;
    return true;
}

static bool text_ok(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < ' ' || *s == 0x7f) return false;
    return true;
}

static bool percent_open(double v)
{
    return v > 0 && v < 100; /* NaN fails */
}

/* Default evaluation period: 10 s scaled, at least 1 ms. */
static uint32_t default_every_ms(double scale)
{
    double ms = 10000.0 * scale;
    if (!(ms >= 1)) return 1;
    return (uint32_t)(ms + 0.5);
}

static const vie_slo_alert default_alerts[] = {
    {"fast", 3600000u, 300000u, 14.4},
    {"slow", 6u * 3600000u, 1800000u, 6.0},
};

static bool slo_check(const vie_slo_opts *o, slo_problem *pr)
{
    if (!o->objectives || o->n_objectives == 0)
        PROBLEM(pr, NULL, -1, "objectives", "objectives", "at least one objective is required");
    if (o->n_objectives > VIE_SLO_MAX_OBJECTIVES)
        PROBLEM(pr, NULL, -1, "n_objectives", "objectives", "at most %d objectives, got %zu",
                VIE_SLO_MAX_OBJECTIVES, o->n_objectives);
    for (size_t i = 0; i < o->n_objectives; i++) {
        const vie_slo_objective *ob = &o->objectives[i];
        int it = (int)i;
        if (!name_ok(ob->name))
            PROBLEM(pr, "objectives", it, "name", "name",
                    "a name is 1 to %d of A-Z a-z 0-9 _ . : -, got \"%s\"", SLO_NAME_MAX,
                    ob->name ? ob->name : "(null)");
        for (size_t k = 0; k < i; k++)
            if (!strcmp(o->objectives[k].name, ob->name))
                PROBLEM(pr, "objectives", it, "name", "name",
                        "objective \"%s\" is declared twice (objectives[%zu])", ob->name, k);
        if (ob->route && !label_ok(ob->route))
            PROBLEM(pr, "objectives", it, "route", "route",
                    "expected a route label \"METHOD /path\" (\"GET /api/users/:id\"), got \"%s\"",
                    ob->route);
        if (ob->availability != 0 && !percent_open(ob->availability))
            PROBLEM(pr, "objectives", it, "availability", "availability",
                    "expected a percentage above 0 and below 100 (100%% leaves no error budget), "
                    "got %g",
                    ob->availability);
        if (ob->latency_percentile != 0 && !percent_open(ob->latency_percentile))
            PROBLEM(pr, "objectives", it, "latency_percentile", "latency.percentile",
                    "expected a percentage above 0 and below 100, got %g", ob->latency_percentile);
        if (ob->latency_percentile != 0 &&
            (ob->latency_threshold_ms < 1 || ob->latency_threshold_ms > SLO_MAX_LATENCY_MS))
            PROBLEM(pr, "objectives", it, "latency_threshold_ms", "latency.threshold",
                    "a latency objective needs a threshold from 1ms to 1h, got %u ms",
                    ob->latency_threshold_ms);
        if (ob->latency_percentile == 0 && ob->latency_threshold_ms)
            PROBLEM(pr, "objectives", it, "latency_percentile", "latency.percentile",
                    "a latency threshold needs a percentile (the share of requests faster "
                    "than it)");
        if (ob->availability == 0 && ob->latency_percentile == 0)
            PROBLEM(pr, "objectives", it, "availability", "availability",
                    "objective \"%s\" sets neither availability nor latency", ob->name);
    }
    if (o->n_alerts && !o->alerts)
        PROBLEM(pr, NULL, -1, "alerts", "alerts", "n_alerts is %zu but alerts is NULL",
                o->n_alerts);
    const vie_slo_alert *al = o->alerts ? o->alerts : default_alerts;
    size_t n_al = o->alerts ? o->n_alerts : 2;
    if (o->alerts && n_al == 0)
        PROBLEM(pr, NULL, -1, "n_alerts", "alerts",
                "an empty alert list never fires: leave alerts out for the defaults");
    if (n_al > VIE_SLO_MAX_ALERTS)
        PROBLEM(pr, NULL, -1, "n_alerts", "alerts", "at most %d alerts, got %zu",
                VIE_SLO_MAX_ALERTS, n_al);
    if (!(o->window_scale > 0 && o->window_scale <= 1))
        PROBLEM(pr, NULL, -1, "window_scale", "window_scale",
                "expected a factor above 0 and at most 1, got %g", o->window_scale);
    for (size_t i = 0; i < n_al; i++) {
        const vie_slo_alert *a = &al[i];
        int it = (int)i;
        if (!name_ok(a->name))
            PROBLEM(pr, "alerts", it, "name", "name",
                    "a name is 1 to %d of A-Z a-z 0-9 _ . : -, got \"%s\"", SLO_NAME_MAX,
                    a->name ? a->name : "(null)");
        for (size_t k = 0; k < i; k++)
            if (!strcmp(al[k].name, a->name))
                PROBLEM(pr, "alerts", it, "name", "name",
                        "alert \"%s\" is declared twice (alerts[%zu])", a->name, k);
        if (a->long_ms < 1 || a->long_ms > SLO_MAX_WINDOW_MS)
            PROBLEM(pr, "alerts", it, "long_ms", "long",
                    "expected a window from 1ms to 30 days, got %u ms", a->long_ms);
        if (a->short_ms < 1 || a->short_ms > a->long_ms)
            PROBLEM(pr, "alerts", it, "short_ms", "short",
                    "the short window must be at least 1ms and not longer than the long one "
                    "(%u ms), got %u ms",
                    a->long_ms, a->short_ms);
        if (!(a->burn > 0 && a->burn <= SLO_MAX_BURN))
            PROBLEM(pr, "alerts", it, "burn", "burn",
                    "expected a burn-rate factor above 0 and at most 1e6, got %g", a->burn);
        /* Scaled below a millisecond a window is a bucket or two: noise.
         * With the default alerts, window_scale is what to change. */
        if (burn_scale((uint64_t)a->short_ms * 1000000u, o->window_scale) < 1000000u) {
            if (!o->alerts)
                PROBLEM(pr, NULL, -1, "window_scale", "window_scale",
                        "%g makes the short window of alert \"%s\" (%u ms) shorter than 1 ms",
                        o->window_scale, a->name, a->short_ms);
            PROBLEM(pr, "alerts", it, "short_ms", "short",
                    "window_scale %g makes this window (%u ms) shorter than 1 ms", o->window_scale,
                    a->short_ms);
        }
    }
    if (o->evaluate_every_ms > SLO_MAX_EVERY_MS)
        PROBLEM(pr, NULL, -1, "evaluate_every_ms", "evaluate_every",
                "expected a period from 1ms to 1h, got %u ms", o->evaluate_every_ms);
    if (o->hold < 1 || o->hold > SLO_MAX_HOLD)
        PROBLEM(pr, NULL, -1, "hold", "hold", "expected 1 to %u evaluations, got %u", SLO_MAX_HOLD,
                o->hold);
    if (o->min_requests > 1000000000u)
        PROBLEM(pr, NULL, -1, "min_requests", "min_requests",
                "expected 0 to 1000000000 requests, got %u", o->min_requests);
    if (o->n_tighten && !o->tighten)
        PROBLEM(pr, NULL, -1, "tighten", "actions.tighten", "n_tighten is %zu but tighten is NULL",
                o->n_tighten);
    if (o->n_tighten > VIE_SLO_MAX_ACTIONS)
        PROBLEM(pr, NULL, -1, "n_tighten", "actions.tighten", "at most %d entries, got %zu",
                VIE_SLO_MAX_ACTIONS, o->n_tighten);
    for (size_t i = 0; i < o->n_tighten; i++) {
        const vie_slo_tighten *t = &o->tighten[i];
        int it = (int)i;
        if (!t->rate_limit || !*t->rate_limit || !text_ok(t->rate_limit))
            PROBLEM(pr, "actions.tighten", it, "rate_limit", "rate_limit",
                    "expected the name of a rate_limit layer");
        for (size_t k = 0; k < i; k++)
            if (!strcmp(o->tighten[k].rate_limit, t->rate_limit))
                PROBLEM(pr, "actions.tighten", it, "rate_limit", "rate_limit",
                        "rate_limit \"%s\" is tightened twice (tighten[%zu])", t->rate_limit, k);
        if (!(t->factor > 0 && t->factor <= 1))
            PROBLEM(pr, "actions.tighten", it, "factor", "factor",
                    "expected a factor above 0 and at most 1 (0.5 halves the rate), got %g",
                    t->factor);
    }
    if (o->n_degrade && !o->degrade)
        PROBLEM(pr, NULL, -1, "degrade", "actions.degrade", "n_degrade is %zu but degrade is NULL",
                o->n_degrade);
    if (o->n_degrade > VIE_SLO_MAX_ACTIONS)
        PROBLEM(pr, NULL, -1, "n_degrade", "actions.degrade", "at most %d entries, got %zu",
                VIE_SLO_MAX_ACTIONS, o->n_degrade);
    for (size_t i = 0; i < o->n_degrade; i++) {
        const vie_slo_degrade *d = &o->degrade[i];
        int it = (int)i;
        if (!label_ok(d->route))
            PROBLEM(pr, "actions.degrade", it, "route", "route",
                    "expected a route label \"METHOD /path\" (\"GET /api/users/:id\"), got \"%s\"",
                    d->route ? d->route : "(null)");
        for (size_t k = 0; k < i; k++)
            if (!strcmp(o->degrade[k].route, d->route))
                PROBLEM(pr, "actions.degrade", it, "route", "route",
                        "route \"%s\" is degraded twice (degrade[%zu])", d->route, k);
        if (d->status != 0 && (d->status < 200 || d->status > 599))
            PROBLEM(pr, "actions.degrade", it, "status", "status",
                    "expected a status from 200 to 599, got %d", d->status);
        if (d->body && (d->status == 204 || d->status == 304))
            PROBLEM(pr, "actions.degrade", it, "body", "body", "a %d response has no body",
                    d->status);
        if (d->content_type && !d->body)
            PROBLEM(pr, "actions.degrade", it, "content_type", "content_type",
                    "a content type needs a body (without one the answer is problem+json)");
        if (d->content_type && (!*d->content_type || !text_ok(d->content_type)))
            PROBLEM(pr, "actions.degrade", it, "content_type", "content_type",
                    "expected a media type without control characters");
        if (d->retry_after_s > SLO_MAX_RETRY_S)
            PROBLEM(pr, "actions.degrade", it, "retry_after_s", "retry_after",
                    "expected at most 1 day (86400 s), got %u s", d->retry_after_s);
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Shared state                                                        */

/* FNV-1a, for the layout fingerprints in the shared state's names. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
    return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

static bool shared_attach(slo *s)
{
    /* Counts: meaningful as long as the series and the buckets are. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < s->n_series; i++) {
        const slo_series *se = &s->series[i];
        h = fnv_str(h, s->obj[se->obj].name);
        h = fnv_str(h, s->obj[se->obj].route);
        h = fnv(h, &se->sli, sizeof se->sli);
        h = fnv(h, &se->threshold_ns, sizeof se->threshold_ns);
    }
    h = fnv(h, &s->width_ns, sizeof s->width_ns);
    h = fnv(h, &s->n_buckets, sizeof s->n_buckets);
    size_t n_b = s->n_series * s->n_buckets;
    size_t size = sizeof(slo_counts) + n_b * sizeof(burn_bucket);
    char key[SLO_NAME_MAX * 2 + 64];
    snprintf(key, sizeof key, "slo:%s:counts:%016llx", s->name, (unsigned long long)h);
    bool fresh;
    s->counts = app_shared_state(s->app, key, size, &fresh);
    if (!s->counts) return false;
    if (!fresh) LOG_INFO("slo %s: counts carried over from the previous config", s->name);
    burn_bucket *b = (burn_bucket *)(s->counts + 1);
    for (size_t i = 0; i < s->n_series; i++)
        s->series[i].ring = (burn_ring){.b = b + i * s->n_buckets,
                                        .n = s->n_buckets,
                                        .width_ns = s->width_ns,
                                        .dropped = &s->counts->dropped};

    /* Evaluation: meaningful as long as the alerts and actions are. */
    h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < s->n_alerts; i++) {
        h = fnv_str(h, s->alerts[i].name);
        h = fnv(h, &s->alerts[i].a, sizeof s->alerts[i].a);
    }
    for (size_t i = 0; i < s->n_tighten; i++)
        h = fnv_str(h, s->tighten[i].rate_limit);
    h = fnv(h, "|", 1);
    for (size_t i = 0; i < s->n_degrade; i++)
        h = fnv_str(h, s->degrade[i].route);
    snprintf(key, sizeof key, "slo:%s:eval:%016llx", s->name, (unsigned long long)h);
    s->ev = app_shared_state(s->app, key, sizeof *s->ev, &fresh);
    if (!s->ev) return false;
    if (!fresh && atomic_load(&s->ev->hold.active))
        LOG_WARN("slo %s: actions in force carried over from the previous config", s->name);
    s->n = shm_alloc(s->app->shm, sizeof *s->n);
    return s->n != NULL;
}

/* ------------------------------------------------------------------ */
/* Evaluation and actions                                              */

typedef struct slo_verdict {
    uint32_t firing;
    burn_alert_result worst[VIE_SLO_MAX_ALERTS]; /* per alert, its hottest series */
    int worst_series[VIE_SLO_MAX_ALERTS];
} slo_verdict;

static void evaluate_alerts(slo *s, uint64_t now, slo_verdict *v)
{
    memset(v, 0, sizeof *v);
    for (size_t a = 0; a < s->n_alerts; a++) {
        v->worst_series[a] = -1;
        double hottest = -1;
        for (size_t i = 0; i < s->n_series; i++) {
            burn_alert_result r;
            slo_series *se = &s->series[i];
            if (burn_alert_eval(&se->ring, now, &s->alerts[a].a, se->budget, &r))
                v->firing |= 1u << a;
            double heat = r.long_rate < r.short_rate ? r.long_rate : r.short_rate;
            if (heat > hottest) {
                hottest = heat;
                v->worst[a] = r;
                v->worst_series[a] = (int)i;
            }
        }
    }
}

/* "fast 1000x over 1h, 1000x over 5m (api/availability); slow ...". */
static void verdict_text(const slo *s, const slo_verdict *v, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = 0;
    for (size_t a = 0; a < s->n_alerts && len < cap; a++) {
        int i = v->worst_series[a];
        const slo_alert *al = &s->alerts[a];
        if (i < 0) continue;
        const slo_series *se = &s->series[i];
        int w = snprintf(out + len, cap - len, "%s%s %.4gx over %s, %.4gx over %s (%s/%s)",
                         a ? "; " : "", al->name, v->worst[a].long_rate, al->long_text,
                         v->worst[a].short_rate, al->short_text, s->obj[se->obj].name,
                         sli_names[se->sli]);
        if (w < 0) break;
        len += (size_t)w;
    }
}

static int set_factor(slo *s, const char *name, double factor)
{
    if (mw_slo_set_factor_hook) return mw_slo_set_factor_hook(s->app, name, factor);
    return mw_rate_limit_set_factor(s->app, name, factor);
}

static void actions_start(slo *s, const char *why)
{
    uint32_t held = 0;
    const char *alert = "?";
    for (size_t a = 0; a < s->n_alerts; a++) {
        uint32_t st = atomic_load(&s->ev->hold.streak[a]);
        if (st >= s->hold && st > held) {
            held = st;
            alert = s->alerts[a].name;
        }
    }
    for (size_t i = 0; i < s->n_tighten; i++) {
        const slo_tighten *t = &s->tighten[i];
        int rc = set_factor(s, t->rate_limit, t->factor);
        s->ev->started[i]++;
        if (rc == VIE_OK)
            LOG_WARN("slo %s: action tighten %s started: rate x%g (alert %s held %u evaluations; "
                     "%s)",
                     s->name, t->rate_limit, t->factor, alert, held, why);
        else
            LOG_ERROR("slo %s: action tighten %s could not start: %s (alert %s held %u "
                      "evaluations; %s)",
                      s->name, t->rate_limit, vie_strerror(rc), alert, held, why);
    }
    for (size_t i = 0; i < s->n_degrade; i++) {
        const slo_degrade *d = &s->degrade[i];
        atomic_store(&s->ev->degraded[i], true);
        s->ev->started[VIE_SLO_MAX_ACTIONS + i]++;
        LOG_WARN("slo %s: action degrade %s started: answering %d with Retry-After %u (alert %s "
                 "held %u evaluations; %s)",
                 s->name, d->route, d->status, d->retry_after_s, alert, held, why);
    }
}

static void actions_stop(slo *s, const char *why)
{
    for (size_t i = 0; i < s->n_tighten; i++) {
        const slo_tighten *t = &s->tighten[i];
        int rc = set_factor(s, t->rate_limit, 1.0);
        if (rc == VIE_OK)
            LOG_INFO("slo %s: action tighten %s stopped: rate x1 (no alert for %u evaluations; "
                     "%s)",
                     s->name, t->rate_limit, s->hold, why);
        else
            LOG_ERROR("slo %s: action tighten %s could not stop: %s", s->name, t->rate_limit,
                      vie_strerror(rc));
    }
    for (size_t i = 0; i < s->n_degrade; i++) {
        atomic_store(&s->ev->degraded[i], false);
        LOG_INFO("slo %s: action degrade %s stopped: the route is served again (no alert for %u "
                 "evaluations; %s)",
                 s->name, s->degrade[i].route, s->hold, why);
    }
}

/* One evaluation at now, if this caller claims its period. 1: evaluated;
 * 0: another worker has (or is evaluating). */
static int slo_evaluate(slo *s, uint64_t now)
{
    if (!burn_claim(&s->ev->last_period, now, s->every_ns)) return 0;
    uint64_t period = now / s->every_ns + 1;
    uint64_t busy = atomic_load(&s->ev->busy);
    /* A busy word older than two periods belongs to an evaluator that died. */
    if (busy && busy + 2 > period) return 0;
    if (!atomic_compare_exchange_strong(&s->ev->busy, &busy, period)) return 0;

    slo_verdict v;
    evaluate_alerts(s, now, &v);
    uint32_t before = atomic_load(&s->ev->hold.firing);
    burn_change ch = burn_hold_step(&s->ev->hold, v.firing, (uint32_t)s->n_alerts, s->hold);
    char why[512];
    verdict_text(s, &v, why, sizeof why);
    for (size_t a = 0; a < s->n_alerts; a++) {
        uint32_t bit = 1u << a;
        if ((v.firing & bit) && !(before & bit))
            LOG_WARN("slo %s: alert %s firing: %.4gx over %s and %.4gx over %s (factor %g) on "
                     "%s/%s",
                     s->name, s->alerts[a].name, v.worst[a].long_rate, s->alerts[a].long_text,
                     v.worst[a].short_rate, s->alerts[a].short_text, s->alerts[a].a.factor,
                     s->obj[s->series[v.worst_series[a]].obj].name,
                     sli_names[s->series[v.worst_series[a]].sli]);
        else if (!(v.firing & bit) && (before & bit))
            LOG_INFO("slo %s: alert %s stopped firing", s->name, s->alerts[a].name);
    }
    if (ch == BURN_START) actions_start(s, why);
    if (ch == BURN_STOP) actions_stop(s, why);
    uint64_t mine = period;
    atomic_compare_exchange_strong(&s->ev->busy, &mine, 0);
    return 1;
}

static void on_tick(uv_timer_t *t);

/* Fire at the start of the next period (rounded up to the ms; a tick
 * that comes early finds its period claimed and simply re-arms). */
static void arm(slo *s)
{
    uint64_t now = s->clock_ns();
    uint64_t left = s->every_ns - now % s->every_ns;
    uint64_t ms = (left + 999999) / 1000000;
    uv_timer_start(&s->timer, on_tick, ms ? ms : 1, 0);
}

static void on_tick(uv_timer_t *t)
{
    slo *s = t->data;
    if (s->manual) return;
    slo_evaluate(s, s->clock_ns());
    if (s->timer_on) arm(s);
}

/* For the unit tests, which drive their own clock: evaluate the layer
 * called name of app now. 1: evaluated, 0: its period was claimed
 * already, -1: no such slo layer. */
int mw_slo_evaluate(vie_app *app, const char *name);

static void slo_metrics(vie_buf *b, void *arg);

static slo *slo_list(vie_app *app)
{
    for (size_t i = 0; app && i < app->n_msources; i++)
        if (app->msources[i].fn == slo_metrics) return app->msources[i].arg;
    return NULL;
}

int mw_slo_evaluate(vie_app *app, const char *name)
{
    for (slo *s = slo_list(app); s; s = s->next_in_app)
        if (name && !strcmp(s->name, name)) return slo_evaluate(s, s->clock_ns());
    return -1;
}

/* For the unit tests that configure from YAML (no clock option) and
 * replace the executor's clock: no timer evaluates app's slo layers from
 * now on (call it before vie_test_begin, or after: the timers stop). */
void mw_slo_manual(vie_app *app);
void mw_slo_manual(vie_app *app)
{
    for (slo *s = slo_list(app); s; s = s->next_in_app) {
        s->manual = true;
        if (s->timer_on) uv_timer_stop(&s->timer);
    }
}

/* ------------------------------------------------------------------ */
/* The layer                                                           */

static vie_status slo_before(vie_ctx *c, void *state)
{
    slo *s = state;
    const route_entry *r = c->route;
    /* An OPTIONS that borrowed another method's route (auto_status 204)
     * is not that route's request: a preflight passes, unmeasured. */
    if (!s->route_degrade || !r || r->index >= s->n_route_tab || c->auto_status) return VIE_NEXT;
    unsigned d = s->route_degrade[r->index];
    if (!d || !atomic_load_explicit(&s->ev->degraded[d - 1], memory_order_relaxed)) return VIE_NEXT;
    const slo_degrade *dg = &s->degrade[d - 1];
    s->n->answered[d - 1]++;
    vie_header_add(c, "Retry-After", dg->retry_text);
    if (dg->body) return vie_send(c, dg->status, dg->content_type, dg->body, strlen(dg->body));
    return vie_send_problem(c, dg->status, dg->detail);
}

/* Did this layer's before hook answer (a degraded answer)? */
static bool answered_here(vie_ctx *c, const slo *s)
{
    vie_trail_entry e;
    for (size_t i = 0; i < vie_trail_count(c) && vie_trail_at(c, i, &e); i++)
        if (e.layer && !strcmp(e.layer, s->name)) return e.outcome == VIE_DONE;
    return false;
}

static void slo_after(vie_ctx *c, void *state)
{
    slo *s = state;
    const route_entry *r = c->route;
    if (!s->route_series || !r || r->index >= s->n_route_tab || c->auto_status) return;
    uint32_t mask = s->route_series[r->index];
    int status = vie_response_status(c);
    if (!mask || status == 0) return; /* no answer: cancelled, not measured */
    if (s->route_degrade[r->index] && answered_here(c, s)) return;
    uint64_t end = clock_now_ns();
    uint64_t took = c->start_ns && end > c->start_ns ? end - c->start_ns : 0;
    uint64_t now = s->clock_ns();
    for (uint32_t i = 0; mask; i++, mask >>= 1) {
        if (!(mask & 1)) continue;
        slo_series *se = &s->series[i];
        bool bad = se->sli == SLI_AVAILABILITY ? status >= 500 : took > se->threshold_ns;
        burn_record(&se->ring, now, !bad, bad);
        atomic_fetch_add_explicit(&s->counts->totals[i][bad], 1, memory_order_relaxed);
    }
}

/* ------------------------------------------------------------------ */
/* Worker events: resolve the routes, start the timer                  */

static void problem_add(slo *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem_add(slo *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char **v = realloc(s->problems, (s->n_problems + 1) * sizeof *v);
    if (!v) return;
    s->problems = v;
    if ((v[s->n_problems] = strdup(msg))) s->n_problems++;
}

static void problems_free(slo *s)
{
    for (size_t i = 0; i < s->n_problems; i++)
        free(s->problems[i]);
    free(s->problems);
    s->problems = NULL;
    s->n_problems = 0;
}

static bool covers(const slo *s, const route_entry *r)
{
    for (uint32_t k = 0; k < r->chain.n; k++)
        if (r->chain.layers[k]->state == s) return true;
    return false;
}

static const route_entry *find_route(const vie_app *app, const char *label)
{
    for (size_t i = 0; i < app->n_routes; i++)
        if (!strcmp(app->routes[i]->label, label)) return app->routes[i];
    return NULL;
}

/* A route name that matches nothing, or a route the layer does not cover. */
static void check_route(slo *s, const char *what, const char *label)
{
    const vie_app *app = s->app;
    const route_entry *r = find_route(app, label);
    if (r && covers(s, r)) return;
    if (r) {
        problem_add(s, "%s: route \"%s\" is not covered by this layer (place the layer on it)",
                    what, label);
        return;
    }
    const char **labels = calloc(app->n_routes + 1, sizeof *labels);
    const char *near = NULL;
    if (labels) {
        for (size_t i = 0; i < app->n_routes; i++)
            labels[i] = app->routes[i]->label;
        near = cfg_closest(label, labels, app->n_routes);
    }
    problem_add(s, "%s: route \"%s\" matches no route%s%s%s", what, label,
                near ? "; did you mean \"" : "", near ? near : "", near ? "\"?" : "");
    free(labels);
}

static bool layer_exists(const vie_app *app, const char *name)
{
    for (size_t i = 0; i < app->n_layers; i++)
        if (!strcmp(app->layers[i]->mw.name, name)) return true;
    return false;
}

/* A tighten target: a rate_limit layer, or the fake of the unit tests. */
static bool limiter_exists(const vie_app *app, const char *name)
{
    return mw_slo_set_factor_hook ? layer_exists(app, name) : mw_rate_limit_exists(app, name);
}

/* Match names to routes and layers; set the limiters to the shared state
 * when set_limits (at a worker's start, not at the freeze check). */
static void resolve(slo *s, bool set_limits)
{
    vie_app *app = s->app;
    free(s->route_series);
    free(s->route_degrade);
    problems_free(s);
    s->n_route_tab = app->n_routes;
    s->route_series = calloc(app->n_routes + 1, sizeof *s->route_series);
    s->route_degrade = calloc(app->n_routes + 1, sizeof *s->route_degrade);
    if (!s->route_series || !s->route_degrade) {
        free(s->route_series);
        free(s->route_degrade);
        s->route_series = NULL;
        s->route_degrade = NULL;
        LOG_ERROR("slo %s: out of memory for its route table: nothing is measured", s->name);
        return;
    }
    bool any = false;
    for (size_t k = 0; k < app->n_routes; k++) {
        const route_entry *r = app->routes[k];
        if (!covers(s, r)) continue;
        any = true;
        for (size_t i = 0; i < s->n_series; i++) {
            const char *want = s->obj[s->series[i].obj].route;
            if (!want || !strcmp(want, r->label)) s->route_series[k] |= 1u << i;
        }
        for (size_t i = 0; i < s->n_degrade; i++)
            if (!strcmp(s->degrade[i].route, r->label)) s->route_degrade[k] = (uint8_t)(i + 1);
    }
    char what[128];
    for (size_t i = 0; i < s->n_obj; i++) {
        snprintf(what, sizeof what, "objective %s", s->obj[i].name);
        if (s->obj[i].route)
            check_route(s, what, s->obj[i].route);
        else if (!any)
            problem_add(s, "%s: the layer covers no route: it measures nothing", what);
    }
    for (size_t i = 0; i < s->n_degrade; i++)
        check_route(s, "degrade", s->degrade[i].route);
    /* Set every limiter to what the shared state says: a new generation
     * (or a limiter whose state started afresh) agrees with it. */
    bool active = atomic_load(&s->ev->hold.active);
    for (size_t i = 0; i < s->n_tighten; i++) {
        const slo_tighten *t = &s->tighten[i];
        if (!layer_exists(app, t->rate_limit)) {
            problem_add(s, "tighten: no layer is called \"%s\"", t->rate_limit);
            continue;
        }
        if (!limiter_exists(app, t->rate_limit)) {
            problem_add(s, "tighten: layer \"%s\" is not a rate_limit", t->rate_limit);
            continue;
        }
        int rc = set_limits ? set_factor(s, t->rate_limit, active ? t->factor : 1.0) : VIE_OK;
        if (rc != VIE_OK)
            problem_add(s, "tighten %s: %s (is it a rate_limit layer?)", t->rate_limit,
                        vie_strerror(rc));
    }
    atomic_store(&s->n->problems, s->n_problems);
    if (s->n_problems && !atomic_exchange(&s->n->checked, true))
        for (size_t i = 0; i < s->n_problems; i++)
            LOG_ERROR("slo %s: %s", s->name, s->problems[i]);
}

/* At freeze: a name that matches no route, or a limiter that does not
 * exist, refuses the start (resolve logs each one). */
static int slo_freeze_check(vie_app *app, void *arg)
{
    (void)app;
    slo *s = arg;
    resolve(s, false);
    return (int)s->n_problems;
}

static void slo_start(vie_app *app, void *loop, void *arg)
{
    slo *s = arg;
    resolve(s, true);
    s->loop = loop;
    if (s->own_clock || s->manual || !loop || s->timer_on) return;
    uv_timer_init(loop, &s->timer);
    uv_unref((uv_handle_t *)&s->timer); /* the server's handles hold the loop, not this */
    s->timer.data = s;
    s->timer_on = true;
    arm(s);
}

static void slo_stop(vie_app *app, void *loop, void *arg)
{
    slo *s = arg;
    if (s->timer_on) {
        s->timer_on = false;
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, NULL); /* s outlives the loop's last run */
    }
    s->loop = NULL;
}

/* ------------------------------------------------------------------ */
/* /metrics and /debug/slo                                             */

static void label(vie_buf *b, const char *k, const char *v, bool first)
{
    buf_printf(b, "%s%s=\"", first ? "" : ",", k);
    metrics_label(b, v);
    buf_printf(b, "\"");
}

static void slo_metrics(vie_buf *b, void *arg)
{
    metrics_help(b, "vie_slo_burn_rate", "gauge",
                 "Error budget burn rate over a window: (bad / total) / (1 - objective).");
    for (slo *s = arg; s; s = s->next_in_app) {
        uint64_t now = s->clock_ns();
        for (size_t i = 0; i < s->n_series; i++) {
            const slo_series *se = &s->series[i];
            for (size_t w = 0; w < s->n_windows; w++) {
                double rate = burn_rate(burn_window(&se->ring, now, s->windows[w].ns), se->budget);
                buf_printf(b, "vie_slo_burn_rate{");
                label(b, "slo", s->name, true);
                label(b, "objective", s->obj[se->obj].name, false);
                label(b, "sli", sli_names[se->sli], false);
                label(b, "window", s->windows[w].text, false);
                buf_printf(b, "} %.6g\n", rate);
            }
        }
    }
    metrics_help(b, "vie_slo_alert_firing", "gauge",
                 "1 when the alert fired at the last evaluation.");
    for (slo *s = arg; s; s = s->next_in_app) {
        uint32_t firing = atomic_load(&s->ev->hold.firing);
        for (size_t a = 0; a < s->n_alerts; a++) {
            buf_printf(b, "vie_slo_alert_firing{");
            label(b, "slo", s->name, true);
            label(b, "alert", s->alerts[a].name, false);
            buf_printf(b, "} %d\n", firing & (1u << a) ? 1 : 0);
        }
    }
    metrics_help(b, "vie_slo_actions_total", "counter", "Actions the SLO alerts started.");
    for (slo *s = arg; s; s = s->next_in_app) {
        for (size_t i = 0; i < s->n_tighten + s->n_degrade; i++) {
            bool t = i < s->n_tighten;
            size_t k = t ? i : i - s->n_tighten;
            buf_printf(b, "vie_slo_actions_total{");
            label(b, "slo", s->name, true);
            label(b, "action", t ? "tighten" : "degrade", false);
            label(b, "target", t ? s->tighten[k].rate_limit : s->degrade[k].route, false);
            buf_printf(b, "} %llu\n",
                       (unsigned long long)s->ev->started[t ? k : VIE_SLO_MAX_ACTIONS + k]);
        }
    }
    metrics_help(b, "vie_slo_requests_total", "counter",
                 "Requests measured against each objective, good or bad.");
    for (slo *s = arg; s; s = s->next_in_app) {
        for (size_t i = 0; i < s->n_series; i++) {
            for (int bad = 0; bad < 2; bad++) {
                buf_printf(b, "vie_slo_requests_total{");
                label(b, "slo", s->name, true);
                label(b, "objective", s->obj[s->series[i].obj].name, false);
                label(b, "sli", sli_names[s->series[i].sli], false);
                label(b, "result", bad ? "bad" : "good", false);
                buf_printf(b, "} %llu\n", (unsigned long long)s->counts->totals[i][bad]);
            }
        }
    }
    metrics_help(b, "vie_slo_degraded_total", "counter",
                 "Requests the slo layer answered with a degraded route's fallback.");
    for (slo *s = arg; s; s = s->next_in_app) {
        for (size_t i = 0; i < s->n_degrade; i++) {
            buf_printf(b, "vie_slo_degraded_total{");
            label(b, "slo", s->name, true);
            label(b, "route", s->degrade[i].route, false);
            buf_printf(b, "} %llu\n", (unsigned long long)s->n->answered[i]);
        }
    }
    metrics_help(b, "vie_slo_problems", "gauge",
                 "Objective, degrade and tighten names that could not be resolved at start.");
    for (slo *s = arg; s; s = s->next_in_app) {
        buf_printf(b, "vie_slo_problems{");
        label(b, "slo", s->name, true);
        buf_printf(b, "} %llu\n", (unsigned long long)s->n->problems);
    }
}

static void json_str(vie_buf *b, const char *s)
{
    if (!s) {
        buf_printf(b, "null");
        return;
    }
    size_t n = strlen(s);
    if (buf_reserve(b, n * 6 + 3) != 0) return;
    b->len += json_escape(b->data + b->len, n * 6 + 3, s, n);
}

static void debug_one(vie_buf *b, slo *s)
{
    uint64_t now = s->clock_ns();
    const burn_hold *h = &s->ev->hold;
    uint32_t firing = atomic_load(&h->firing);
    buf_printf(b, "{\"name\":");
    json_str(b, s->name);
    buf_printf(b,
               ",\"window_scale\":%.6g,\"evaluate_every_ms\":%u,\"hold\":%u,\"bucket_ms\":%.6g,"
               "\"evaluations\":%llu,\"quiet\":%u,\"actions_in_force\":%s,\"objectives\":[",
               s->scale, s->every_ms, s->hold, (double)s->width_ns / 1e6,
               (unsigned long long)atomic_load(&h->evaluations), atomic_load(&h->quiet),
               atomic_load(&h->active) ? "true" : "false");
    for (size_t i = 0; i < s->n_series; i++) {
        const slo_series *se = &s->series[i];
        buf_printf(b, "%s{\"name\":", i ? "," : "");
        json_str(b, s->obj[se->obj].name);
        buf_printf(b, ",\"route\":");
        json_str(b, s->obj[se->obj].route);
        buf_printf(b, ",\"sli\":\"%s\",\"objective\":%.10g,\"budget\":%.10g", sli_names[se->sli],
                   se->target, se->budget);
        if (se->sli == SLI_LATENCY) buf_printf(b, ",\"threshold_ms\":%u", se->threshold_ms);
        buf_printf(b, ",\"requests\":{\"good\":%llu,\"bad\":%llu},\"windows\":[",
                   (unsigned long long)s->counts->totals[i][0],
                   (unsigned long long)s->counts->totals[i][1]);
        for (size_t w = 0; w < s->n_windows; w++) {
            burn_counts c = burn_window(&se->ring, now, s->windows[w].ns);
            buf_printf(b, "%s{\"window\":\"%s\",\"scaled_ms\":%.6g,\"good\":%llu,\"bad\":%llu,",
                       w ? "," : "", s->windows[w].text, (double)s->windows[w].ns / 1e6,
                       (unsigned long long)c.good, (unsigned long long)c.bad);
            buf_printf(b, "\"burn_rate\":%.6g}", burn_rate(c, se->budget));
        }
        buf_printf(b, "],\"alerts\":{");
        for (size_t a = 0; a < s->n_alerts; a++) {
            burn_alert_result r;
            burn_alert_eval(&se->ring, now, &s->alerts[a].a, se->budget, &r);
            buf_printf(b, "%s", a ? "," : "");
            json_str(b, s->alerts[a].name);
            buf_printf(b, ":%s", r.fires ? "true" : "false");
        }
        buf_printf(b, "}}");
    }
    buf_printf(b, "],\"alerts\":[");
    for (size_t a = 0; a < s->n_alerts; a++) {
        const slo_alert *al = &s->alerts[a];
        buf_printf(b, "%s{\"name\":", a ? "," : "");
        json_str(b, al->name);
        buf_printf(b,
                   ",\"long\":\"%s\",\"short\":\"%s\",\"burn\":%.6g,\"firing\":%s,"
                   "\"streak\":%u}",
                   al->long_text, al->short_text, al->a.factor,
                   firing & (1u << a) ? "true" : "false", atomic_load(&h->streak[a]));
    }
    buf_printf(b, "],\"actions\":[");
    for (size_t i = 0; i < s->n_tighten; i++) {
        buf_printf(b, "%s{\"action\":\"tighten\",\"target\":", i ? "," : "");
        json_str(b, s->tighten[i].rate_limit);
        buf_printf(b, ",\"factor\":%.6g,\"in_force\":%s,\"started\":%llu}", s->tighten[i].factor,
                   atomic_load(&h->active) ? "true" : "false",
                   (unsigned long long)s->ev->started[i]);
    }
    for (size_t i = 0; i < s->n_degrade; i++) {
        const slo_degrade *d = &s->degrade[i];
        buf_printf(b, "%s{\"action\":\"degrade\",\"target\":", i || s->n_tighten ? "," : "");
        json_str(b, d->route);
        buf_printf(b,
                   ",\"status\":%d,\"retry_after\":%u,\"in_force\":%s,\"started\":%llu,"
                   "\"answered\":%llu}",
                   d->status, d->retry_after_s, atomic_load(&s->ev->degraded[i]) ? "true" : "false",
                   (unsigned long long)s->ev->started[VIE_SLO_MAX_ACTIONS + i],
                   (unsigned long long)s->n->answered[i]);
    }
    buf_printf(b, "],\"problems\":[");
    for (size_t i = 0; i < s->n_problems; i++) {
        if (i) buf_printf(b, ",");
        json_str(b, s->problems[i]);
    }
    buf_printf(b, "]}");
}

static vie_status slo_debug_handler(vie_ctx *c, void *arg)
{
    vie_buf b = {0};
    buf_printf(&b, "{\"slos\":[");
    for (slo *s = slo_list(c->app); s; s = s->next_in_app) {
        if (s != slo_list(c->app)) buf_printf(&b, ",");
        debug_one(&b, s);
    }
    buf_printf(&b, "]}");
    if (buf_reserve(&b, 1) != 0) {
        buf_free(&b);
        return vie_send_problem(c, 500, "out of memory for the SLO report");
    }
    b.data[b.len] = 0;
    vie_status st = vie_send_json(c, 200, b.data);
    buf_free(&b);
    return st;
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */

static void slo_free(void *state)
{
    slo *s = state;
    if (!s) return;
    for (size_t i = 0; i < s->n_obj; i++) {
        free(s->obj[i].name);
        free(s->obj[i].route);
    }
    for (size_t i = 0; i < s->n_alerts; i++)
        free(s->alerts[i].name);
    for (size_t i = 0; i < s->n_tighten; i++)
        free(s->tighten[i].rate_limit);
    for (size_t i = 0; i < s->n_degrade; i++) {
        free(s->degrade[i].route);
        free(s->degrade[i].body);
        free(s->degrade[i].content_type);
        free(s->degrade[i].detail);
    }
    free(s->route_series);
    free(s->route_degrade);
    problems_free(s);
    free(s->name);
    free(s);
}

void vie_slo_opts_init(vie_slo_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->window_scale = 1.0;
    o->hold = 3;
    o->debug_endpoint = true;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = true;
    return d;
}

static void add_window(slo *s, uint32_t ms)
{
    for (size_t i = 0; i < s->n_windows; i++)
        if (s->windows[i].ms == ms) return;
    slo_window *w = &s->windows[s->n_windows++];
    w->ms = ms;
    w->ns = burn_scale((uint64_t)ms * 1000000u, s->scale);
    ms_text(ms, w->text, sizeof w->text);
}

/* The layer's state from checked options; NULL when out of memory. */
static slo *slo_new(vie_app *app, const char *name, const vie_slo_opts *o)
{
    slo *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    bool oom = false;
    s->app = app;
    s->name = dup_or_null(name, &oom);
    s->scale = o->window_scale;
    s->hold = o->hold;
    s->debug = o->debug_endpoint;
    s->own_clock = o->clock_ns != NULL;
    s->clock_ns = o->clock_ns ? o->clock_ns : exec_ns;
    s->every_ms = o->evaluate_every_ms ? o->evaluate_every_ms : default_every_ms(o->window_scale);
    s->every_ns = (uint64_t)s->every_ms * 1000000u;
    for (size_t i = 0; i < o->n_objectives; i++) {
        const vie_slo_objective *ob = &o->objectives[i];
        s->obj[i].name = dup_or_null(ob->name, &oom);
        s->obj[i].route = dup_or_null(ob->route, &oom);
        s->n_obj++;
        if (ob->availability > 0)
            s->series[s->n_series++] = (slo_series){
                .obj = (uint32_t)i,
                .sli = SLI_AVAILABILITY,
                .target = ob->availability,
                .budget = (100 - ob->availability) / 100,
            };
        if (ob->latency_percentile > 0)
            s->series[s->n_series++] = (slo_series){
                .obj = (uint32_t)i,
                .sli = SLI_LATENCY,
                .target = ob->latency_percentile,
                .budget = (100 - ob->latency_percentile) / 100,
                .threshold_ms = ob->latency_threshold_ms,
                .threshold_ns = (uint64_t)ob->latency_threshold_ms * 1000000u,
            };
    }
    const vie_slo_alert *al = o->alerts ? o->alerts : default_alerts;
    size_t n_al = o->alerts ? o->n_alerts : 2;
    uint64_t shortest = UINT64_MAX, longest = 0;
    for (size_t i = 0; i < n_al; i++) {
        slo_alert *a = &s->alerts[i];
        a->name = dup_or_null(al[i].name, &oom);
        a->long_ms = al[i].long_ms;
        a->short_ms = al[i].short_ms;
        a->a.long_ns = burn_scale((uint64_t)al[i].long_ms * 1000000u, o->window_scale);
        a->a.short_ns = burn_scale((uint64_t)al[i].short_ms * 1000000u, o->window_scale);
        a->a.factor = al[i].burn;
        a->a.min_requests = o->min_requests;
        ms_text(a->long_ms, a->long_text, sizeof a->long_text);
        ms_text(a->short_ms, a->short_text, sizeof a->short_text);
        if (a->a.short_ns < shortest) shortest = a->a.short_ns;
        if (a->a.long_ns > longest) longest = a->a.long_ns;
        s->n_alerts++;
        add_window(s, a->long_ms);
        add_window(s, a->short_ms);
    }
    burn_layout(shortest, longest, &s->width_ns,
                &s->n_buckets); /* checked: 1 ms <= short <= long */
    for (size_t i = 0; i < o->n_tighten; i++) {
        s->tighten[i].rate_limit = dup_or_null(o->tighten[i].rate_limit, &oom);
        s->tighten[i].factor = o->tighten[i].factor;
        s->n_tighten++;
    }
    uint32_t retry = (uint32_t)(((uint64_t)s->hold * s->every_ms + 999) / 1000);
    if (retry < 1) retry = 1;
    if (retry > SLO_MAX_RETRY_S) retry = SLO_MAX_RETRY_S;
    for (size_t i = 0; i < o->n_degrade; i++) {
        const vie_slo_degrade *d = &o->degrade[i];
        slo_degrade *g = &s->degrade[i];
        s->n_degrade++;
        g->route = dup_or_null(d->route, &oom);
        g->status = d->status ? d->status : 503;
        g->body = dup_or_null(d->body, &oom);
        g->content_type =
            d->body
                ? dup_or_null(d->content_type ? d->content_type : "text/plain; charset=utf-8", &oom)
                : NULL;
        g->retry_after_s = d->retry_after_s ? d->retry_after_s : retry;
        snprintf(g->retry_text, sizeof g->retry_text, "%u", g->retry_after_s);
        size_t dl = strlen(name) + strlen(d->route) + 96;
        g->detail = malloc(dl);
        if (g->detail)
            snprintf(g->detail, dl,
                     "%s is degraded by slo %s while its error budget burns: retry later", d->route,
                     name);
        else
            oom = true;
    }
    if (oom || !shared_attach(s)) {
        slo_free(s);
        return NULL;
    }
    return s;
}

/* Warnings about a configuration that works but likely not as meant. */
static void warn_odd(const slo *s)
{
    for (size_t a = 0; a < s->n_alerts; a++)
        for (size_t i = 0; i < s->n_series; i++) {
            const slo_series *se = &s->series[i];
            double most = 1 / se->budget; /* every request bad */
            if (s->alerts[a].a.factor > most * (1 + 1e-9))
                LOG_WARN("slo %s: alert %s (burn %g) can never fire for %s/%s: with every request "
                         "bad it burns %.4g",
                         s->name, s->alerts[a].name, s->alerts[a].a.factor, s->obj[se->obj].name,
                         sli_names[se->sli], most);
        }
    uint64_t shortest = UINT64_MAX;
    for (size_t a = 0; a < s->n_alerts; a++)
        if (s->alerts[a].a.short_ns < shortest) shortest = s->alerts[a].a.short_ns;
    if (s->every_ns > shortest)
        LOG_WARN("slo %s: evaluating every %u ms, less often than the shortest window lasts "
                 "(%.6g ms): short bursts are missed",
                 s->name, s->every_ms, (double)shortest / 1e6);
}

static int metrics_join(vie_app *app, slo *s, bool *first)
{
    slo *head = slo_list(app);
    *first = head == NULL;
    if (!head) return metrics_add_source(app, slo_metrics, s);
    while (head->next_in_app)
        head = head->next_in_app;
    head->next_in_app = s;
    return VIE_OK;
}

static bool debug_route_wanted(vie_app *app, const slo *except)
{
    for (const slo *s = slo_list(app); s; s = s->next_in_app)
        if (s != except && s->debug) return true;
    return false;
}

int vie_use_slo(vie_app *app, const vie_layer_opts *lo, const vie_slo_opts *o)
{
    const char *name = mw_name(lo, "slo");
    if (!app) {
        LOG_ERROR("vie_use_slo refused: the app is NULL");
        return VIE_EINVAL;
    }
    if (!o) {
        LOG_ERROR("slo %s: the options are NULL (objectives are required)", name);
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_use_slo", name);
    slo_problem pr;
    if (!slo_check(o, &pr)) {
        if (pr.list)
            LOG_ERROR("slo %s: option %s[%d].%s: %s", name, pr.list, pr.item, pr.option, pr.msg);
        else
            LOG_ERROR("slo %s: option %s: %s", name, pr.option, pr.msg);
        return VIE_EINVAL;
    }
    slo *s = slo_new(app, name, o);
    if (!s) {
        LOG_ERROR("slo %s: out of memory (or shared memory) for the layer", name);
        return VIE_ENOMEM;
    }
    vie_middleware base = {
        .name = "slo",
        .phase = VIE_OBSERVE,
        .before = slo_before,
        .after = slo_after,
        .free_state = slo_free,
    };
    int rc = mw_register(app, lo, &base, s); /* frees s on failure */
    if (rc != VIE_OK) return rc;
    /* Registered: s belongs to the app from here on. */
    bool debug_served = debug_route_wanted(app, NULL);
    bool first;
    if ((rc = app_add_freeze_check(app, slo_freeze_check, s)) != VIE_OK ||
        (rc = vie_app_hook_add(app, VIE_EV_WORKER_START, slo_start, s)) != VIE_OK ||
        (rc = vie_app_hook_add(app, VIE_EV_WORKER_STOP, slo_stop, s)) != VIE_OK ||
        (rc = metrics_join(app, s, &first)) != VIE_OK) {
        LOG_ERROR("slo %s: cannot add its worker hooks or metrics: %s", name, vie_strerror(rc));
        return rc;
    }
    if (s->debug && !debug_served &&
        (rc = vie_route(app, "GET", SLO_DEBUG_PATH, slo_debug_handler, NULL)) != VIE_OK) {
        LOG_ERROR("slo %s: cannot serve GET " SLO_DEBUG_PATH ": %s", name, vie_strerror(rc));
        return rc;
    }
    LOG_INFO("slo %s: %zu objective series, %zu alerts, window_scale %g (buckets of %.6g ms), "
             "evaluating every %u ms, hold %u, %zu tighten and %zu degrade actions",
             name, s->n_series, s->n_alerts, s->scale, (double)s->width_ns / 1e6, s->every_ms,
             s->hold, s->n_tighten, s->n_degrade);
    warn_odd(s);
    return VIE_OK;
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

/* The params of item i of list (a YAML list of maps), named
 * "<list>[i]." in messages. False (error recorded) when it is not a map. */
static bool item_params(cfg_params *p, const cfg_node *item, const char *list, size_t i,
                        cfg_params *ip)
{
    if (item->kind != CFG_MAP) {
        cfg_error_at(p->cx, &item->mark, "%s: key \"%s%s[%zu]\": expected a map, got %s",
                     p->what ? p->what : "slo", p->prefix ? p->prefix : "", list, i,
                     cfg_kind_name(item));
        p->errors++;
        return false;
    }
    cfg_params_init(ip, p->cx, item, p->what);
    char pre[96];
    snprintf(pre, sizeof pre, "%s%s[%zu].", p->prefix ? p->prefix : "", list, i);
    ip->prefix = cfg_strdup(p->cx, pre);
    return true;
}

/* The list at key: NULL when absent; error when not a list or too long. */
static const cfg_node *list_node(cfg_params *p, const char *key, size_t max, const char *what)
{
    const cfg_node *n = cfg_get_node(p, key);
    if (!n) return NULL;
    if (n->kind != CFG_SEQ) {
        cfg_error(p, key, "expected a list of %s, got %s", what, cfg_kind_name(n));
        return NULL;
    }
    if (n->n > max) {
        cfg_error(p, key, "at most %zu %s, got %zu", max, what, n->n);
        return NULL;
    }
    return n;
}

static const cfg_node *nth(const cfg_node *list, int i)
{
    const cfg_node *n = list ? list->first : NULL;
    for (int k = 0; n && k < i; k++)
        n = n->next;
    return n;
}

static const cfg_node *member_or_null(const cfg_node *map, const char *key)
{
    return map && map->kind == CFG_MAP ? cfg_member(map, key) : NULL;
}

/* Put a slo_check problem at its place in the YAML. */
static void problem_at(cfg_params *p, const slo_problem *pr)
{
    const cfg_node *root = p->map;
    const cfg_node *at = NULL;
    char key[160];
    if (pr->list) {
        const cfg_node *l = !strncmp(pr->list, "actions.", 8)
                                ? member_or_null(member_or_null(root, "actions"), pr->list + 8)
                                : member_or_null(root, pr->list);
        const cfg_node *item = nth(l, pr->item);
        const cfg_node *v = item;
        const char *dot = strchr(pr->key, '.');
        if (dot) {
            char head[32];
            snprintf(head, sizeof head, "%.*s", (int)(dot - pr->key), pr->key);
            v = member_or_null(member_or_null(item, head), dot + 1);
        } else {
            v = member_or_null(item, pr->key);
        }
        at = v ? v : item ? item : l;
        snprintf(key, sizeof key, "%s[%d].%s", pr->list, pr->item, pr->key);
    } else {
        const char *dot = strchr(pr->key, '.');
        at = dot ? member_or_null(member_or_null(root, "actions"), dot + 1)
                 : member_or_null(root, pr->key);
        snprintf(key, sizeof key, "%s", pr->key);
    }
    const cfg_mark *m = at ? &at->mark : p->mark;
    if (p->what)
        cfg_error_at(p->cx, m, "%s: key \"%s\": %s", p->what, key, pr->msg);
    else
        cfg_error_at(p->cx, m, "key \"%s\": %s", key, pr->msg);
    p->errors++;
}

int mw_slo_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_slo_opts o;
    vie_slo_opts_init(&o);
    int errors = 0;

    cfg_require(p, "objectives");
    const cfg_node *objs = list_node(p, "objectives", VIE_SLO_MAX_OBJECTIVES, "objectives");
    vie_slo_objective *ov = objs ? cfg_alloc(p->cx, (objs->n + 1) * sizeof *ov) : NULL;
    size_t i = 0;
    for (const cfg_node *it = objs ? objs->first : NULL; it; it = it->next, i++) {
        cfg_params ip, lat;
        if (!item_params(p, it, "objectives", i, &ip)) continue;
        vie_slo_objective *ob = &ov[o.n_objectives++];
        memset(ob, 0, sizeof *ob);
        cfg_require(&ip, "name");
        cfg_get_str(&ip, "name", &ob->name, NULL);
        cfg_get_str(&ip, "route", &ob->route, NULL);
        if (cfg_get_percent(&ip, "availability", &ob->availability, 0) && !(ob->availability > 0))
            cfg_error(&ip, "availability", "expected a percentage above 0 and below 100");
        cfg_params_sub(&ip, "latency", &lat);
        if (lat.map) {
            cfg_require(&lat, "percentile");
            cfg_require(&lat, "threshold");
        }
        if (cfg_get_percent(&lat, "percentile", &ob->latency_percentile, 0) &&
            !(ob->latency_percentile > 0))
            cfg_error(&lat, "percentile", "expected a percentage above 0 and below 100");
        cfg_get_ms(&lat, "threshold", &ob->latency_threshold_ms, 1, SLO_MAX_LATENCY_MS, 0);
        errors += cfg_params_finish(&lat) + cfg_params_finish(&ip);
    }
    o.objectives = ov;

    const cfg_node *als = list_node(p, "alerts", VIE_SLO_MAX_ALERTS, "alerts");
    if (als) {
        vie_slo_alert *av = cfg_alloc(p->cx, (als->n + 1) * sizeof *av);
        i = 0;
        for (const cfg_node *it = als->first; it; it = it->next, i++) {
            cfg_params ip;
            if (!item_params(p, it, "alerts", i, &ip)) continue;
            vie_slo_alert *a = &av[o.n_alerts++];
            memset(a, 0, sizeof *a);
            cfg_require(&ip, "name");
            cfg_require(&ip, "long");
            cfg_require(&ip, "short");
            cfg_require(&ip, "burn");
            cfg_get_str(&ip, "name", &a->name, NULL);
            cfg_get_ms(&ip, "long", &a->long_ms, 1, SLO_MAX_WINDOW_MS, 0);
            cfg_get_ms(&ip, "short", &a->short_ms, 1, SLO_MAX_WINDOW_MS, 0);
            cfg_get_double(&ip, "burn", &a->burn, 0, SLO_MAX_BURN, 0);
            errors += cfg_params_finish(&ip);
        }
        o.alerts = av;
    }

    cfg_get_double(p, "window_scale", &o.window_scale, 0, 1, 1);
    cfg_get_ms(p, "evaluate_every", &o.evaluate_every_ms, 1, SLO_MAX_EVERY_MS, 0);
    cfg_get_u32(p, "hold", &o.hold, 1, SLO_MAX_HOLD, 3);
    cfg_get_u32(p, "min_requests", &o.min_requests, 0, 1000000000u, 0);
    cfg_get_bool(p, "debug_endpoint", &o.debug_endpoint, true);

    cfg_params act;
    cfg_params_sub(p, "actions", &act);
    const cfg_node *tl = list_node(&act, "tighten", VIE_SLO_MAX_ACTIONS, "tighten entries");
    if (tl) {
        vie_slo_tighten *tv = cfg_alloc(p->cx, (tl->n + 1) * sizeof *tv);
        i = 0;
        for (const cfg_node *it = tl->first; it; it = it->next, i++) {
            cfg_params ip;
            if (!item_params(&act, it, "tighten", i, &ip)) continue;
            vie_slo_tighten *t = &tv[o.n_tighten++];
            cfg_require(&ip, "rate_limit");
            cfg_require(&ip, "factor");
            cfg_get_str(&ip, "rate_limit", &t->rate_limit, NULL);
            cfg_get_double(&ip, "factor", &t->factor, 0, 1, 0);
            errors += cfg_params_finish(&ip);
        }
        o.tighten = tv;
    }
    const cfg_node *dl = list_node(&act, "degrade", VIE_SLO_MAX_ACTIONS, "degrade entries");
    if (dl) {
        vie_slo_degrade *dv = cfg_alloc(p->cx, (dl->n + 1) * sizeof *dv);
        i = 0;
        for (const cfg_node *it = dl->first; it; it = it->next, i++) {
            cfg_params ip;
            if (!item_params(&act, it, "degrade", i, &ip)) continue;
            vie_slo_degrade *d = &dv[o.n_degrade++];
            memset(d, 0, sizeof *d);
            uint32_t retry_ms = 0;
            cfg_require(&ip, "route");
            cfg_get_str(&ip, "route", &d->route, NULL);
            cfg_get_int(&ip, "status", &d->status, 200, 599, 0);
            cfg_get_str(&ip, "body", &d->body, NULL);
            cfg_get_str(&ip, "content_type", &d->content_type, NULL);
            cfg_get_ms(&ip, "retry_after", &retry_ms, 1000, SLO_MAX_RETRY_S * 1000u, 0);
            d->retry_after_s = (retry_ms + 999) / 1000;
            errors += cfg_params_finish(&ip);
        }
        o.degrade = dv;
    }

    errors += cfg_params_finish(&act);
    errors += cfg_params_finish(p);
    if (errors) return VIE_EINVAL;

    slo_problem pr;
    if (!slo_check(&o, &pr)) {
        problem_at(p, &pr);
        return VIE_EINVAL;
    }
    int rc = vie_use_slo(app, lo, &o);
    if (rc != VIE_OK) cfg_error(p, NULL, "cannot register the slo layer: %s", vie_strerror(rc));
    return rc;
}
