/* The circuit breaker's pure state machine (src/mw/breaker.c), driven with
 * explicit times: no clock, no sleep, no server. COUNT and TIME windows,
 * min_calls, the >= thresholds exactly at their boundary, slow calls (and
 * slow failures), the back-off sequence, the half-open probe limit, its
 * completion (open again or close), its max_wait expiry, stale results,
 * the combined p99 rule, the modes, the recount after a dead lock holder
 * and the messages the layer logs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mw/breaker.h"

#define MS 1000000ull
#define S  1000000000ull

typedef struct fx {
    cb_config cfg;
    cb_core core;
    void *win;
    cb b;
    cb_events acq, rec; /* the events of the last acquire and record */
} fx;

/* A 10-call COUNT window, min_calls 4, failure 50%, slow off (100% of
 * 60 s calls), open 1 s, 3 probes within 10 s. */
static cb_config base_cfg(void)
{
    return (cb_config){
        .mode = CB_MODE_NORMAL,
        .window = CB_WINDOW_COUNT,
        .window_size = 10,
        .min_calls = 4,
        .failure_rate = 50,
        .slow_rate = 100,
        .slow_ns = 60 * S,
        .open_wait_ns = 1 * S,
        .open_wait_max_ns = 1 * S,
        .open_wait_multiplier = 1,
        .half_open_calls = 3,
        .half_open_max_wait_ns = 10 * S,
    };
}

static void fx_start(fx *f, uint64_t now)
{
    f->win = calloc(1, cb_window_bytes(&f->cfg));
    assert_non_null(f->win);
    f->b = (cb){.cfg = &f->cfg, .core = &f->core, .win = f->win};
    cb_init(&f->b, now);
}

static void fx_end(fx *f)
{
    free(f->win);
}

static cb_permit acquire(fx *f, uint64_t now)
{
    memset(&f->acq, 0, sizeof f->acq);
    return cb_acquire(&f->b, now, &f->acq);
}

static void record(fx *f, const cb_permit *p, bool failure, uint64_t d, uint64_t now)
{
    memset(&f->rec, 0, sizeof f->rec);
    cb_record(&f->b, p, failure, d, now, &f->rec);
}

/* A whole call at now: permitted (asserted), then recorded at now + d. */
static void call(fx *f, uint64_t now, bool failure, uint64_t d)
{
    cb_permit p = acquire(f, now);
    assert_true(p.kind == CB_CALL || p.kind == CB_PROBE);
    record(f, &p, failure, d, now + d);
}

static const char *text(const fx *f, const cb_event *e)
{
    static char buf[512];
    cb_format_event(e, &f->cfg, buf, sizeof buf);
    return buf;
}

/* ------------------------------------------------------------------ */

static void count_window_opens_exactly_at_the_threshold(void **state)
{
    fx f = {.cfg = base_cfg()};
    fx_start(&f, 0);
    call(&f, 1 * MS, true, MS);
    call(&f, 2 * MS, false, MS);
    call(&f, 3 * MS, false, MS);
    assert_int_equal(f.core.state, CB_CLOSED); /* 1 of 3: below min_calls anyway */
    call(&f, 4 * MS, true, MS);                /* 2 of 4 = 50% >= 50% */
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.rec.n, 1);
    assert_int_equal(f.rec.ev[0].trigger, CB_T_FAILURE_RATE);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "CLOSED -> OPEN: failure rate 50.0% >= 50% over 4 calls (slow 0.0%); "
                        "open for 1s");
    assert_int_equal(f.core.transitions[CB_CLOSED][CB_OPEN], 1);
    assert_int_equal(f.core.calls, 0); /* the window empties on opening */
    fx_end(&f);

    /* Just below: 3 of 7 (42.9%) never opens a 50% breaker; a 42.8%
     * one opens at the same call (>=, not >). */
    f = (fx){.cfg = base_cfg()};
    fx_start(&f, 0);
    for (int i = 0; i < 7; i++)
        call(&f, (uint64_t)(i + 1) * MS, i >= 4, MS); /* S S S S F F F */
    assert_int_equal(f.core.state, CB_CLOSED);
    assert_int_equal(f.core.calls, 7);
    assert_int_equal(f.core.failures, 3);
    fx_end(&f);

    f = (fx){.cfg = base_cfg()};
    f.cfg.failure_rate = 25;
    f.cfg.min_calls = 4;
    fx_start(&f, 0);
    call(&f, 1 * MS, true, MS);
    call(&f, 2 * MS, false, MS);
    call(&f, 3 * MS, false, MS);
    call(&f, 4 * MS, false, MS); /* 1 of 4 = 25% >= 25% */
    assert_int_equal(f.core.state, CB_OPEN);
    fx_end(&f);
}

static void count_window_slides(void **state)
{
    /* 4 calls, 75%: F F S S (50%) F -> F S S F (50%), F -> S S F F (50%),
     * F -> S F F F (75%): opens at the 7th call, once the old calls left. */
    fx f = {.cfg = base_cfg()};
    f.cfg.window_size = 4;
    f.cfg.failure_rate = 75;
    fx_start(&f, 0);
    const bool fails[] = {true, true, false, false, true, true, true};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(f.core.state, CB_CLOSED);
        call(&f, (uint64_t)(i + 1) * MS, fails[i], MS);
        if (i < 6) {
            assert_int_equal(f.core.calls, i < 4 ? i + 1 : 4);
            assert_int_equal(f.core.failures, i < 4 ? (i < 2 ? i + 1 : 2) : 2);
        }
    }
    assert_int_equal(f.core.state, CB_OPEN);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "CLOSED -> OPEN: failure rate 75.0% >= 75% over 4 calls (slow 0.0%); "
                        "open for 1s");
    fx_end(&f);
}

static void min_calls_holds_the_rate_back(void **state)
{
    fx f = {.cfg = base_cfg()};
    f.cfg.min_calls = 5;
    fx_start(&f, 0);
    for (int i = 0; i < 4; i++)
        call(&f, (uint64_t)(i + 1) * MS, true, MS); /* 100% failures, 4 calls */
    assert_int_equal(f.core.state, CB_CLOSED);
    assert_int_equal(f.rec.n, 0);
    call(&f, 5 * MS, false, MS); /* 4 of 5 = 80% */
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.rec.ev[0].calls, 5);
    fx_end(&f);
}

static void time_window_forgets_old_seconds(void **state)
{
    fx f = {.cfg = base_cfg()};
    f.cfg.window = CB_WINDOW_TIME;
    f.cfg.window_size = 3; /* seconds */
    f.cfg.min_calls = 3;
    f.cfg.failure_rate = 60;
    fx_start(&f, 0);
    call(&f, 0, true, MS);
    call(&f, 100 * MS, true, MS);
    assert_int_equal(f.core.calls, 2);
    /* Second 3: second 0 has left the window (it holds 1, 2, 3). Without
     * the expiry F F S (66.7%) would open. */
    call(&f, 3 * S, false, MS);
    assert_int_equal(f.core.state, CB_CLOSED);
    assert_int_equal(f.core.calls, 1);
    call(&f, 3 * S + 100 * MS, true, MS);
    assert_int_equal(f.core.state, CB_CLOSED); /* 2 calls < min_calls */
    call(&f, 3 * S + 200 * MS, true, MS);      /* S F F: 66.7% >= 60% */
    assert_int_equal(f.core.state, CB_OPEN);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "CLOSED -> OPEN: failure rate 66.7% >= 60% over 3 calls (slow 0.0%); "
                        "open for 1s");
    fx_end(&f);

    /* The rates after a long quiet spell: nothing left. */
    f = (fx){.cfg = base_cfg()};
    f.cfg.window = CB_WINDOW_TIME;
    f.cfg.window_size = 10;
    f.cfg.min_calls = 100;
    fx_start(&f, 0);
    for (int i = 0; i < 20; i++)
        call(&f, (uint64_t)i * 500 * MS, i % 2, MS); /* seconds 0..9 */
    double fp, sp;
    assert_int_equal(cb_window_rates(&f.b, 9 * S + 999 * MS, &fp, &sp), 20);
    assert_true(fp == 50.0);
    assert_int_equal(cb_window_rates(&f.b, 14 * S, &fp, &sp), 10); /* seconds 5..14 */
    assert_int_equal(cb_window_rates(&f.b, 100 * S, &fp, &sp), 0);
    assert_true(fp == 0.0);
    fx_end(&f);
}

static void slow_calls_count_in_their_own_rate(void **state)
{
    fx f = {.cfg = base_cfg()};
    f.cfg.slow_ns = 1 * S;
    f.cfg.slow_rate = 50;
    f.cfg.failure_rate = 100;
    fx_start(&f, 0);
    call(&f, 0, false, 2 * S);        /* slow */
    call(&f, 3 * S, false, 500 * MS); /* fast */
    call(&f, 4 * S, false, 999 * MS); /* fast: just under */
    assert_int_equal(f.core.state, CB_CLOSED);
    call(&f, 5 * S, false, 1 * S); /* exactly slow_ns: slow; 2 of 4 = 50% */
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.rec.ev[0].trigger, CB_T_SLOW_RATE);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "CLOSED -> OPEN: slow rate 50.0% >= 50% (calls of 1s or more) over 4 "
                        "calls (failure 0.0%); open for 1s");
    assert_int_equal(f.core.kinds[CB_K_SUCCESS], 4);
    assert_int_equal(f.core.kinds[CB_K_FAILURE], 0);
    assert_int_equal(f.core.kinds[CB_K_SLOW], 2);
    fx_end(&f);

    /* A slow failure counts in both rates and both counters. */
    f = (fx){.cfg = base_cfg()};
    f.cfg.slow_ns = 1 * S;
    f.cfg.slow_rate = 100;
    f.cfg.failure_rate = 100;
    f.cfg.min_calls = 2;
    fx_start(&f, 0);
    call(&f, 0, true, 2 * S);
    assert_int_equal(f.core.failures, 1);
    assert_int_equal(f.core.slows, 1);
    assert_int_equal(f.core.kinds[CB_K_FAILURE], 1);
    assert_int_equal(f.core.kinds[CB_K_SLOW], 1);
    call(&f, 3 * S, true, 3 * S); /* 100% failed and 100% slow: failure is named */
    assert_int_equal(f.core.state, CB_OPEN);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "CLOSED -> OPEN: failure rate 100.0% >= 100% over 2 calls (slow "
                        "100.0%); open for 1s");
    fx_end(&f);
}

/* Open the breaker of f at now with min_calls failures. */
static void trip(fx *f, uint64_t now)
{
    for (uint32_t i = 0; i < f->cfg.min_calls; i++)
        call(f, now + i, true, 0);
    assert_int_equal(f->core.state, CB_OPEN);
}

static void open_refuses_until_its_wait_ends(void **state)
{
    fx f = {.cfg = base_cfg()};
    fx_start(&f, 0);
    trip(&f, 0);
    uint64_t until = f.core.open_until_ns;
    assert_int_equal(until, 3 + 1 * S); /* opened by the call recorded at 3 ns */
    cb_permit p = acquire(&f, 400 * MS);
    assert_int_equal(p.kind, CB_REFUSED);
    assert_int_equal(p.refused_by, CB_OPEN);
    assert_int_equal(p.retry_after_ns, until - 400 * MS);
    assert_int_equal(f.core.kinds[CB_K_NOT_PERMITTED], 1);
    p = acquire(&f, until - 1);
    assert_int_equal(p.kind, CB_REFUSED);
    assert_int_equal(p.retry_after_ns, 1);
    p = acquire(&f, until); /* the first call after the wait: a probe */
    assert_int_equal(p.kind, CB_PROBE);
    assert_int_equal(f.core.state, CB_HALF_OPEN);
    assert_int_equal(f.acq.n, 1);
    assert_string_equal(text(&f, &f.acq.ev[0]),
                        "OPEN -> HALF_OPEN: open_wait 1s elapsed: letting 3 probes through");
    assert_int_equal(f.core.kinds[CB_K_NOT_PERMITTED], 2);
    fx_end(&f);
}

static void back_off_sequence(void **state)
{
    fx f = {.cfg = base_cfg()};
    f.cfg.open_wait_multiplier = 2;
    f.cfg.open_wait_max_ns = 5 * S;
    f.cfg.half_open_calls = 1;
    const uint64_t want[] = {1 * S, 2 * S, 4 * S, 5 * S, 5 * S, 5 * S};
    for (uint32_t k = 0; k < 6; k++)
        assert_int_equal(cb_open_wait(&f.cfg, k), want[k]);
    assert_int_equal(cb_open_wait(&f.cfg, 4000000000u), 5 * S); /* no overflow, no long loop */

    /* Through the machine: each failed probe re-opens for longer. */
    fx_start(&f, 0);
    trip(&f, 0);
    assert_int_equal(f.core.open_wait_ns, 1 * S);
    uint64_t now = f.core.open_until_ns;
    for (int k = 1; k <= 4; k++) {
        cb_permit p = acquire(&f, now);
        assert_int_equal(p.kind, CB_PROBE);
        record(&f, &p, true, 0, now);
        assert_int_equal(f.core.state, CB_OPEN);
        assert_int_equal(f.core.reopens, k);
        assert_int_equal(f.core.open_wait_ns, want[k]);
        assert_int_equal(f.core.open_until_ns, now + want[k]);
        now = f.core.open_until_ns;
    }
    char w[24];
    cb_format_duration(f.core.open_wait_ns, w, sizeof w);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "HALF_OPEN -> OPEN: probes: failure rate 100.0% >= 50% over 1 calls "
                        "(slow 0.0%); open for 5s (re-open 4)");
    /* A successful probe closes and resets k: the next open waits 1 s. */
    cb_permit p = acquire(&f, now);
    record(&f, &p, false, 0, now);
    assert_int_equal(f.core.state, CB_CLOSED);
    assert_int_equal(f.core.reopens, 0);
    trip(&f, now + 1);
    assert_int_equal(f.core.open_wait_ns, 1 * S);
    fx_end(&f);

    /* A fractional multiplier. */
    cb_config c = base_cfg();
    c.open_wait_ns = 500 * MS;
    c.open_wait_multiplier = 1.5;
    c.open_wait_max_ns = 2 * S;
    assert_int_equal(cb_open_wait(&c, 1), 750 * MS);
    assert_int_equal(cb_open_wait(&c, 2), 1125 * MS);
    assert_int_equal(cb_open_wait(&c, 3), 1687500 * 1000ull);
    assert_int_equal(cb_open_wait(&c, 4), 2 * S);
}

static void half_open_lets_exactly_n_probes_through(void **state)
{
    fx f = {.cfg = base_cfg()};
    fx_start(&f, 0);
    trip(&f, 0);
    uint64_t now = f.core.open_until_ns;
    cb_permit probes[3];
    for (int i = 0; i < 3; i++) {
        probes[i] = acquire(&f, now + (uint64_t)i);
        assert_int_equal(probes[i].kind, CB_PROBE);
    }
    uint64_t refused = f.core.kinds[CB_K_NOT_PERMITTED];
    cb_permit extra = acquire(&f, now + 10);
    assert_int_equal(extra.kind, CB_REFUSED);
    assert_int_equal(extra.refused_by, CB_HALF_OPEN);
    assert_int_equal(f.core.kinds[CB_K_NOT_PERMITTED], refused + 1);
    assert_int_equal(f.core.probes_permitted, 3);

    /* A probe whose client went away gives its slot back. */
    cb_release(&f.b, &probes[2]);
    assert_int_equal(f.core.probes_permitted, 2);
    probes[2] = acquire(&f, now + 20);
    assert_int_equal(probes[2].kind, CB_PROBE);

    /* Completion: 1 failure of 3 (33%) < 50% closes, once all three are in. */
    record(&f, &probes[0], true, 0, now + 30);
    record(&f, &probes[1], false, 0, now + 31);
    assert_int_equal(f.core.state, CB_HALF_OPEN);
    assert_int_equal(f.rec.n, 0);
    record(&f, &probes[2], false, 0, now + 32);
    assert_int_equal(f.core.state, CB_CLOSED);
    assert_int_equal(f.core.calls, 0);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "HALF_OPEN -> CLOSED: probes: failure rate 33.3% < 50% and slow rate "
                        "0.0% < 100% over 3 calls");
    assert_int_equal(f.core.transitions[CB_HALF_OPEN][CB_CLOSED], 1);
    /* The refused call and a CLOSED call afterwards. */
    assert_int_equal(acquire(&f, now + 40).kind, CB_CALL);
    fx_end(&f);
}

static void half_open_probes_open_again(void **state)
{
    fx f = {.cfg = base_cfg()};
    fx_start(&f, 0);
    trip(&f, 0);
    uint64_t now = f.core.open_until_ns;
    cb_permit p[3];
    for (int i = 0; i < 3; i++)
        p[i] = acquire(&f, now);
    record(&f, &p[0], true, 0, now + 1);
    record(&f, &p[1], false, 0, now + 2);
    record(&f, &p[2], true, 0, now + 3); /* 2 of 3 = 66.7% */
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.core.reopens, 1);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "HALF_OPEN -> OPEN: probes: failure rate 66.7% >= 50% over 3 calls (slow "
                        "0.0%); open for 1s (re-open 1)");
    assert_int_equal(f.core.transitions[CB_HALF_OPEN][CB_OPEN], 1);
    fx_end(&f);

    /* Slow probes open it too, by the slow rate. */
    f = (fx){.cfg = base_cfg()};
    f.cfg.slow_ns = 1 * S;
    f.cfg.slow_rate = 60;
    f.cfg.half_open_calls = 2;
    fx_start(&f, 0);
    trip(&f, 0);
    now = f.core.open_until_ns;
    p[0] = acquire(&f, now);
    p[1] = acquire(&f, now);
    record(&f, &p[0], false, 2 * S, now + 2 * S);
    record(&f, &p[1], false, 3 * S, now + 3 * S);
    assert_int_equal(f.core.state, CB_OPEN);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "HALF_OPEN -> OPEN: probes: slow rate 100.0% >= 60% over 2 calls "
                        "(failure 0.0%); open for 1s (re-open 1)");
    fx_end(&f);
}

static void half_open_never_sticks(void **state)
{
    fx f = {.cfg = base_cfg()};
    fx_start(&f, 0);
    trip(&f, 0);
    uint64_t t0 = f.core.open_until_ns;
    cb_permit a = acquire(&f, t0);
    cb_permit b = acquire(&f, t0 + 1);
    record(&f, &b, false, 0, t0 + 2);                              /* 1 of 3 completed; a hangs */
    assert_int_equal(acquire(&f, t0 + 10 * S - 1).kind, CB_PROBE); /* still half-open */
    /* max_wait after entering HALF_OPEN: back to OPEN, as a re-open. */
    cb_permit late = acquire(&f, t0 + 10 * S);
    assert_int_equal(late.kind, CB_REFUSED);
    assert_int_equal(late.refused_by, CB_OPEN);
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.core.reopens, 1);
    assert_int_equal(f.acq.n, 1);
    assert_int_equal(f.acq.ev[0].trigger, CB_T_HALF_OPEN_EXPIRED);
    assert_string_equal(text(&f, &f.acq.ev[0]),
                        "HALF_OPEN -> OPEN: half_open max_wait 10s expired with 1 of 3 probes "
                        "completed; open for 1s (re-open 1)");
    /* The hung probe's result, arriving now, judges nothing. */
    uint64_t epoch = f.core.epoch;
    record(&f, &a, false, 0, t0 + 10 * S + 1);
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.core.epoch, epoch);
    assert_int_equal(f.core.probes_done, 0);
    assert_int_equal(f.core.kinds[CB_K_SUCCESS], 2); /* but it is counted */
    fx_end(&f);

    /* The expiry also happens on a result, not only on a call. */
    f = (fx){.cfg = base_cfg()};
    fx_start(&f, 0);
    trip(&f, 0);
    t0 = f.core.open_until_ns;
    a = acquire(&f, t0);
    record(&f, &a, false, 0, t0 + 11 * S);
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.rec.ev[0].trigger, CB_T_HALF_OPEN_EXPIRED);
    fx_end(&f);
}

static void stale_results_judge_nothing(void **state)
{
    /* A call permitted while CLOSED that ends after the breaker opened. */
    fx f = {.cfg = base_cfg()};
    fx_start(&f, 0);
    cb_permit slow = acquire(&f, 0);
    trip(&f, 1);
    record(&f, &slow, false, 5 * MS, 5 * MS);
    assert_int_equal(f.core.state, CB_OPEN);
    assert_int_equal(f.core.calls, 0);
    assert_int_equal(f.core.kinds[CB_K_SUCCESS], 1);
    /* and one that ends while HALF_OPEN is no probe */
    cb_permit slow2 = acquire(&f, 0); /* refused: the breaker is open */
    assert_int_equal(slow2.kind, CB_REFUSED);
    fx_end(&f);

    f = (fx){.cfg = base_cfg()};
    fx_start(&f, 0);
    cb_permit old = acquire(&f, 0);
    trip(&f, 1);
    uint64_t t = f.core.open_until_ns;
    cb_permit p = acquire(&f, t);
    assert_int_equal(p.kind, CB_PROBE);
    record(&f, &old, true, t, t + 1);
    assert_int_equal(f.core.probes_done, 0);
    assert_int_equal(f.core.state, CB_HALF_OPEN);
    fx_end(&f);
}

static void p99_rule(void **state)
{
    /* 100 calls judged at once (min_calls = window = 100); failure and
     * slow rules off (100% needed). p99 = the 99th smallest latency. */
    struct {
        int slow, at_bound, failures;
        bool opens;
    } cases[] = {
        {2, 0, 11, true},  /* p99 = 150 ms > 100 ms, 11% > 10% */
        {1, 0, 11, false}, /* p99 = 10 ms: one slow call is the 100th */
        {2, 0, 10, false}, /* 10% is not > 10% */
        {0, 2, 11, false}, /* calls of exactly 100 ms: p99 = 100 ms, not > */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fx f = {.cfg = base_cfg()};
        f.cfg.window_size = 100;
        f.cfg.min_calls = 100;
        f.cfg.failure_rate = 100;
        f.cfg.p99_ns = 100 * MS;
        f.cfg.p99_error_rate = 10;
        fx_start(&f, 0);
        for (int k = 0; k < 100; k++) {
            uint64_t d = k < cases[i].slow                       ? 150 * MS
                         : k < cases[i].slow + cases[i].at_bound ? 100 * MS
                                                                 : 10 * MS;
            bool fail = k >= 100 - cases[i].failures;
            call(&f, (uint64_t)k * S, fail, d);
        }
        if (cases[i].opens != (f.core.state == CB_OPEN))
            fail_msg("case %zu: state %u", i, f.core.state);
        if (cases[i].opens) {
            assert_int_equal(f.rec.ev[0].trigger, CB_T_P99);
            assert_string_equal(text(&f, &f.rec.ev[0]),
                                "CLOSED -> OPEN: p99 latency > 100ms (between 100ms and 200ms) "
                                "and failure rate 11.0% > 10% over 100 calls; open for 1s");
        }
        fx_end(&f);
    }

    /* The histogram's bounds: bucket 7 ends at the unit, exactly. */
    assert_int_equal(cb_hist_bound(100 * MS, CB_HIST_AT), 100 * MS);
    assert_int_equal(cb_hist_bucket(100 * MS, 100 * MS), CB_HIST_AT);
    assert_int_equal(cb_hist_bucket(100 * MS, 100 * MS + 1), CB_HIST_AT + 1);
    assert_int_equal(cb_hist_bucket(100 * MS, 0), 0);
    assert_int_equal(cb_hist_bucket(100 * MS, UINT64_MAX), CB_HIST - 1);
    assert_int_equal(cb_hist_bound(100 * MS, CB_HIST - 1), UINT64_MAX);

    /* In a TIME window too, per-second histograms leaving with their second. */
    fx f = {.cfg = base_cfg()};
    f.cfg.window = CB_WINDOW_TIME;
    f.cfg.window_size = 2;
    f.cfg.min_calls = 4;
    f.cfg.failure_rate = 100;
    f.cfg.p99_ns = 100 * MS;
    f.cfg.p99_error_rate = 0;
    fx_start(&f, 0);
    call(&f, 0, true, 900 * MS); /* second 0: slow and failed */
    call(&f, 2 * S, false, MS);  /* seconds 1..2: the slow one is gone */
    call(&f, 2 * S + 1, false, MS);
    call(&f, 2 * S + 2, false, MS);
    assert_int_equal(f.core.calls, 3);
    call(&f, 2 * S + 3, true, MS); /* 4 calls, p99 1 ms: no */
    assert_int_equal(f.core.state, CB_CLOSED);
    call(&f, 2 * S + 4, false, 250 * MS); /* p99 250 ms, 20% failed > 0%: opens */
    assert_int_equal(f.core.state, CB_OPEN);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "CLOSED -> OPEN: p99 latency > 100ms (between 200ms and 400ms) and failure "
                        "rate 20.0% > 0% over 5 calls; open for 1s");
    fx_end(&f);
}

static void modes(void **state)
{
    /* DISABLED: everything through, nothing recorded. */
    fx f = {.cfg = base_cfg()};
    f.cfg.mode = CB_MODE_DISABLED;
    fx_start(&f, 0);
    for (int i = 0; i < 20; i++) {
        cb_permit p = acquire(&f, (uint64_t)i);
        assert_int_equal(p.kind, CB_UNTRACKED);
        record(&f, &p, true, 0, (uint64_t)i);
    }
    assert_int_equal(f.core.kinds[CB_K_FAILURE] + f.core.kinds[CB_K_SUCCESS], 0);
    assert_int_equal(cb_effective_state(&f.core), CB_DISABLED);
    fx_end(&f);

    /* FORCED_OPEN: everything refused and counted. */
    f = (fx){.cfg = base_cfg()};
    f.cfg.mode = CB_MODE_FORCED_OPEN;
    fx_start(&f, 0);
    cb_permit p = acquire(&f, 100 * S);
    assert_int_equal(p.kind, CB_REFUSED);
    assert_int_equal(p.refused_by, CB_FORCED_OPEN);
    assert_int_equal(f.core.kinds[CB_K_NOT_PERMITTED], 1);
    assert_int_equal(cb_effective_state(&f.core), CB_FORCED_OPEN);
    fx_end(&f);

    /* METRICS_ONLY: the machine runs and logs, but nothing is refused. */
    f = (fx){.cfg = base_cfg()};
    f.cfg.mode = CB_MODE_METRICS_ONLY;
    fx_start(&f, 0);
    trip(&f, 0);
    assert_true(f.rec.ev[0].shadow);
    assert_string_equal(text(&f, &f.rec.ev[0]),
                        "CLOSED -> OPEN: failure rate 100.0% >= 50% over 4 calls (slow 0.0%); "
                        "open for 1s [metrics_only: not enforced]");
    assert_int_equal(cb_effective_state(&f.core), CB_METRICS_ONLY);
    p = acquire(&f, 500 * MS);
    assert_int_equal(p.kind, CB_UNTRACKED); /* let through */
    assert_int_equal(p.refused_by, CB_OPEN);
    assert_int_equal(f.core.kinds[CB_K_NOT_PERMITTED], 1); /* what it would have refused */
    record(&f, &p, true, 0, 500 * MS);
    assert_int_equal(f.core.kinds[CB_K_FAILURE], 4); /* its result is ignored */
    p = acquire(&f, 2 * S);
    assert_int_equal(p.kind, CB_PROBE);
    assert_int_equal(f.core.state, CB_HALF_OPEN);
    fx_end(&f);
}

static void mode_changes_from_a_reload(void **state)
{
    fx f = {.cfg = base_cfg()};
    fx_start(&f, 0);
    trip(&f, 0);
    /* normal -> forced_open: one event, counted. */
    f.cfg.mode = CB_MODE_FORCED_OPEN;
    cb_events ev = {0};
    cb_apply_mode(&f.b, 10, &ev);
    assert_int_equal(ev.n, 1);
    assert_string_equal(text(&f, &ev.ev[0]),
                        "OPEN -> FORCED_OPEN: mode normal -> forced_open (configuration)");
    assert_int_equal(f.core.transitions[CB_OPEN][CB_FORCED_OPEN], 1);
    /* the same mode again: nothing */
    memset(&ev, 0, sizeof ev);
    cb_apply_mode(&f.b, 11, &ev);
    assert_int_equal(ev.n, 0);
    /* forced_open -> normal: CLOSED, an empty window. */
    f.cfg.mode = CB_MODE_NORMAL;
    cb_apply_mode(&f.b, 12, &ev);
    assert_string_equal(text(&f, &ev.ev[0]),
                        "FORCED_OPEN -> CLOSED: mode forced_open -> normal (configuration)");
    assert_int_equal(f.core.state, CB_CLOSED);
    assert_int_equal(acquire(&f, 13).kind, CB_CALL);
    /* normal (open) -> metrics_only keeps the machine's state. */
    trip(&f, 20);
    f.cfg.mode = CB_MODE_METRICS_ONLY;
    memset(&ev, 0, sizeof ev);
    cb_apply_mode(&f.b, 30, &ev);
    assert_string_equal(text(&f, &ev.ev[0]),
                        "OPEN -> METRICS_ONLY: mode normal -> metrics_only (configuration)");
    assert_int_equal(f.core.state, CB_OPEN);
    fx_end(&f);
}

static void layout_recount_and_names(void **state)
{
    fx f = {.cfg = base_cfg()};
    f.cfg.window_size = 5;
    fx_start(&f, 0);
    for (int i = 0; i < 8; i++)
        call(&f, (uint64_t)i, i == 6, 0);
    assert_int_equal(f.core.calls, 5);
    assert_int_equal(f.core.failures, 1);
    /* A worker died mid-update: the totals are wrong until recounted. */
    f.core.calls = 77;
    f.core.failures = 40;
    f.core.hist[3] = 9;
    cb_recount(&f.b);
    assert_int_equal(f.core.calls, 5);
    assert_int_equal(f.core.failures, 1);
    assert_int_equal(f.core.hist[0], 5);
    assert_true(cb_layout_matches(&f.core, &f.cfg));
    cb_config other = f.cfg;
    other.window_size = 6;
    assert_false(cb_layout_matches(&f.core, &other));
    other = f.cfg;
    other.p99_ns = 5 * MS;
    assert_false(cb_layout_matches(&f.core, &other));
    fx_end(&f);

    f = (fx){.cfg = base_cfg()};
    f.cfg.window = CB_WINDOW_TIME;
    f.cfg.window_size = 4;
    f.cfg.min_calls = 1000;
    fx_start(&f, 0);
    for (int i = 0; i < 6; i++)
        call(&f, (uint64_t)i * S, i % 2, 0);
    assert_int_equal(f.core.calls, 4);
    f.core.calls = 0;
    f.core.slows = 3;
    cb_recount(&f.b);
    assert_int_equal(f.core.calls, 4);
    assert_int_equal(f.core.failures, 2);
    assert_int_equal(f.core.slows, 0);
    /* Counters survive a new layout; the machine starts afresh. */
    trip(&f, 10 * S);
    uint64_t failures = f.core.kinds[CB_K_FAILURE];
    f.cfg.window = CB_WINDOW_COUNT;
    f.cfg.window_size = 4;
    f.cfg.min_calls = 4;
    free(f.win);
    f.win = calloc(1, cb_window_bytes(&f.cfg));
    f.b.win = f.win;
    cb_relayout(&f.b, 20 * S);
    assert_int_equal(f.core.state, CB_CLOSED);
    assert_int_equal(f.core.kinds[CB_K_FAILURE], failures);
    assert_true(cb_layout_matches(&f.core, &f.cfg));
    fx_end(&f);

    const char *names[] = {"closed",   "open",        "half_open",
                           "disabled", "forced_open", "metrics_only"};
    for (int s = 0; s < CB_N_STATES; s++)
        assert_string_equal(cb_state_name((cb_state)s), names[s]);
    assert_int_equal(CB_CLOSED, 0);
    assert_int_equal(CB_METRICS_ONLY, 5);
    char d[24];
    const struct {
        uint64_t ns;
        const char *want;
    } durations[] = {{500 * MS, "500ms"},  {2 * S, "2s"},   {1500 * MS, "1.5s"},
                     {1250 * MS, "1.25s"}, {180 * S, "3m"}, {3600 * S, "1h"},
                     {250000, "250us"},    {61 * S, "61s"}};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        cb_format_duration(durations[i].ns, d, sizeof d);
        assert_string_equal(d, durations[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(count_window_opens_exactly_at_the_threshold),
        cmocka_unit_test(count_window_slides),
        cmocka_unit_test(min_calls_holds_the_rate_back),
        cmocka_unit_test(time_window_forgets_old_seconds),
        cmocka_unit_test(slow_calls_count_in_their_own_rate),
        cmocka_unit_test(open_refuses_until_its_wait_ends),
        cmocka_unit_test(back_off_sequence),
        cmocka_unit_test(half_open_lets_exactly_n_probes_through),
        cmocka_unit_test(half_open_probes_open_again),
        cmocka_unit_test(half_open_never_sticks),
        cmocka_unit_test(stale_results_judge_nothing),
        cmocka_unit_test(p99_rule),
        cmocka_unit_test(modes),
        cmocka_unit_test(mode_changes_from_a_reload),
        cmocka_unit_test(layout_recount_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
