/* The burn-rate state machine (mw/burn.h) at explicit times, no sleeping:
 * scaling and the bucket layout, burn-rate arithmetic on exact counts,
 * windows that roll (buckets expire, a reused bucket starts from zero, a
 * late clock read is dropped), the both-windows condition of an alert,
 * hold counting with hysteresis, the evaluation claim, and counts and
 * claims from several processes at once on shared memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mw/burn.h"

#define S  1000000000ULL
#define MS 1000000ULL

/* |a - b| <= eps, with both values in the message. */
#define assert_double_equal(a, b, eps)                                                             \
    do {                                                                                           \
        double a_ = (a), b_ = (b), d_ = a_ > b_ ? a_ - b_ : b_ - a_;                               \
        if (!(d_ <= (eps))) fail_msg("%s = %.17g, want %.17g", #a, a_, b_);                        \
    } while (0)

/* A ring of n buckets of width in fresh (zeroed) memory. */
static burn_ring ring_new(uint64_t width, uint32_t n)
{
    burn_ring r = {.b = calloc(n, sizeof(burn_bucket)), .n = n, .width_ns = width};
    assert_non_null(r.b);
    return r;
}

static void expect_counts(burn_counts c, uint64_t good, uint64_t bad)
{
    if (c.good != good || c.bad != bad)
        fail_msg("counts: got good %llu bad %llu, want good %llu bad %llu",
                 (unsigned long long)c.good, (unsigned long long)c.bad, (unsigned long long)good,
                 (unsigned long long)bad);
}

static void scaling_and_layout(void **state)
{
    (void)state;
    /* The workbook's windows at 0.001: 1h -> 3.6s, 5m -> 300ms, 6h -> 21.6s. */
    assert_int_equal(burn_scale(3600 * S, 0.001), 3600 * MS);
    assert_int_equal(burn_scale(300 * S, 0.001), 300 * MS);
    assert_int_equal(burn_scale(6 * 3600 * S, 0.001), 21600 * MS);
    assert_int_equal(burn_scale(3600 * S, 1.0), 3600 * S);
    assert_int_equal(burn_scale(3, 0.5), 2); /* 1.5 rounds to nearest */
    assert_int_equal(burn_scale(5, 0), 0);
    assert_int_equal(burn_scale(5, -1), 0);

    uint64_t w;
    uint32_t n;
    /* Default alerts: shortest 5m, longest 6h: 25 s buckets, 864 + 2. */
    assert_true(burn_layout(300 * S, 6 * 3600 * S, &w, &n));
    assert_int_equal(w, 25 * S);
    assert_int_equal(n, 866);
    /* Scaled by 0.001: the same shape, 25 ms buckets. */
    assert_true(burn_layout(300 * MS, 21600 * MS, &w, &n));
    assert_int_equal(w, 25 * MS);
    assert_int_equal(n, 866);
    /* A 30-day window beside a 1 s one: widened to fit 4094 buckets. */
    assert_true(burn_layout(S, 30ull * 86400 * S, &w, &n));
    assert_int_equal(w, (30ull * 86400 * S + 4093) / 4094);
    assert_true(n <= BURN_MAX_BUCKETS);
    assert_int_equal(n, 4096);
    /* Never narrower than 0.1 ms. */
    assert_true(burn_layout(MS, 10 * MS, &w, &n));
    assert_int_equal(w, BURN_MIN_WIDTH_NS);
    assert_int_equal(n, 102);
    /* Refused: an empty window, windows out of order. */
    assert_false(burn_layout(0, S, &w, &n));
    assert_false(burn_layout(2 * S, S, &w, &n));

    burn_ring r = ring_new(S, 62);
    assert_int_equal(burn_window_buckets(&r, 12 * S), 12);
    assert_int_equal(burn_window_buckets(&r, 12 * S + 1), 13);
    assert_int_equal(burn_window_buckets(&r, 1), 1);
    assert_int_equal(burn_window_buckets(&r, 0), 1);
    assert_int_equal(burn_window_buckets(&r, 1000 * S), 60); /* n - 2 at most */
    free(r.b);
}

static void rate_arithmetic(void **state)
{
    (void)state;
    /* 1% bad against a 0.1% budget burns 10x. */
    assert_double_equal(burn_rate((burn_counts){990, 10}, 0.001), 10.0, 1e-9);
    /* All bad: 1 / budget, the most an objective can burn. */
    assert_double_equal(burn_rate((burn_counts){0, 7}, 0.001), 1000.0, 1e-9);
    assert_double_equal(burn_rate((burn_counts){100, 0}, 0.001), 0.0, 0);
    /* No requests: no burn (not 0/0). */
    assert_double_equal(burn_rate((burn_counts){0, 0}, 0.001), 0.0, 0);
    assert_double_equal(burn_rate((burn_counts){1, 1}, 0.5), 1.0, 0);
    assert_double_equal(burn_rate((burn_counts){3, 1}, 0.25), 1.0, 0);
    assert_double_equal(burn_rate((burn_counts){1, 1}, 0), 0.0, 0);
}

static void windows_roll(void **state)
{
    (void)state;
    /* 1 s buckets, 62 of them: windows up to 60 s. */
    burn_ring r = ring_new(S, 62);
    _Atomic uint64_t dropped = 0;
    r.dropped = &dropped;
    burn_record(&r, S / 2, 10, 0);       /* epoch 0 */
    burn_record(&r, S + S / 2, 0, 1);    /* epoch 1 */
    burn_record(&r, S + S / 2, 5, 0);    /* epoch 1 */
    burn_record(&r, 11 * S + 1, 1, 2);   /* epoch 11 */
    burn_record(&r, 12 * S + 1, 100, 0); /* epoch 12 */
    /* A 12 s window at 12.5 s: epochs 1..12 (the current one is partial). */
    expect_counts(burn_window(&r, 12 * S + S / 2, 12 * S), 106, 3);
    /* At 11.9 s: epochs 0..11. */
    expect_counts(burn_window(&r, 11 * S + 9 * S / 10, 12 * S), 16, 3);
    /* At 13.0 s the bucket of epoch 1 has left the window. */
    expect_counts(burn_window(&r, 13 * S, 12 * S), 101, 2);
    /* A 1 s window: the current bucket only. */
    expect_counts(burn_window(&r, 12 * S + S / 2, S), 100, 0);
    /* Long after, nothing is left in any window. */
    expect_counts(burn_window(&r, 80 * S, 60 * S), 0, 0);

    /* Epoch 62 reuses epoch 0's bucket: it starts from zero. */
    burn_record(&r, 62 * S + 1, 0, 4);
    expect_counts(burn_window(&r, 62 * S + 2, S), 0, 4);
    /* (the 60 s window at 62 s still holds epochs 11 and 12) */
    expect_counts(burn_window(&r, 62 * S + 2, 60 * S), 101, 6);
    /* A late read of the clock (epoch 0, whose bucket now holds 62) is
     * dropped, not added to the newer epoch. */
    burn_record(&r, S / 2, 9, 9);
    expect_counts(burn_window(&r, 62 * S + 2, S), 0, 4);
    assert_int_equal(atomic_load(&dropped), 0); /* dropped as late, not as lost */

    /* A bucket left "being prepared" by a writer that died: the same
     * epoch's writers give up (counted), the next epoch of that bucket
     * reclaims it. */
    atomic_store(&r.b[63 % 62].tag, ((63ull + 1) << 1) | 1);
    burn_record(&r, 63 * S + 1, 2, 0);
    assert_int_equal(atomic_load(&dropped), 2);
    expect_counts(burn_window(&r, 63 * S + 2, S), 0, 0);
    burn_record(&r, (63 + 62) * S + 1, 3, 0);
    expect_counts(burn_window(&r, (63 + 62) * S + 2, S), 3, 0);
    free(r.b);
}

static void alert_needs_both_windows(void **state)
{
    (void)state;
    burn_ring r = ring_new(S, 62);
    /* Long 60 s and short 5 s at 2x a budget of 25%. */
    burn_alert a = {.long_ns = 60 * S, .short_ns = 5 * S, .factor = 2.0};
    burn_alert_result res;

    /* A burst of failures 40 s ago: the long window burns, the short one
     * has nothing: no alert (the burn is over). */
    burn_record(&r, 10 * S, 0, 50);
    assert_false(burn_alert_eval(&r, 50 * S, &a, 0.25, &res));
    assert_double_equal(res.long_rate, 4.0, 0);
    assert_double_equal(res.short_rate, 0.0, 0);
    expect_counts(res.long_c, 0, 50);
    expect_counts(res.short_c, 0, 0);

    /* Failures now, diluted in the long window by a lot of successes: the
     * short window burns, the long one does not: no alert (a blip). */
    burn_ring r2 = ring_new(S, 62);
    burn_record(&r2, 10 * S, 1000, 0);
    burn_record(&r2, 50 * S, 0, 10);
    assert_false(burn_alert_eval(&r2, 50 * S, &a, 0.25, &res));
    assert_double_equal(res.short_rate, 4.0, 0);
    assert_true(res.long_rate < 2.0);

    /* Both windows at exactly the factor: it fires (>=). Long: 1 bad in
     * 2; short: the same request pair. */
    burn_ring r3 = ring_new(S, 62);
    burn_record(&r3, 50 * S, 1, 1);
    assert_true(burn_alert_eval(&r3, 50 * S, &a, 0.25, &res));
    assert_double_equal(res.long_rate, 2.0, 0);
    assert_double_equal(res.short_rate, 2.0, 0);
    /* Just under: 1 bad in 3 is 1.33x. */
    burn_record(&r3, 50 * S, 1, 0);
    assert_false(burn_alert_eval(&r3, 50 * S, &a, 0.25, &res));

    /* A decimal objective: 0.1% bad against 99.99 burns exactly 10x, but
     * in doubles 9.999999999995: it still fires a 10x alert. */
    burn_ring r4 = ring_new(S, 62);
    burn_record(&r4, 50 * S, 999, 1);
    burn_alert ten = {.long_ns = 60 * S, .short_ns = 5 * S, .factor = 10.0};
    assert_true(burn_alert_eval(&r4, 50 * S, &ten, (100 - 99.99) / 100, &res));
    assert_true(res.long_rate < 10.0);
    burn_alert ten1 = {.long_ns = 60 * S, .short_ns = 5 * S, .factor = 10.001};
    assert_false(burn_alert_eval(&r4, 50 * S, &ten1, (100 - 99.99) / 100, &res));

    /* With no traffic nothing fires, whatever the factor. */
    burn_ring r5 = ring_new(S, 62);
    burn_alert tiny = {.long_ns = 60 * S, .short_ns = 5 * S, .factor = 1e-9};
    assert_false(burn_alert_eval(&r5, 50 * S, &tiny, 0.001, &res));

    /* A quiet route: one bad request is a full burn, unless the alert
     * wants min_requests in its long window. */
    burn_ring r6 = ring_new(S, 62);
    burn_record(&r6, 50 * S, 0, 1);
    assert_true(burn_alert_eval(&r6, 50 * S, &a, 0.25, &res));
    burn_alert quiet = a;
    quiet.min_requests = 10;
    assert_false(burn_alert_eval(&r6, 50 * S, &quiet, 0.25, &res));
    burn_record(&r6, 50 * S, 0, 8); /* 9 requests: still not enough */
    assert_false(burn_alert_eval(&r6, 50 * S, &quiet, 0.25, &res));
    burn_record(&r6, 50 * S, 0, 1); /* 10: fires */
    assert_true(burn_alert_eval(&r6, 50 * S, &quiet, 0.25, &res));
    free(r6.b);
    free(r.b);
    free(r2.b);
    free(r3.b);
    free(r4.b);
    free(r5.b);
}

static void hold_and_hysteresis(void **state)
{
    (void)state;
    burn_hold h;
    memset(&h, 0, sizeof h);
    /* hold 3: two evaluations with alert 0 firing are not enough. */
    assert_int_equal(burn_hold_step(&h, 1, 2, 3), BURN_STEADY);
    assert_int_equal(burn_hold_step(&h, 1, 2, 3), BURN_STEADY);
    assert_int_equal(atomic_load(&h.streak[0]), 2);
    assert_false(atomic_load(&h.active));
    assert_int_equal(burn_hold_step(&h, 1, 2, 3), BURN_START);
    assert_true(atomic_load(&h.active));
    assert_int_equal(burn_hold_step(&h, 1, 2, 3), BURN_STEADY); /* in force already */
    /* Quiet twice, then a firing again: the quiet count starts over. */
    assert_int_equal(burn_hold_step(&h, 0, 2, 3), BURN_STEADY);
    assert_int_equal(burn_hold_step(&h, 0, 2, 3), BURN_STEADY);
    assert_int_equal(atomic_load(&h.quiet), 2);
    assert_int_equal(atomic_load(&h.streak[0]), 0);
    assert_int_equal(burn_hold_step(&h, 2, 2, 3), BURN_STEADY); /* alert 1 this time */
    assert_int_equal(atomic_load(&h.quiet), 0);
    assert_int_equal(atomic_load(&h.firing), 2);
    assert_int_equal(burn_hold_step(&h, 0, 2, 3), BURN_STEADY);
    assert_int_equal(burn_hold_step(&h, 0, 2, 3), BURN_STEADY);
    assert_true(atomic_load(&h.active));
    assert_int_equal(burn_hold_step(&h, 0, 2, 3), BURN_STOP);
    assert_false(atomic_load(&h.active));
    assert_int_equal(burn_hold_step(&h, 0, 2, 3), BURN_STEADY);
    assert_int_equal(atomic_load(&h.evaluations), 11);

    /* Alerts taking turns: no one alert holds for 3 in a row. */
    memset(&h, 0, sizeof h);
    for (int i = 0; i < 10; i++)
        assert_int_equal(burn_hold_step(&h, i % 2 ? 2 : 1, 2, 3), BURN_STEADY);
    assert_false(atomic_load(&h.active));
    /* Bits past n_alerts are ignored. */
    memset(&h, 0, sizeof h);
    for (int i = 0; i < 5; i++)
        assert_int_equal(burn_hold_step(&h, 4, 2, 1), BURN_STEADY);
    assert_int_equal(atomic_load(&h.quiet), 5);

    /* hold 1: the first firing starts, the first quiet evaluation stops. */
    memset(&h, 0, sizeof h);
    assert_int_equal(burn_hold_step(&h, 1, 1, 1), BURN_START);
    assert_int_equal(burn_hold_step(&h, 1, 1, 1), BURN_STEADY);
    assert_int_equal(burn_hold_step(&h, 0, 1, 1), BURN_STOP);
    /* hold 0 is read as 1. */
    assert_int_equal(burn_hold_step(&h, 1, 1, 0), BURN_START);
}

static void claim_once_per_period(void **state)
{
    (void)state;
    _Atomic uint64_t last = 0;
    assert_true(burn_claim(&last, 0, 10 * MS)); /* period 0 (stored as 1) */
    assert_false(burn_claim(&last, 5 * MS, 10 * MS));
    assert_true(burn_claim(&last, 15 * MS, 10 * MS));
    assert_false(burn_claim(&last, 19 * MS, 10 * MS));
    assert_false(burn_claim(&last, 2 * MS, 10 * MS)); /* an older period: never again */
    assert_true(burn_claim(&last, 55 * MS, 10 * MS)); /* periods may be skipped */
    assert_int_equal(atomic_load(&last), 6);
    assert_false(burn_claim(&last, 55 * MS, 0));
}

/* Processes at once on shared memory: each of 4 children records 20000
 * requests over 100 epochs (so they race to prepare every bucket) and
 * tries to claim 500 periods; every count arrives and every period is
 * claimed exactly once. */
static void processes_share_counts_and_claims(void **state)
{
    (void)state;
    enum { KIDS = 4, PER_KID = 20000, PERIODS = 500, N = 110 };
    size_t size = sizeof(burn_bucket) * N + 3 * sizeof(_Atomic uint64_t);
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    memset(mem, 0, size);
    _Atomic uint64_t *claims = (_Atomic uint64_t *)((char *)mem + sizeof(burn_bucket) * N);
    _Atomic uint64_t *last = claims + 1, *dropped = claims + 2;
    burn_ring r = {.b = mem, .n = N, .width_ns = MS, .dropped = dropped};
    pid_t kids[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            for (int i = 0; i < PER_KID; i++) {
                uint64_t now = (uint64_t)i * MS / 200; /* 100 epochs */
                burn_record(&r, now, i % 4 == 0 ? 0 : 1, i % 4 == 0 ? 1 : 0);
                if (i % 40 == 0 && burn_claim(last, now, MS / 5)) atomic_fetch_add(claims, 1);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < KIDS; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    expect_counts(burn_window(&r, 100 * MS - 1, 100 * MS), KIDS * PER_KID * 3 / 4,
                  KIDS * PER_KID / 4);
    assert_int_equal(atomic_load(dropped), 0);
    assert_int_equal(atomic_load(claims), PERIODS);
    munmap(mem, size);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scaling_and_layout),
        cmocka_unit_test(rate_arithmetic),
        cmocka_unit_test(windows_roll),
        cmocka_unit_test(alert_needs_both_windows),
        cmocka_unit_test(hold_and_hysteresis),
        cmocka_unit_test(claim_once_per_period),
        cmocka_unit_test(processes_share_counts_and_claims),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
