/* The fault built-in through the test kit: off unless enabled, aborts by
 * percentage (replayable per seed), route and header matchers, delays
 * that park the request without blocking the loop, max_active_faults,
 * cancellation while delayed (deadline, client gone, worker stop),
 * header-driven faults from an untrusted client, the CIDR matcher, the
 * metrics and the refusal of bad options.
 *
 * The kit answers one request at a time; the tests that need requests in
 * flight together dispatch them on the kit's loop with the core's own
 * calls (req_start), as the kit does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/app.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/dispatch.h"
#include "core/metrics.h"
#include "config/cfg.h"
#include "core/rand.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

/* In fault.c, for tests: -1 when cidr does not parse, else whether ip is
 * inside it. */
int mw_fault_cidr_match(const char *cidr, const char *ip);

static int handler_calls;

static vie_status ok(vie_ctx *c, void *arg)
{
    handler_calls++;
    return vie_send_text(c, 200, "ok");
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static vie_app *new_app(const vie_options *opt)
{
    vie_log_set_level(VIE_LOG_OFF);
    handler_calls = 0;
    vie_app *app = vie_app_new(opt);
    assert_non_null(app);
    assert_int_equal(vie_route(app, "GET", "/a", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "POST", "/a", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/b", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "POST", "/b", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/c", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/users/:id", ok, NULL), VIE_OK);
    vie_route_opts short_deadline = {.timeout_ms = 20};
    assert_int_equal(vie_route_with(app, "GET", "/deadline", ok, NULL, &short_deadline), VIE_OK);
    return app;
}

static vie_fault_opts enabled_opts(void)
{
    vie_fault_opts o;
    vie_fault_opts_init(&o);
    o.enabled = true;
    o.seed = 1234;
    return o;
}

static int use(vie_app *app, const char *name, const vie_fault_opts *o)
{
    vie_layer_opts lo = {.name = name};
    return vie_use_fault(app, &lo, o);
}

static int status_of(vie_app *app, const char *method, const char *target,
                     const char *const *headers)
{
    vie_test_response *r = vie_test_request(app, method, target, headers, NULL, 0);
    assert_non_null(r);
    int st = r->status;
    vie_test_response_free(r);
    return st;
}

/* The number /metrics shows for a series line, e.g.
 * "vie_fault_active{layer=\"chaos\"}"; -1 when absent. */
static long long metric(vie_app *app, const char *series)
{
    char *m = vie_app_metrics(app);
    assert_non_null(m);
    char want[256];
    snprintf(want, sizeof want, "\n%s ", series);
    const char *p = strstr(m, want);
    long long v = p ? strtoll(p + strlen(want), NULL, 10) : -1;
    free(m);
    return v;
}

/* How many of n requests a layer with this seed and abort percent (and
 * no delays: they draw nothing) aborts: the generator's own sequence. */
static int expected_aborts(uint64_t seed, int n, double percent)
{
    rng r;
    rng_seed(&r, seed);
    int k = 0;
    for (int i = 0; i < n; i++)
        k += rng_chance(&r, percent);
    return k;
}

/* ------------------------------------------------------------------ */
/* Requests in flight together, on the kit's loop                      */

typedef struct flight {
    vie_ctx *c;
    vie_buf out;
    char raw[256];
    uint64_t t0;
} flight;

static ctx_pool g_pool;
static bool g_pool_ready;

static void flight_complete(vie_ctx *c)
{
    (void)c; /* the tests watch c->exec */
}

static void req_start(vie_app *app, flight *q, const char *method, const char *path)
{
    if (!g_pool_ready) {
        ctx_pool_init(&g_pool, app, vie_test_loop(app));
        g_pool_ready = true;
    }
    int n =
        snprintf(q->raw, sizeof q->raw, "%s %s HTTP/1.1\r\nHost: vie.test\r\n\r\n", method, path);
    q->out = (vie_buf){0};
    q->c = ctx_acquire(&g_pool, &q->out);
    assert_non_null(q->c);
    http_head_parser hp;
    http_head_init(&hp);
    assert_int_equal(http_parse_head(&hp, &app->limits, q->raw, (size_t)n, &q->c->req), HTTP_OK);
    q->c->body = (vie_str){"", 0};
    q->c->keep_alive = q->c->req.keep_alive;
    q->c->on_complete = flight_complete;
    q->c->start_ns = clock_now_ns();
    q->t0 = wall_ms();
    metrics_request_start(q->c);
    dispatch_request(q->c);
}

static bool req_done(const flight *q)
{
    return q->c->exec == EXEC_DONE;
}

static int req_status(const flight *q)
{
    int st = 0;
    if (q->out.len > 12 && sscanf(q->out.data, "HTTP/1.1 %d", &st) == 1) return st;
    return 0;
}

/* Drive the loop until q completes, for at most limit_ms. */
static void req_wait(vie_app *app, flight *q, uint32_t limit_ms)
{
    for (uint32_t waited = 0; !req_done(q) && waited < limit_ms; waited += 5)
        vie_test_run_for(app, 5);
    assert_true(req_done(q));
}

static void req_end(flight *q)
{
    metrics_request_done(q->c);
    ctx_release(&g_pool, q->c);
    buf_free(&q->out);
}

/* The kit closes every handle of its loop, the pool's timers included;
 * then the pool's memory can go. */
static void app_done(vie_app *app)
{
    vie_test_end(app);
    if (g_pool_ready) ctx_pool_destroy(&g_pool);
    g_pool_ready = false;
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Off, on, percentages                                                */

static void disabled_passes_everything(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.enabled = false;
    o.abort_percent = 100;
    o.delay_percent = 100;
    o.delay_ms = 5000;
    capture k;
    capture_begin(&k);
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "fault chaos: disabled", NULL));
    assert_false(log_has_line(log, "ENABLED", NULL));
    free(log);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    const char *hdrs[] = {"X-Vie-Fault-Abort: 500", NULL};
    for (int i = 0; i < 20; i++)
        assert_int_equal(status_of(app, "GET", "/a", hdrs), 200);
    assert_int_equal(handler_calls, 20);
    /* The layer is in the chain (names and requires still hold) but has
     * nothing to show. */
    vie_test_response *r = vie_test_request(app, "GET", "/a", NULL, NULL, 0);
    assert_int_equal(r->n_trail, 2);
    assert_string_equal(r->trail[0].layer, "chaos");
    assert_int_equal(r->trail[0].outcome, VIE_NEXT);
    vie_test_response_free(r);
    char *m = vie_app_metrics(app);
    assert_null(strstr(m, "vie_fault"));
    free(m);
    app_done(app);
}

static void abort_always_answers_the_status(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.abort_percent = 100;
    o.abort_status = 429;
    capture k;
    capture_begin(&k);
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "WARN", "fault chaos: ENABLED", "abort 100% with 429",
                             "seed 1234", NULL));
    free(log);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 10; i++) {
        vie_test_response *r = vie_test_request(app, "GET", "/a", NULL, NULL, 0);
        assert_int_equal(r->status, 429);
        assert_string_equal(vie_test_header(r, "content-type"), "application/problem+json");
        assert_string_equal(r->body, "{\"type\":\"about:blank\",\"title\":\"Too Many Requests\","
                                     "\"status\":429,\"detail\":\"fault injected by chaos\"}");
        vie_test_response_free(r);
    }
    assert_int_equal(handler_calls, 0);
    assert_int_equal(metric(app, "vie_fault_aborts_injected_total{layer=\"chaos\"}"), 10);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 0);
    app_done(app);
}

static void abort_never_at_zero(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.abort_percent = 0;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 200; i++)
        assert_int_equal(status_of(app, "GET", "/a", NULL), 200);
    assert_int_equal(handler_calls, 200);
    assert_int_equal(metric(app, "vie_fault_aborts_injected_total{layer=\"chaos\"}"), 0);
    app_done(app);
}

/* 30% of 1000 with a seed: the count is in the binomial's band, it is
 * the generator's own count for that seed, and a second run gives it
 * again. */
static int run_30_percent(uint64_t seed, const vie_options *opt)
{
    vie_app *app = new_app(opt);
    vie_fault_opts o = enabled_opts();
    o.seed = seed;
    o.abort_percent = 30;
    o.abort_status = 503;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    int aborted = 0;
    for (int i = 0; i < 1000; i++) {
        int st = status_of(app, "GET", "/a", NULL);
        assert_true(st == 200 || st == 503);
        aborted += st == 503;
    }
    assert_int_equal(aborted + handler_calls, 1000);
    assert_int_equal(metric(app, "vie_fault_aborts_injected_total{layer=\"chaos\"}"), aborted);
    app_done(app);
    return aborted;
}

static void abort_30_percent_replays_per_seed(void **state)
{
    int first = run_30_percent(1234, NULL);
    /* mean 300, standard deviation 14.5: five of them either side */
    assert_true(first >= 228 && first <= 372);
    assert_int_equal(first, expected_aborts(1234, 1000, 30));
    assert_int_equal(run_30_percent(1234, NULL), first);
    int other = run_30_percent(99, NULL);
    assert_int_equal(other, expected_aborts(99, 1000, 30));
}

/* With workers the seed is mixed with the worker's pid: each worker
 * draws its own sequence (the kit runs START in this process). */
static void workers_mix_the_seed_with_their_pid(void **state)
{
    vie_options opt;
    vie_options_init(&opt);
    opt.workers = 2;
    int got = run_30_percent(1234, &opt);
    assert_int_equal(got, expected_aborts(rng_mix(1234, (uint64_t)getpid()), 1000, 30));
}

/* Seed 0 draws one and logs it: setting it replays the run. */
static void seed_zero_is_logged_for_replay(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.seed = 0;
    o.abort_percent = 50;
    capture k;
    capture_begin(&k);
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    char *log = capture_end(&k);
    const char *p = strstr(log, "fault chaos: seed 0: drew seed ");
    assert_non_null(p);
    uint64_t drawn = strtoull(p + strlen("fault chaos: seed 0: drew seed "), NULL, 10);
    free(log);
    assert_true(drawn != 0);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    int aborted = 0;
    for (int i = 0; i < 200; i++)
        aborted += status_of(app, "GET", "/a", NULL) == 503;
    assert_int_equal(aborted, expected_aborts(drawn, 200, 50));
    app_done(app);
}

/* ------------------------------------------------------------------ */
/* Matchers                                                            */

static void routes_match_labels_and_patterns(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.abort_percent = 100;
    const char *routes[] = {"GET /a", "/b", "GET /users/:id", NULL};
    o.routes = routes;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "GET", "/a", NULL), 503);  /* label */
    assert_int_equal(status_of(app, "POST", "/a", NULL), 200); /* another method's label */
    assert_int_equal(status_of(app, "GET", "/b", NULL), 503);  /* pattern: every method */
    assert_int_equal(status_of(app, "POST", "/b", NULL), 503);
    assert_int_equal(status_of(app, "GET", "/c", NULL), 200);       /* not listed */
    assert_int_equal(status_of(app, "GET", "/users/7", NULL), 503); /* the route, not the path */
    assert_int_equal(status_of(app, "HEAD", "/a", NULL), 503);      /* HEAD runs the GET route */
    assert_int_equal(handler_calls, 2);
    app_done(app);
}

static void unknown_route_entries_refuse_the_start(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.abort_percent = 100;
    const char *routes[] = {"GET /a", "/nope", "PUT /a", NULL};
    o.routes = routes;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    capture k;
    capture_begin(&k);
    assert_int_equal(vie_test_begin(app), VIE_ECONFIG); /* a typo never injects: refused */
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "fault chaos: routes entry \"/nope\" matches no route", NULL));
    assert_true(log_has_line(log, "fault chaos: routes entry \"PUT /a\" matches no route", NULL));
    assert_false(log_has_line(log, "\"GET /a\" matches no route", NULL));
    assert_true(log_has_line(log, "2 problems in the layers' settings", NULL));
    free(log);
    vie_app_free(app);
}

static void header_matcher(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.abort_percent = 100;
    o.match_header = "X-Chaos";
    o.match_value = "on";
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    vie_fault_opts any = enabled_opts();
    any.abort_percent = 100;
    any.abort_status = 500;
    any.match_header = "X-Any";
    assert_int_equal(use(app, "any", &any), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    const char *on[] = {"X-Chaos: on", NULL}, *off[] = {"X-Chaos: off", NULL},
               *onx[] = {"X-Chaos: on2", NULL}, *x_any[] = {"X-Any: whatever", NULL},
               *x_empty[] = {"X-Any:", NULL};
    assert_int_equal(status_of(app, "GET", "/a", on), 503);
    assert_int_equal(status_of(app, "GET", "/a", off), 200);
    assert_int_equal(status_of(app, "GET", "/a", onx), 200);
    assert_int_equal(status_of(app, "GET", "/a", NULL), 200);
    assert_int_equal(status_of(app, "GET", "/a", x_any), 500);   /* any value */
    assert_int_equal(status_of(app, "GET", "/a", x_empty), 500); /* present, empty */
    assert_int_equal(handler_calls, 3);
    app_done(app);
}

/* ------------------------------------------------------------------ */
/* Header-driven faults and CIDRs                                      */

/* The kit's requests have no client address: fault headers are
 * untrusted, ignored and counted, whatever trusted_cidrs says. */
static void fault_headers_from_an_untrusted_client_are_ignored(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    const char *cidrs[] = {"127.0.0.0/8", "::1/128", "0.0.0.0/0", NULL};
    o.trusted_cidrs = cidrs;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    const char *abort_h[] = {"X-Vie-Fault-Abort: 500", NULL};
    const char *delay_h[] = {"X-Vie-Fault-Delay: 2000", NULL};
    const char *bad_h[] = {"X-Vie-Fault-Delay: soon", NULL};
    capture k;
    capture_begin(&k);
    uint64_t t0 = wall_ms();
    assert_int_equal(status_of(app, "GET", "/a", abort_h), 200);
    assert_int_equal(status_of(app, "GET", "/a", delay_h), 200);
    assert_int_equal(status_of(app, "GET", "/a", bad_h), 200); /* not even read */
    assert_true(wall_ms() - t0 < 1000);
    char *log = capture_end(&k);
    /* One line, then quiet (rate-limited). */
    assert_true(log_has_line(log, "fault chaos: fault headers from (no addr) ignored", NULL));
    assert_null(strstr(strstr(log, "ignored") + 1, "ignored"));
    free(log);
    assert_int_equal(handler_calls, 3);
    assert_int_equal(metric(app, "vie_fault_untrusted_headers_total{layer=\"chaos\"}"), 3);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 0);
    app_done(app);
}

static void cidr_matcher(void **state)
{
    assert_int_equal(mw_fault_cidr_match("127.0.0.0/8", "127.0.0.1"), 1);
    assert_int_equal(mw_fault_cidr_match("127.0.0.0/8", "127.255.255.255"), 1);
    assert_int_equal(mw_fault_cidr_match("127.0.0.0/8", "128.0.0.1"), 0);
    assert_int_equal(mw_fault_cidr_match("10.0.0.0/8", "127.0.0.1"), 0);
    assert_int_equal(mw_fault_cidr_match("192.168.4.0/22", "192.168.7.255"), 1);
    assert_int_equal(mw_fault_cidr_match("192.168.4.0/22", "192.168.8.0"), 0);
    assert_int_equal(mw_fault_cidr_match("192.168.4.0/22", "192.168.3.255"), 0);
    assert_int_equal(mw_fault_cidr_match("0.0.0.0/0", "8.8.8.8"), 1);
    assert_int_equal(mw_fault_cidr_match("10.1.2.3", "10.1.2.3"), 1); /* bare: /32 */
    assert_int_equal(mw_fault_cidr_match("10.1.2.3", "10.1.2.4"), 0);
    assert_int_equal(mw_fault_cidr_match("10.1.2.3/32", "10.1.2.3"), 1);
    /* IPv6, and an IPv4 client seen through a dual-stack socket. */
    assert_int_equal(mw_fault_cidr_match("::1/128", "::1"), 1);
    assert_int_equal(mw_fault_cidr_match("::1/128", "::2"), 0);
    assert_int_equal(mw_fault_cidr_match("fd00::/8", "fd12:3456::1"), 1);
    assert_int_equal(mw_fault_cidr_match("fd00::/8", "fe80::1"), 0);
    assert_int_equal(mw_fault_cidr_match("2001:db8::/33", "2001:db8:7fff::1"), 1);
    assert_int_equal(mw_fault_cidr_match("2001:db8::/33", "2001:db8:8000::1"), 0);
    assert_int_equal(mw_fault_cidr_match("127.0.0.0/8", "::ffff:127.0.0.1"), 1);
    assert_int_equal(mw_fault_cidr_match("10.0.0.0/8", "::ffff:127.0.0.1"), 0);
    assert_int_equal(mw_fault_cidr_match("::/0", "127.0.0.1"), 0); /* families apart */
    /* No address, or not an address: never trusted. */
    assert_int_equal(mw_fault_cidr_match("0.0.0.0/0", ""), 0);
    assert_int_equal(mw_fault_cidr_match("0.0.0.0/0", "localhost"), 0);
    /* Bad CIDRs. */
    const char *bad[] = {
        "",           "/8",      "10.0.0.0/",  "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x",
        "10.0.0.1/8", "::1/129", "fe80::1/10", "localhost/8", "10.0.0/8",    "10.0.0.0/0008",
        NULL};
    for (const char **b = bad; *b; b++) {
        if (mw_fault_cidr_match(*b, "10.0.0.1") != -1) fail_msg("accepted \"%s\"", *b);
    }
}

/* ------------------------------------------------------------------ */
/* Delays                                                              */

static void delay_parks_and_resumes(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 40;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t t0 = wall_ms();
    vie_test_response *r = vie_test_request(app, "GET", "/a", NULL, NULL, 0);
    uint64_t took = wall_ms() - t0;
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "ok");
    assert_true(took >= 40 && took < 2000);
    /* The time was spent parked in the layer, not anywhere else. */
    assert_string_equal(r->trail[0].layer, "chaos");
    uint64_t in_layer = (r->trail[0].leave_ns - r->trail[0].enter_ns) / 1000000;
    assert_true(in_layer >= 39);
    vie_test_response_free(r);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 1);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 0);
    assert_int_equal(app->stats->async_timeouts, 0);
    app_done(app);
}

static void delay_then_abort(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 30;
    o.abort_percent = 100;
    o.abort_status = 502;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t t0 = wall_ms();
    assert_int_equal(status_of(app, "GET", "/a", NULL), 502);
    assert_true(wall_ms() - t0 >= 30);
    assert_int_equal(handler_calls, 0);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 1);
    assert_int_equal(metric(app, "vie_fault_aborts_injected_total{layer=\"chaos\"}"), 1);
    app_done(app);
}

/* Every kind of distribution parks for a time in its range. */
static void delay_kinds(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts u = enabled_opts();
    u.delay_percent = 100;
    u.delay_kind = VIE_DELAY_UNIFORM;
    u.delay_min_ms = 10;
    u.delay_max_ms = 30;
    const char *ru[] = {"/a", NULL};
    u.routes = ru;
    assert_int_equal(use(app, "uni", &u), VIE_OK);
    vie_fault_opts n = enabled_opts();
    n.delay_percent = 100;
    n.delay_kind = VIE_DELAY_NORMAL;
    n.delay_ms = 20;
    n.delay_stddev_ms = 5;
    const char *rn[] = {"/b", NULL};
    n.routes = rn;
    assert_int_equal(use(app, "norm", &n), VIE_OK);
    vie_fault_opts l = enabled_opts();
    l.delay_percent = 100;
    l.delay_kind = VIE_DELAY_LOGNORMAL;
    l.delay_p50_ms = 15;
    l.delay_p99_ms = 15; /* no spread: exactly the median */
    const char *rl[] = {"/c", NULL};
    l.routes = rl;
    assert_int_equal(use(app, "logn", &l), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 5; i++) {
        const char *paths[] = {"/a", "/b", "/c"};
        for (int k = 0; k < 3; k++) {
            vie_test_response *r = vie_test_request(app, "GET", paths[k], NULL, NULL, 0);
            assert_int_equal(r->status, 200);
            /* the layer of this route is the one that parked */
            uint64_t parked = 0;
            for (size_t t = 0; t + 1 < r->n_trail; t++)
                parked += (r->trail[t].leave_ns - r->trail[t].enter_ns) / 1000000;
            if (k == 0) assert_true(parked >= 9 && parked < 500);
            if (k == 1) assert_true(parked < 500); /* normal: 20 +- 5, never negative */
            if (k == 2) assert_true(parked >= 14 && parked < 500);
            vie_test_response_free(r);
        }
    }
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"uni\"}"), 5);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"logn\"}"), 5);
    assert_true(metric(app, "vie_fault_delays_injected_total{layer=\"norm\"}") >= 4);
    app_done(app);
}

/* While one request is delayed, another is answered at once: the loop
 * is free. */
static void a_delay_does_not_block_the_loop(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 100;
    const char *routes[] = {"GET /a", NULL};
    o.routes = routes;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    flight slow, fast;
    req_start(app, &slow, "GET", "/a");
    assert_false(req_done(&slow));
    assert_int_equal(slow.c->exec, EXEC_PARKED);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 1);
    req_start(app, &fast, "GET", "/c");
    assert_true(req_done(&fast));
    assert_int_equal(req_status(&fast), 200);
    assert_false(req_done(&slow));
    req_end(&fast);
    req_wait(app, &slow, 2000);
    assert_int_equal(req_status(&slow), 200);
    assert_true(wall_ms() - slow.t0 >= 100);
    req_end(&slow);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 0);
    app_done(app);
}

static void max_active_faults_overflow_is_counted(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 60;
    o.max_active_faults = 2;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    flight q[4];
    req_start(app, &q[0], "GET", "/a");
    req_start(app, &q[1], "GET", "/b");
    req_start(app, &q[2], "GET", "/c"); /* a third delay would exceed 2: skipped */
    assert_false(req_done(&q[0]));
    assert_false(req_done(&q[1]));
    assert_true(req_done(&q[2]));
    assert_int_equal(req_status(&q[2]), 200);
    req_end(&q[2]);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 2);
    assert_int_equal(metric(app, "vie_fault_overflow_total{layer=\"chaos\"}"), 1);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 2);
    req_wait(app, &q[0], 2000);
    req_wait(app, &q[1], 2000);
    assert_int_equal(req_status(&q[0]), 200);
    assert_int_equal(req_status(&q[1]), 200);
    req_end(&q[0]);
    req_end(&q[1]);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 0);
    /* Room again: the next one is delayed. */
    req_start(app, &q[3], "GET", "/a");
    assert_false(req_done(&q[3]));
    req_wait(app, &q[3], 2000);
    req_end(&q[3]);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 3);
    assert_int_equal(metric(app, "vie_fault_overflow_total{layer=\"chaos\"}"), 1);
    app_done(app);
}

/* The request deadline passes while delayed: 504, the timer is stopped
 * and given back, and it never fires on the ended request. */
static void deadline_while_delayed(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 300;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t t0 = wall_ms();
    assert_int_equal(status_of(app, "GET", "/deadline", NULL), 504); /* 20 ms */
    assert_true(wall_ms() - t0 < 250);
    assert_int_equal(handler_calls, 0);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 0);
    capture k;
    capture_begin(&k);
    vie_test_run_for(app, 320); /* past the delay: nothing may fire */
    char *log = capture_end(&k);
    assert_null(strstr(log, "stale"));
    free(log);
    assert_int_equal(app->stats->stale_refs, 0);
    assert_int_equal(handler_calls, 0);
    /* The timer went back to the pool and serves the next delay. */
    assert_int_equal(status_of(app, "GET", "/a", NULL), 200);
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 2);
    app_done(app);
}

/* The client goes away while delayed (the connection cancels it). */
static void client_gone_while_delayed(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 80;
    o.abort_percent = 100;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    flight a, b;
    req_start(app, &a, "GET", "/a");
    req_start(app, &b, "GET", "/b");
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 2);
    vie_log_set_level(VIE_LOG_OFF);
    executor_cancel(a.c, "client gone");
    assert_true(req_done(&a));
    assert_int_equal(a.out.len, 0); /* nothing written for a client that left */
    req_end(&a);                    /* its context is reused or idle: the timer must not touch it */
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 1);
    req_wait(app, &b, 2000);
    assert_int_equal(req_status(&b), 503); /* the other one is unharmed */
    req_end(&b);
    vie_test_run_for(app, 100);
    assert_int_equal(app->stats->stale_refs, 0);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 0);
    assert_int_equal(metric(app, "vie_fault_aborts_injected_total{layer=\"chaos\"}"), 1);
    app_done(app);
}

/* A worker stops with a request still delayed: it goes on (not left
 * hanging on a closed timer), and the pool's timers close cleanly. */
static void worker_stop_while_delayed(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 5000;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    flight a;
    req_start(app, &a, "GET", "/a");
    assert_false(req_done(&a));
    capture k;
    capture_begin(&k);
    vie_test_end(app); /* WORKER_STOP, then every handle of the loop closes */
    char *log = capture_end(&k);
    assert_true(
        log_has_line(log, "fault chaos: a request was still delayed at the worker's stop", NULL));
    free(log);
    assert_true(req_done(&a));
    assert_int_equal(req_status(&a), 200);
    assert_int_equal(handler_calls, 1);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 0);
    metrics_request_done(a.c);
    buf_free(&a.out);
    ctx_pool_destroy(&g_pool); /* the loop is gone: the context is not released to it */
    g_pool_ready = false;
    vie_app_free(app);
}

/* A worker that died with delays in progress does not hold them: the
 * next worker to start gives them back. */
static void dead_workers_delays_are_released(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.delay_percent = 100;
    o.delay_ms = 5000;
    o.max_active_faults = 1;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a worker: starts a delay, then dies without a stop */
        vie_test_begin(app);
        flight a;
        req_start(app, &a, "GET", "/a");
        _exit(req_done(&a) ? 1 : 0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 1);
    capture k;
    capture_begin(&k);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    char *log = capture_end(&k);
    char want[96];
    snprintf(want, sizeof want, "1 delays of worker %d", (int)pid);
    assert_true(log_has_line(log, "fault chaos:", want, "released", NULL));
    free(log);
    assert_int_equal(metric(app, "vie_fault_active{layer=\"chaos\"}"), 0);
    /* and max_active_faults (1) has room again */
    flight b;
    req_start(app, &b, "GET", "/a");
    assert_false(req_done(&b));
    vie_test_end(app);
    metrics_request_done(b.c);
    buf_free(&b.out);
    ctx_pool_destroy(&g_pool);
    g_pool_ready = false;
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Metrics and options                                                 */

static void metrics_have_one_header_per_series(void **state)
{
    vie_app *app = new_app(NULL);
    vie_fault_opts o = enabled_opts();
    o.abort_percent = 100;
    const char *ra[] = {"/a", NULL}, *rb[] = {"/b", NULL};
    o.routes = ra;
    assert_int_equal(use(app, "f.one", &o), VIE_OK);
    o.routes = rb;
    o.abort_status = 500;
    assert_int_equal(use(app, "f.two", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "GET", "/a", NULL), 503);
    assert_int_equal(status_of(app, "GET", "/b", NULL), 500);
    assert_int_equal(status_of(app, "GET", "/b", NULL), 500);
    char *m = vie_app_metrics(app);
    static const char *const names[] = {
        "vie_fault_delays_injected_total counter", "vie_fault_aborts_injected_total counter",
        "vie_fault_overflow_total counter", "vie_fault_untrusted_headers_total counter",
        "vie_fault_active gauge"};
    for (size_t i = 0; i < 5; i++) {
        char want[128];
        snprintf(want, sizeof want, "# TYPE %s\n", names[i]);
        const char *p = strstr(m, want);
        assert_non_null(p);
        assert_null(strstr(p + 1, want));
    }
    assert_non_null(strstr(m, "\nvie_fault_aborts_injected_total{layer=\"f.one\"} 1\n"
                              "vie_fault_aborts_injected_total{layer=\"f.two\"} 2\n"));
    assert_non_null(strstr(m, "\nvie_fault_active{layer=\"f.one\"} 0\n"
                              "vie_fault_active{layer=\"f.two\"} 0\n"));
    free(m);
    app_done(app);
}

static void refuses(vie_fault_opts o, const char *option, const char *why)
{
    vie_app *app = new_app(NULL);
    capture k;
    capture_begin(&k);
    int rc = use(app, "chaos", &o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    char want[64];
    snprintf(want, sizeof want, "fault chaos: option %s:", option);
    if (!log_has_line(log, "ERROR", want, why, NULL))
        fail_msg("no line with \"%s\" and \"%s\" in:\n%s", want, why, log);
    free(log);
    assert_int_equal(app->n_layers, 0);
    vie_app_free(app);
}

static void bad_options_are_refused(void **state)
{
    vie_fault_opts o;
#define BAD(set, opt, why)                                                                         \
    do {                                                                                           \
        o = enabled_opts();                                                                        \
        set;                                                                                       \
        refuses(o, opt, why);                                                                      \
    } while (0)
    BAD(o.delay_percent = 100.5, "delay_percent", "0 to 100");
    BAD(o.delay_percent = -1, "delay_percent", "0 to 100");
    BAD(o.abort_percent = 0.0 / 0.0, "abort_percent", "0 to 100");
    BAD(o.abort_status = 399, "abort_status", "400 to 599");
    BAD(o.abort_status = 600, "abort_status", "400 to 599");
    BAD(o.delay_kind = (vie_delay_kind)9, "delay_kind", "unknown");
    BAD((o.delay_percent = 5, o.delay_ms = 0), "delay_ms", "fixed delay needs ms > 0");
    BAD((o.delay_percent = 5, o.delay_ms = 3600001), "delay_ms", "at most 1h");
    BAD((o.delay_percent = 5, o.delay_kind = VIE_DELAY_UNIFORM, o.delay_min_ms = 50,
         o.delay_max_ms = 20),
        "delay_min_ms", "must not be above max_ms");
    BAD((o.delay_percent = 5, o.delay_kind = VIE_DELAY_UNIFORM), "delay_max_ms", "max_ms > 0");
    BAD((o.delay_percent = 5, o.delay_kind = VIE_DELAY_NORMAL), "delay_ms", "mean");
    BAD((o.delay_percent = 5, o.delay_kind = VIE_DELAY_LOGNORMAL, o.delay_p99_ms = 10),
        "delay_p50_ms", "p50_ms > 0");
    BAD((o.delay_percent = 5, o.delay_kind = VIE_DELAY_LOGNORMAL, o.delay_p50_ms = 20,
         o.delay_p99_ms = 10),
        "delay_p99_ms", "must not be below p50_ms");
    const char *routes[] = {"/ok", "get/x", NULL};
    BAD(o.routes = routes, "routes", "routes[1] \"get/x\" is neither");
    const char *routes2[] = {"GET  /x", NULL};
    BAD(o.routes = routes2, "routes", "routes[0] \"GET  /x\"");
    BAD(o.match_header = "X Bad", "match_header", "not a header name");
    BAD(o.match_value = "on", "match_value", "needs a header");
    const char *cidrs[] = {"127.0.0.0/8", "10.0.0.1/8", NULL};
    BAD(o.trusted_cidrs = cidrs, "trusted_cidrs", "did you mean 10.0.0.0/8?");
    const char *cidrs2[] = {"10.0.0.0/40", NULL};
    BAD(o.trusted_cidrs = cidrs2, "trusted_cidrs", "from 0 to 32");
    const char *cidrs3[] = {"example.com", NULL};
    BAD(o.trusted_cidrs = cidrs3, "trusted_cidrs", "not an IPv4 or IPv6 address");
    BAD(o.max_active_faults = 0, "max_active_faults", "at least 1");
    /* The same when disabled: flipping enabled must not reveal an error. */
    BAD((o.enabled = false, o.abort_status = 200), "abort_status", "400 to 599");
#undef BAD
    /* Kind fields that are not used (delays off) are not required. */
    vie_app *app = new_app(NULL);
    o = enabled_opts();
    o.delay_kind = VIE_DELAY_LOGNORMAL;
    assert_int_equal(use(app, "chaos", &o), VIE_OK);
    assert_int_equal(vie_use_fault(NULL, NULL, &o), VIE_EINVAL);
    /* NULL options: the defaults, which are off. */
    assert_int_equal(vie_use_fault(app, NULL, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(vie_use_fault(app, NULL, NULL), VIE_EFROZEN);
    app_done(app);
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

/* Run mw_fault_from_yaml over text (the instance's parameters) as layer
 * "chaos"; returns its code and, in *errs, every config error joined by
 * newlines. */
static int from_yaml(vie_app *app, const char *text, char **errs)
{
    cfg_ctx cx;
    if (cfg_load_text(&cx, "vie.yaml", text) != 0) {
        cfg_print_errors(&cx, stderr);
        fail_msg("the test's YAML does not load");
    }
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"chaos\"");
    vie_layer_opts lo = {.name = "chaos"};
    int rc = mw_fault_from_yaml(app, &lo, &p);
    size_t n = 1;
    for (size_t i = 0; i < cx.errs.n; i++)
        n += strlen(cx.errs.lines[i]) + 1;
    *errs = calloc(1, n);
    for (size_t i = 0; i < cx.errs.n; i++) {
        strcat(*errs, cx.errs.lines[i]);
        strcat(*errs, "\n");
    }
    cfg_free(&cx);
    return rc;
}

static void yaml_reads_every_key(void **state)
{
    vie_app *app = new_app(NULL);
    char *errs;
    assert_int_equal(from_yaml(app,
                               "enabled: true\n"
                               "seed: 77\n"
                               "delay: {percent: 100, kind: uniform, min_ms: 20ms, max_ms: 30ms}\n"
                               "abort: {percent: \"100%\", status: 418}\n"
                               "routes: [\"GET /a\", /b]\n"
                               "match: {header: X-Chaos, value: \"on\"}\n"
                               "trusted_cidrs: [10.0.0.0/8, \"fd00::/8\"]\n"
                               "max_active_faults: 5\n",
                               &errs),
                     VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    const char *on[] = {"X-Chaos: on", NULL};
    uint64_t t0 = wall_ms();
    assert_int_equal(status_of(app, "GET", "/a", on), 418);
    assert_true(wall_ms() - t0 >= 20);
    assert_int_equal(status_of(app, "POST", "/b", on), 418);
    assert_int_equal(status_of(app, "GET", "/a", NULL), 200); /* match.header */
    assert_int_equal(status_of(app, "POST", "/a", on), 200);  /* routes */
    assert_int_equal(metric(app, "vie_fault_delays_injected_total{layer=\"chaos\"}"), 2);
    assert_int_equal(metric(app, "vie_fault_aborts_injected_total{layer=\"chaos\"}"), 2);
    app_done(app);

    /* Absent: off, and the defaults. */
    app = new_app(NULL);
    capture k;
    capture_begin(&k);
    assert_int_equal(from_yaml(app, "abort: {percent: 100}\n", &errs), VIE_OK);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "fault chaos: disabled", NULL));
    free(log);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "GET", "/a", NULL), 200);
    app_done(app);

    /* The seed replays as in C. */
    app = new_app(NULL);
    assert_int_equal(from_yaml(app, "enabled: yes\nseed: 1234\nabort: {percent: 30}\n", &errs),
                     VIE_OK);
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    int aborted = 0;
    for (int i = 0; i < 300; i++)
        aborted += status_of(app, "GET", "/a", NULL) == 503;
    assert_int_equal(aborted, expected_aborts(1234, 300, 30));
    app_done(app);
}

static void yaml_errors_point_at_the_key(void **state)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"enabled: true\ndelay: {percent: 150, ms: 10}\n",
         "vie.yaml:2:18: middleware \"chaos\": key \"delay.percent\": expected a percentage from 0 "
         "to 100, got \"150\""},
        {"enabled: true\ndelay: {percent: 10}\n",
         "vie.yaml:2:8: middleware \"chaos\": missing required key \"delay.ms\""},
        {"enabled: true\ndelay: {percent: 10, kind: uniform, min_ms: 50ms}\n",
         "vie.yaml:2:8: middleware \"chaos\": missing required key \"delay.max_ms\""},
        {"enabled: true\ndelay: {percent: 10, kind: uniform, min_ms: 50ms, max_ms: 20ms}\n",
         "vie.yaml:2:45: middleware \"chaos\": key \"delay.min_ms\": min_ms (50) must not be above "
         "max_ms (20)"},
        {"enabled: true\ndelay: {percent: 10, kind: normal, ms: 10}\n",
         "vie.yaml:2:8: middleware \"chaos\": missing required key \"delay.stddev_ms\""},
        {"enabled: true\ndelay: {percent: 10, kind: lognormal, p50_ms: 0, p99_ms: 10}\n",
         "vie.yaml:2:47: middleware \"chaos\": key \"delay.p50_ms\": a lognormal delay needs "
         "p50_ms > 0"},
        {"enabled: true\ndelay: {percent: 10, kind: lognormal, p50_ms: 20, p99_ms: 10}\n",
         "vie.yaml:2:59: middleware \"chaos\": key \"delay.p99_ms\": p99_ms (10) must not be below "
         "p50_ms (20)"},
        {"enabled: true\ndelay: {percent: 10, kind: fixed, ms: 10, p99_ms: 10}\n",
         "vie.yaml:2:51: middleware \"chaos\": key \"delay.p99_ms\": p99_ms is not a setting of "
         "kind fixed (it takes ms)"},
        {"enabled: true\ndelay: {percent: 10, kind: gaussian, ms: 10}\n",
         "vie.yaml:2:28: middleware \"chaos\": key \"delay.kind\": expected one of "
         "fixed|uniform|normal|lognormal, got \"gaussian\""},
        {"enabled: true\ndelay: {percent: 10, ms: 2h}\n",
         "vie.yaml:2:26: middleware \"chaos\": key \"delay.ms\": expected a duration from 0ms to "
         "1h, "
         "got \"2h\""},
        {"enabled: true\nabort: {percent: 10, status: 302}\n",
         "vie.yaml:2:30: middleware \"chaos\": key \"abort.status\": expected an integer from 400 "
         "to 599, got \"302\""},
        {"enabled: true\nabort: {percnt: 10}\n",
         "vie.yaml:2:9: unknown key \"abort.percnt\" in middleware \"chaos\"; did you mean "
         "\"abort.percent\"?"},
        {"enabled: true\nroutes: [/ok, get/x]\n",
         "vie.yaml:2:15: middleware \"chaos\": key \"routes\": routes[1] \"get/x\" is neither a "
         "pattern (\"/x\") nor a route label (\"GET /x\")"},
        {"enabled: true\nmatch: {value: x}\n",
         "vie.yaml:2:16: middleware \"chaos\": key \"match.value\": a value needs a header to "
         "compare with"},
        {"enabled: true\nmatch: {header: \"X Y\"}\n",
         "vie.yaml:2:17: middleware \"chaos\": key \"match.header\": \"X Y\" is not a header name"},
        {"enabled: true\ntrusted_cidrs: [127.0.0.0/8, 10.0.0.1/8]\n",
         "vie.yaml:2:30: middleware \"chaos\": key \"trusted_cidrs\": trusted_cidrs[1] "
         "\"10.0.0.1/8\": host bits are set after /8: did you mean 10.0.0.0/8?"},
        {"enabled: true\ntrusted_cidrs: 10.0.0.0/99\n",
         "vie.yaml:2:16: middleware \"chaos\": key \"trusted_cidrs\": trusted_cidrs[0] "
         "\"10.0.0.0/99\": the prefix length must be a number from 0 to 32"},
        {"enabled: true\nmax_active_faults: 0\n",
         "vie.yaml:2:20: middleware \"chaos\": key \"max_active_faults\": expected an integer of "
         "at "
         "least 1, got \"0\""},
        {"enabled: true\nseed: -1\n",
         "vie.yaml:2:7: middleware \"chaos\": key \"seed\": expected a non-negative integer, got "
         "\"-1\""},
        {"enabled: maybe\n",
         "vie.yaml:1:10: middleware \"chaos\": key \"enabled\": expected true or false, got "
         "\"maybe\""},
        {"enabled: true\nrate: 5\n", "vie.yaml:2:1: unknown key \"rate\" in middleware \"chaos\""},
        /* Checked when disabled too. */
        {"abort: {status: 200}\n",
         "vie.yaml:1:17: middleware \"chaos\": key \"abort.status\": expected an integer from 400 "
         "to 599, got \"200\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vie_app *app = new_app(NULL);
        char *errs;
        assert_int_equal(from_yaml(app, cases[i].text, &errs), VIE_EINVAL);
        if (!strstr(errs, cases[i].want))
            fail_msg("case %zu:\n got: %s\nwant: %s\n", i, errs, cases[i].want);
        free(errs);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disabled_passes_everything),
        cmocka_unit_test(abort_always_answers_the_status),
        cmocka_unit_test(abort_never_at_zero),
        cmocka_unit_test(abort_30_percent_replays_per_seed),
        cmocka_unit_test(workers_mix_the_seed_with_their_pid),
        cmocka_unit_test(seed_zero_is_logged_for_replay),
        cmocka_unit_test(routes_match_labels_and_patterns),
        cmocka_unit_test(unknown_route_entries_refuse_the_start),
        cmocka_unit_test(header_matcher),
        cmocka_unit_test(fault_headers_from_an_untrusted_client_are_ignored),
        cmocka_unit_test(cidr_matcher),
        cmocka_unit_test(delay_parks_and_resumes),
        cmocka_unit_test(delay_then_abort),
        cmocka_unit_test(delay_kinds),
        cmocka_unit_test(a_delay_does_not_block_the_loop),
        cmocka_unit_test(max_active_faults_overflow_is_counted),
        cmocka_unit_test(deadline_while_delayed),
        cmocka_unit_test(client_gone_while_delayed),
        cmocka_unit_test(worker_stop_while_delayed),
        cmocka_unit_test(dead_workers_delays_are_released),
        cmocka_unit_test(metrics_have_one_header_per_series),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(yaml_reads_every_key),
        cmocka_unit_test(yaml_errors_point_at_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
