/* The circuit breaker's state machine and window (breaker.h): pure
 * functions over a cb_core and its window, with the time passed in. The
 * semantics are documented in breaker.h. */
#include "mw/breaker.h"

#include <stdio.h>
#include <string.h>

static const char *const state_lower[CB_N_STATES] = {"closed",   "open",        "half_open",
                                                     "disabled", "forced_open", "metrics_only"};
static const char *const state_upper[CB_N_STATES] = {"CLOSED",   "OPEN",        "HALF_OPEN",
                                                     "DISABLED", "FORCED_OPEN", "METRICS_ONLY"};
static const char *const mode_names[] = {"normal", "disabled", "forced_open", "metrics_only"};

const char *cb_state_name(cb_state s)
{
    return (unsigned)s < CB_N_STATES ? state_lower[s] : "unknown";
}

const char *cb_state_upper(cb_state s)
{
    return (unsigned)s < CB_N_STATES ? state_upper[s] : "UNKNOWN";
}

const char *cb_mode_name(cb_mode m)
{
    return (unsigned)m <= CB_MODE_METRICS_ONLY ? mode_names[m] : "unknown";
}

cb_state cb_effective_state(const cb_core *s)
{
    switch ((cb_mode)s->mode) {
    case CB_MODE_DISABLED: return CB_DISABLED;
    case CB_MODE_FORCED_OPEN: return CB_FORCED_OPEN;
    case CB_MODE_METRICS_ONLY: return CB_METRICS_ONLY;
    default: return (cb_state)s->state;
    }
}

/* ------------------------------------------------------------------ */
/* Latency histogram                                                   */

uint64_t cb_hist_bound(uint64_t unit, int j)
{
    if (j >= CB_HIST - 1) return UINT64_MAX;
    if (j <= CB_HIST_AT) return unit >> (CB_HIST_AT - j);
    return unit << (j - CB_HIST_AT); /* unit <= 1 h: no overflow for 7 doublings */
}

int cb_hist_bucket(uint64_t unit, uint64_t d)
{
    if (!unit) return 0;
    for (int j = 0; j < CB_HIST - 1; j++)
        if (d <= cb_hist_bound(unit, j)) return j;
    return CB_HIST - 1;
}

/* The bucket holding the nearest-rank p99 of the window's calls. */
static int p99_bucket(const cb_core *s)
{
    uint64_t need = (99 * s->calls + 99) / 100; /* ceil(0.99 n) */
    uint64_t cum = 0;
    for (int j = 0; j < CB_HIST; j++) {
        cum += s->hist[j];
        if (cum >= need) return j;
    }
    return CB_HIST - 1;
}

/* ------------------------------------------------------------------ */
/* The window                                                          */

size_t cb_window_bytes(const cb_config *cfg)
{
    return (size_t)cfg->window_size *
           (cfg->window == CB_WINDOW_COUNT ? sizeof(cb_slot) : sizeof(cb_second));
}

bool cb_layout_matches(const cb_core *s, const cb_config *cfg)
{
    return s->window_kind == (uint32_t)cfg->window && s->window_size == cfg->window_size &&
           s->hist_unit_ns == cfg->p99_ns;
}

static void window_clear(cb *b)
{
    cb_core *s = b->core;
    s->calls = s->failures = s->slows = 0;
    memset(s->hist, 0, sizeof s->hist);
    s->pos = s->filled = 0;
    s->head_sec = -1;
    if (s->window_kind == CB_WINDOW_COUNT) {
        memset(b->win, 0, (size_t)s->window_size * sizeof(cb_slot));
    } else {
        cb_second *w = b->win;
        for (uint32_t i = 0; i < s->window_size; i++) {
            memset(&w[i], 0, sizeof w[i]);
            w[i].sec = -1;
        }
    }
}

/* Drop the seconds that left a TIME window by second sec. */
static void advance(cb *b, int64_t sec)
{
    cb_core *s = b->core;
    if (sec <= s->head_sec) return;
    int64_t size = s->window_size;
    int64_t from = s->head_sec + 1;
    if (from < sec - size + 1) from = sec - size + 1;
    cb_second *w = b->win;
    for (int64_t t = from; t <= sec; t++) {
        cb_second *q = &w[t % size];
        if (q->sec >= 0) {
            s->calls -= q->calls;
            s->failures -= q->failures;
            s->slows -= q->slows;
            for (int j = 0; j < CB_HIST; j++)
                s->hist[j] -= q->hist[j];
        }
        memset(q, 0, sizeof *q);
        q->sec = t;
    }
    s->head_sec = sec;
}

static void window_add(cb *b, uint64_t now, bool failure, bool slow, uint64_t d)
{
    cb_core *s = b->core;
    int h = cb_hist_bucket(s->hist_unit_ns, d);
    if (s->window_kind == CB_WINDOW_COUNT) {
        cb_slot *w = b->win;
        if (s->filled == s->window_size) {
            cb_slot *old = &w[s->pos];
            s->calls--;
            s->failures -= (old->flags & CB_F_FAILURE) != 0;
            s->slows -= (old->flags & CB_F_SLOW) != 0;
            s->hist[old->hist]--;
        } else {
            s->filled++;
        }
        w[s->pos].flags = (uint8_t)((failure ? CB_F_FAILURE : 0) | (slow ? CB_F_SLOW : 0));
        w[s->pos].hist = (uint8_t)h;
        s->pos = (s->pos + 1) % s->window_size;
    } else {
        int64_t sec = (int64_t)(now / CB_NS_PER_S);
        advance(b, sec);
        /* Another worker's call may end a moment before the latest second
         * seen: it counts if its second is still in the window. */
        if (sec <= s->head_sec - (int64_t)s->window_size) return;
        cb_second *q = &((cb_second *)b->win)[sec % s->window_size];
        if (q->sec != sec) return;
        q->calls++;
        q->failures += failure;
        q->slows += slow;
        q->hist[h]++;
    }
    s->calls++;
    s->failures += failure;
    s->slows += slow;
    s->hist[h]++;
}

void cb_recount(cb *b)
{
    cb_core *s = b->core;
    s->calls = s->failures = s->slows = 0;
    memset(s->hist, 0, sizeof s->hist);
    if (s->window_kind == CB_WINDOW_COUNT) {
        if (s->filled > s->window_size) s->filled = s->window_size;
        s->pos %= s->window_size;
        const cb_slot *w = b->win;
        for (uint32_t i = 0; i < s->filled; i++) {
            s->calls++;
            s->failures += (w[i].flags & CB_F_FAILURE) != 0;
            s->slows += (w[i].flags & CB_F_SLOW) != 0;
            s->hist[w[i].hist % CB_HIST]++;
        }
        return;
    }
    cb_second *w = b->win;
    for (uint32_t i = 0; i < s->window_size; i++) {
        cb_second *q = &w[i];
        if (q->sec < 0) continue;
        if (q->sec > s->head_sec || q->sec <= s->head_sec - (int64_t)s->window_size ||
            q->sec % s->window_size != i) {
            memset(q, 0, sizeof *q); /* half-written by the worker that died */
            q->sec = -1;
            continue;
        }
        s->calls += q->calls;
        s->failures += q->failures;
        s->slows += q->slows;
        for (int j = 0; j < CB_HIST; j++)
            s->hist[j] += q->hist[j];
    }
}

uint64_t cb_window_rates(cb *b, uint64_t now, double *fail_pct, double *slow_pct)
{
    cb_core *s = b->core;
    if (s->window_kind == CB_WINDOW_TIME) advance(b, (int64_t)(now / CB_NS_PER_S));
    *fail_pct = s->calls ? (double)s->failures * 100.0 / (double)s->calls : 0;
    *slow_pct = s->calls ? (double)s->slows * 100.0 / (double)s->calls : 0;
    return s->calls;
}

/* count * 100 >= threshold * calls: ">=" without a division. */
static bool at_least(uint64_t count, uint64_t calls, double threshold)
{
    return (double)count * 100.0 >= threshold * (double)calls;
}

static double pct(uint64_t count, uint64_t calls)
{
    return calls ? (double)count * 100.0 / (double)calls : 0;
}

/* ------------------------------------------------------------------ */
/* Transitions                                                         */

uint64_t cb_open_wait(const cb_config *cfg, uint32_t k)
{
    uint64_t max =
        cfg->open_wait_max_ns > cfg->open_wait_ns ? cfg->open_wait_max_ns : cfg->open_wait_ns;
    if (cfg->open_wait_multiplier <= 1.0 || k == 0) return cfg->open_wait_ns;
    double w = (double)cfg->open_wait_ns;
    for (uint32_t i = 0; i < k && w < (double)max; i++)
        w *= cfg->open_wait_multiplier;
    return w >= (double)max ? max : (uint64_t)(w + 0.5);
}

static cb_event *event_add(cb_events *ev, cb_event *scratch)
{
    cb_event *e = ev && ev->n < 2 ? &ev->ev[ev->n++] : scratch;
    memset(e, 0, sizeof *e);
    e->p99_bucket = -1;
    return e;
}

static void counted(cb *b, cb_event *e, cb_state from, cb_state to)
{
    b->core->transitions[from][to]++;
    e->from = from;
    e->to = to;
    e->shadow = b->core->mode == CB_MODE_METRICS_ONLY;
}

static void probes_clear(cb_core *s)
{
    s->probes_permitted = s->probes_done = s->probe_failures = s->probe_slows = 0;
}

static void machine_reset(cb *b, uint64_t now)
{
    cb_core *s = b->core;
    s->state = CB_CLOSED;
    s->since_ns = now;
    s->open_until_ns = s->half_open_until_ns = s->open_wait_ns = 0;
    s->reopens = 0;
    probes_clear(s);
    s->epoch++;
    window_clear(b);
}

static void to_open(cb *b, uint64_t now, uint32_t k, cb_event *e)
{
    cb_core *s = b->core;
    cb_state from = (cb_state)s->state;
    uint64_t wait = cb_open_wait(b->cfg, k);
    s->state = CB_OPEN;
    s->reopens = k;
    s->open_wait_ns = wait;
    s->open_until_ns = now + wait;
    s->since_ns = now;
    s->epoch++;
    probes_clear(s);
    window_clear(b);
    e->wait_ns = wait;
    e->reopens = k;
    counted(b, e, from, CB_OPEN);
}

static void to_closed(cb *b, uint64_t now, cb_event *e)
{
    cb_core *s = b->core;
    cb_state from = (cb_state)s->state;
    machine_reset(b, now);
    counted(b, e, from, CB_CLOSED);
}

/* The transitions time alone makes: OPEN past its wait, HALF_OPEN past
 * its max_wait. */
static void tick(cb *b, uint64_t now, cb_events *ev)
{
    cb_core *s = b->core;
    cb_event scratch;
    if (s->state == CB_OPEN && now >= s->open_until_ns) {
        cb_event *e = event_add(ev, &scratch);
        e->trigger = CB_T_OPEN_WAIT;
        e->wait_ns = s->open_wait_ns;
        e->probes = b->cfg->half_open_calls;
        s->state = CB_HALF_OPEN;
        s->since_ns = now;
        s->half_open_until_ns = now + b->cfg->half_open_max_wait_ns;
        s->epoch++;
        probes_clear(s);
        counted(b, e, CB_OPEN, CB_HALF_OPEN);
    } else if (s->state == CB_HALF_OPEN && now >= s->half_open_until_ns) {
        cb_event *e = event_add(ev, &scratch);
        e->trigger = CB_T_HALF_OPEN_EXPIRED;
        e->probes_done = s->probes_done;
        e->probes = b->cfg->half_open_calls;
        to_open(b, now, s->reopens + 1, e);
    }
}

static void judge_window(cb *b, uint64_t now, cb_events *ev)
{
    cb_core *s = b->core;
    const cb_config *cfg = b->cfg;
    if (s->calls < cfg->min_calls) return;
    bool fail = at_least(s->failures, s->calls, cfg->failure_rate);
    bool slow = at_least(s->slows, s->calls, cfg->slow_rate);
    bool p99 = false;
    int pb = -1;
    if (cfg->p99_ns && s->hist_unit_ns == cfg->p99_ns) {
        pb = p99_bucket(s);
        p99 =
            pb > CB_HIST_AT && (double)s->failures * 100.0 > cfg->p99_error_rate * (double)s->calls;
    }
    if (!fail && !slow && !p99) return;
    cb_event scratch, *e = event_add(ev, &scratch);
    e->trigger = fail ? CB_T_FAILURE_RATE : slow ? CB_T_SLOW_RATE : CB_T_P99;
    e->calls = s->calls;
    e->fail_pct = pct(s->failures, s->calls);
    e->slow_pct = pct(s->slows, s->calls);
    e->p99_bucket = pb;
    to_open(b, now, 0, e);
}

static void judge_probes(cb *b, uint64_t now, cb_events *ev)
{
    cb_core *s = b->core;
    const cb_config *cfg = b->cfg;
    uint64_t n = s->probes_done;
    cb_event scratch, *e = event_add(ev, &scratch);
    e->calls = n;
    e->fail_pct = pct(s->probe_failures, n);
    e->slow_pct = pct(s->probe_slows, n);
    e->probes_done = s->probes_done;
    e->probes = cfg->half_open_calls;
    bool fail = at_least(s->probe_failures, n, cfg->failure_rate);
    bool slow = at_least(s->probe_slows, n, cfg->slow_rate);
    if (fail || slow) {
        e->trigger = CB_T_PROBES_FAILED;
        e->by_slow = !fail;
        to_open(b, now, s->reopens + 1, e);
    } else {
        e->trigger = CB_T_PROBES_OK;
        to_closed(b, now, e);
    }
}

/* ------------------------------------------------------------------ */
/* Calls                                                               */

void cb_init(cb *b, uint64_t now)
{
    cb_core *s = b->core;
    memset(s, 0, sizeof *s);
    s->mode = b->cfg->mode;
    cb_relayout(b, now);
}

void cb_relayout(cb *b, uint64_t now)
{
    cb_core *s = b->core;
    s->window_kind = b->cfg->window;
    s->window_size = b->cfg->window_size;
    s->hist_unit_ns = b->cfg->p99_ns;
    machine_reset(b, now);
}

void cb_apply_mode(cb *b, uint64_t now, cb_events *ev)
{
    cb_core *s = b->core;
    cb_mode from = (cb_mode)s->mode, to = b->cfg->mode;
    if (from == to) return;
    cb_state old = cb_effective_state(s);
    if ((from == CB_MODE_DISABLED || from == CB_MODE_FORCED_OPEN) &&
        (to == CB_MODE_NORMAL || to == CB_MODE_METRICS_ONLY))
        machine_reset(b, now);
    s->mode = to;
    cb_event scratch, *e = event_add(ev, &scratch);
    e->trigger = CB_T_MODE;
    e->mode_from = from;
    e->mode_to = to;
    counted(b, e, old, cb_effective_state(s));
    e->shadow = false; /* a configuration change is real in every mode */
}

cb_permit cb_acquire(cb *b, uint64_t now, cb_events *ev)
{
    cb_core *s = b->core;
    cb_permit p = {.kind = CB_UNTRACKED, .epoch = s->epoch};
    switch ((cb_mode)s->mode) {
    case CB_MODE_DISABLED: return p;
    case CB_MODE_FORCED_OPEN:
        s->kinds[CB_K_NOT_PERMITTED]++;
        p.kind = CB_REFUSED;
        p.refused_by = CB_FORCED_OPEN;
        return p;
    default: break;
    }
    tick(b, now, ev);
    p.epoch = s->epoch;
    if (s->state == CB_CLOSED) {
        p.kind = CB_CALL;
    } else if (s->state == CB_HALF_OPEN && s->probes_permitted < b->cfg->half_open_calls) {
        s->probes_permitted++;
        p.kind = CB_PROBE;
    } else {
        s->kinds[CB_K_NOT_PERMITTED]++;
        p.refused_by = (cb_state)s->state;
        p.retry_after_ns =
            s->state == CB_OPEN && s->open_until_ns > now ? s->open_until_ns - now : 0;
        /* Shadow mode: refused by the machine, let through by the layer,
         * and its result ignored, as a refused call has none. */
        p.kind = s->mode == CB_MODE_METRICS_ONLY ? CB_UNTRACKED : CB_REFUSED;
    }
    return p;
}

void cb_record(cb *b, const cb_permit *p, bool failure, uint64_t d, uint64_t now, cb_events *ev)
{
    cb_core *s = b->core;
    if (p->kind != CB_CALL && p->kind != CB_PROBE) return;
    bool slow = d >= b->cfg->slow_ns;
    s->kinds[failure ? CB_K_FAILURE : CB_K_SUCCESS]++;
    if (slow) s->kinds[CB_K_SLOW]++;
    if (s->mode == CB_MODE_DISABLED || s->mode == CB_MODE_FORCED_OPEN) return;
    tick(b, now, ev);
    if (p->epoch != s->epoch) return; /* the state changed since: judges nothing */
    if (p->kind == CB_CALL && s->state == CB_CLOSED) {
        window_add(b, now, failure, slow, d);
        judge_window(b, now, ev);
    } else if (p->kind == CB_PROBE && s->state == CB_HALF_OPEN) {
        s->probes_done++;
        s->probe_failures += failure;
        s->probe_slows += slow;
        if (s->probes_done >= b->cfg->half_open_calls) judge_probes(b, now, ev);
    }
}

void cb_release(cb *b, const cb_permit *p)
{
    cb_core *s = b->core;
    if (p->kind == CB_PROBE && p->epoch == s->epoch && s->state == CB_HALF_OPEN &&
        s->probes_permitted > s->probes_done)
        s->probes_permitted--;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

void cb_format_duration(uint64_t ns, char *out, size_t n)
{
    if (ns == UINT64_MAX) {
        snprintf(out, n, "inf");
        return;
    }
    unsigned long long ms = (ns + 500000) / 1000000;
    if (ns < 1000000) {
        snprintf(out, n, "%lluus", (unsigned long long)(ns / 1000));
    } else if (ms % 3600000 == 0) {
        snprintf(out, n, "%lluh", ms / 3600000);
    } else if (ms % 60000 == 0) {
        snprintf(out, n, "%llum", ms / 60000);
    } else if (ms % 1000 == 0) {
        snprintf(out, n, "%llus", ms / 1000);
    } else if (ms > 1000) {
        char frac[4];
        snprintf(frac, sizeof frac, "%03llu", ms % 1000);
        for (int i = 2; i > 0 && frac[i] == '0'; i--)
            frac[i] = 0;
        snprintf(out, n, "%llu.%ss", ms / 1000, frac);
    } else {
        snprintf(out, n, "%llums", ms);
    }
}

void cb_format_event(const cb_event *e, const cb_config *cfg, char *out, size_t n)
{
    char wait[24], a[24], c[24];
    cb_format_duration(e->wait_ns, wait, sizeof wait);
    int k = snprintf(out, n, "%s -> %s: ", cb_state_upper(e->from), cb_state_upper(e->to));
    if (k < 0 || (size_t)k >= n) return;
    char *p = out + k;
    size_t left = n - (size_t)k;
    switch (e->trigger) {
    case CB_T_FAILURE_RATE:
        k = snprintf(
            p, left, "failure rate %.1f%% >= %g%% over %llu calls (slow %.1f%%); open for %s",
            e->fail_pct, cfg->failure_rate, (unsigned long long)e->calls, e->slow_pct, wait);
        break;
    case CB_T_SLOW_RATE:
        cb_format_duration(cfg->slow_ns, a, sizeof a);
        k = snprintf(p, left,
                     "slow rate %.1f%% >= %g%% (calls of %s or more) over %llu calls (failure "
                     "%.1f%%); open for %s",
                     e->slow_pct, cfg->slow_rate, a, (unsigned long long)e->calls, e->fail_pct,
                     wait);
        break;
    case CB_T_P99: {
        cb_format_duration(cb_hist_bound(cfg->p99_ns, CB_HIST_AT), a, sizeof a);
        uint64_t lo = cb_hist_bound(cfg->p99_ns, e->p99_bucket - 1);
        uint64_t hi = cb_hist_bound(cfg->p99_ns, e->p99_bucket);
        char l[24];
        cb_format_duration(lo, l, sizeof l);
        cb_format_duration(hi, c, sizeof c);
        if (hi == UINT64_MAX)
            k = snprintf(p, left,
                         "p99 latency > %s (above %s) and failure rate %.1f%% > %g%% over %llu "
                         "calls; open for %s",
                         a, l, e->fail_pct, cfg->p99_error_rate, (unsigned long long)e->calls,
                         wait);
        else
            k = snprintf(p, left,
                         "p99 latency > %s (between %s and %s) and failure rate %.1f%% > %g%% "
                         "over %llu calls; open for %s",
                         a, l, c, e->fail_pct, cfg->p99_error_rate, (unsigned long long)e->calls,
                         wait);
        break;
    }
    case CB_T_OPEN_WAIT:
        k = snprintf(p, left, "open_wait %s elapsed: letting %u probe%s through", wait, e->probes,
                     e->probes == 1 ? "" : "s");
        break;
    case CB_T_PROBES_FAILED:
        if (!e->by_slow)
            k = snprintf(p, left,
                         "probes: failure rate %.1f%% >= %g%% over %llu calls (slow %.1f%%); "
                         "open for %s (re-open %u)",
                         e->fail_pct, cfg->failure_rate, (unsigned long long)e->calls, e->slow_pct,
                         wait, e->reopens);
        else
            k = snprintf(p, left,
                         "probes: slow rate %.1f%% >= %g%% over %llu calls (failure %.1f%%); "
                         "open for %s (re-open %u)",
                         e->slow_pct, cfg->slow_rate, (unsigned long long)e->calls, e->fail_pct,
                         wait, e->reopens);
        break;
    case CB_T_PROBES_OK:
        k = snprintf(p, left,
                     "probes: failure rate %.1f%% < %g%% and slow rate %.1f%% < %g%% over %llu "
                     "calls",
                     e->fail_pct, cfg->failure_rate, e->slow_pct, cfg->slow_rate,
                     (unsigned long long)e->calls);
        break;
    case CB_T_HALF_OPEN_EXPIRED:
        cb_format_duration(cfg->half_open_max_wait_ns, a, sizeof a);
        k = snprintf(p, left,
                     "half_open max_wait %s expired with %u of %u probes completed; open for %s "
                     "(re-open %u)",
                     a, e->probes_done, e->probes, wait, e->reopens);
        break;
    case CB_T_MODE:
        k = snprintf(p, left, "mode %s -> %s (configuration)", cb_mode_name(e->mode_from),
                     cb_mode_name(e->mode_to));
        break;
    }
    if (k < 0 || (size_t)k >= left) return;
    if (e->shadow) snprintf(p + k, left - (size_t)k, " [metrics_only: not enforced]");
}
