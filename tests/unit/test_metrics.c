/* /metrics: the Prometheus exposition, and counters shared across
 * processes (what workers forked from one app rely on). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/app.h"
#include "vie/vie_test.h"

static vie_status ok(vie_ctx *c, void *a)
{
    return vie_send_text(c, 200, "ok");
}
static vie_status teapot(vie_ctx *c, void *a)
{
    return vie_send_text(c, 418, "short and stout");
}
static vie_status boom(vie_ctx *c, void *a)
{
    vie_panic(c, "boom");
}

static vie_app *make_app(void)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/ok", ok, NULL);
    vie_route(app, "POST", "/t/\"q\"", teapot, NULL); /* a label that needs escaping */
    vie_route(app, "GET", "/boom", boom, NULL);
    vie_route(app, "GET", "/metrics", vie_metrics_handler, NULL);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void hit(vie_app *app, const char *method, const char *path, int status)
{
    vie_test_response *r = vie_test_request(app, method, path, NULL, NULL, 0);
    assert_int_equal(r->status, status);
    vie_test_response_free(r);
}

static bool has(const char *text, const char *line)
{
    const char *p = strstr(text, line);
    return p && (p == text || p[-1] == '\n');
}

static void requests_by_route_method_status(void **state)
{
    vie_app *app = make_app();
    for (int i = 0; i < 3; i++)
        hit(app, "GET", "/ok", 200);
    hit(app, "POST", "/t/\"q\"", 418);
    hit(app, "GET", "/missing", 404);
    hit(app, "DELETE", "/ok", 405);
    hit(app, "GET", "/boom", 500);
    char *m = vie_app_metrics(app);
    assert_true(has(m, "# TYPE vie_requests_total counter\n"));
    assert_true(has(m, "vie_requests_total{route=\"/ok\",method=\"GET\",status=\"200\"} 3\n"));
    assert_true(
        has(m, "vie_requests_total{route=\"/t/\\\"q\\\"\",method=\"POST\",status=\"418\"} 1\n"));
    assert_true(has(m, "vie_requests_total{route=\"\",method=\"GET\",status=\"404\"} 1\n"));
    assert_true(has(m, "vie_requests_total{route=\"\",method=\"DELETE\",status=\"405\"} 1\n"));
    assert_true(has(m, "vie_requests_total{route=\"/boom\",method=\"GET\",status=\"500\"} 1\n"));
    assert_true(has(m, "vie_panics_total{layer=\"handler\",route=\"GET /boom\"} 1\n"));
    assert_true(has(m, "vie_requests_in_flight 0\n"));
    free(m);
    vie_app_free(app);
}

static void duration_histogram_is_cumulative(void **state)
{
    vie_app *app = make_app();
    for (int i = 0; i < 5; i++)
        hit(app, "GET", "/ok", 200);
    char *m = vie_app_metrics(app);
    assert_true(has(m, "# TYPE vie_request_duration_seconds histogram\n"));
    assert_true(has(
        m, "vie_request_duration_seconds_bucket{route=\"/ok\",method=\"GET\",le=\"+Inf\"} 5\n"));
    assert_true(has(m, "vie_request_duration_seconds_count{route=\"/ok\",method=\"GET\"} 5\n"));
    /* buckets never decrease */
    uint64_t prev = 0;
    for (const char *p = m; (p = strstr(p, "bucket{route=\"/ok\"")) != NULL; p++) {
        uint64_t v = strtoull(strchr(p, '}') + 2, NULL, 10);
        assert_true(v >= prev);
        prev = v;
    }
    assert_int_equal(prev, 5);
    free(m);
    vie_app_free(app);
}

static void metrics_route_serves_text_format(void **state)
{
    vie_app *app = make_app();
    hit(app, "GET", "/ok", 200);
    vie_test_response *r = vie_test_request(app, "GET", "/metrics", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(vie_test_header(r, "Content-Type"),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(
        strstr(r->body, "vie_requests_total{route=\"/ok\",method=\"GET\",status=\"200\"} 1"));
    vie_test_response_free(r);
    vie_app_free(app);
}

/* Workers are forked from the app: what a child counts, the parent sees. */
static void counters_are_shared_across_processes(void **state)
{
    vie_app *app = make_app();
    hit(app, "GET", "/ok", 200);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 4; i++) {
            vie_test_response *r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
            if (!r || r->status != 200) _exit(1);
            vie_test_response_free(r);
        }
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *m = vie_app_metrics(app);
    assert_true(has(m, "vie_requests_total{route=\"/ok\",method=\"GET\",status=\"200\"} 5\n"));
    free(m);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_by_route_method_status),
        cmocka_unit_test(duration_histogram_is_cumulative),
        cmocka_unit_test(metrics_route_serves_text_format),
        cmocka_unit_test(counters_are_shared_across_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
