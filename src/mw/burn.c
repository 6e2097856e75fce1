/* The burn-rate state machine of the slo built-in (burn.h): buckets,
 * windows, multi-window alerts, hold counting, evaluation claims. */
#include "mw/burn.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Tries before a writer gives up on a bucket someone else prepares. */
#define PREPARE_SPINS 1000

uint64_t burn_scale(uint64_t ns, double scale)
{
    if (!(scale > 0)) return 0;
    double v = (double)ns * scale + 0.5;
    if (v >= 18446744073709551615.0) return UINT64_MAX;
    return (uint64_t)v;
}

bool burn_layout(uint64_t shortest_ns, uint64_t longest_ns, uint64_t *width_ns, uint32_t *n)
{
    if (!shortest_ns || shortest_ns > longest_ns) return false;
    uint64_t w = shortest_ns / BURN_BUCKETS_PER_WINDOW;
    /* The longest window in at most MAX - 2 buckets: the ring needs two
     * spare ones (see burn.h). */
    uint64_t cap = BURN_MAX_BUCKETS - 2;
    uint64_t wide = longest_ns / cap + (longest_ns % cap != 0);
    if (w < wide) w = wide;
    if (w < BURN_MIN_WIDTH_NS) w = BURN_MIN_WIDTH_NS;
    uint64_t k = longest_ns / w + (longest_ns % w != 0);
    *width_ns = w;
    *n = (uint32_t)(k + 2);
    return true;
}

uint32_t burn_window_buckets(const burn_ring *r, uint64_t window_ns)
{
    uint64_t k = window_ns / r->width_ns + (window_ns % r->width_ns != 0);
    if (k < 1) k = 1;
    if (k > r->n - 2) k = r->n - 2;
    return (uint32_t)k;
}

void burn_record(const burn_ring *r, uint64_t now_ns, uint64_t good, uint64_t bad)
{
    uint64_t e = now_ns / r->width_ns;
    burn_bucket *b = &r->b[e % r->n];
    uint64_t want = (e + 1) << 1;
    for (int i = 0; i < PREPARE_SPINS; i++) {
        uint64_t t = atomic_load_explicit(&b->tag, memory_order_acquire);
        if (t == want) {
            if (good) atomic_fetch_add_explicit(&b->good, good, memory_order_relaxed);
            if (bad) atomic_fetch_add_explicit(&b->bad, bad, memory_order_relaxed);
            return;
        }
        uint64_t epoch1 = t >> 1;   /* the tag's epoch + 1 */
        if (epoch1 > e + 1) return; /* a newer epoch already: this clock read is late; drop */
        if ((t & 1) && epoch1 == e + 1) {
            CPU_RELAX(); /* another writer is preparing this very epoch */
            continue;
        }
        /* An older epoch (or a preparation of one that never finished):
         * claim the bucket, zero it, publish it. */
        if (atomic_compare_exchange_weak(&b->tag, &t, want | 1)) {
            atomic_store_explicit(&b->good, 0, memory_order_relaxed);
            atomic_store_explicit(&b->bad, 0, memory_order_relaxed);
            atomic_store_explicit(&b->tag, want, memory_order_release);
        }
    }
    if (r->dropped) atomic_fetch_add(r->dropped, good + bad);
}

burn_counts burn_window(const burn_ring *r, uint64_t now_ns, uint64_t window_ns)
{
    burn_counts c = {0, 0};
    uint64_t e = now_ns / r->width_ns;
    uint32_t k = burn_window_buckets(r, window_ns);
    for (uint32_t i = 0; i < k && i <= e; i++) {
        uint64_t epoch = e - i;
        const burn_bucket *b = &r->b[epoch % r->n];
        if (atomic_load_explicit(&b->tag, memory_order_acquire) != (epoch + 1) << 1) continue;
        c.good += atomic_load_explicit(&b->good, memory_order_relaxed);
        c.bad += atomic_load_explicit(&b->bad, memory_order_relaxed);
    }
    return c;
}

double burn_rate(burn_counts c, double budget)
{
    uint64_t total = c.good + c.bad;
    if (!total || !(budget > 0)) return 0;
    return ((double)c.bad / (double)total) / budget;
}

bool burn_alert_eval(const burn_ring *r, uint64_t now_ns, const burn_alert *a, double budget,
                     burn_alert_result *out)
{
    out->long_c = burn_window(r, now_ns, a->long_ns);
    out->short_c = burn_window(r, now_ns, a->short_ns);
    out->long_rate = burn_rate(out->long_c, budget);
    out->short_rate = burn_rate(out->short_c, budget);
    /* Both windows: the long one says the budget really burns, the short
     * one that it still does (so the alert stops soon after the burn).
     * ">=" with a relative slack of 1e-9: objectives are decimals (99.99)
     * that binary doubles miss by a few ulps, and a burn of exactly the
     * factor must fire. */
    double f = a->factor * (1 - 1e-9);
    out->fires = out->long_rate >= f && out->short_rate >= f && out->long_rate > 0 &&
                 out->long_c.good + out->long_c.bad >= a->min_requests;
    return out->fires;
}

static uint32_t inc_sat(uint32_t v)
{
    return v == UINT32_MAX ? v : v + 1;
}

burn_change burn_hold_step(burn_hold *h, uint32_t firing, uint32_t n_alerts, uint32_t hold)
{
    if (n_alerts > BURN_MAX_ALERTS) n_alerts = BURN_MAX_ALERTS;
    if (hold < 1) hold = 1;
    if (n_alerts < 32) firing &= (1u << n_alerts) - 1;
    bool held = false;
    for (uint32_t a = 0; a < n_alerts; a++) {
        uint32_t s = firing & (1u << a) ? inc_sat(atomic_load(&h->streak[a])) : 0;
        atomic_store(&h->streak[a], s);
        held |= s >= hold;
    }
    uint32_t quiet = firing ? 0 : inc_sat(atomic_load(&h->quiet));
    atomic_store(&h->quiet, quiet);
    atomic_store(&h->firing, firing);
    atomic_fetch_add(&h->evaluations, 1);
    bool active = atomic_load(&h->active);
    if (!active && held) {
        atomic_store(&h->active, true);
        return BURN_START;
    }
    if (active && quiet >= hold) {
        atomic_store(&h->active, false);
        return BURN_STOP;
    }
    return BURN_STEADY;
}

bool burn_claim(_Atomic uint64_t *last, uint64_t now_ns, uint64_t every_ns)
{
    if (!every_ns) return false;
    uint64_t want = now_ns / every_ns + 1;
    uint64_t cur = atomic_load(last);
    while (cur < want)
        if (atomic_compare_exchange_weak(last, &cur, want)) return true;
    return false;
}
