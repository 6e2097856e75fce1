/* GCRA: the pure decision at explicit times (burst, steady rate, exact
 * retry/reset/remaining, idle recovery, slow rates, large bursts, a
 * cross-check against a token bucket), and the shared table's lookups,
 * epochs and evictions in one process. The cross-process race is in
 * test_mw_rate_limit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mw/gcra.h"

#define S  1000000000ULL
#define MS 1000000ULL

typedef struct step {
    uint64_t now;
    bool allowed;
    uint32_t remaining;
    uint64_t retry_after, reset, tat; /* tat: after the decision */
} step;

static void run_steps(uint64_t T, uint32_t burst, uint64_t tat, const step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        gcra_result r;
        memset(&r, 0xAA, sizeof r);
        uint64_t out = 0;
        bool ok = gcra_decide(T, burst, tat, steps[i].now, &out, &r);
        if (ok != steps[i].allowed || r.allowed != ok || r.remaining != steps[i].remaining ||
            r.retry_after_ns != steps[i].retry_after || r.reset_ns != steps[i].reset ||
            out != steps[i].tat)
            fail_msg("step %zu (now %llu): got allowed %d remaining %u retry %llu reset %llu tat "
                     "%llu; want %d %u %llu %llu %llu",
                     i, (unsigned long long)steps[i].now, ok, r.remaining,
                     (unsigned long long)r.retry_after_ns, (unsigned long long)r.reset_ns,
                     (unsigned long long)out, steps[i].allowed, steps[i].remaining,
                     (unsigned long long)steps[i].retry_after, (unsigned long long)steps[i].reset,
                     (unsigned long long)steps[i].tat);
        tat = out;
    }
}

/* rate 1/s, burst 3, from a fresh key at t = 10 s. */
static void burst_then_steady_rate(void **state)
{
    static const step steps[] = {
        /* now        allowed rem retry      reset        tat */
        {10 * S, true, 2, 0, 1 * S, 11 * S},                  /* a full bucket: three at once */
        {10 * S, true, 1, 0, 2 * S, 12 * S},                  /* */
        {10 * S, true, 0, 0, 3 * S, 13 * S},                  /* */
        {10 * S, false, 0, 1 * S, 3 * S, 13 * S},             /* the fourth waits one interval */
        {10 * S + S / 2, false, 0, S / 2, 5 * S / 2, 13 * S}, /* half-way */
        {11 * S - 1, false, 0, 1, 2 * S + 1, 13 * S},         /* one ns early */
        {11 * S, true, 0, 0, 3 * S, 14 * S},                  /* exactly on time */
        {11 * S, false, 0, 1 * S, 3 * S, 14 * S},             /* then one every T */
        {12 * S, true, 0, 0, 3 * S, 15 * S},
        {13 * S + S / 2, true, 0, 0, 5 * S / 2, 16 * S}, /* 1.5 back, one taken: 0.5 is 0 */
        {13 * S + S / 2, false, 0, S / 2, 5 * S / 2, 16 * S},
        {15 * S + S / 2, true, 1, 0, 3 * S / 2, 17 * S}, /* 2.5 back: 1.5 left is 1 */
        {15 * S + S / 2, true, 0, 0, 5 * S / 2, 18 * S},
        {15 * S + S / 2, false, 0, S / 2, 5 * S / 2, 18 * S},
    };
    run_steps(S, 3, 0, steps, sizeof steps / sizeof steps[0]);
}

/* After burst * T of idleness the bucket is full again, and not fuller. */
static void recovery_after_idle(void **state)
{
    static const step steps[] = {
        {0, true, 1, 0, 2 * S, 2 * S}, /* rate 0.5/s (T = 2 s), burst 2; now 0 is a valid time */
        {0, true, 0, 0, 4 * S, 4 * S},
        {0, false, 0, 2 * S, 4 * S, 4 * S},
        {3 * S, true, 0, 0, 3 * S, 6 * S},      /* 1.5 tokens back: one passes */
        {3 * S, false, 0, 1 * S, 3 * S, 6 * S}, /* the half is not a token */
        {6 * S, true, 1, 0, 2 * S, 8 * S},      /* full at TAT: burst again */
        {6 * S, true, 0, 0, 4 * S, 10 * S},
        {1000 * S, true, 1, 0, 2 * S, 1002 * S}, /* long idle: still only burst */
        {1000 * S, true, 0, 0, 4 * S, 1004 * S},
        {1000 * S, false, 0, 2 * S, 4 * S, 1004 * S},
    };
    run_steps(2 * S, 2, 0, steps, sizeof steps / sizeof steps[0]);
}

/* 10 per hour: T = 360 s. */
static void rate_below_one_per_second(void **state)
{
    const uint64_t T = 360 * S, t0 = 50 * S;
    const step steps[] = {
        {t0, true, 1, 0, T, t0 + T},
        {t0, true, 0, 0, 2 * T, t0 + 2 * T},
        {t0, false, 0, T, 2 * T, t0 + 2 * T},
        {t0 + 359 * S, false, 0, 1 * S, 2 * T - 359 * S, t0 + 2 * T},
        {t0 + T, true, 0, 0, 2 * T, t0 + 3 * T},
    };
    run_steps(T, 2, 0, steps, sizeof steps / sizeof steps[0]);
    assert_int_equal(gcra_ceil_seconds(1 * S), 1);
    assert_int_equal(gcra_ceil_seconds(T), 360);
}

static void burst_of_one(void **state)
{
    static const step steps[] = {
        {5 * S, true, 0, 0, 100 * MS, 5 * S + 100 * MS}, /* 10/s, burst 1 */
        {5 * S, false, 0, 100 * MS, 100 * MS, 5 * S + 100 * MS},
        {5 * S + 99 * MS, false, 0, 1 * MS, 1 * MS, 5 * S + 100 * MS},
        {5 * S + 100 * MS, true, 0, 0, 100 * MS, 5 * S + 200 * MS},
    };
    run_steps(100 * MS, 1, 0, steps, sizeof steps / sizeof steps[0]);
}

static void large_burst(void **state)
{
    const uint32_t burst = 1000000;
    const uint64_t T = 1 * MS, now = 7 * S;
    uint64_t tat = 0;
    gcra_result r;
    for (uint32_t i = 0; i < burst; i++) {
        if (!gcra_decide(T, burst, tat, now, &tat, &r) || r.remaining != burst - 1 - i)
            fail_msg("request %u of the burst: allowed %d remaining %u", i, r.allowed, r.remaining);
    }
    assert_int_equal(tat, now + burst * T);
    assert_int_equal(r.reset_ns, (uint64_t)burst * T); /* 1000 s to refill */
    assert_false(gcra_decide(T, burst, tat, now, &tat, &r));
    assert_int_equal(r.retry_after_ns, T);
    assert_int_equal(gcra_ceil_seconds(r.reset_ns), 1000);
    /* The largest window the bounds allow stays exact. */
    uint64_t bigT = GCRA_MAX_WINDOW_NS / 4, t = 0;
    assert_true(gcra_decide(bigT, 4, 0, GCRA_MAX_NOW_NS - 1, &t, &r));
    assert_int_equal(r.remaining, 3);
    assert_int_equal(t, GCRA_MAX_NOW_NS - 1 + bigT);
}

static void ceil_seconds(void **state)
{
    assert_int_equal(gcra_ceil_seconds(0), 0);
    assert_int_equal(gcra_ceil_seconds(1), 1);
    assert_int_equal(gcra_ceil_seconds(S - 1), 1);
    assert_int_equal(gcra_ceil_seconds(S), 1);
    assert_int_equal(gcra_ceil_seconds(S + 1), 2);
}

/* A token bucket in exact integers (credit in ns: one token is T) must
 * decide like GCRA on any arrival sequence; the remaining count too. */
static void agrees_with_a_token_bucket(void **state)
{
    uint64_t seed = 12345;
    for (int run = 0; run < 200; run++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t T = 1 + (seed >> 33) % (2 * S);
        uint32_t burst = 1 + (uint32_t)((seed >> 20) % 20);
        uint64_t now = (seed >> 40) % (100 * S), tat = 0;
        uint64_t credit = burst * T, last = now; /* a new key: a full bucket */
        for (int i = 0; i < 300; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            /* mostly bursts at one time, sometimes a pause of up to 3 T */
            if ((seed >> 60) < 6) now += (seed >> 16) % (3 * T + 1);
            credit += now - last;
            if (credit > burst * T) credit = burst * T;
            last = now;
            bool want = credit >= T;
            if (want) credit -= T;
            gcra_result r;
            bool got = gcra_decide(T, burst, tat, now, &tat, &r);
            if (got != want || (got && r.remaining != credit / T))
                fail_msg("run %d step %d (T %llu burst %u): gcra %d remaining %u, bucket %d %llu",
                         run, i, (unsigned long long)T, burst, got, r.remaining, want,
                         (unsigned long long)(credit / T));
            if (!got && r.retry_after_ns != T - credit)
                fail_msg("retry_after %llu, bucket says %llu", (unsigned long long)r.retry_after_ns,
                         (unsigned long long)(T - credit));
            if (r.reset_ns != burst * T - credit) fail_msg("reset");
        }
    }
}

/* ------------------------------------------------------------------ */
/* The table, in one process                                           */

/* The table reads a clock; these tests give it explicit times. */
static uint64_t t_now;
static uint64_t at_now(void)
{
    return t_now;
}

static bool decide_at(gcra_table *t, uint64_t h, uint64_t T, uint32_t burst, uint64_t now,
                      gcra_result *r)
{
    t_now = now;
    return gcra_table_decide(t, h, T, burst, at_now, r);
}

static gcra_table *new_table(uint32_t max_keys, void **mem)
{
    size_t n = gcra_table_size(max_keys);
    assert_int_equal(posix_memalign(mem, 64, n), 0);
    memset(*mem, 0, n);
    return gcra_table_init(*mem, max_keys);
}

static void table_sizes(void **state)
{
    assert_int_equal(gcra_table_entries(1), 8);
    assert_int_equal(gcra_table_entries(8), 8);
    assert_int_equal(gcra_table_entries(9), 16);
    assert_int_equal(gcra_table_entries(65536), 65536);
    assert_int_equal(gcra_table_entries(65537), 131072);
    /* header line + one lock line + 1 bucket of two lines */
    assert_int_equal(gcra_table_size(8), 64 + 64 + 128);
    assert_int_equal(gcra_table_size(65536), 64 + 8192 * 8 + 8192 * 128);
}

static void table_decides_like_the_function(void **state)
{
    void *mem;
    gcra_table *t = new_table(64, &mem);
    uint64_t tat[5] = {0};
    for (int round = 0; round < 50; round++) {
        uint64_t now = 3 * S + (uint64_t)round * 300 * MS;
        for (uint64_t k = 0; k < 5; k++) { /* hash 0 is a valid key too */
            for (int i = 0; i < 3; i++) {
                gcra_result want, got;
                gcra_decide(S, 2, tat[k], now, &tat[k], &want);
                decide_at(t, k == 1 ? 99 : k, S, 2, now, &got);
                assert_int_equal(want.allowed, got.allowed);
                assert_int_equal(want.remaining, got.remaining);
                assert_int_equal(want.retry_after_ns, got.retry_after_ns);
                assert_int_equal(want.reset_ns, got.reset_ns);
            }
        }
    }
    assert_int_equal(gcra_table_evictions(t), 0);
    free(mem);
}

/* One set of 8: a ninth key takes the entry with the oldest TAT. Only
 * an entry whose bucket was not yet full again counts as an eviction. */
static void table_evicts_the_stalest(void **state)
{
    void *mem;
    gcra_table *t = new_table(8, &mem);
    gcra_result r;
    const uint64_t T = 10 * S; /* burst 1: TAT = time + 10 s */
    for (uint64_t k = 1; k <= 8; k++)
        assert_true(decide_at(t, k, T, 1, k * S, &r));
    assert_false(decide_at(t, 1, T, 1, 8 * S, &r)); /* key 1: TAT 11 s */
    assert_int_equal(r.retry_after_ns, 3 * S);
    /* key 9 evicts the stalest, key 1, whose TAT was still ahead: lost */
    assert_true(decide_at(t, 9, T, 1, 8 * S, &r));
    assert_int_equal(gcra_table_evictions(t), 1);
    /* at 13 s key 10 takes key 2 (TAT 12 s: full again, nothing lost) */
    assert_true(decide_at(t, 10, T, 1, 13 * S, &r));
    assert_int_equal(gcra_table_evictions(t), 1);
    /* key 1 is new again: allowed; it takes key 3 (TAT 13 s = now) */
    assert_true(decide_at(t, 1, T, 1, 13 * S, &r));
    assert_int_equal(gcra_table_evictions(t), 1);
    /* key 4 was kept: still limited (TAT 14 s) */
    assert_false(decide_at(t, 4, T, 1, 13 * S + S / 2, &r));
    assert_int_equal(r.retry_after_ns, S / 2);
    /* key 11 evicts key 4 while it is limited: counted */
    assert_true(decide_at(t, 11, T, 1, 13 * S + S / 2, &r));
    assert_int_equal(gcra_table_evictions(t), 2);
    /* and key 4 comes back fresh, evicting key 5 (TAT 15 s) */
    assert_true(decide_at(t, 4, T, 1, 13 * S + S / 2, &r));
    assert_int_equal(gcra_table_evictions(t), 3);
    assert_false(decide_at(t, 6, T, 1, 13 * S + S / 2, &r)); /* key 6 stayed */
    free(mem);
}

/* Keys in different buckets never evict each other. */
static void table_buckets_are_independent(void **state)
{
    void *mem;
    gcra_table *t = new_table(16, &mem); /* two sets of 8 */
    gcra_result r;
    assert_true(decide_at(t, 1, S, 1, S, &r)); /* odd hash: bucket 1 */
    for (uint64_t k = 1; k <= 40; k++)         /* even hashes: bucket 0 churns */
        assert_true(decide_at(t, k * 2, S, 1, S, &r));
    assert_false(decide_at(t, 1, S, 1, S, &r)); /* still there */
    assert_int_equal(gcra_table_evictions(t), 40 - 8);
    free(mem);
}

/* A worker that died while claiming left the bucket's claim lock held
 * and an entry half-claimed: the next claim takes the lock over (its
 * holder's pid is gone) and repairs the entry. The layout is gcra.c's:
 * a 64-byte header, the locks, then the buckets (hashes, then words). */
static void table_survives_a_claimer_that_died(void **state)
{
    void *mem;
    gcra_table *t = new_table(8, &mem);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    _Atomic uint64_t *lock = (_Atomic uint64_t *)((char *)mem + 64);
    _Atomic uint64_t *hash = (_Atomic uint64_t *)((char *)mem + 128);
    _Atomic uint64_t *word = hash + 8;
    atomic_store(lock, (uint64_t)dead);
    atomic_store(&hash[3], 77);
    atomic_store(&word[3], (UINT64_MAX >> 4) << 4 | 5); /* claimed, never published */
    gcra_result r;
    assert_true(decide_at(t, 77, S, 1, 9 * S, &r)); /* no hang: a new key */
    assert_int_equal(atomic_load(lock), 0);
    assert_false(decide_at(t, 77, S, 1, 9 * S, &r)); /* and its TAT was stored */
    int n77 = 0;
    for (int i = 0; i < 8; i++)
        n77 += atomic_load(&hash[i]) == 77;
    assert_int_equal(n77, 1);
    free(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_steady_rate),
        cmocka_unit_test(recovery_after_idle),
        cmocka_unit_test(rate_below_one_per_second),
        cmocka_unit_test(burst_of_one),
        cmocka_unit_test(large_burst),
        cmocka_unit_test(ceil_seconds),
        cmocka_unit_test(agrees_with_a_token_bucket),
        cmocka_unit_test(table_sizes),
        cmocka_unit_test(table_decides_like_the_function),
        cmocka_unit_test(table_evicts_the_stalest),
        cmocka_unit_test(table_buckets_are_independent),
        cmocka_unit_test(table_survives_a_claimer_that_died),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
