/* The timeout built-in: the deadline it sets turns into 504 while a later
 * layer is parked, or before a later layer runs; a route's own timeout
 * wins; a synchronous handler is not interrupted; what is refused; the
 * YAML form. The clock is the test's where it can be, so only the parked
 * case waits, and only as long as the timeout (50 ms). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config/cfg.h"
#include "core/clock.h"
#include "log_capture.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

#define MS 1000000ull

static uint64_t fake_now = 1000000 * MS;

static uint64_t fake_clock(void)
{
    return fake_now;
}

static int handled;

static vie_status ok(vie_ctx *c, void *a)
{
    handled++;
    return vie_send_text(c, 200, "ok");
}

/* A synchronous handler that takes (on the fake clock) 500 ms. */
static vie_status slow_handler(vie_ctx *c, void *a)
{
    fake_now += 500 * MS;
    return vie_send_text(c, 200, "late but whole");
}

/* A layer that takes advance_ns of (fake) time, synchronously. */
static vie_status hog(vie_ctx *c, void *st)
{
    fake_now += *(uint64_t *)st;
    return VIE_NEXT;
}

/* A layer parked on a timer of 5 s (an upstream that does not answer). */
static uv_timer_t park_timer;
static bool park_cancelled, park_fired;

static void on_park(uv_timer_t *t)
{
    park_fired = true;
    vie_resume(*(vie_ref *)t->data, VIE_NEXT);
}

static void on_cancel(void *arg)
{
    park_cancelled = true;
    uv_timer_stop(arg);
    uv_close(arg, NULL);
}

static vie_status parked(vie_ctx *c, void *st)
{
    static vie_ref ref;
    ref = vie_ref_of(c);
    uv_timer_init(vie_loop(c), &park_timer);
    park_timer.data = &ref;
    uv_timer_start(&park_timer, on_park, 5000, 0);
    vie_on_cancel(c, on_cancel, &park_timer);
    return VIE_PENDING;
}

static int use_timeout(vie_app *app, uint32_t ms)
{
    vie_timeout_opts o;
    vie_timeout_opts_init(&o);
    o.timeout_ms = ms;
    return vie_use_timeout(app, NULL, &o);
}

static void done(vie_app *app)
{
    vie_test_end(app);
    vie_app_free(app);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The case the layer exists for: a later layer waits on something slow;
 * the client gets 504 at the deadline, not after the wait, and the wait
 * is told to stop. */
static void parked_layer_past_the_deadline_gets_504(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/slow", ok, NULL);
    vie_middleware slow = {.name = "upstream", .phase = VIE_APP, .before = parked};
    assert_int_equal(vie_use(app, &slow, NULL), VIE_OK);
    assert_int_equal(use_timeout(app, 50), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    park_cancelled = park_fired = false;
    handled = 0;
    capture k;
    capture_begin(&k);
    uint64_t t0 = wall_ms();
    vie_test_response *r = vie_test_request(app, "GET", "/slow", NULL, NULL, 0);
    uint64_t took = wall_ms() - t0;
    char *log = capture_end(&k);
    assert_int_equal(r->status, 504);
    assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
    assert_non_null(strstr(r->body, "\"detail\":\"the request deadline passed\""));
    assert_true(park_cancelled);
    assert_false(park_fired);
    assert_int_equal(handled, 0);
    assert_true(took >= 45 && took < 2000);
    /* The deadline's doing, not the layer's async timeout (30 s). */
    assert_true(log_has_line(log, "request deadline exceeded while upstream was pending", NULL));
    free(log);
    /* The trail: timeout let it through, upstream was cut off. */
    assert_int_equal(r->n_trail, 2);
    assert_string_equal(r->trail[0].layer, "timeout");
    assert_int_equal(r->trail[0].outcome, VIE_NEXT);
    assert_string_equal(r->trail[1].layer, "upstream");
    vie_test_response_free(r);
    done(app);
}

/* A fake-clock app: timeout layer of layer_ms, then a layer that takes
 * hog_ms, then the handler; route_ms is the route's own timeout. */
static vie_app *hog_app(uint32_t layer_ms, uint64_t *hog_ns, uint32_t route_ms, uint32_t server_ms,
                        vie_handler_fn h)
{
    vie_log_set_level(VIE_LOG_OFF);
    clock_set_source(fake_clock);
    vie_options opt;
    vie_options_init(&opt);
    if (server_ms) opt.request_timeout_ms = server_ms;
    vie_app *app = vie_app_new(&opt);
    vie_route_opts ro = {.timeout_ms = route_ms};
    assert_int_equal(vie_route_with(app, "GET", "/x", h ? h : ok, NULL, &ro), VIE_OK);
    vie_middleware m = {.name = "hog", .phase = VIE_APP, .before = hog};
    assert_int_equal(vie_use(app, &m, hog_ns), VIE_OK);
    if (layer_ms) assert_int_equal(use_timeout(app, layer_ms), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static int status_of(vie_app *app)
{
    vie_test_response *r = vie_test_request(app, "GET", "/x", NULL, NULL, 0);
    int s = r->status;
    vie_test_response_free(r);
    done(app);
    clock_set_source(NULL);
    return s;
}

static void deadline_passed_before_a_later_layer(void **state)
{
    uint64_t took = 200 * MS;
    handled = 0;
    assert_int_equal(status_of(hog_app(100, &took, 0, 0, NULL)), 504);
    assert_int_equal(handled, 0);
    assert_int_equal(status_of(hog_app(300, &took, 0, 0, NULL)), 200);
    assert_int_equal(handled, 1);
}

/* The layer replaces the server's request timeout: it may lengthen it. */
static void layer_replaces_the_server_timeout(void **state)
{
    uint64_t took = 200 * MS;
    assert_int_equal(status_of(hog_app(0, &took, 0, 100, NULL)), 504);
    assert_int_equal(status_of(hog_app(1000, &took, 0, 100, NULL)), 200);
}

/* A route's own timeout is more specific than the layer's, either way. */
static void route_timeout_wins(void **state)
{
    uint64_t took = 200 * MS;
    assert_int_equal(status_of(hog_app(100, &took, 1000, 0, NULL)), 200);
    assert_int_equal(status_of(hog_app(1000, &took, 100, 0, NULL)), 504);
}

/* Documented: a synchronous handler runs to its end; its answer stands. */
static void synchronous_handler_is_not_interrupted(void **state)
{
    uint64_t took = 0;
    vie_app *app = hog_app(100, &took, 0, 0, slow_handler);
    vie_test_response *r = vie_test_request(app, "GET", "/x", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "late but whole");
    vie_test_response_free(r);
    done(app);
    clock_set_source(NULL);
}

static void refused(vie_app *app, uint32_t ms, const char *needle)
{
    capture k;
    capture_begin(&k);
    int rc = use_timeout(app, ms);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    if (!log_has_line(log, "ERROR", "timeout timeout: ", needle, NULL))
        fprintf(stderr, "%s\n", log);
    assert_true(log_has_line(log, "ERROR", "timeout timeout: ", needle, NULL));
    free(log);
}

static void bad_options_are_refused(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/x", ok, NULL);
    refused(app, 0, "timeout_ms 0 is out of range: required, 1 ms .. 1 h");
    refused(app, 3600001, "timeout_ms 3600001 is out of range");
    assert_int_equal(use_timeout(app, 3600000), VIE_OK);
    assert_int_equal(vie_use_timeout(app, NULL, NULL), VIE_EINVAL);
    assert_int_equal(vie_use_timeout(NULL, NULL, NULL), VIE_EINVAL);
    vie_log_set_level(VIE_LOG_OFF);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_layer_opts lo = {.name = "timeout.late"};
    vie_timeout_opts o = {.timeout_ms = 5};
    assert_int_equal(vie_use_timeout(app, &lo, &o), VIE_EFROZEN);
    done(app);
}

static int from_yaml(vie_app *app, const char *text, char **errs)
{
    cfg_ctx cx;
    if (cfg_load_text(&cx, "vie.yaml", text) != 0) {
        cfg_print_errors(&cx, stderr);
        fail_msg("the test's YAML does not load");
    }
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"timeout\"");
    int rc = mw_timeout_from_yaml(app, NULL, &p);
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

static void yaml_form(void **state)
{
    /* 250ms from YAML: a 200 ms layer passes, a 300 ms one does not. */
    uint64_t took = 200 * MS;
    for (int round = 0; round < 2; round++) {
        vie_log_set_level(VIE_LOG_OFF);
        clock_set_source(fake_clock);
        vie_app *app = vie_app_new(NULL);
        vie_route(app, "GET", "/x", ok, NULL);
        vie_middleware m = {.name = "hog", .phase = VIE_APP, .before = hog};
        vie_use(app, &m, &took);
        char *errs;
        assert_int_equal(from_yaml(app, "timeout: 250ms\n", &errs), VIE_OK);
        assert_string_equal(errs, "");
        free(errs);
        assert_int_equal(vie_test_begin(app), VIE_OK);
        assert_int_equal(status_of(app), round == 0 ? 200 : 504);
        took = 300 * MS;
    }

    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{}\n", "middleware \"timeout\": missing required key \"timeout\""},
        {"timeout: 0ms\n", "vie.yaml:1:10: middleware \"timeout\": key \"timeout\": expected a "
                           "duration from "},
        {"timeout: 2h\n", "vie.yaml:1:10: middleware \"timeout\": key \"timeout\": "},
        {"timeout: soon\n", "vie.yaml:1:10: middleware \"timeout\": key \"timeout\": "},
        {"timeout: 1s\ntimout: 2s\n",
         "unknown key \"timout\" in middleware \"timeout\"; did you mean \"timeout\"?"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vie_app *app = vie_app_new(NULL);
        char *errs;
        assert_int_equal(from_yaml(app, cases[i].text, &errs), VIE_EINVAL);
        if (!strstr(errs, cases[i].want))
            fprintf(stderr, "case %zu:\n got: %s\nwant: %s\n", i, errs, cases[i].want);
        assert_non_null(strstr(errs, cases[i].want));
        free(errs);
        vie_app_free(app);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parked_layer_past_the_deadline_gets_504),
        cmocka_unit_test(deadline_passed_before_a_later_layer),
        cmocka_unit_test(layer_replaces_the_server_timeout),
        cmocka_unit_test(route_timeout_wins),
        cmocka_unit_test(synchronous_handler_is_not_interrupted),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(yaml_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
