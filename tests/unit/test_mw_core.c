/* What the core gives the built-ins: per-layer duration histograms (the
 * metrics built-in), 404 and 405 through the app-wide layers, OPTIONS
 * through the path's pipeline, app events in order, state that survives
 * a reload (vie_app_inherit), and vie_deadline_set. The clock is the
 * test's, so durations are exact. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/app.h"
#include "core/clock.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

#define MS 1000000ull

static uint64_t fake_now = 1000 * MS;
static uint64_t step_ns; /* added at every clock read */

static uint64_t fake_clock(void)
{
    fake_now += step_ns;
    return fake_now;
}

static int seen; /* before hooks run */

static vie_status count_before(vie_ctx *c, void *s)
{
    (void)c;
    (void)s;
    seen++;
    return VIE_NEXT;
}

static vie_status hello(vie_ctx *c, void *a)
{
    (void)a;
    return vie_send_text(c, 200, "hi");
}

static const vie_middleware counter = {.name = "counter", .before = count_before};

static int setup(void **state)
{
    (void)state;
    clock_set_source(fake_clock);
    step_ns = 0;
    seen = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    clock_set_source(NULL);
    return 0;
}

/* One layer takes 3 ms (the clock moves 1 ms a read, three reads inside
 * it would be fragile: the layer itself moves the clock instead). */
static vie_status slow_before(vie_ctx *c, void *s)
{
    (void)c;
    (void)s;
    fake_now += 3 * MS;
    return VIE_NEXT;
}

static void metrics_histograms_time_each_layer(void **state)
{
    (void)state;
    vie_app *app = vie_app_new(NULL);
    static const vie_middleware slow = {.name = "slow", .before = slow_before};
    assert_int_equal(vie_use(app, &slow, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/", hello, NULL), VIE_OK);
    vie_metrics_opts mo;
    vie_metrics_opts_init(&mo);
    assert_string_equal(mo.path, "/metrics");
    assert_true(mo.layer_histograms);
    assert_int_equal(vie_use_metrics(app, &mo), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 2; i++)
        vie_test_response_free(vie_test_request(app, "GET", "/", NULL, NULL, 0));
    vie_test_response *r = vie_test_request(app, "GET", "/metrics", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    /* 3 ms: in the 0.005 bucket, not in 0.0025; two requests, then the
     * third (this scrape) is still running when the text is made. */
    assert_non_null(
        strstr(r->body, "vie_layer_duration_seconds_bucket{layer=\"slow\",le=\"0.0025\"} 0\n"));
    assert_non_null(
        strstr(r->body, "vie_layer_duration_seconds_bucket{layer=\"slow\",le=\"0.005\"} 2\n"));
    assert_non_null(
        strstr(r->body, "vie_layer_duration_seconds_bucket{layer=\"slow\",le=\"+Inf\"} 2\n"));
    assert_non_null(
        strstr(r->body, "vie_layer_duration_seconds_sum{layer=\"slow\"} 0.006000000\n"));
    assert_non_null(strstr(r->body, "vie_layer_duration_seconds_count{layer=\"slow\"} 2\n"));
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

static void metrics_without_histograms_and_bad_path(void **state)
{
    (void)state;
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_use(app, &counter, NULL), VIE_OK);
    vie_metrics_opts mo;
    vie_metrics_opts_init(&mo);
    mo.path = "metrics"; /* no leading slash */
    assert_int_equal(vie_use_metrics(app, &mo), VIE_EINVAL);
    mo.path = "/m";
    mo.layer_histograms = false;
    assert_int_equal(vie_use_metrics(app, &mo), VIE_OK);
    assert_int_equal(vie_use_metrics(app, &mo), VIE_ECONFLICT); /* the route exists */
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = vie_test_request(app, "GET", "/m", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_null(strstr(r->body, "vie_layer_duration_seconds"));
    vie_test_response_free(r);
    vie_test_end(app);
    assert_int_equal(vie_use_metrics(app, &mo), VIE_EFROZEN);
    vie_app_free(app);
}

static void not_found_and_405_run_the_app_wide_layers(void **state)
{
    (void)state;
    vie_app *app = vie_app_new(NULL);
    vie_group *g = NULL;
    assert_int_equal(vie_group_new(app, NULL, "/g", &g), VIE_OK);
    static const vie_middleware grouped = {.name = "grouped", .before = count_before};
    assert_int_equal(vie_use(app, &counter, NULL), VIE_OK);
    assert_int_equal(vie_group_use(g, &grouped, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "POST", "/only-post", hello, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    vie_test_response *r = vie_test_request(app, "GET", "/nope", NULL, NULL, 0);
    assert_int_equal(r->status, 404);
    assert_int_equal(seen, 1); /* the app-wide layer only: not the group's */
    assert_string_equal(vie_test_header(r, "content-type"), "application/problem+json");
    assert_int_equal(r->n_trail, 2);
    assert_string_equal(r->trail[0].layer, "counter");
    vie_test_response_free(r);

    r = vie_test_request(app, "GET", "/only-post", NULL, NULL, 0);
    assert_int_equal(r->status, 405);
    assert_int_equal(seen, 2);
    assert_string_equal(vie_test_header(r, "allow"), "POST");
    vie_test_response_free(r);

    /* A path that climbs above the root, and OPTIONS *: answered by Vie,
     * through the app-wide layer too. */
    r = vie_test_request(app, "GET", "/../etc/passwd", NULL, NULL, 0);
    assert_int_equal(r->status, 400);
    assert_int_equal(seen, 3);
    assert_false(r->keep_alive);
    assert_non_null(strstr(r->body, "climbs above the root"));
    vie_test_response_free(r);
    r = vie_test_request(app, "OPTIONS", "*", NULL, NULL, 0);
    assert_int_equal(r->status, 204);
    assert_int_equal(seen, 4);
    assert_non_null(strstr(vie_test_header(r, "allow"), "OPTIONS"));
    vie_test_response_free(r);

    /* Counted as unmatched, by method, not under a route. */
    char *m = vie_app_metrics(app);
    assert_non_null(strstr(m, "vie_requests_total{route=\"\",method=\"GET\",status=\"404\"} 1\n"));
    assert_non_null(strstr(m, "vie_requests_total{route=\"\",method=\"GET\",status=\"405\"} 1\n"));
    free(m);
    vie_test_end(app);
    vie_app_free(app);
}

static void without_app_wide_layers_404_skips_the_executor(void **state)
{
    (void)state;
    vie_app *app = vie_app_new(NULL);
    vie_group *g = NULL;
    assert_int_equal(vie_group_new(app, NULL, "/g", &g), VIE_OK);
    assert_int_equal(vie_group_use(g, &counter, NULL), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/x", hello, NULL, &(vie_route_opts){.group = g}),
                     VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = vie_test_request(app, "GET", "/nope", NULL, NULL, 0);
    assert_int_equal(r->status, 404);
    assert_int_equal(r->n_trail, 0);
    assert_int_equal(seen, 0);
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

static void options_runs_the_paths_pipeline(void **state)
{
    (void)state;
    vie_app *app = vie_app_new(NULL);
    vie_group *g = NULL;
    assert_int_equal(vie_group_new(app, NULL, "/api", &g), VIE_OK);
    assert_int_equal(vie_group_use(g, &counter, NULL), VIE_OK);
    vie_route_opts ro = {.group = g};
    assert_int_equal(vie_route_with(app, "GET", "/things", hello, NULL, &ro), VIE_OK);
    assert_int_equal(vie_route_with(app, "DELETE", "/things", hello, NULL, &ro), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = vie_test_request(app, "OPTIONS", "/api/things", NULL, NULL, 0);
    assert_int_equal(r->status, 204);
    assert_int_equal(seen, 1); /* the group's layer ran */
    const char *allow = vie_test_header(r, "allow");
    assert_non_null(allow);
    assert_non_null(strstr(allow, "GET"));
    assert_non_null(strstr(allow, "DELETE"));
    assert_non_null(strstr(allow, "OPTIONS"));
    assert_int_equal(r->body_len, 0);
    vie_test_response_free(r);
    r = vie_test_request(app, "OPTIONS", "/api/none", NULL, NULL, 0);
    assert_int_equal(r->status, 404);
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

static char events[64];

static void on_event(vie_app *app, void *loop, void *arg)
{
    (void)app;
    const char *tag = arg;
    size_t n = strlen(events);
    if (n + 3 < sizeof events) {
        events[n] = tag[0];
        events[n + 1] = loop ? tag[1] : '-';
        events[n + 2] = '\0';
    }
}

static void app_events_in_order(void **state)
{
    (void)state;
    events[0] = '\0';
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_app_hook_add(app, VIE_EV_WORKER_START, on_event, "a+"), VIE_OK);
    assert_int_equal(vie_app_hook_add(app, VIE_EV_WORKER_START, on_event, "b+"), VIE_OK);
    assert_int_equal(vie_app_hook_add(app, VIE_EV_WORKER_STOP, on_event, "A+"), VIE_OK);
    assert_int_equal(vie_app_hook_add(app, VIE_EV_WORKER_STOP, on_event, "B+"), VIE_OK);
    assert_int_equal(vie_app_hook_add(app, VIE_EV_APP_FREE, on_event, "F+"), VIE_OK);
    assert_int_equal(vie_app_hook_add(app, (vie_app_event)99, on_event, "x"), VIE_EINVAL);
    assert_int_equal(vie_app_hook_add(app, VIE_EV_REOPEN, NULL, NULL), VIE_EINVAL);
    assert_int_equal(vie_route(app, "GET", "/", hello, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_string_equal(events, "a+b+"); /* start in order, with the loop */
    /* Frozen: a worker hook would never run, so it is refused; the free
     * hook is still accepted. */
    assert_int_equal(vie_app_hook_add(app, VIE_EV_WORKER_START, on_event, "c+"), VIE_EFROZEN);
    assert_int_equal(vie_app_hook_add(app, VIE_EV_APP_FREE, on_event, "G+"), VIE_OK);
    vie_test_end(app);
    assert_string_equal(events, "a+b+B+A+"); /* stop in reverse */
    vie_app_free(app);
    assert_string_equal(events, "a+b+B+A+F-G-"); /* free: no loop */
}

static void inherited_apps_share_state(void **state)
{
    (void)state;
    vie_app *a = vie_app_new(NULL);
    vie_app *b = vie_app_new(NULL);
    vie_app *c = vie_app_new(NULL);
    bool fresh;
    int *pa = app_shared_state(a, "cb:x", 64, &fresh);
    assert_non_null(pa);
    assert_true(fresh);
    *pa = 42;
    /* b is unrelated: its own memory. */
    int *pb = app_shared_state(b, "cb:x", 64, &fresh);
    assert_true(fresh);
    assert_ptr_not_equal(pa, pb);
    /* c inherits a: the same memory, not fresh; another size is new. */
    assert_int_equal(vie_app_inherit(c, a), VIE_OK);
    int *pc = app_shared_state(c, "cb:x", 64, &fresh);
    assert_false(fresh);
    assert_ptr_equal(pa, pc);
    assert_int_equal(*pc, 42);
    assert_non_null(app_shared_state(c, "cb:x", 128, &fresh));
    assert_true(fresh);
    assert_int_equal(vie_app_inherit(NULL, a), VIE_EINVAL);
    assert_int_equal(vie_use(b, &counter, NULL), VIE_OK);
    assert_int_equal(vie_app_inherit(b, a), VIE_ESTATE); /* too late */
    vie_app_free(a);
    vie_app_free(b);
    vie_app_free(c);
}

static vie_status set_deadline(vie_ctx *c, void *s)
{
    (void)s;
    assert_int_equal(vie_deadline_set(c, 5), VIE_OK);
    fake_now += 10 * MS; /* this layer overruns the new deadline */
    return VIE_NEXT;
}

static void deadline_set_by_a_layer(void **state)
{
    (void)state;
    vie_app *app = vie_app_new(NULL);
    static const vie_middleware dl = {.name = "dl", .before = set_deadline};
    assert_int_equal(vie_use(app, &dl, NULL), VIE_OK);
    assert_int_equal(vie_use(app, &counter, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/", hello, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = vie_test_request(app, "GET", "/", NULL, NULL, 0);
    assert_int_equal(r->status, 504);
    assert_int_equal(seen, 0); /* the next layer never ran */
    vie_test_response_free(r);
    vie_test_end(app);
    assert_int_equal(vie_deadline_set(NULL, 5), VIE_EINVAL);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(metrics_histograms_time_each_layer, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_without_histograms_and_bad_path, setup, teardown),
        cmocka_unit_test_setup_teardown(not_found_and_405_run_the_app_wide_layers, setup, teardown),
        cmocka_unit_test_setup_teardown(without_app_wide_layers_404_skips_the_executor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(options_runs_the_paths_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(app_events_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(inherited_apps_share_state, setup, teardown),
        cmocka_unit_test_setup_teardown(deadline_set_by_a_layer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
