/* The slo built-in through the test kit, on a clock the tests drive (no
 * sleeping): bad requests push the burn past the fast alert, after hold
 * evaluations the degraded route answers its fallback (logged, counted,
 * not measured), and everything is restored once the short windows
 * drain; tighten calls the rate-limit factor API (a fake, and the real
 * one when rate_limit.c has it); a latency objective; /debug/slo exactly;
 * route and layer names that resolve to nothing; state kept across a
 * reload (vie_app_inherit); evaluation on the worker's own timer; YAML
 * keys and errors with file:line:col; refused C options. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"
#include "core/clock.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

/* In slo.c, for tests. */
int mw_slo_evaluate(vie_app *app, const char *name);
void mw_slo_manual(vie_app *app);
extern int (*mw_slo_set_factor_hook)(vie_app *app, const char *layer_name, double factor);

#define S  1000000000ULL
#define MS 1000000ULL

/* |a - b| <= eps, with both values in the message. */
#define assert_double_equal(a, b, eps)                                                             \
    do {                                                                                           \
        double a_ = (a), b_ = (b), d_ = a_ > b_ ? a_ - b_ : b_ - a_;                               \
        if (!(d_ <= (eps))) fail_msg("%s = %.17g, want %.17g", #a, a_, b_);                        \
    } while (0)

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static int x_status = 200; /* what GET /x answers */
static int handler_calls;

static vie_status answer_x(vie_ctx *c, void *arg)
{
    handler_calls++;
    return vie_send_text(c, x_status, "x\n");
}

static vie_status ok(vie_ctx *c, void *arg)
{
    handler_calls++;
    return vie_send_text(c, 200, "ok\n");
}

/* Advances the fake clock: a slow handler. */
static vie_status slow(vie_ctx *c, void *arg)
{
    fake_now += (uint64_t)(uintptr_t)arg * MS;
    return vie_send_text(c, 200, "slow\n");
}

static vie_app *new_app(void)
{
    vie_log_set_level(VIE_LOG_OFF);
    handler_calls = 0;
    x_status = 200;
    fake_now = 1000 * S;
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(vie_route(app, "GET", "/x", answer_x, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/y", ok, NULL), VIE_OK);
    return app;
}

static int status_of(vie_app *app, const char *target)
{
    vie_test_response *r = vie_test_request(app, "GET", target, NULL, NULL, 0);
    assert_non_null(r);
    int st = r->status;
    vie_test_response_free(r);
    return st;
}

static void requests(vie_app *app, const char *target, int n, int want)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(status_of(app, target), want);
}

/* The value /metrics shows for a series line; -1 when absent. */
static double metric(vie_app *app, const char *series)
{
    char *m = vie_app_metrics(app);
    assert_non_null(m);
    char want[300];
    snprintf(want, sizeof want, "\n%s ", series);
    const char *p = strstr(m, want);
    double v = p ? strtod(p + strlen(want), NULL) : -1;
    free(m);
    return v;
}

/* GET /debug/slo's body (malloc'd). */
static char *debug_slo(vie_app *app)
{
    vie_test_response *r = vie_test_request(app, "GET", "/debug/slo", NULL, NULL, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    assert_string_equal(vie_test_header(r, "content-type"), "application/json");
    char *body = strdup(r->body);
    vie_test_response_free(r);
    return body;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) fail_msg("missing %s\nin %s", needle, hay);
}

/* One evaluation, one period (10 ms) after the clock's current one. */
static void evaluate(vie_app *app, const char *name)
{
    fake_now += 10 * MS;
    assert_int_equal(mw_slo_evaluate(app, name), 1);
}

static const vie_slo_objective obj_x[] = {{.name = "x", .route = "GET /x", .availability = 99.9}};
static const vie_slo_degrade degrade_x[] = {{.route = "GET /x"}};

/* The workbook's alerts at 0.001 (fast 3.6 s / 300 ms at 14.4, slow
 * 21.6 s / 1.8 s at 6), evaluated every 10 ms, hold 3. */
static vie_slo_opts base_opts(void)
{
    vie_slo_opts o;
    vie_slo_opts_init(&o);
    o.objectives = obj_x;
    o.n_objectives = 1;
    o.window_scale = 0.001;
    o.evaluate_every_ms = 10;
    o.clock_ns = fake_clock;
    return o;
}

static int use(vie_app *app, const char *name, const vie_slo_opts *o)
{
    vie_layer_opts lo = {.name = name};
    return vie_use_slo(app, &lo, o);
}

/* ------------------------------------------------------------------ */
/* The cycle: burn, hold, degrade, drain, restore                      */

static void burn_degrades_then_restores(void **state)
{
    vie_app *app = new_app();
    vie_slo_opts o = base_opts();
    o.degrade = degrade_x;
    o.n_degrade = 1;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    requests(app, "/x", 100, 200);
    evaluate(app, "slo");
    assert_int_equal(metric(app, "vie_slo_alert_firing{slo=\"slo\",alert=\"fast\"}"), 0);

    /* 10 failures in 110: 9.1% bad against a 0.1% budget burns 90.9x in
     * every window, past both alerts. */
    x_status = 500;
    requests(app, "/x", 10, 500);
    capture k;
    capture_begin(&k);
    evaluate(app, "slo");
    evaluate(app, "slo");
    /* The period is claimed once: a second evaluation in it does nothing. */
    assert_int_equal(mw_slo_evaluate(app, "slo"), 0);
    char *log = capture_end(&k);
    assert_true(log_has_line(log,
                             "slo slo: alert fast firing: 90.91x over 1h and 90.91x over 5m "
                             "(factor 14.4) on x/availability",
                             NULL));
    assert_true(log_has_line(log,
                             "slo slo: alert slow firing: 90.91x over 6h and 90.91x over 30m "
                             "(factor 6) on x/availability",
                             NULL));
    assert_false(log_has_line(log, "action degrade", NULL));
    free(log);
    /* Two evaluations are not three: the route is still served. */
    assert_int_equal(status_of(app, "/x"), 500);
    assert_int_equal(metric(app, "vie_slo_alert_firing{slo=\"slo\",alert=\"fast\"}"), 1);
    assert_int_equal(metric(app, "vie_slo_actions_total{slo=\"slo\",action=\"degrade\",target="
                                 "\"GET /x\"}"),
                     0);

    capture_begin(&k);
    evaluate(app, "slo");
    log = capture_end(&k);
    assert_true(log_has_line(
        log,
        "slo slo: action degrade GET /x started: answering 503 with Retry-After 1 (alert fast "
        "held 3 evaluations; fast 99.1x over 1h, 99.1x over 5m (x/availability); slow 99.1x "
        "over 6h, 99.1x over 30m (x/availability))",
        NULL));
    free(log);

    /* Degraded: the layer answers, the handler is not reached. */
    int calls = handler_calls;
    vie_test_response *r = vie_test_request(app, "GET", "/x", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_string_equal(vie_test_header(r, "retry-after"), "1");
    assert_string_equal(vie_test_header(r, "content-type"), "application/problem+json");
    assert_string_equal(
        r->body, "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"
                 "\"detail\":\"GET /x is degraded by slo slo while its error budget "
                 "burns: retry later\"}");
    vie_test_response_free(r);
    assert_int_equal(handler_calls, calls);
    assert_int_equal(status_of(app, "/y"), 200); /* other routes are not touched */
    /* A preflight (OPTIONS borrows the GET pipeline) passes, unmeasured. */
    r = vie_test_request(app, "OPTIONS", "/x", NULL, NULL, 0);
    assert_int_equal(r->status, 204);
    assert_string_equal(vie_test_header(r, "allow"), "GET, HEAD, OPTIONS");
    vie_test_response_free(r);
    assert_int_equal(metric(app, "vie_slo_actions_total{slo=\"slo\",action=\"degrade\",target="
                                 "\"GET /x\"}"),
                     1);
    assert_int_equal(metric(app, "vie_slo_degraded_total{slo=\"slo\",route=\"GET /x\"}"), 1);
    /* Degraded answers are not measured: 111 requests, 11 bad. */
    assert_int_equal(metric(app, "vie_slo_requests_total{slo=\"slo\",objective=\"x\",sli="
                                 "\"availability\",result=\"good\"}"),
                     100);
    assert_int_equal(metric(app, "vie_slo_requests_total{slo=\"slo\",objective=\"x\",sli="
                                 "\"availability\",result=\"bad\"}"),
                     11);
    assert_double_equal(metric(app, "vie_slo_burn_rate{slo=\"slo\",objective=\"x\",sli="
                                    "\"availability\",window=\"5m\"}"),
                        99.0991, 1e-4);

    /* The fix ships; the failures leave the short windows (1.8 s for the
     * slow alert) while the route is degraded. */
    x_status = 200;
    fake_now += 2 * S;
    assert_int_equal(metric(app, "vie_slo_burn_rate{slo=\"slo\",objective=\"x\",sli="
                                 "\"availability\",window=\"30m\"}"),
                     0);
    capture_begin(&k);
    evaluate(app, "slo");
    evaluate(app, "slo");
    assert_int_equal(status_of(app, "/x"), 503); /* two quiet evaluations: still degraded */
    evaluate(app, "slo");
    log = capture_end(&k);
    assert_true(log_has_line(log, "slo slo: alert fast stopped firing", NULL));
    assert_true(log_has_line(
        log,
        "slo slo: action degrade GET /x stopped: the route is served again (no alert for 3 "
        "evaluations; fast 99.1x over 1h, 0x over 5m (x/availability); slow 99.1x over 6h, 0x "
        "over 30m (x/availability))",
        NULL));
    free(log);
    assert_int_equal(status_of(app, "/x"), 200);
    assert_int_equal(metric(app, "vie_slo_alert_firing{slo=\"slo\",alert=\"fast\"}"), 0);
    assert_int_equal(metric(app, "vie_slo_requests_total{slo=\"slo\",objective=\"x\",sli="
                                 "\"availability\",result=\"good\"}"),
                     101);

    /* Failing again starts over: three evaluations to degrade. */
    x_status = 502;
    requests(app, "/x", 5, 502);
    evaluate(app, "slo");
    evaluate(app, "slo");
    assert_int_equal(status_of(app, "/x"), 502);
    evaluate(app, "slo");
    assert_int_equal(status_of(app, "/x"), 503);
    assert_int_equal(metric(app, "vie_slo_actions_total{slo=\"slo\",action=\"degrade\",target="
                                 "\"GET /x\"}"),
                     2);
    vie_test_end(app);
    vie_app_free(app);
}

/* A custom fallback, and the hold counters' hysteresis: an alert that
 * stops for one evaluation restarts its streak. */
static void custom_fallback_and_hysteresis(void **state)
{
    vie_app *app = new_app();
    vie_slo_opts o = base_opts();
    static const vie_slo_degrade d[] = {{.route = "GET /x",
                                         .status = 200,
                                         .body = "{\"cached\":true}",
                                         .content_type = "application/json",
                                         .retry_after_s = 30}};
    o.degrade = d;
    o.n_degrade = 1;
    o.hold = 2;
    static const vie_slo_alert one[] = {{"page", 60000, 1000, 10}}; /* 60 ms / 1 ms scaled */
    o.alerts = one;
    o.n_alerts = 1;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    /* The short window is 1 ms: each evaluation sees the requests of its
     * own instant only. */
    x_status = 500;
    requests(app, "/x", 3, 500);
    assert_int_equal(mw_slo_evaluate(app, "slo"), 1); /* fires: streak 1 */
    fake_now += 10 * MS;
    assert_int_equal(mw_slo_evaluate(app, "slo"), 1); /* quiet: the streak starts over */
    fake_now += 10 * MS;
    requests(app, "/x", 1, 500);
    assert_int_equal(mw_slo_evaluate(app, "slo"), 1); /* fires: streak 1, not 2 */
    assert_int_equal(status_of(app, "/x"), 500);
    fake_now += 10 * MS;
    requests(app, "/x", 1, 500);
    assert_int_equal(mw_slo_evaluate(app, "slo"), 1); /* streak 2: degrade */
    vie_test_response *r = vie_test_request(app, "GET", "/x", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "{\"cached\":true}");
    assert_string_equal(vie_test_header(r, "content-type"), "application/json");
    assert_string_equal(vie_test_header(r, "retry-after"), "30");
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Tighten                                                             */

static struct {
    char name[32];
    double factor;
} calls[16];
static int n_calls;
static int fake_rc;

static int fake_set_factor(vie_app *app, const char *name, double factor)
{
    if (n_calls < 16) {
        snprintf(calls[n_calls].name, sizeof calls[n_calls].name, "%s", name);
        calls[n_calls].factor = factor;
    }
    n_calls++;
    return fake_rc;
}

static void add_rate_limit(vie_app *app, const char *name, double rate)
{
    vie_rate_limit_opts rl;
    vie_rate_limit_opts_init(&rl);
    rl.rate = rate;
    rl.burst = 100000; /* the fake clock stands still: never in the way */
    rl.key = VIE_RATE_KEY_ROUTE;
    rl.clock_ns = fake_clock;
    vie_layer_opts lo = {.name = name};
    assert_int_equal(vie_use_rate_limit(app, &lo, &rl), VIE_OK);
}

static void tighten_calls_the_factor_api(void **state)
{
    vie_app *app = new_app();
    add_rate_limit(app, "api", 1e6);
    vie_slo_opts o = base_opts();
    static const vie_slo_tighten t[] = {{"api", 0.5}};
    o.tighten = t;
    o.n_tighten = 1;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    mw_slo_set_factor_hook = fake_set_factor;
    n_calls = 0;
    fake_rc = VIE_OK;
    assert_int_equal(vie_test_begin(app), VIE_OK);
    /* A worker's start sets the factor the shared state says: none. */
    assert_int_equal(n_calls, 1);
    assert_string_equal(calls[0].name, "api");
    assert_true(calls[0].factor == 1.0);

    x_status = 503;
    requests(app, "/x", 4, 503);
    capture k;
    capture_begin(&k);
    for (int i = 0; i < 3; i++)
        evaluate(app, "slo");
    char *log = capture_end(&k);
    assert_true(log_has_line(log,
                             "slo slo: action tighten api started: rate x0.5 (alert fast held 3 "
                             "evaluations; fast 1000x over 1h",
                             NULL));
    free(log);
    assert_int_equal(n_calls, 2);
    assert_true(calls[1].factor == 0.5);
    assert_int_equal(metric(app, "vie_slo_actions_total{slo=\"slo\",action=\"tighten\",target="
                                 "\"api\"}"),
                     1);
    assert_int_equal(status_of(app, "/x"), 503); /* no degrade configured: served */

    fake_now += 2 * S;
    capture_begin(&k);
    for (int i = 0; i < 3; i++)
        evaluate(app, "slo");
    log = capture_end(&k);
    assert_true(
        log_has_line(log, "slo slo: action tighten api stopped: rate x1 (no alert for 3", NULL));
    free(log);
    assert_int_equal(n_calls, 3);
    assert_true(calls[2].factor == 1.0);

    /* A failing call is logged, and still counted as started. */
    requests(app, "/x", 4, 503);
    fake_rc = VIE_EINVAL;
    capture_begin(&k);
    for (int i = 0; i < 3; i++)
        evaluate(app, "slo");
    log = capture_end(&k);
    assert_true(
        log_has_line(log, "slo slo: action tighten api could not start: invalid argument", NULL));
    free(log);
    vie_test_end(app);
    vie_app_free(app);
    mw_slo_set_factor_hook = NULL;
}

/* With rate_limit.c's mw_rate_limit_set_factor: 10/s with burst 1
 * lets a request through every 150 ms; tightened by 0.5 (5/s) every
 * other one is refused. */
static void tighten_the_real_rate_limit(void **state)
{
    vie_app *app = new_app();
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/rl", &g), VIE_OK);
    vie_route_opts ro = {.group = g};
    assert_int_equal(vie_route_with(app, "GET", "/z", ok, NULL, &ro), VIE_OK);
    vie_rate_limit_opts rl;
    vie_rate_limit_opts_init(&rl);
    rl.rate = 10;
    rl.burst = 1;
    rl.key = VIE_RATE_KEY_ROUTE;
    rl.clock_ns = fake_clock;
    vie_layer_opts rlo = {.name = "api", .group = g};
    assert_int_equal(vie_use_rate_limit(app, &rlo, &rl), VIE_OK);
    vie_slo_opts o = base_opts();
    static const vie_slo_tighten t[] = {{"api", 0.5}};
    o.tighten = t;
    o.n_tighten = 1;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 4; i++) {
        fake_now += 150 * MS;
        assert_int_equal(status_of(app, "/rl/z"), 200);
    }
    x_status = 500;
    requests(app, "/x", 4, 500);
    for (int i = 0; i < 3; i++)
        evaluate(app, "slo");
    int limited = 0;
    for (int i = 0; i < 4; i++) {
        fake_now += 150 * MS;
        limited += status_of(app, "/rl/z") == 429;
    }
    assert_int_equal(limited, 2);
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Latency                                                             */

static void latency_objective(void **state)
{
    vie_app *app = new_app();
    assert_int_equal(vie_route(app, "GET", "/slow", slow, (void *)(uintptr_t)300), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/quick", slow, (void *)(uintptr_t)100), VIE_OK);
    static const vie_slo_objective obj[] = {
        {.name = "all", .latency_percentile = 90, .latency_threshold_ms = 250}};
    vie_slo_opts o = base_opts();
    o.objectives = obj;
    o.hold = 1;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    clock_set_source(fake_clock); /* request durations on the same clock */
    assert_int_equal(vie_test_begin(app), VIE_OK);
    requests(app, "/quick", 9, 200); /* 100 ms: good */
    requests(app, "/slow", 1, 200);  /* 300 ms: bad */
    requests(app, "/x", 2, 200);     /* ~0 ms: good */
    assert_int_equal(metric(app, "vie_slo_requests_total{slo=\"slo\",objective=\"all\",sli="
                                 "\"latency\",result=\"good\"}"),
                     11);
    assert_int_equal(metric(app, "vie_slo_requests_total{slo=\"slo\",objective=\"all\",sli="
                                 "\"latency\",result=\"bad\"}"),
                     1);
    /* 1 in 12 against a 10% budget: 0.83x, far from 14.4. */
    evaluate(app, "slo");
    assert_int_equal(metric(app, "vie_slo_alert_firing{slo=\"slo\",alert=\"fast\"}"), 0);
    char *body = debug_slo(app);
    assert_contains(body, "{\"name\":\"all\",\"route\":null,\"sli\":\"latency\",\"objective\":90,"
                          "\"budget\":0.1,\"threshold_ms\":250,\"requests\":{\"good\":11,"
                          "\"bad\":1}");
    free(body);
    clock_set_source(NULL);
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* /debug/slo                                                          */

static void debug_slo_shows_everything(void **state)
{
    vie_app *app = new_app();
    add_rate_limit(app, "api", 1e6);
    vie_slo_opts o = base_opts();
    o.degrade = degrade_x;
    o.n_degrade = 1;
    static const vie_slo_tighten t[] = {{"api", 0.25}};
    o.tighten = t;
    o.n_tighten = 1;
    mw_slo_set_factor_hook = fake_set_factor;
    fake_rc = VIE_OK;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    requests(app, "/x", 90, 200);
    x_status = 500;
    requests(app, "/x", 10, 500);
    for (int i = 0; i < 3; i++)
        evaluate(app, "slo");
    char *body = debug_slo(app);
    assert_string_equal(
        body,
        "{\"slos\":[{\"name\":\"slo\",\"window_scale\":0.001,\"evaluate_every_ms\":10,\"hold\":3,"
        "\"bucket_ms\":25,\"evaluations\":3,\"quiet\":0,\"actions_in_force\":true,"
        "\"objectives\":[{\"name\":\"x\",\"route\":\"GET /x\",\"sli\":\"availability\","
        "\"objective\":99.9,\"budget\":0.001,\"requests\":{\"good\":90,\"bad\":10},\"windows\":["
        "{\"window\":\"1h\",\"scaled_ms\":3600,\"good\":90,\"bad\":10,\"burn_rate\":100},"
        "{\"window\":\"5m\",\"scaled_ms\":300,\"good\":90,\"bad\":10,\"burn_rate\":100},"
        "{\"window\":\"6h\",\"scaled_ms\":21600,\"good\":90,\"bad\":10,\"burn_rate\":100},"
        "{\"window\":\"30m\",\"scaled_ms\":1800,\"good\":90,\"bad\":10,\"burn_rate\":100}],"
        "\"alerts\":{\"fast\":true,\"slow\":true}}],"
        "\"alerts\":[{\"name\":\"fast\",\"long\":\"1h\",\"short\":\"5m\",\"burn\":14.4,"
        "\"firing\":true,\"streak\":3},{\"name\":\"slow\",\"long\":\"6h\",\"short\":\"30m\","
        "\"burn\":6,\"firing\":true,\"streak\":3}],"
        "\"actions\":[{\"action\":\"tighten\",\"target\":\"api\",\"factor\":0.25,"
        "\"in_force\":true,\"started\":1},{\"action\":\"degrade\",\"target\":\"GET /x\","
        "\"status\":503,\"retry_after\":1,\"in_force\":true,\"started\":1,\"answered\":0}],"
        "\"problems\":[]}]}");
    free(body);
    vie_test_end(app);
    vie_app_free(app);
    mw_slo_set_factor_hook = NULL;
}

/* Two slo layers: one route for both, series of both in /metrics; a
 * layer can turn the route off, and with none wanting it there is none. */
static void two_layers_and_no_debug_route(void **state)
{
    vie_app *app = new_app();
    vie_slo_opts o = base_opts();
    o.debug_endpoint = false;
    assert_int_equal(use(app, "slo.a", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "/debug/slo"), 404);
    vie_test_end(app);
    vie_app_free(app);

    app = new_app();
    o.debug_endpoint = true;
    assert_int_equal(use(app, "slo.a", &o), VIE_OK);
    static const vie_slo_objective y[] = {{.name = "y", .route = "GET /y", .availability = 99}};
    o.objectives = y;
    assert_int_equal(use(app, "slo.b", &o), VIE_OK); /* no second route: no conflict */
    assert_int_equal(vie_test_begin(app), VIE_OK);
    requests(app, "/y", 3, 200);
    char *body = debug_slo(app);
    assert_contains(body, "{\"slos\":[{\"name\":\"slo.a\",");
    assert_contains(body, "]},{\"name\":\"slo.b\",");
    free(body);
    assert_int_equal(metric(app, "vie_slo_requests_total{slo=\"slo.b\",objective=\"y\",sli="
                                 "\"availability\",result=\"good\"}"),
                     3);
    assert_int_equal(metric(app, "vie_slo_requests_total{slo=\"slo.a\",objective=\"x\",sli="
                                 "\"availability\",result=\"good\"}"),
                     0);
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Names that resolve to nothing                                       */

static void unknown_names_are_problems(void **state)
{
    vie_app *app = new_app();
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/api", &g), VIE_OK);
    vie_route_opts ro = {.group = g};
    assert_int_equal(vie_route_with(app, "GET", "/users/:id", ok, NULL, &ro), VIE_OK);
    static const vie_slo_objective obj[] = {
        {.name = "users", .route = "GET /api/users/:id", .availability = 99.9},
        {.name = "typo", .route = "GET /api/user/:id", .availability = 99.9},
        {.name = "outside", .route = "GET /x", .availability = 99.9},
    };
    static const vie_slo_degrade d[] = {{.route = "POST /api/users/:id"}};
    static const vie_slo_tighten t[] = {{"nope", 0.5}};
    vie_slo_opts o = base_opts();
    o.objectives = obj;
    o.n_objectives = 3;
    o.degrade = d;
    o.n_degrade = 1;
    o.tighten = t;
    o.n_tighten = 1;
    vie_layer_opts lo = {.name = "slo", .group = g};
    assert_int_equal(vie_use_slo(app, &lo, &o), VIE_OK);
    capture k;
    capture_begin(&k);
    /* Typos in route and layer names refuse the start, each named. */
    assert_int_equal(vie_test_begin(app), VIE_ECONFIG);
    char *log = capture_end(&k);
    static const char *const want[] = {
        "objective typo: route \"GET /api/user/:id\" matches no route; did you mean "
        "\"GET /api/users/:id\"?",
        "objective outside: route \"GET /x\" is not covered by this layer (place the layer "
        "on it)",
        "degrade: route \"POST /api/users/:id\" matches no route; did you mean \"GET "
        "/api/users/:id\"?",
        "tighten: no layer is called \"nope\"",
    };
    for (size_t i = 0; i < 4; i++)
        assert_true(log_has_line(log, "ERROR", "slo slo: ", want[i], NULL));
    assert_true(log_has_line(log, "ERROR", "4 problems in the layers' settings", NULL));
    free(log);
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Reload: the next app in the same scope keeps counts and actions     */

static void reload_keeps_counts_and_actions(void **state)
{
    vie_app *app = new_app();
    vie_slo_opts o = base_opts();
    o.degrade = degrade_x;
    o.n_degrade = 1;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    x_status = 500;
    requests(app, "/x", 6, 500);
    for (int i = 0; i < 3; i++)
        evaluate(app, "slo");
    assert_int_equal(status_of(app, "/x"), 503);

    /* The next generation, same objectives and alerts. */
    vie_app *next = vie_app_new(NULL);
    assert_int_equal(vie_app_inherit(next, app), VIE_OK);
    assert_int_equal(vie_route(next, "GET", "/x", answer_x, NULL), VIE_OK);
    capture k;
    capture_begin(&k);
    assert_int_equal(use(next, "slo", &o), VIE_OK);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "slo slo: counts carried over from the previous config", NULL));
    assert_true(log_has_line(log, "slo slo: actions in force carried over", NULL));
    free(log);
    assert_int_equal(vie_test_begin(next), VIE_OK);
    assert_int_equal(status_of(next, "/x"), 503); /* still degraded */
    assert_int_equal(metric(next, "vie_slo_requests_total{slo=\"slo\",objective=\"x\",sli="
                                  "\"availability\",result=\"bad\"}"),
                     6);
    /* Evaluations carry on from the shared hold counters. */
    x_status = 200;
    fake_now += 2 * S;
    for (int i = 0; i < 3; i++)
        evaluate(next, "slo");
    assert_int_equal(status_of(next, "/x"), 200);
    assert_int_equal(status_of(app, "/x"), 200); /* the old generation agrees */
    vie_test_end(next);
    vie_app_free(next);

    /* A changed objective starts its counts afresh. */
    next = vie_app_new(NULL);
    assert_int_equal(vie_app_inherit(next, app), VIE_OK);
    assert_int_equal(vie_route(next, "GET", "/x", answer_x, NULL), VIE_OK);
    static const vie_slo_objective obj[] = {
        {.name = "x", .route = "GET /x", .latency_percentile = 99, .latency_threshold_ms = 100}};
    vie_slo_opts o2 = o;
    o2.objectives = obj;
    assert_int_equal(use(next, "slo", &o2), VIE_OK);
    assert_int_equal(vie_test_begin(next), VIE_OK);
    assert_int_equal(metric(next, "vie_slo_requests_total{slo=\"slo\",objective=\"x\",sli="
                                  "\"latency\",result=\"good\"}"),
                     0);
    vie_test_end(next);
    vie_app_free(next);
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* The worker's own timer, on the real clock                           */

static void timer_evaluates_each_period(void **state)
{
    vie_app *app = new_app();
    vie_slo_opts o = base_opts();
    o.clock_ns = NULL;
    o.evaluate_every_ms = 5;
    assert_int_equal(use(app, "slo", &o), VIE_OK);
    uint64_t t0 = clock_now_ns();
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_run_for(app, 100);
    char *body = debug_slo(app);
    long periods = (long)((clock_now_ns() - t0) / (5 * MS)) + 2; /* begun and ended in one */
    const char *p = strstr(body, "\"evaluations\":");
    assert_non_null(p);
    long n = strtol(p + strlen("\"evaluations\":"), NULL, 10);
    free(body);
    /* 20 periods in 100 ms: timers may run late (a loaded machine), but
     * never evaluate a period twice. */
    if (n < 5 || n > periods) fail_msg("%ld evaluations in %ld periods of 5 ms", n, periods);
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

static void bad_options_are_refused(void **state)
{
    static const vie_slo_objective none[] = {{.name = "n"}};
    static const vie_slo_objective twice[] = {{.name = "a", .availability = 99},
                                              {.name = "a", .availability = 98}};
    static const vie_slo_objective full[] = {{.name = "f", .availability = 100}};
    static const vie_slo_objective badroute[] = {{.name = "r", .route = "/x", .availability = 9}};
    static const vie_slo_objective nothr[] = {{.name = "l", .latency_percentile = 99}};
    static const vie_slo_alert inverted[] = {{"a", 1000, 2000, 2}};
    static const vie_slo_alert tiny[] = {{"a", 600000, 500, 2}};
    static const vie_slo_tighten zero[] = {{"api", 0}};
    static const vie_slo_degrade weird[] = {{.route = "GET /x", .status = 204, .body = "b"}};
    static const struct {
        int which;
        const char *want;
    } cases[] = {
        {0, "slo s: option objectives[0].availability: objective \"n\" sets neither availability "
            "nor latency"},
        {1, "slo s: option objectives[1].name: objective \"a\" is declared twice (objectives[0])"},
        {2, "slo s: option objectives[0].availability: expected a percentage above 0 and below "
            "100 (100% leaves no error budget), got 100"},
        {3, "slo s: option objectives[0].route: expected a route label \"METHOD /path\""},
        {4, "slo s: option objectives[0].latency_threshold_ms: a latency objective needs a "
            "threshold from 1ms to 1h, got 0 ms"},
        {5, "slo s: option alerts[0].short_ms: the short window must be at least 1ms and not "
            "longer than the long one (1000 ms), got 2000 ms"},
        {6, "slo s: option alerts[0].short_ms: window_scale 0.001 makes this window (500 ms) "
            "shorter than 1 ms"},
        {7, "slo s: option actions.tighten[0].factor: expected a factor above 0 and at most 1 "
            "(0.5 halves the rate), got 0"},
        {8, "slo s: option actions.degrade[0].body: a 204 response has no body"},
        {9, "slo s: option window_scale: expected a factor above 0 and at most 1, got 2"},
        {10, "slo s: option hold: expected 1 to 1000 evaluations, got 0"},
        {11, "slo s: option objectives: at least one objective is required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vie_app *app = new_app();
        vie_slo_opts o = base_opts();
        switch (cases[i].which) {
        case 0: o.objectives = none; break;
        case 1: o.objectives = twice, o.n_objectives = 2; break;
        case 2: o.objectives = full; break;
        case 3: o.objectives = badroute; break;
        case 4: o.objectives = nothr; break;
        case 5: o.alerts = inverted, o.n_alerts = 1; break;
        case 6: o.alerts = tiny, o.n_alerts = 1; break;
        case 7: o.tighten = zero, o.n_tighten = 1; break;
        case 8: o.degrade = weird, o.n_degrade = 1; break;
        case 9: o.window_scale = 2; break;
        case 10: o.hold = 0; break;
        case 11: o.n_objectives = 0; break;
        }
        capture k;
        capture_begin(&k);
        int rc = use(app, "s", &o);
        char *log = capture_end(&k);
        assert_int_equal(rc, VIE_EINVAL);
        if (!log_has_line(log, cases[i].want, NULL))
            fail_msg("case %zu: want a line with\n%s\ngot:\n%s", i, cases[i].want, log);
        free(log);
        vie_app_free(app);
    }
    vie_app *app = new_app();
    assert_int_equal(vie_use_slo(app, NULL, NULL), VIE_EINVAL);
    assert_int_equal(vie_use_slo(NULL, NULL, NULL), VIE_EINVAL);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

static int from_yaml(vie_app *app, const char *text, char **errs)
{
    cfg_ctx cx;
    if (cfg_load_text(&cx, "vie.yaml", text) != 0) {
        cfg_print_errors(&cx, stderr);
        fail_msg("the test's YAML does not load");
    }
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"slo\"");
    vie_layer_opts lo = {.name = "slo"};
    int rc = mw_slo_from_yaml(app, &lo, &p);
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
    vie_app *app = new_app();
    add_rate_limit(app, "api", 1e6);
    mw_slo_set_factor_hook = fake_set_factor;
    fake_rc = VIE_OK;
    char *errs;
    assert_int_equal(from_yaml(app,
                               "objectives:\n"
                               "  - name: x\n"
                               "    route: GET /x\n"
                               "    availability: \"99.5%\"\n"
                               "    latency: {percentile: 95, threshold: 200ms}\n"
                               "  - {name: all, availability: 90}\n"
                               "alerts:\n"
                               "  - {name: page, long: 1h, short: 5m, burn: 10}\n"
                               "window_scale: 0.01\n"
                               "evaluate_every: 20ms\n"
                               "hold: 2\n"
                               "min_requests: 2\n"
                               "debug_endpoint: true\n"
                               "actions:\n"
                               "  tighten: [{rate_limit: api, factor: 0.5}]\n"
                               "  degrade:\n"
                               "    - {route: GET /x, status: 429, body: \"busy\\n\", "
                               "content_type: text/plain, retry_after: 5s}\n",
                               &errs),
                     VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    /* No clock option in YAML: the executor's clock, which the test drives. */
    clock_set_source(fake_clock);
    mw_slo_manual(app);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    char *body = debug_slo(app);
    assert_contains(body, "\"window_scale\":0.01,\"evaluate_every_ms\":20,\"hold\":2,"
                          "\"bucket_ms\":250,");
    assert_contains(body, "{\"name\":\"x\",\"route\":\"GET /x\",\"sli\":\"availability\","
                          "\"objective\":99.5,\"budget\":0.005,");
    assert_contains(body, "{\"name\":\"x\",\"route\":\"GET /x\",\"sli\":\"latency\","
                          "\"objective\":95,\"budget\":0.05,\"threshold_ms\":200,");
    assert_contains(body, "{\"name\":\"all\",\"route\":null,\"sli\":\"availability\","
                          "\"objective\":90,\"budget\":0.1,");
    assert_contains(body, "\"alerts\":[{\"name\":\"page\",\"long\":\"1h\",\"short\":\"5m\","
                          "\"burn\":10,");
    assert_contains(body, "\"actions\":[{\"action\":\"tighten\",\"target\":\"api\","
                          "\"factor\":0.5,");
    assert_contains(body, "{\"action\":\"degrade\",\"target\":\"GET /x\",\"status\":429,"
                          "\"retry_after\":5,");
    assert_contains(body, "\"problems\":[]");
    free(body);
    /* hold 2: degrade after two evaluations, with the configured answer. */
    x_status = 500;
    requests(app, "/x", 2, 500);
    fake_now += 20 * MS;
    assert_int_equal(mw_slo_evaluate(app, "slo"), 1);
    fake_now += 20 * MS;
    assert_int_equal(mw_slo_evaluate(app, "slo"), 1);
    vie_test_response *r = vie_test_request(app, "GET", "/x", NULL, NULL, 0);
    assert_int_equal(r->status, 429);
    assert_string_equal(r->body, "busy\n");
    assert_string_equal(vie_test_header(r, "content-type"), "text/plain");
    assert_string_equal(vie_test_header(r, "retry-after"), "5");
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
    mw_slo_set_factor_hook = NULL;
    clock_set_source(NULL);

    /* The least: one objective, the default alerts, scale and hold. */
    app = new_app();
    assert_int_equal(from_yaml(app, "objectives: [{name: x, availability: 99.9}]\n", &errs),
                     VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    body = debug_slo(app);
    assert_contains(body, "\"window_scale\":1,\"evaluate_every_ms\":10000,\"hold\":3,"
                          "\"bucket_ms\":25000,");
    assert_contains(body, "{\"name\":\"slow\",\"long\":\"6h\",\"short\":\"30m\",\"burn\":6,");
    free(body);
    vie_test_end(app);
    vie_app_free(app);
}

static void yaml_errors_point_at_the_key(void **state)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"hold: 3\n", "vie.yaml:1:1: middleware \"slo\": missing required key \"objectives\""},
        {"objectives: {name: x}\n",
         "vie.yaml:1:13: middleware \"slo\": key \"objectives\": expected a list of objectives, "
         "got a map"},
        {"objectives: [x]\n",
         "vie.yaml:1:14: middleware \"slo\": key \"objectives[0]\": expected a map, got a "
         "string"},
        {"objectives:\n  - {name: x, availability: 101}\n",
         "vie.yaml:2:29: middleware \"slo\": key \"objectives[0].availability\": expected a "
         "percentage from 0 to 100, got \"101\""},
        {"objectives:\n  - {name: x, availability: 0}\n",
         "vie.yaml:2:29: middleware \"slo\": key \"objectives[0].availability\": expected a "
         "percentage above 0 and below 100"},
        {"objectives:\n  - {name: x, availability: 100}\n",
         "vie.yaml:2:29: middleware \"slo\": key \"objectives[0].availability\": expected a "
         "percentage above 0 and below 100 (100% leaves no error budget), got 100"},
        {"objectives:\n  - {name: x, availabilty: 99}\n",
         "vie.yaml:2:15: unknown key \"objectives[0].availabilty\" in middleware \"slo\"; did you "
         "mean \"objectives[0].availability\"?"},
        {"objectives:\n  - {name: x, latency: {percentile: 99}}\n",
         "vie.yaml:2:24: middleware \"slo\": missing required key "
         "\"objectives[0].latency.threshold\""},
        {"objectives:\n  - {name: x, latency: {percentile: 99, threshold: 2h}}\n",
         "vie.yaml:2:52: middleware \"slo\": key \"objectives[0].latency.threshold\": expected a "
         "duration from 1ms to 1h"},
        {"objectives:\n  - {name: x, route: \"/x\", availability: 99}\n",
         "vie.yaml:2:22: middleware \"slo\": key \"objectives[0].route\": expected a route label "
         "\"METHOD /path\" (\"GET /api/users/:id\"), got \"/x\""},
        {"objectives:\n  - {name: x, availability: 99}\n  - {name: x, availability: 98}\n",
         "vie.yaml:3:12: middleware \"slo\": key \"objectives[1].name\": objective \"x\" is "
         "declared twice (objectives[0])"},
        {"objectives: [{name: x, availability: 99}]\nalerts:\n  - {name: a, long: 5m, short: 1h, "
         "burn: 2}\n",
         "vie.yaml:3:32: middleware \"slo\": key \"alerts[0].short\": the short window must be "
         "at least 1ms and not longer than the long one (300000 ms), got 3600000 ms"},
        {"objectives: [{name: x, availability: 99}]\nalerts:\n  - {name: a, long: 5m, short: 1m, "
         "burn: 0}\n",
         "vie.yaml:3:42: middleware \"slo\": key \"alerts[0].burn\": expected a burn-rate factor "
         "above 0 and at most 1e6, got 0"},
        {"objectives: [{name: x, availability: 99}]\nalerts:\n  - {name: a, long: 5m}\n",
         "vie.yaml:3:5: middleware \"slo\": missing required key \"alerts[0].short\""},
        {"objectives: [{name: x, availability: 99}]\nwindow_scale: 0\n",
         "vie.yaml:2:15: middleware \"slo\": key \"window_scale\": expected a factor above 0 and "
         "at most 1, got 0"},
        {"objectives: [{name: x, availability: 99}]\nwindow_scale: 2\n",
         "vie.yaml:2:15: middleware \"slo\": key \"window_scale\": expected a number from 0 to "
         "1, got \"2\""},
        {"objectives: [{name: x, availability: 99}]\nwindow_scale: 0.000001\n",
         "vie.yaml:2:15: middleware \"slo\": key \"window_scale\": 1e-06 makes the short "
         "window of alert \"fast\" (300000 ms) shorter than 1 ms"},
        {"objectives: [{name: x, availability: 99}]\nhold: 0\n",
         "vie.yaml:2:7: middleware \"slo\": key \"hold\": expected an integer from 1 to 1000, got "
         "\"0\""},
        {"objectives: [{name: x, availability: 99}]\nactions: {tighten: [{rate_limit: a, "
         "factor: 1.5}]}\n",
         "vie.yaml:2:45: middleware \"slo\": key \"actions.tighten[0].factor\": expected a "
         "number from 0 to 1, got \"1.5\""},
        {"objectives: [{name: x, availability: 99}]\nactions: {tighten: [{rate_limit: a, "
         "factor: 0}]}\n",
         "vie.yaml:2:45: middleware \"slo\": key \"actions.tighten[0].factor\": expected a "
         "factor above 0 and at most 1 (0.5 halves the rate), got 0"},
        {"objectives: [{name: x, availability: 99}]\nactions: {degrade: [{route: GET /x, "
         "status: 700}]}\n",
         "vie.yaml:2:45: middleware \"slo\": key \"actions.degrade[0].status\": expected an "
         "integer from 200 to 599, got \"700\""},
        {"objectives: [{name: x, availability: 99}]\nactions: {degrade: [{route: GET /x, "
         "content_type: text/plain}]}\n",
         "vie.yaml:2:51: middleware \"slo\": key \"actions.degrade[0].content_type\": a content "
         "type needs a body (without one the answer is problem+json)"},
        {"objectives: [{name: x, availability: 99}]\nactions: {shed: []}\n",
         "vie.yaml:2:11: unknown key \"actions.shed\" in middleware \"slo\""},
        {"objectives: [{name: x, availability: 99}]\nevaluate_every: 2h\n",
         "vie.yaml:2:17: middleware \"slo\": key \"evaluate_every\": expected a duration from "
         "1ms to 1h"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vie_app *app = new_app();
        char *errs;
        int rc = from_yaml(app, cases[i].text, &errs);
        if (rc != VIE_EINVAL || !strstr(errs, cases[i].want))
            fail_msg("case %zu (rc %d): want\n%s\ngot\n%s", i, rc, cases[i].want, errs);
        free(errs);
        vie_app_free(app);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burn_degrades_then_restores),
        cmocka_unit_test(custom_fallback_and_hysteresis),
        cmocka_unit_test(tighten_calls_the_factor_api),
        cmocka_unit_test(tighten_the_real_rate_limit),
        cmocka_unit_test(latency_objective),
        cmocka_unit_test(debug_slo_shows_everything),
        cmocka_unit_test(two_layers_and_no_debug_route),
        cmocka_unit_test(unknown_names_are_problems),
        cmocka_unit_test(reload_keeps_counts_and_actions),
        cmocka_unit_test(timer_evaluates_each_period),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(yaml_reads_every_key),
        cmocka_unit_test(yaml_errors_point_at_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
