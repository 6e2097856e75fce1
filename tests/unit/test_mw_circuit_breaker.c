/* The circuit_breaker built-in through the test kit, its time driven by an
 * injected clock (no sleeping): a failing handler trips it, the fallback
 * answers with Retry-After, refusals are counted not_permitted, half-open
 * lets exactly N probes through (held in flight on the kit's loop), a
 * probe another layer answered 401 completes by its status, panics and
 * broken-off responses are failures, slow calls, the metrics text line by
 * line, the state surviving a second app built with vie_app_inherit (a
 * reload), the modes, the fallback body and file, a process dying with
 * the lock held, the refusal of bad options with their log lines, and
 * every YAML key with errors pointing at the key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/cfg.h"
#include "core/app.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/dispatch.h"
#include "core/metrics.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

/* In circuit_breaker.c, for tests. */
pthread_mutex_t *mw_circuit_breaker_mutex(vie_app *app, const char *name);

#define MS 1000000ull
#define S  1000000000ull

static uint64_t fake_ns = 1000 * S;
static uint64_t fake_clock(void)
{
    return fake_ns;
}

static int handler_calls;

static vie_status ok(vie_ctx *c, void *arg)
{
    handler_calls++;
    return vie_send_text(c, 200, "ok");
}

static vie_status failing(vie_ctx *c, void *arg)
{
    handler_calls++;
    return vie_send_problem(c, 500, "the backend failed");
}

static vie_status with_status(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_str v = vie_param(c, "code");
    char code[8] = {0};
    memcpy(code, v.ptr, v.len < 7 ? v.len : 7);
    return vie_send_text(c, atoi(code), "as asked");
}

static vie_status panics(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_panic(c, "boom");
}

/* Sends part of a declared body, then panics: the status is 200 but the
 * response breaks off. */
static vie_status breaks_off(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_set_status(c, 200);
    vie_set_content_length(c, 10);
    vie_write(c, "abc", 3);
    vie_panic(c, "broke off");
}

static vie_status slow(vie_ctx *c, void *arg)
{
    handler_calls++;
    fake_ns += 2 * S;
    return vie_send_text(c, 200, "slow");
}

/* Parks; the test answers later through parked[]. */
static vie_ref parked[8];
static int n_parked;

static vie_status park(vie_ctx *c, void *arg)
{
    handler_calls++;
    parked[n_parked++] = vie_ref_of(c);
    return VIE_PENDING;
}

static void answer_parked(int i, int status)
{
    vie_ctx *c = vie_ref_get(parked[i]);
    assert_non_null(c);
    vie_send_text(c, status, "late");
    assert_int_equal(vie_resume(parked[i], VIE_DONE), VIE_OK);
}

/* A guard after the breaker that refuses requests with X-Deny. */
static vie_status gate(vie_ctx *c, void *state)
{
    if (vie_header(c, "X-Deny").ptr) return vie_send_problem(c, 401, "denied");
    return VIE_NEXT;
}

static vie_app *new_app(void)
{
    vie_log_set_level(VIE_LOG_OFF);
    handler_calls = 0;
    n_parked = 0;
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(vie_route(app, "GET", "/ok", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/fail", failing, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/s/:code", with_status, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/panic", panics, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/broken", breaks_off, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/slow", slow, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/park", park, NULL), VIE_OK);
    vie_route_opts short_deadline = {.timeout_ms = 20};
    assert_int_equal(vie_route_with(app, "GET", "/deadline", park, NULL, &short_deadline), VIE_OK);
    return app;
}

/* A COUNT window of 8, min_calls 4, 50%, open 3 s, 2 probes in 10 s. */
static vie_circuit_breaker_opts base_opts(void)
{
    vie_circuit_breaker_opts o;
    vie_circuit_breaker_opts_init(&o);
    o.window_size = 8;
    o.min_calls = 4;
    o.open_wait_ms = 3000;
    o.half_open_calls = 2;
    o.half_open_max_wait_ms = 10000;
    o.clock_ns = fake_clock;
    return o;
}

static int use(vie_app *app, const char *name, const vie_circuit_breaker_opts *o)
{
    vie_layer_opts lo = {.name = name};
    return vie_use_circuit_breaker(app, &lo, o);
}

static int status_of(vie_app *app, const char *path, const char *const *headers)
{
    vie_test_response *r = vie_test_request(app, "GET", path, headers, NULL, 0);
    assert_non_null(r);
    int st = r->status;
    vie_test_response_free(r);
    return st;
}

/* The value /metrics shows for a series, -1 when absent. */
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

/* ------------------------------------------------------------------ */
/* Requests in flight together, on the kit's loop (as in test_mw_fault) */

typedef struct flight {
    vie_ctx *c;
    vie_buf out;
    char raw[256];
} flight;

static ctx_pool g_pool;
static bool g_pool_ready;

static void flight_complete(vie_ctx *c)
{
    (void)c;
}

static void req_start(vie_app *app, flight *q, const char *path)
{
    if (!g_pool_ready) {
        ctx_pool_init(&g_pool, app, vie_test_loop(app));
        g_pool_ready = true;
    }
    int n = snprintf(q->raw, sizeof q->raw, "GET %s HTTP/1.1\r\nHost: vie.test\r\n\r\n", path);
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
    metrics_request_start(q->c);
    dispatch_request(q->c);
}

static int req_status(const flight *q)
{
    int st = 0;
    if (q->out.len > 12 && sscanf(q->out.data, "HTTP/1.1 %d", &st) == 1) return st;
    return 0;
}

static void req_end(flight *q)
{
    metrics_request_done(q->c);
    ctx_release(&g_pool, q->c);
    buf_free(&q->out);
}

static void app_done(vie_app *app)
{
    vie_test_end(app);
    if (g_pool_ready) ctx_pool_destroy(&g_pool);
    g_pool_ready = false;
    vie_app_free(app);
}

/* Trip the breaker of app with 4 failing calls; returns their log. */
static char *trip(vie_app *app)
{
    capture k;
    capture_begin(&k);
    for (int i = 0; i < 4; i++)
        assert_int_equal(status_of(app, "/fail", NULL), 500);
    return capture_end(&k);
}

/* ------------------------------------------------------------------ */

static void a_failing_handler_trips_the_breaker(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "/ok", NULL), 200);
    assert_int_equal(status_of(app, "/fail", NULL), 500);
    assert_int_equal(status_of(app, "/fail", NULL), 500);
    capture k;
    capture_begin(&k);
    assert_int_equal(status_of(app, "/fail", NULL), 500); /* 3 of 4 = 75% >= 50% */
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "WARN",
                             "circuit_breaker api: CLOSED -> OPEN: failure rate 75.0% >= 50% over "
                             "4 calls (slow 0.0%); open for 3s",
                             NULL));
    free(log);
    assert_int_equal(handler_calls, 4);

    /* Open: the fallback, without calling the handler. */
    fake_ns += 700 * MS;
    vie_test_response *r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_string_equal(vie_test_header(r, "Retry-After"), "3"); /* 2.3 s, rounded up */
    assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
    assert_string_equal(r->body, "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\","
                                 "\"status\":503,\"detail\":\"circuit breaker api is open\"}");
    vie_test_response_free(r);
    fake_ns += 2 * S;
    r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_string_equal(vie_test_header(r, "Retry-After"), "1"); /* 0.3 s */
    vie_test_response_free(r);
    assert_int_equal(handler_calls, 4);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"not_permitted\"}"),
                     2);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"failure\"}"), 3);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"success\"}"), 1);
    assert_int_equal(metric(app, "vie_circuit_state{breaker=\"api\",state=\"open\"}"), 1);
    assert_int_equal(metric(app, "vie_circuit_state_code{breaker=\"api\"}"), 1);
    app_done(app);
}

static void half_open_lets_exactly_n_probes_through(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    o.half_open_calls = 3;
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    free(trip(app));
    fake_ns += 3 * S; /* open_wait */
    capture k;
    capture_begin(&k);
    flight q[3];
    for (int i = 0; i < 3; i++) {
        req_start(app, &q[i], "/park");
        assert_int_equal(q[i].c->exec, EXEC_PARKED); /* a probe, held in flight */
    }
    assert_int_equal(n_parked, 3);
    /* A fourth while three probes are out: refused. */
    vie_test_response *r = vie_test_request(app, "GET", "/park", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_string_equal(vie_test_header(r, "Retry-After"), "1");
    assert_non_null(strstr(r->body, "circuit breaker api is half-open and its probes are in "
                                    "flight"));
    vie_test_response_free(r);
    assert_int_equal(n_parked, 3);
    assert_int_equal(metric(app, "vie_circuit_state{breaker=\"api\",state=\"half_open\"}"), 1);
    /* The probes complete: two successes and a failure (33% < 50%). */
    answer_parked(0, 200);
    answer_parked(1, 503);
    assert_int_equal(metric(app, "vie_circuit_state{breaker=\"api\",state=\"half_open\"}"), 1);
    answer_parked(2, 200);
    char *log = capture_end(&k);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(q[i].c->exec, EXEC_DONE);
        assert_int_equal(req_status(&q[i]), i == 1 ? 503 : 200);
        req_end(&q[i]);
    }
    assert_true(log_has_line(log, "INFO",
                             "circuit_breaker api: OPEN -> HALF_OPEN: open_wait 3s elapsed: "
                             "letting 3 probes through",
                             NULL));
    assert_true(log_has_line(log, "INFO",
                             "circuit_breaker api: HALF_OPEN -> CLOSED: probes: failure rate "
                             "33.3% < 50% and slow rate 0.0% < 100% over 3 calls",
                             NULL));
    free(log);
    assert_int_equal(metric(app, "vie_circuit_state{breaker=\"api\",state=\"closed\"}"), 1);
    assert_int_equal(status_of(app, "/ok", NULL), 200);
    app_done(app);
}

static void a_probe_answered_by_a_later_layer_completes_by_its_status(void **state)
{
    /* 401 from the gate after the breaker: a success (not a listed
     * status), so two such probes close the breaker. */
    for (int listed = 0; listed < 2; listed++) {
        vie_app *app = new_app();
        vie_circuit_breaker_opts o = base_opts();
        const int statuses[] = {401, 0};
        if (listed) o.failure_statuses = statuses;
        assert_int_equal(use(app, "api", &o), VIE_OK);
        const char *after[] = {"api", NULL};
        vie_middleware g = {
            .name = "gate", .phase = VIE_GUARD, .before = gate, .runs_after = after};
        assert_int_equal(vie_use(app, &g, NULL), VIE_OK);
        assert_int_equal(vie_test_begin(app), VIE_OK);
        free(trip(app));
        fake_ns += 3 * S;
        const char *deny[] = {"X-Deny: 1", NULL};
        capture k;
        capture_begin(&k);
        assert_int_equal(status_of(app, "/ok", deny), 401);
        assert_int_equal(status_of(app, "/ok", deny), 401);
        char *log = capture_end(&k);
        if (!listed) {
            assert_true(log_has_line(log, "HALF_OPEN -> CLOSED: probes: failure rate 0.0% < 50%",
                                     "over 2 calls", NULL));
            assert_int_equal(status_of(app, "/ok", NULL), 200);
        } else {
            assert_true(log_has_line(log,
                                     "HALF_OPEN -> OPEN: probes: failure rate 100.0% >= 50% "
                                     "over 2 calls",
                                     NULL));
            assert_int_equal(status_of(app, "/ok", NULL), 503);
        }
        free(log);
        assert_int_equal(handler_calls, 4 + !listed); /* the gate answered the probes */
        app_done(app);
    }
}

static void panics_deadlines_and_broken_responses_are_failures(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    o.min_calls = 8;
    o.failure_rate = 100;
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "/panic", NULL), 500);
    assert_int_equal(status_of(app, "/s/429", NULL), 429); /* not a failure: not listed */
    vie_test_response *r = vie_test_request(app, "GET", "/broken", NULL, NULL, 0);
    vie_test_response_free(r);
    assert_int_equal(status_of(app, "/deadline", NULL), 504); /* 20 ms of wall time */
    assert_int_equal(status_of(app, "/s/503", NULL), 503);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"failure\"}"), 4);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"success\"}"), 1);
    /* Four more panics: 7 of 8 failed, below 100%; the eighth makes 100%
     * of a window that slid past the 429. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(status_of(app, "/panic", NULL), 500);
    assert_int_equal(metric(app, "vie_circuit_state{breaker=\"api\",state=\"closed\"}"), 1);
    capture k;
    capture_begin(&k);
    assert_int_equal(status_of(app, "/panic", NULL), 500);
    assert_int_equal(status_of(app, "/panic", NULL), 500);
    char *log = capture_end(&k);
    assert_true(log_has_line(log,
                             "circuit_breaker api: CLOSED -> OPEN: failure rate 100.0% >= "
                             "100% over 8 calls",
                             NULL));
    free(log);
    app_done(app);
}

static void slow_calls_by_the_injected_clock(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    o.slow_ms = 1500;
    o.slow_rate = 50;
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "/slow", NULL), 200);
    assert_int_equal(status_of(app, "/ok", NULL), 200);
    assert_int_equal(status_of(app, "/ok", NULL), 200);
    capture k;
    capture_begin(&k);
    assert_int_equal(status_of(app, "/slow", NULL), 200);
    char *log = capture_end(&k);
    assert_true(log_has_line(log,
                             "circuit_breaker api: CLOSED -> OPEN: slow rate 50.0% >= 50% "
                             "(calls of 1.5s or more) over 4 calls (failure 0.0%); open for 3s",
                             NULL));
    free(log);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"slow\"}"), 2);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"success\"}"), 4);
    app_done(app);
}

static void metrics_text(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    assert_int_equal(use(app, "api", &o), VIE_OK);
    o.mode = VIE_CIRCUIT_MODE_DISABLED;
    assert_int_equal(use(app, "off", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    free(trip(app));
    assert_int_equal(status_of(app, "/ok", NULL), 503);
    char *m = vie_app_metrics(app);
    static const char want[] =
        "# HELP vie_circuit_state Circuit breaker state: 1 for the current one, 0 for the others.\n"
        "# TYPE vie_circuit_state gauge\n"
        "vie_circuit_state{breaker=\"api\",state=\"closed\"} 0\n"
        "vie_circuit_state{breaker=\"api\",state=\"open\"} 1\n"
        "vie_circuit_state{breaker=\"api\",state=\"half_open\"} 0\n"
        "vie_circuit_state{breaker=\"api\",state=\"disabled\"} 0\n"
        "vie_circuit_state{breaker=\"api\",state=\"forced_open\"} 0\n"
        "vie_circuit_state{breaker=\"api\",state=\"metrics_only\"} 0\n"
        "vie_circuit_state{breaker=\"off\",state=\"closed\"} 0\n"
        "vie_circuit_state{breaker=\"off\",state=\"open\"} 0\n"
        "vie_circuit_state{breaker=\"off\",state=\"half_open\"} 0\n"
        "vie_circuit_state{breaker=\"off\",state=\"disabled\"} 1\n"
        "vie_circuit_state{breaker=\"off\",state=\"forced_open\"} 0\n"
        "vie_circuit_state{breaker=\"off\",state=\"metrics_only\"} 0\n"
        "# HELP vie_circuit_state_code Circuit breaker state: 0 closed, 1 open, 2 half_open, 3 "
        "disabled, 4 forced_open, 5 metrics_only.\n"
        "# TYPE vie_circuit_state_code gauge\n"
        "vie_circuit_state_code{breaker=\"api\"} 1\n"
        "vie_circuit_state_code{breaker=\"off\"} 3\n"
        "# HELP vie_circuit_calls_total Calls through the circuit breaker: success and failure "
        "are the calls recorded, slow the slow ones among them, not_permitted the refused.\n"
        "# TYPE vie_circuit_calls_total counter\n"
        "vie_circuit_calls_total{breaker=\"api\",kind=\"success\"} 0\n"
        "vie_circuit_calls_total{breaker=\"api\",kind=\"failure\"} 4\n"
        "vie_circuit_calls_total{breaker=\"api\",kind=\"slow\"} 0\n"
        "vie_circuit_calls_total{breaker=\"api\",kind=\"not_permitted\"} 1\n"
        "vie_circuit_calls_total{breaker=\"off\",kind=\"success\"} 0\n"
        "vie_circuit_calls_total{breaker=\"off\",kind=\"failure\"} 0\n"
        "vie_circuit_calls_total{breaker=\"off\",kind=\"slow\"} 0\n"
        "vie_circuit_calls_total{breaker=\"off\",kind=\"not_permitted\"} 0\n"
        "# HELP vie_circuit_transitions_total Circuit breaker state transitions.\n"
        "# TYPE vie_circuit_transitions_total counter\n"
        "vie_circuit_transitions_total{breaker=\"api\",from=\"closed\",to=\"open\"} 1\n"
        "vie_circuit_transitions_total{breaker=\"api\",from=\"open\",to=\"half_open\"} 0\n"
        "vie_circuit_transitions_total{breaker=\"api\",from=\"half_open\",to=\"closed\"} 0\n"
        "vie_circuit_transitions_total{breaker=\"api\",from=\"half_open\",to=\"open\"} 0\n"
        "vie_circuit_transitions_total{breaker=\"off\",from=\"closed\",to=\"open\"} 0\n"
        "vie_circuit_transitions_total{breaker=\"off\",from=\"open\",to=\"half_open\"} 0\n"
        "vie_circuit_transitions_total{breaker=\"off\",from=\"half_open\",to=\"closed\"} 0\n"
        "vie_circuit_transitions_total{breaker=\"off\",from=\"half_open\",to=\"open\"} 0\n";
    if (!strstr(m, want)) fail_msg("metrics:\n%s\nwant:\n%s", m, want);
    assert_null(strstr(m, "vie_circuit_shadow_state_code")); /* no metrics_only breaker */
    free(m);
    app_done(app);
}

static void state_survives_a_reload(void **state)
{
    vie_app *a = new_app();
    vie_circuit_breaker_opts o = base_opts();
    assert_int_equal(use(a, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(a), VIE_OK);
    free(trip(a));
    assert_int_equal(status_of(a, "/ok", NULL), 503);
    vie_test_end(a);

    /* The next generation, same options: still open, counters kept. */
    vie_app *b = new_app();
    assert_int_equal(vie_app_inherit(b, a), VIE_OK);
    capture k;
    capture_begin(&k);
    assert_int_equal(use(b, "api", &o), VIE_OK);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "circuit_breaker api: mode normal;",
                             "state OPEN (kept from the previous configuration)", NULL));
    free(log);
    assert_int_equal(vie_test_begin(b), VIE_OK);
    assert_int_equal(status_of(b, "/ok", NULL), 503);
    assert_int_equal(handler_calls, 0);
    assert_int_equal(metric(b, "vie_circuit_state{breaker=\"api\",state=\"open\"}"), 1);
    assert_int_equal(metric(b, "vie_circuit_transitions_total{breaker=\"api\",from=\"closed\","
                               "to=\"open\"}"),
                     1);
    assert_int_equal(metric(b, "vie_circuit_calls_total{breaker=\"api\",kind=\"not_permitted\"}"),
                     2);
    /* It half-opens and closes in the new generation. */
    fake_ns += 3 * S;
    capture_begin(&k);
    assert_int_equal(status_of(b, "/ok", NULL), 200);
    assert_int_equal(status_of(b, "/ok", NULL), 200);
    log = capture_end(&k);
    assert_true(log_has_line(log, "circuit_breaker api: HALF_OPEN -> CLOSED", NULL));
    free(log);
    vie_test_end(b);

    /* A third: forced open with a Retry-After of its own. The change is
     * applied when it starts serving, not when it registers. */
    vie_app *c = new_app();
    assert_int_equal(vie_app_inherit(c, b), VIE_OK);
    vie_circuit_breaker_opts f = o;
    f.mode = VIE_CIRCUIT_MODE_FORCED_OPEN;
    f.fallback_retry_after_s = 30;
    capture_begin(&k);
    assert_int_equal(use(c, "api", &f), VIE_OK);
    log = capture_end(&k);
    assert_true(log_has_line(log, "mode forced_open;",
                             "state CLOSED (kept from the previous configuration)", NULL));
    assert_false(log_has_line(log, "FORCED_OPEN", NULL));
    free(log);
    capture_begin(&k);
    assert_int_equal(vie_test_begin(c), VIE_OK);
    log = capture_end(&k);
    assert_true(log_has_line(log, "WARN",
                             "circuit_breaker api: CLOSED -> FORCED_OPEN: mode normal -> "
                             "forced_open (configuration)",
                             NULL));
    free(log);
    vie_test_response *r = vie_test_request(c, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_string_equal(vie_test_header(r, "Retry-After"), "30");
    assert_non_null(strstr(r->body, "circuit breaker api is forced open"));
    vie_test_response_free(r);
    assert_int_equal(metric(c, "vie_circuit_state_code{breaker=\"api\"}"), 4);
    assert_int_equal(metric(c, "vie_circuit_transitions_total{breaker=\"api\",from=\"closed\","
                               "to=\"forced_open\"}"),
                     1);
    vie_test_end(c);

    /* A fourth with another window: the state starts afresh, logged. */
    vie_app *d = new_app();
    assert_int_equal(vie_app_inherit(d, c), VIE_OK);
    vie_circuit_breaker_opts t = o;
    t.window = VIE_CIRCUIT_WINDOW_TIME;
    t.window_size = 10;
    capture_begin(&k);
    assert_int_equal(use(d, "api", &t), VIE_OK);
    log = capture_end(&k);
    assert_true(log_has_line(log,
                             "state FORCED_OPEN now; the window changed: it starts afresh "
                             "when this configuration serves",
                             NULL));
    free(log);
    capture_begin(&k);
    assert_int_equal(vie_test_begin(d), VIE_OK);
    log = capture_end(&k);
    assert_true(log_has_line(log, "WARN",
                             "circuit_breaker api: the window changed (count of 8 calls -> time "
                             "of 10 s): its state starts afresh (it was FORCED_OPEN)",
                             NULL));
    assert_true(log_has_line(log,
                             "circuit_breaker api: FORCED_OPEN -> CLOSED: mode forced_open "
                             "-> normal (configuration)",
                             NULL));
    free(log);
    assert_int_equal(status_of(d, "/ok", NULL), 200);
    app_done(d);
    vie_app_free(c);
    vie_app_free(b);
    vie_app_free(a);
}

static void a_stale_generation_passes_unjudged(void **state)
{
    /* The old generation keeps serving while the new one has another
     * window: it must not write into a window laid out differently. */
    vie_app *a = new_app();
    vie_circuit_breaker_opts o = base_opts();
    assert_int_equal(use(a, "api", &o), VIE_OK);
    vie_app *b = new_app();
    assert_int_equal(vie_app_inherit(b, a), VIE_OK);
    vie_circuit_breaker_opts t = o;
    t.window_size = 16;
    assert_int_equal(use(b, "api", &t), VIE_OK);
    assert_int_equal(vie_test_begin(b), VIE_OK); /* b serves: its window now */
    vie_test_end(b);
    assert_int_equal(vie_test_begin(a), VIE_OK); /* a starting late does not undo it */
    capture k;
    capture_begin(&k);
    for (int i = 0; i < 6; i++)
        assert_int_equal(status_of(a, "/fail", NULL), 500);
    char *log = capture_end(&k);
    assert_true(log_has_line(log,
                             "circuit_breaker api: a newer configuration changed the window: "
                             "this generation lets calls through unjudged until it stops",
                             NULL));
    free(log);
    assert_int_equal(metric(a, "vie_circuit_calls_total{breaker=\"api\",kind=\"failure\"}"), 0);
    vie_test_end(a);
    vie_app_free(b);
    vie_app_free(a);
}

static void modes_through_the_layer(void **state)
{
    /* disabled: nothing recorded, nothing refused */
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    o.mode = VIE_CIRCUIT_MODE_DISABLED;
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(status_of(app, "/fail", NULL), 500);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"failure\"}"), 0);
    assert_int_equal(metric(app, "vie_circuit_state_code{breaker=\"api\"}"), 3);
    app_done(app);

    /* metrics_only: the shadow machine opens, nothing is refused */
    app = new_app();
    o = base_opts();
    o.mode = VIE_CIRCUIT_MODE_METRICS_ONLY;
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    char *log = trip(app);
    assert_true(log_has_line(log,
                             "circuit_breaker api: CLOSED -> OPEN: failure rate 100.0% >= 50% "
                             "over 4 calls (slow 0.0%); open for 3s [metrics_only: not "
                             "enforced]",
                             NULL));
    free(log);
    assert_int_equal(status_of(app, "/ok", NULL), 200);
    assert_int_equal(status_of(app, "/fail", NULL), 500);
    assert_int_equal(handler_calls, 6);
    assert_int_equal(metric(app, "vie_circuit_state{breaker=\"api\",state=\"metrics_only\"}"), 1);
    assert_int_equal(metric(app, "vie_circuit_state_code{breaker=\"api\"}"), 5);
    assert_int_equal(metric(app, "vie_circuit_shadow_state_code{breaker=\"api\"}"), 1);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"not_permitted\"}"),
                     2);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"api\",kind=\"failure\"}"), 4);
    app_done(app);

    /* forced_open without a retry_after: no Retry-After */
    app = new_app();
    o = base_opts();
    o.mode = VIE_CIRCUIT_MODE_FORCED_OPEN;
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_null(vie_test_header(r, "Retry-After"));
    vie_test_response_free(r);
    assert_int_equal(handler_calls, 0);
    app_done(app);
}

static void fallback_body_and_file(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    o.fallback_status = 200;
    o.fallback_body = "{\"items\":[],\"degraded\":true}";
    o.fallback_content_type = "application/json";
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    free(trip(app));
    vie_test_response *r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "{\"items\":[],\"degraded\":true}");
    assert_string_equal(vie_test_header(r, "Content-Type"), "application/json");
    assert_string_equal(vie_test_header(r, "Retry-After"), "3");
    vie_test_response_free(r);
    app_done(app);

    char path[] = "/tmp/vie-cb-fallback-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "<h1>busy</h1>\n", 14), 14);
    close(fd);
    app = new_app();
    o = base_opts();
    o.fallback_file = path;
    o.fallback_content_type = "text/html";
    capture k;
    capture_begin(&k);
    assert_int_equal(use(app, "api", &o), VIE_OK);
    char *log = capture_end(&k);
    char want[128];
    snprintf(want, sizeof want, "fallback 503 text/html from %s (14 bytes)", path);
    assert_true(log_has_line(log, want, NULL));
    free(log);
    unlink(path); /* read once, at registration */
    assert_int_equal(vie_test_begin(app), VIE_OK);
    free(trip(app));
    r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_string_equal(r->body, "<h1>busy</h1>\n");
    assert_string_equal(vie_test_header(r, "Content-Type"), "text/html");
    vie_test_response_free(r);
    app_done(app);
}

static void two_breakers_on_one_chain(void **state)
{
    vie_app *app = new_app();
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/g", &g), VIE_OK);
    assert_int_equal(
        vie_route_with(app, "GET", "/fail", failing, NULL, &(vie_route_opts){.group = g}), VIE_OK);
    vie_circuit_breaker_opts o = base_opts();
    o.min_calls = 6;
    assert_int_equal(use(app, "outer", &o), VIE_OK);
    o.min_calls = 4;
    vie_layer_opts lo = {.name = "inner", .group = g};
    assert_int_equal(vie_use_circuit_breaker(app, &lo, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(status_of(app, "/g/fail", NULL), 500);
    /* inner opened; outer saw 4 failures and is still closed */
    assert_int_equal(metric(app, "vie_circuit_state_code{breaker=\"inner\"}"), 1);
    assert_int_equal(metric(app, "vie_circuit_state_code{breaker=\"outer\"}"), 0);
    assert_int_equal(metric(app, "vie_circuit_calls_total{breaker=\"outer\",kind=\"failure\"}"), 4);
    /* inner's fallback (503) is a failure for outer, which runs around it */
    assert_int_equal(status_of(app, "/g/fail", NULL), 503);
    assert_int_equal(status_of(app, "/g/fail", NULL), 503);
    assert_int_equal(metric(app, "vie_circuit_state_code{breaker=\"outer\"}"), 1);
    assert_int_equal(status_of(app, "/ok", NULL), 503); /* outer covers every route */
    app_done(app);
}

static void a_process_dying_with_the_lock(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o = base_opts();
    assert_int_equal(use(app, "api", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(status_of(app, "/fail", NULL), 500);
    pthread_mutex_t *mu = mw_circuit_breaker_mutex(app, "api");
    assert_non_null(mu);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_mutex_lock(mu);
        _exit(0); /* dies holding it */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    capture k;
    capture_begin(&k);
    assert_int_equal(status_of(app, "/fail", NULL), 500);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "WARN",
                             "circuit_breaker api: a process died holding the breaker's lock: "
                             "its window was recounted",
                             NULL));
    free(log);
    assert_int_equal(status_of(app, "/fail", NULL), 500);
    assert_int_equal(status_of(app, "/ok", NULL), 200); /* 3 of 4: opens */
    assert_int_equal(status_of(app, "/ok", NULL), 503);
    app_done(app);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

static void settings_are_logged_and_min_calls_clamped(void **state)
{
    vie_app *app = new_app();
    vie_circuit_breaker_opts o;
    vie_circuit_breaker_opts_init(&o);
    o.clock_ns = fake_clock;
    o.min_calls = 200;
    capture k;
    capture_begin(&k);
    assert_int_equal(use(app, "api", &o), VIE_OK);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "WARN",
                             "circuit_breaker api: min_calls 200 exceeds the window of 100 "
                             "calls: using 100",
                             NULL));
    assert_true(log_has_line(
        log, "INFO",
        "circuit_breaker api: mode normal; window count of 100 calls; min_calls 100 (clamped "
        "from 200); opens at failure rate >= 50% or slow rate >= 100% (slow: 1m or more; "
        "failures: 5xx); p99 rule off; open_wait 1m; half_open 10 probes within 1m; fallback "
        "503 problem+json; state CLOSED (new)",
        NULL));
    free(log);
    vie_app_free(app);

    /* A TIME window is never clamped (it holds any number of calls). */
    app = new_app();
    o.window = VIE_CIRCUIT_WINDOW_TIME;
    o.window_size = 30;
    capture_begin(&k);
    assert_int_equal(use(app, "api", &o), VIE_OK);
    log = capture_end(&k);
    assert_false(log_has_line(log, "exceeds", NULL));
    assert_true(log_has_line(log, "window time of 30 s; min_calls 200;", NULL));
    free(log);
    vie_app_free(app);
}

/* Options refused, by number: apply() breaks one, want[] says how. */
static void apply(vie_circuit_breaker_opts *o, int what, const char *path)
{
    static const int statuses[] = {429, 302, 0};
    switch (what) {
    case 0: o->failure_rate = 0; break;
    case 1: o->failure_rate = 100.5; break;
    case 2: o->slow_rate = NAN; break;
    case 3: o->window_size = 0; break;
    case 4: o->window_size = 100001; break;
    case 5:
        o->window = VIE_CIRCUIT_WINDOW_TIME;
        o->window_size = 3601;
        break;
    case 6: o->min_calls = 0; break;
    case 7: o->half_open_max_wait_ms = 0; break;
    case 8: o->half_open_calls = 0; break;
    case 9: o->open_wait_multiplier = 0.5; break;
    case 10: o->open_wait_multiplier = 2; break;
    case 11: o->open_wait_max_ms = 100; break;
    case 12: o->failure_statuses = statuses; break;
    case 13:
        o->p99_ms = 100;
        o->p99_error_rate = 100;
        break;
    case 14: o->p99_error_rate = 5; break;
    case 15: o->fallback_status = 204; break;
    case 16:
        o->fallback_body = "x";
        o->fallback_file = "/etc/hostname";
        break;
    case 17: o->fallback_content_type = "text/plain"; break;
    case 18: o->fallback_status = 302; break;
    case 19: o->fallback_file = path; break;
    case 20:
        o->fallback_body = "x";
        o->fallback_content_type = "text/plain\r\nX: y";
        break;
    case 21: o->fallback_retry_after_s = 90000; break;
    case 22: o->slow_ms = 0; break;
    case 23: o->open_wait_ms = 0; break;
    case 24: o->mode = (vie_circuit_mode)9; break;
    }
}

static void refusals(void **state)
{
    static const char *const want[] = {
        "option failure_rate: expected a percentage above 0 and at most 100, got 0",
        "option failure_rate: expected a percentage above 0 and at most 100, got 100.5",
        "option slow_rate: expected a percentage above 0 and at most 100, got nan",
        "option window_size: a count window holds 1 to 100000 calls, got 0",
        "option window_size: a count window holds 1 to 100000 calls, got 100001",
        "option window_size: a time window spans 1 to 3600 seconds, got 3601",
        "option min_calls: expected at least 1, got 0",
        "option half_open_max_wait_ms: must be above 0: without it a breaker whose probes never "
        "complete would stay half-open forever",
        "option half_open_calls: expected 1 to 1000 probes, got 0",
        "option open_wait_multiplier: expected 1 to 100, got 0.5",
        "option open_wait_max_ms: a multiplier of 2 needs open_wait_max (the longest wait of the "
        "back-off)",
        "option open_wait_max_ms: open_wait_max (100 ms) must not be below open_wait (3000 ms)",
        "option failure_statuses: failure_statuses[1]: expected a status from 400 to 599, got "
        "302",
        "option p99_error_rate: expected a percentage from 0 to below 100 (the rule needs a rate "
        "above it), got 100",
        "option p99_error_rate: an error rate for the p99 rule needs its latency (p99_ms)",
        "option fallback_status: expected a status from 200 to 599 with a body (not 204 or 304), "
        "got 204",
        "option fallback_file: give a body or a file, not both",
        "option fallback_content_type: a content type needs a body or a file (the default answer "
        "is problem+json)",
        "option fallback_status: the default answer is problem+json, which needs a status from "
        "400 to 599; give a body or a file for 302",
        "option fallback_file: fallback file /nonexistent/vie-fallback cannot be read: No such "
        "file or directory",
        "option fallback_content_type: must be a non-empty header value without control "
        "characters",
        "option fallback_retry_after_s: expected at most 86400 seconds (a day), got 90000",
        "option slow_ms: expected a duration from 1ms to 1h, got 0 ms",
        "option open_wait_ms: expected a duration from 1ms to 1h, got 0 ms",
        "option mode: unknown mode 9",
    };
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++) {
        vie_app *app = new_app();
        vie_circuit_breaker_opts o = base_opts();
        apply(&o, i, "/nonexistent/vie-fallback");
        capture k;
        capture_begin(&k);
        int rc = use(app, "api", &o);
        char *log = capture_end(&k);
        if (rc != VIE_EINVAL || !log_has_line(log, "ERROR", "circuit_breaker api: ", want[i], NULL))
            fail_msg("case %d: rc %d, log:\n%s\nwant: %s", i, rc, log, want[i]);
        free(log);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
    /* NULL app, a frozen app, NULL options (the defaults) */
    assert_int_equal(vie_use_circuit_breaker(NULL, NULL, NULL), VIE_EINVAL);
    vie_app *app = new_app();
    assert_int_equal(vie_use_circuit_breaker(app, NULL, NULL), VIE_OK);
    assert_string_equal(app->layers[0]->mw.name, "circuit_breaker");
    assert_int_equal(app->layers[0]->mw.phase, VIE_GUARD);
    /* A second of the same name: refused when the app freezes. */
    assert_int_equal(vie_use_circuit_breaker(app, NULL, NULL), VIE_OK);
    assert_int_equal(vie_app_freeze(app), VIE_ECONFIG);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

static int from_yaml(vie_app *app, const char *text, char **errs, char **log)
{
    cfg_ctx cx;
    if (cfg_load_text(&cx, "vie.yaml", text) != 0) {
        cfg_print_errors(&cx, stderr);
        fail_msg("the test's YAML does not load");
    }
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"api\"");
    vie_layer_opts lo = {.name = "api"};
    capture k;
    capture_begin(&k);
    int rc = mw_circuit_breaker_from_yaml(app, &lo, &p);
    char *l = capture_end(&k);
    if (log)
        *log = l;
    else
        free(l);
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
    char *errs, *log;
    /* The clock of a YAML breaker is the real one: the test reads the
     * settings line and the behaviour that needs no waiting. */
    assert_int_equal(from_yaml(app,
                               "mode: normal\n"
                               "window: {type: time, size: 30s}\n"
                               "min_calls: 5\n"
                               "failure_rate: \"40%\"\n"
                               "slow_rate: 80\n"
                               "slow_duration: 2s\n"
                               "open_wait: 30s\n"
                               "open_wait_max: 4m\n"
                               "open_wait_multiplier: 2\n"
                               "half_open: {calls: 3, max_wait: 5s}\n"
                               "failure_statuses: [429, 401]\n"
                               "p99: {latency: 300ms, error_rate: 5}\n"
                               "fallback: {status: 503, body: \"busy\\n\", content_type: "
                               "text/plain, retry_after: 30}\n",
                               &errs, &log),
                     VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    if (!log_has_line(log, "INFO",
                      "circuit_breaker api: mode normal; window time of 30 s; min_calls 5; opens "
                      "at failure rate >= 40% or slow rate >= 80% (slow: 2s or more; failures: "
                      "5xx, 401, 429); p99 rule p99 > 300ms and failure rate > 5%; open_wait 30s "
                      "(x2 per re-open, up to 4m); half_open 3 probes within 5s; fallback 503 "
                      "text/plain (5 bytes); state CLOSED (new)",
                      NULL))
        fail_msg("log:\n%s", log);
    free(log);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(status_of(app, "/s/429", NULL), 429); /* listed: failures */
    vie_test_response *r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_string_equal(r->body, "busy\n");
    assert_string_equal(vie_test_header(r, "Content-Type"), "text/plain");
    assert_string_equal(vie_test_header(r, "Retry-After"), "30");
    vie_test_response_free(r);
    app_done(app);

    /* Defaults, and forced_open's retry_after; a file relative to the YAML. */
    app = new_app();
    assert_int_equal(
        from_yaml(app, "mode: forced_open\nfallback: {retry_after: 1m}\n", &errs, NULL), VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 503);
    assert_string_equal(vie_test_header(r, "Retry-After"), "60");
    vie_test_response_free(r);
    app_done(app);
}

static void yaml_errors_point_at_the_key(void **state)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"failure_rate: 0\n",
         "vie.yaml:1:15: middleware \"api\": key \"failure_rate\": expected a percentage above 0 "
         "and at most 100, got 0"},
        {"slow_rate: 150\n",
         "vie.yaml:1:12: middleware \"api\": key \"slow_rate\": expected a percentage from 0 to "
         "100, got \"150\""},
        {"window: {type: count, size: 0}\n",
         "vie.yaml:1:29: middleware \"api\": key \"window.size\": expected an integer from 1 to "
         "100000, got \"0\""},
        {"window: {type: time, size: 2h}\n",
         "vie.yaml:1:28: middleware \"api\": key \"window.size\": expected a duration from 1s to "
         "1h"},
        {"window: {type: time, size: 1500ms}\n",
         "vie.yaml:1:28: middleware \"api\": key \"window.size\": expected whole seconds (30, "
         "\"30s\"), got 1500 ms"},
        {"window: {type: sliding}\n",
         "vie.yaml:1:16: middleware \"api\": key \"window.type\": expected one of count|time, got "
         "\"sliding\""},
        {"mode: shadow\n", "vie.yaml:1:7: middleware \"api\": key \"mode\": expected one of "
                           "normal|disabled|forced_open|metrics_only, got \"shadow\""},
        {"half_open: {max_wait: 0}\n",
         "vie.yaml:1:23: middleware \"api\": key \"half_open.max_wait\": must be above 0: without "
         "it a breaker whose probes never complete would stay half-open forever"},
        {"open_wait_multiplier: 2\n",
         "vie.yaml:1:23: middleware \"api\": key \"open_wait_multiplier\": a multiplier of 2 "
         "needs open_wait_max (the longest wait of the back-off)"},
        {"open_wait: 10s\nopen_wait_max: 5s\n",
         "vie.yaml:2:16: middleware \"api\": key \"open_wait_max\": open_wait_max (5000 ms) must "
         "not be below open_wait (10000 ms)"},
        {"failure_statuses: [429, 302]\n",
         "vie.yaml:1:25: middleware \"api\": key \"failure_statuses\": failure_statuses[1]: "
         "expected a status from 400 to 599, got \"302\""},
        {"failure_statuses: [429, \"503\"]\n",
         "vie.yaml:1:25: middleware \"api\": key \"failure_statuses\": failure_statuses[1]: "
         "expected a status from 400 to 599, got \"503\" (quoted: write the status as a "
         "number)"},
        {"p99: {latency: 200ms}\n", "vie.yaml:1:6: middleware \"api\": missing required key "
                                    "\"p99.error_rate\""},
        {"p99: {latency: 200ms, error_rate: 100}\n",
         "vie.yaml:1:35: middleware \"api\": key \"p99.error_rate\": expected a percentage from 0 "
         "to below 100 (the rule needs a rate above it), got 100"},
        {"fallback: {body: x, file: y}\n",
         "vie.yaml:1:27: middleware \"api\": key \"fallback.file\": give a body or a file, not "
         "both"},
        {"fallback: {file: no-such-fallback.html}\n",
         "vie.yaml:1:18: middleware \"api\": key \"fallback.file\": fallback file "
         "no-such-fallback.html cannot be read: No such file or directory"},
        {"fallback: {status: 204, body: x}\n",
         "vie.yaml:1:20: middleware \"api\": key \"fallback.status\": expected a status from 200 "
         "to 599 with a body (not 204 or 304), got 204"},
        {"fallback: {content_type: text/html}\n",
         "vie.yaml:1:26: middleware \"api\": key \"fallback.content_type\": a content type needs "
         "a body or a file (the default answer is problem+json)"},
        {"fallback: {retry_after: 2d}\n", "middleware \"api\": key \"fallback.retry_after\": "},
        {"min_calls: 0\n", "vie.yaml:1:12: middleware \"api\": key \"min_calls\": expected an "
                           "integer of at least 1, got \"0\""},
        {"half_open: {calls: 5, max_wait: 1s, probes: 3}\n",
         "vie.yaml:1:37: unknown key \"half_open.probes\" in middleware \"api\""},
        {"failure_rates: 50\n", "vie.yaml:1:1: unknown key \"failure_rates\" in middleware "
                                "\"api\"; did you mean \"failure_rate\"?"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vie_app *app = new_app();
        char *errs;
        assert_int_equal(from_yaml(app, cases[i].text, &errs, NULL), VIE_EINVAL);
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
        cmocka_unit_test(a_failing_handler_trips_the_breaker),
        cmocka_unit_test(half_open_lets_exactly_n_probes_through),
        cmocka_unit_test(a_probe_answered_by_a_later_layer_completes_by_its_status),
        cmocka_unit_test(panics_deadlines_and_broken_responses_are_failures),
        cmocka_unit_test(slow_calls_by_the_injected_clock),
        cmocka_unit_test(metrics_text),
        cmocka_unit_test(state_survives_a_reload),
        cmocka_unit_test(a_stale_generation_passes_unjudged),
        cmocka_unit_test(modes_through_the_layer),
        cmocka_unit_test(fallback_body_and_file),
        cmocka_unit_test(two_breakers_on_one_chain),
        cmocka_unit_test(a_process_dying_with_the_lock),
        cmocka_unit_test(settings_are_logged_and_min_calls_clamped),
        cmocka_unit_test(refusals),
        cmocka_unit_test(yaml_reads_every_key),
        cmocka_unit_test(yaml_errors_point_at_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
