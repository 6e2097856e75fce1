/* rate_limit through the test kit with an injected clock: exact 429s
 * and headers, shadow mode, the four kinds of key, eviction, metrics,
 * refused options, the YAML reader; and two processes racing on one
 * shared table must never take more than the burst. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/cfg.h"
#include "core/app.h"
#include "core/clock.h"
#include "mw/gcra.h"
#include "mw/mw.h"
#include "server/shm.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

#include "log_capture.h"

#define S  1000000000ULL
#define MS 1000000ULL

static uint64_t fake_now = 1000 * S;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static vie_status ok(vie_ctx *c, void *a)
{
    return vie_send_text(c, 200, "ok");
}

static vie_app *new_app(void)
{
    vie_log_set_level(VIE_LOG_OFF);
    fake_now = 1000 * S;
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/a", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/b", ok, NULL), VIE_OK);
    return app;
}

static vie_rate_limit_opts opts(double rate, uint32_t burst)
{
    vie_rate_limit_opts o;
    vie_rate_limit_opts_init(&o);
    o.rate = rate;
    o.burst = burst;
    o.key = VIE_RATE_KEY_HEADER;
    o.header = "X-Key";
    o.clock_ns = fake_clock;
    return o;
}

/* A request; checks the status and, when expected, the RateLimit
 * headers (remaining < 0: they must be absent) and Retry-After
 * (retry < 0: absent). */
static void expect(vie_app *app, const char *path, const char *hdr, int status, const char *limit,
                   int remaining, int reset, int retry)
{
    const char *h[] = {hdr, NULL};
    vie_test_response *r = vie_test_request(app, "GET", path, hdr ? h : NULL, NULL, 0);
    assert_non_null(r);
    if (r->status != status)
        fail_msg("%s %s: status %d, want %d\n%s", path, hdr ? hdr : "", r->status, status, r->raw);
    const char *l = vie_test_header(r, "RateLimit-Limit");
    const char *rem = vie_test_header(r, "RateLimit-Remaining");
    const char *rs = vie_test_header(r, "RateLimit-Reset");
    const char *ra = vie_test_header(r, "Retry-After");
    char want[32];
    if (remaining < 0) {
        if (l || rem || rs) fail_msg("%s: RateLimit headers where none belong\n%s", path, r->raw);
    } else {
        assert_non_null(l);
        assert_string_equal(l, limit);
        snprintf(want, sizeof want, "%d", remaining);
        assert_non_null(rem);
        assert_string_equal(rem, want);
        snprintf(want, sizeof want, "%d", reset);
        assert_non_null(rs);
        if (strcmp(rs, want)) fail_msg("%s: RateLimit-Reset %s, want %s", path, rs, want);
    }
    if (retry < 0) {
        assert_null(ra);
    } else {
        snprintf(want, sizeof want, "%d", retry);
        assert_non_null(ra);
        if (strcmp(ra, want)) fail_msg("%s: Retry-After %s, want %s", path, ra, want);
    }
    vie_test_response_free(r);
}

static bool metrics_has(vie_app *app, const char *line)
{
    char *m = vie_app_metrics(app);
    const char *p = strstr(m, line);
    bool found = p && (p == m || p[-1] == '\n');
    if (!found) fprintf(stderr, "not in /metrics: %s\n%s", line, m);
    free(m);
    return found;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ------------------------------------------------------------------ */

static void limited_after_burst_with_exact_headers(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 3);
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    expect(app, "/r", "X-Key: k", 200, "3", 2, 1, -1);
    expect(app, "/r", "X-Key: k", 200, "3", 1, 2, -1);
    expect(app, "/r", "X-Key: k", 200, "3", 0, 3, -1);

    const char *h[] = {"X-Key: k", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/r", h, NULL, 0);
    assert_int_equal(r->status, 429);
    assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
    assert_string_equal(vie_test_header(r, "Retry-After"), "1");
    assert_string_equal(vie_test_header(r, "RateLimit-Limit"), "3");
    assert_string_equal(vie_test_header(r, "RateLimit-Remaining"), "0");
    assert_string_equal(vie_test_header(r, "RateLimit-Reset"), "3");
    assert_string_equal(r->body, "{\"type\":\"about:blank\",\"title\":\"Too Many Requests\","
                                 "\"status\":429,\"detail\":\"rate limit exceeded (3 requests at "
                                 "once, 1 per second); retry in 1 s\"}");
    vie_test_response_free(r);

    fake_now += S / 2; /* half a token back: still 429, the waits round up */
    expect(app, "/r", "X-Key: k", 429, "3", 0, 3, 1);
    fake_now += S / 2 - 1; /* one ns early */
    expect(app, "/r", "X-Key: k", 429, "3", 0, 3, 1);
    fake_now += 1; /* one token back, exactly */
    expect(app, "/r", "X-Key: k", 200, "3", 0, 3, -1);
    expect(app, "/r", "X-Key: k", 429, "3", 0, 3, 1);
    fake_now += 10 * S; /* idle: the burst again, not more */
    expect(app, "/r", "X-Key: k", 200, "3", 2, 1, -1);
    expect(app, "/r", "X-Key: k", 200, "3", 1, 2, -1);
    expect(app, "/r", "X-Key: k", 200, "3", 0, 3, -1);
    expect(app, "/r", "X-Key: k", 429, "3", 0, 3, 1);

    assert_true(metrics_has(
        app, "vie_ratelimit_decisions_total{limiter=\"rate_limit\",result=\"allowed\"} 7\n"));
    assert_true(metrics_has(
        app, "vie_ratelimit_decisions_total{limiter=\"rate_limit\",result=\"limited\"} 5\n"));
    assert_true(metrics_has(
        app,
        "vie_ratelimit_decisions_total{limiter=\"rate_limit\",result=\"shadow_limited\"} 0\n"));
    assert_true(metrics_has(app, "vie_ratelimit_evictions_total{limiter=\"rate_limit\"} 0\n"));
    vie_test_end(app);
    vie_app_free(app);
}

/* 20 per minute: one every 3 s; Retry-After and Reset in whole seconds. */
static void slow_rate_rounds_up(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(20.0 / 60, 2);
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect(app, "/r", "X-Key: k", 200, "2", 1, 3, -1);
    expect(app, "/r", "X-Key: k", 200, "2", 0, 6, -1);
    expect(app, "/r", "X-Key: k", 429, "2", 0, 6, 3);
    const char *h[] = {"X-Key: k", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/r", h, NULL, 0);
    assert_non_null(strstr(r->body, "\"rate limit exceeded (2 requests at once, 20 per minute); "
                                    "retry in 3 s\""));
    vie_test_response_free(r);
    fake_now += 2 * S + S / 10; /* 0.9 s to go, 3.9 s to full */
    expect(app, "/r", "X-Key: k", 429, "2", 0, 4, 1);
    vie_test_end(app);
    vie_app_free(app);
}

static void shadow_mode_never_refuses_but_counts(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 3);
    o.enforce = false;
    vie_layer_opts lo = {.name = "shadow"};
    assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    capture k;
    capture_begin(&k);
    for (int i = 0; i < 10; i++) /* 3 allowed, 7 would have been refused */
        expect(app, "/r", "X-Key: k", 200, NULL, -1, 0, -1);
    fake_now += S; /* a token back, and the log may speak again */
    expect(app, "/r", "X-Key: k", 200, NULL, -1, 0, -1);
    expect(app, "/r", "X-Key: k", 200, NULL, -1, 0, -1);
    char *log = capture_end(&k);
    /* one line per second at most: the first refusal, then the next one
     * a second later, which says how many were not logged */
    assert_int_equal(count_of(log, "would have refused"), 2);
    assert_true(log_has_line(log, "WARN",
                             "rate_limit \"shadow\" (enforce: false) would have "
                             "refused a request on GET /r (0 more not logged",
                             NULL));
    assert_true(log_has_line(log, "rate_limit \"shadow\"", "(6 more not logged", NULL));
    free(log);
    assert_true(metrics_has(
        app, "vie_ratelimit_decisions_total{limiter=\"shadow\",result=\"allowed\"} 4\n"));
    assert_true(metrics_has(
        app, "vie_ratelimit_decisions_total{limiter=\"shadow\",result=\"limited\"} 0\n"));
    assert_true(metrics_has(
        app, "vie_ratelimit_decisions_total{limiter=\"shadow\",result=\"shadow_limited\"} 8\n"));
    vie_test_end(app);
    vie_app_free(app);
}

static void header_keys_are_independent(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 1);
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect(app, "/r", "X-Key: a", 200, "1", 0, 1, -1);
    expect(app, "/r", "X-Key: a", 429, "1", 0, 1, 1);
    expect(app, "/r", "X-Key: b", 200, "1", 0, 1, -1);
    expect(app, "/r", "X-Key: B", 200, "1", 0, 1, -1); /* values are case-sensitive */
    expect(app, "/r", "x-key: b", 429, "1", 0, 1, 1);  /* names are not */
    /* no header: one bucket for all such requests, not the same as "-" */
    expect(app, "/r", NULL, 200, "1", 0, 1, -1);
    expect(app, "/r", "X-Other: 1", 429, "1", 0, 1, 1);
    expect(app, "/r", "X-Key: -", 200, "1", 0, 1, -1);
    expect(app, "/r", "X-Key: a", 429, "1", 0, 1, 1); /* a is still limited */
    vie_test_end(app);
    vie_app_free(app);
}

/* max_keys 8: one set of 8 entries; a ninth key drops the stalest. */
static void eviction_when_max_keys_is_small(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 1);
    o.max_keys = 5; /* rounded up to 8 */
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    char h[32];
    for (int i = 1; i <= 8; i++) {
        snprintf(h, sizeof h, "X-Key: k%d", i);
        expect(app, "/r", h, 200, "1", 0, 1, -1);
        fake_now += MS; /* k1 is the stalest, then k2... */
    }
    expect(app, "/r", "X-Key: k1", 429, "1", 0, 1, 1); /* all 8 kept so far */
    assert_true(metrics_has(app, "vie_ratelimit_evictions_total{limiter=\"rate_limit\"} 0\n"));
    expect(app, "/r", "X-Key: k9", 200, "1", 0, 1, -1); /* k1 goes */
    assert_true(metrics_has(app, "vie_ratelimit_evictions_total{limiter=\"rate_limit\"} 1\n"));
    /* k1 lost its state: allowed again at once (k2 goes) */
    expect(app, "/r", "X-Key: k1", 200, "1", 0, 1, -1);
    assert_true(metrics_has(app, "vie_ratelimit_evictions_total{limiter=\"rate_limit\"} 2\n"));
    expect(app, "/r", "X-Key: k3", 429, "1", 0, 1, 1); /* k3 was kept */
    /* once every bucket is full again, replacing loses nothing: not counted */
    fake_now += 2 * S;
    expect(app, "/r", "X-Key: k10", 200, "1", 0, 1, -1);
    assert_true(metrics_has(app, "vie_ratelimit_evictions_total{limiter=\"rate_limit\"} 2\n"));
    vie_test_end(app);
    vie_app_free(app);
}

static void route_key(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 1);
    o.key = VIE_RATE_KEY_ROUTE;
    o.header = NULL;
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect(app, "/a", "X-Key: 1", 200, "1", 0, 1, -1);
    expect(app, "/a", "X-Key: 2", 429, "1", 0, 1, 1); /* the route, whoever asks */
    expect(app, "/b", NULL, 200, "1", 0, 1, -1);
    expect(app, "/b", NULL, 429, "1", 0, 1, 1);
    vie_test_end(app);
    vie_app_free(app);
}

/* The test kit has no socket: every request has the same (empty) address. */
static void ip_key(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 2);
    o.key = VIE_RATE_KEY_IP;
    o.header = NULL;
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect(app, "/a", "X-Key: 1", 200, "2", 1, 1, -1);
    expect(app, "/b", "X-Key: 2", 200, "2", 0, 2, -1);
    expect(app, "/r", NULL, 429, "2", 0, 2, 1);
    vie_test_end(app);
    vie_app_free(app);
}

/* A stand-in for auth: X-User is the principal; no X-User lets the
 * request through without one. */
static vie_status fake_auth(vie_ctx *c, void *state)
{
    vie_str u = vie_header(c, "X-User");
    if (u.ptr) {
        char *p = vie_alloc(c, u.len + 1);
        memcpy(p, u.ptr, u.len);
        p[u.len] = 0;
        vie_principal_set(c, p);
    }
    return VIE_NEXT;
}

static void principal_key(void **state)
{
    vie_app *app = new_app();
    static vie_key *const owns[] = {&vie_principal_key, NULL};
    assert_int_equal(vie_key_register(app, &vie_principal_key), VIE_OK);
    vie_middleware auth = {.name = "auth", .phase = VIE_GUARD, .before = fake_auth, .owns = owns};
    vie_rate_limit_opts o = opts(1, 1);
    o.key = VIE_RATE_KEY_PRINCIPAL;
    o.header = NULL;
    /* registered before auth: its requires orders auth first anyway */
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_use(app, &auth, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    capture k;
    capture_begin(&k);
    expect(app, "/r", "X-User: alice", 200, "1", 0, 1, -1);
    expect(app, "/r", "X-User: alice", 429, "1", 0, 1, 1);
    expect(app, "/r", "X-User: bob", 200, "1", 0, 1, -1);
    expect(app, "/r", NULL, 200, "1", 0, 1, -1); /* no principal: one shared bucket */
    expect(app, "/a", NULL, 429, "1", 0, 1, 1);
    char *log = capture_end(&k);
    assert_int_equal(count_of(log, "without a principal"), 1);
    assert_true(log_has_line(log, "WARN",
                             "rate_limit \"rate_limit\": a request on GET /r reached "
                             "the limiter without a principal; such requests share one bucket",
                             NULL));
    free(log);
    vie_test_end(app);
    vie_app_free(app);
}

/* key: principal without auth in the pipeline: refused at start; the
 * layer's own requires are kept beside the added "auth". */
static void principal_key_requires_auth(void **state)
{
    for (int with_auth = 0; with_auth < 2; with_auth++) {
        vie_app *app = new_app();
        vie_rate_limit_opts o = opts(1, 1);
        o.key = VIE_RATE_KEY_PRINCIPAL;
        o.header = NULL;
        const char *const req[] = {"other", NULL};
        vie_middleware m = {
            .name = with_auth ? "auth" : "other", .phase = VIE_GUARD, .before = fake_auth};
        assert_int_equal(vie_use(app, &m, NULL), VIE_OK);
        vie_layer_opts lo = {.name = "per_user", .requires = req};
        assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
        char *log = NULL;
        assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
        /* without auth: "auth" is missing; with it: "other" is */
        const char *missing = with_auth ? "\"other\"" : "\"auth\"";
        if (!log_has_line(log, "per_user", missing, NULL))
            fail_msg("with_auth %d: no line naming per_user and %s in:\n%s", with_auth, missing,
                     log);
        free(log);
        vie_app_free(app);
    }
}

static void refuses_bad_options(void **state)
{
    static const struct {
        double rate;
        uint32_t burst;
        int key;
        const char *header;
        uint32_t max_keys;
        const char *said;
    } bad[] = {
        {0, 1, VIE_RATE_KEY_IP, NULL, 8, "option rate:"},
        {-1, 1, VIE_RATE_KEY_IP, NULL, 8, "option rate:"},
        {2e9, 1, VIE_RATE_KEY_IP, NULL, 8, "option rate:"},
        {1, 0, VIE_RATE_KEY_IP, NULL, 8, "option burst:"},
        {1e-9, 1, VIE_RATE_KEY_IP, NULL, 8, "option burst: refilling"},
        {1, 1, VIE_RATE_KEY_HEADER, NULL, 8, "option header:"},
        {1, 1, VIE_RATE_KEY_HEADER, "X Key", 8, "option header:"},
        {1, 1, VIE_RATE_KEY_IP, "X-Key", 8, "option header: header is only for key header"},
        {1, 1, 9, NULL, 8, "option key:"},
        {1, 1, VIE_RATE_KEY_IP, NULL, 0, "option max_keys:"},
        {1, 1, VIE_RATE_KEY_IP, NULL, (1u << 20) + 1, "option max_keys:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vie_app *app = new_app();
        vie_rate_limit_opts o;
        vie_rate_limit_opts_init(&o);
        o.rate = bad[i].rate;
        o.burst = bad[i].burst;
        o.key = (vie_rate_key)bad[i].key;
        o.header = bad[i].header;
        o.max_keys = bad[i].max_keys;
        vie_layer_opts lo = {.name = "rl"};
        capture k;
        capture_begin(&k);
        int rc = vie_use_rate_limit(app, &lo, &o);
        char *log = capture_end(&k);
        if (rc != VIE_EINVAL ||
            !log_has_line(log, "ERROR", "rate_limit \"rl\" refused", bad[i].said, NULL))
            fail_msg("case %zu: rc %d, log: %s", i, rc, log);
        free(log);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 1);
    capture k;
    capture_begin(&k);
    int rc1 = vie_use_rate_limit(NULL, NULL, &o);
    int rc2 = vie_use_rate_limit(app, NULL, NULL);
    char *log = capture_end(&k);
    assert_int_equal(rc1, VIE_EINVAL);
    assert_int_equal(rc2, VIE_EINVAL);
    assert_true(
        log_has_line(log, "ERROR", "rate_limit \"rate_limit\" refused: the app is NULL", NULL));
    assert_true(log_has_line(log, "ERROR",
                             "rate_limit \"rate_limit\" refused: options are required", NULL));
    free(log);
    vie_app_free(app);
}

/* Two limiters on a route: one set of RateLimit fields, the tighter
 * one's; each metric family written once, with both series. */
static void two_limiters(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 5);
    vie_layer_opts a = {.name = "rl.a"}, b = {.name = "rl.b"};
    assert_int_equal(vie_use_rate_limit(app, &a, &o), VIE_OK);
    o = opts(0.5, 2);
    o.header = "X-Other"; /* absent: one bucket */
    assert_int_equal(vie_use_rate_limit(app, &b, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    /* a: remaining 4, reset 1 s; b: remaining 1, reset 2 s -> b's */
    expect(app, "/r", "X-Key: 1", 200, "2", 1, 2, -1);
    expect(app, "/r", "X-Key: 1", 200, "2", 0, 4, -1);
    expect(app, "/r", "X-Key: 1", 429, "2", 0, 4, 2); /* b refuses; a had 2 left */
    const char *h[] = {"X-Key: 1", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/r", h, NULL, 0);
    assert_int_equal(r->status, 429);
    assert_int_equal(count_of(r->raw, "RateLimit-Limit:"), 1);
    assert_int_equal(count_of(r->raw, "RateLimit-Remaining:"), 1);
    assert_int_equal(count_of(r->raw, "RateLimit-Reset:"), 1);
    vie_test_response_free(r);
    fake_now += 10 * S;
    /* a tighter than b now? a: 5 allowed so far -> remaining... a had 1
     * left at 1000 s; 10 s later both are full: a 4, b 1 -> b's again */
    expect(app, "/r", "X-Key: 1", 200, "2", 1, 2, -1);
    /* a key of a's own: a has 4 left, b 0 -> b's */
    expect(app, "/r", "X-Key: 2", 200, "2", 0, 4, -1);
    char *m = vie_app_metrics(app);
    assert_int_equal(count_of(m, "# TYPE vie_ratelimit_decisions_total counter\n"), 1);
    assert_int_equal(count_of(m, "# TYPE vie_ratelimit_evictions_total counter\n"), 1);
    free(m);
    assert_true(
        metrics_has(app, "vie_ratelimit_decisions_total{limiter=\"rl.a\",result=\"allowed\"} 6\n"));
    assert_true(
        metrics_has(app, "vie_ratelimit_decisions_total{limiter=\"rl.a\",result=\"limited\"} 0\n"));
    assert_true(
        metrics_has(app, "vie_ratelimit_decisions_total{limiter=\"rl.b\",result=\"allowed\"} 4\n"));
    assert_true(
        metrics_has(app, "vie_ratelimit_decisions_total{limiter=\"rl.b\",result=\"limited\"} 2\n"));
    vie_test_end(app);
    vie_app_free(app);
}

/* When the earlier limiter is the tighter one, its fields stay. */
static void earlier_tighter_limiter_keeps_its_fields(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 1);
    vie_layer_opts a = {.name = "rl.a"}, b = {.name = "rl.b"};
    assert_int_equal(vie_use_rate_limit(app, &a, &o), VIE_OK);
    o = opts(1, 10);
    assert_int_equal(vie_use_rate_limit(app, &b, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect(app, "/r", "X-Key: 1", 200, "1", 0, 1, -1);
    vie_test_end(app);
    vie_app_free(app);
}

static void refused_on_a_frozen_app(void **state)
{
    vie_app *app = new_app();
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_rate_limit_opts o = opts(1, 1);
    capture k;
    capture_begin(&k);
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_EFROZEN);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "vie_use_rate_limit(rate_limit) refused", "frozen", NULL));
    free(log);
    vie_test_end(app);
    vie_app_free(app);
}

/* The slo built-in's tighten: rate * factor for every worker (the
 * interval is in shared memory), burst unchanged, 1 restores. */
static void set_factor_tightens_every_worker(void **state)
{
    vie_app *app = new_app();
    vie_rate_limit_opts o = opts(1, 2);
    vie_layer_opts lo = {.name = "rl.t"};
    assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    pid_t pid = fork(); /* another worker sets it */
    assert_true(pid >= 0);
    if (pid == 0) _exit(mw_rate_limit_set_factor(app, "rl.t", 0.25) == VIE_OK ? 0 : 1);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* one per 4 s now */
    expect(app, "/r", "X-Key: k", 200, "2", 1, 4, -1);
    expect(app, "/r", "X-Key: k", 200, "2", 0, 8, -1);
    const char *h[] = {"X-Key: k", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/r", h, NULL, 0);
    assert_int_equal(r->status, 429);
    assert_string_equal(vie_test_header(r, "Retry-After"), "4");
    assert_non_null(strstr(r->body, "(2 requests at once, 15 per minute); retry in 4 s"));
    vie_test_response_free(r);
    /* restored: the debt stays (TAT 8 s ahead), tau is 1 s again */
    assert_int_equal(mw_rate_limit_set_factor(app, "rl.t", 1.0), VIE_OK);
    expect(app, "/r", "X-Key: k", 429, "2", 0, 8, 7);
    fake_now += 7 * S;
    expect(app, "/r", "X-Key: k", 200, "2", 0, 2, -1);

    static const struct {
        const char *name;
        double factor;
        const char *said;
    } bad[] = {
        {"rl.t", 0, "factor 0 refused"},
        {"rl.t", 1.5, "factor 1.5 refused"},
        {"rl.t", -1, "factor -1 refused"},
        {"rl.x", 0.5, "no rate_limit layer is named \"rl.x\""},
        {NULL, 0.5, "the layer name is NULL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        capture k;
        capture_begin(&k);
        int rc = mw_rate_limit_set_factor(app, bad[i].name, bad[i].factor);
        char *log = capture_end(&k);
        if (rc != VIE_EINVAL || !log_has_line(log, "ERROR", bad[i].said, NULL))
            fail_msg("case %zu: rc %d, log:\n%s", i, rc, log);
        free(log);
    }
    vie_test_end(app);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

/* Load text, read it as the params of a rate_limit named name; returns
 * the reader's rc and the errors joined. */
static int from_yaml(vie_app *app, const char *name, const char *text, char **errs)
{
    cfg_ctx cx;
    int lrc = cfg_load_text(&cx, "t.yaml", text);
    assert_int_equal(lrc, 0);
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"rl\"");
    vie_layer_opts lo = {.name = name};
    int rc = mw_rate_limit_from_yaml(app, &lo, &p);
    size_t len = 1;
    for (size_t i = 0; i < cx.errs.n; i++)
        len += strlen(cx.errs.lines[i]) + 1;
    *errs = calloc(1, len);
    for (size_t i = 0; i < cx.errs.n; i++) {
        strcat(*errs, cx.errs.lines[i]);
        strcat(*errs, "\n");
    }
    cfg_free(&cx);
    return rc;
}

static void yaml_rates_and_keys(void **state)
{
    vie_app *app = new_app();
    char *e;
    /* "6000/m": one every 10 ms */
    assert_int_equal(from_yaml(app, "per_min",
                               "rate: 6000/m\nburst: 1\nkey: header\nheader: X-Key\n"
                               "max_keys: 100\nenforce: true\nbackend: local\n",
                               &e),
                     VIE_OK);
    assert_string_equal(e, "");
    free(e);
    assert_int_equal(from_yaml(app, "per_hour", "rate: \"10/h\"\nburst: 2\nkey: route\n", &e),
                     VIE_OK);
    free(e);
    /* a layer made from YAML reads the monotonic clock: replace that */
    clock_set_source(fake_clock);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    /* both pass; per_min is the tighter (0 left, full in 10 ms -> 1 s) */
    expect(app, "/r", "X-Key: y", 200, "1", 0, 1, -1);
    fake_now += 9 * MS;
    expect(app, "/r", "X-Key: y", 429, "1", 0, 1, 1);
    fake_now += 1 * MS; /* 6000/m: one every 10 ms */
    expect(app, "/r", "X-Key: y", 200, "1", 0, 1, -1);
    /* 10/h per route: the third request on /r waits 360 s */
    expect(app, "/r", "X-Key: z", 429, "2", 0, 720, 360);
    expect(app, "/a", "X-Key: w", 200, "1", 0, 1, -1);
    clock_set_source(NULL);
    vie_test_end(app);
    vie_app_free(app);
}

static void yaml_errors(void **state)
{
    static const struct {
        const char *text, *said;
    } bad[] = {
        {"burst: 3\n", "missing required key \"rate\""},
        {"rate: fast\n", "key \"rate\": expected requests per second"},
        {"rate: 5/d\n", "key \"rate\": expected requests per second"},
        {"rate: [1]\n", "key \"rate\": expected requests per second"},
        {"rate: 0\n", "key \"rate\": rate must be more than 0"},
        {"rate: 10\nburst: 0\n", "key \"burst\""},
        {"rate: 10\nkey: cookie\n", "key \"key\""},
        {"rate: 10\nkey: header\n", "key \"header\": required with key: header"},
        {"rate: 10\nheader: X-A\n", "key \"header\": header is only for key header"},
        {"rate: 10\nbackend: redis\nredis: {address: nohost}\n",
         "key \"redis.address\": \"nohost\" has no port"},
        {"rate: 10\nmax_keys: 0\n", "key \"max_keys\""},
        {"rate: 10\nburts: 3\n", "did you mean \"burst\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vie_app *app = new_app();
        char *e;
        int rc = from_yaml(app, "rl", bad[i].text, &e);
        if (rc == VIE_OK || !strstr(e, bad[i].said) || !strstr(e, "t.yaml:"))
            fail_msg("case %zu (%s): rc %d, errors:\n%s", i, bad[i].text, rc, e);
        free(e);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
}

/* ------------------------------------------------------------------ */
/* Two processes on one table in shared memory                         */

#define ROUNDS 3000

typedef struct race {
    _Atomic uint32_t arrived[ROUNDS];
    _Atomic uint32_t allowed[ROUNDS]; /* per round, on that round's new key */
    _Atomic uint32_t fixed;           /* on one key at one time, all rounds */
} race;

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Each process's own clock: the times of the round it is in. */
static uint64_t race_now;
static uint64_t race_clock(void)
{
    return race_now;
}

static int racer(gcra_table *fresh, gcra_table *one, race *x, uint32_t burst)
{
    const uint64_t T = S;
    uint64_t deadline = wall_ms() + 60000;
    for (uint32_t r = 0; r < ROUNDS; r++) {
        atomic_fetch_add(&x->arrived[r], 1);
        while (atomic_load(&x->arrived[r]) < 2) /* start each round together */
            if (wall_ms() > deadline) return 2;
        gcra_result res;
        uint32_t a = 0;
        /* a key neither process has seen: both race to insert it, in a
         * table of one set of 8, so old keys are evicted all along */
        race_now = (r + 1) * 100 * S;
        for (uint32_t i = 0; i < burst; i++)
            a += gcra_table_decide(fresh, 1000 + r, T, burst, race_clock, &res);
        atomic_fetch_add(&x->allowed[r], a);
        /* one key, one instant: never refilled */
        race_now = 5 * S;
        for (int i = 0; i < 2; i++)
            if (gcra_table_decide(one, 42, T, burst, race_clock, &res))
                atomic_fetch_add(&x->fixed, 1);
    }
    return 0;
}

static void two_processes_never_exceed_the_burst(void **state)
{
    vie_app *app = new_app();
    const uint32_t burst = 3;
    gcra_table *fresh = gcra_table_init(shm_alloc(app->shm, gcra_table_size(8)), 8);
    gcra_table *one = gcra_table_init(shm_alloc(app->shm, gcra_table_size(8)), 8);
    race *x = shm_alloc(app->shm, sizeof *x);
    assert_non_null(x);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) _exit(racer(fresh, one, x, burst));
    }
    for (int i = 0; i < 2; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    for (uint32_t r = 0; r < ROUNDS; r++)
        if (x->allowed[r] != burst)
            fail_msg("round %u: %u allowed of %u attempts, want exactly %u", r, x->allowed[r],
                     2 * burst, burst);
    assert_int_equal(x->fixed, burst);
    /* each round's key found the set full of expired keys: nothing lost */
    assert_int_equal(gcra_table_evictions(fresh), 0);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limited_after_burst_with_exact_headers),
        cmocka_unit_test(slow_rate_rounds_up),
        cmocka_unit_test(shadow_mode_never_refuses_but_counts),
        cmocka_unit_test(header_keys_are_independent),
        cmocka_unit_test(eviction_when_max_keys_is_small),
        cmocka_unit_test(route_key),
        cmocka_unit_test(ip_key),
        cmocka_unit_test(principal_key),
        cmocka_unit_test(principal_key_requires_auth),
        cmocka_unit_test(refuses_bad_options),
        cmocka_unit_test(two_limiters),
        cmocka_unit_test(earlier_tighter_limiter_keeps_its_fields),
        cmocka_unit_test(refused_on_a_frozen_app),
        cmocka_unit_test(set_factor_tightens_every_worker),
        cmocka_unit_test(yaml_rates_and_keys),
        cmocka_unit_test(yaml_errors),
        cmocka_unit_test(two_processes_never_exceed_the_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
