/* vie_panic and VIE_ASSERT: contained, answered, logged, counted; after
 * hooks and defers still run; the app goes on serving. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <string.h>
#include <uv.h>

#include "core/app.h"
#include "vie/vie_test.h"

/* What ran, in order: one letter per event. */
static char events[64];
static void note(char ch)
{
    size_t n = strlen(events);
    if (n + 1 < sizeof events) events[n] = ch, events[n + 1] = '\0';
}

static void defer_note(void *arg)
{
    note(*(const char *)arg);
}

static vie_status outer_before(vie_ctx *c, void *s)
{
    note('o');
    vie_defer(c, defer_note, "d");
    return VIE_NEXT;
}
static void outer_after(vie_ctx *c, void *s)
{
    note(vie_response_status(c) == 500 ? 'O' : 'x');
}
static vie_status panicking_before(vie_ctx *c, void *s)
{
    note('p');
    vie_panic(c, "the %s is %d", "answer", 42);
}
static void inner_after(vie_ctx *c, void *s)
{
    note('P');
}
static vie_status never_before(vie_ctx *c, void *s)
{
    note('n');
    return VIE_NEXT;
}
static vie_status ok_handler(vie_ctx *c, void *a)
{
    note('h');
    return vie_send_text(c, 200, "ok");
}
static vie_status assert_handler(vie_ctx *c, void *a)
{
    int x = 2;
    VIE_ASSERT(c, x == 3);
    return vie_send_text(c, 200, "unreachable");
}
static vie_status streaming_panic(vie_ctx *c, void *a)
{
    vie_write(c, "partial", 7);
    vie_panic(c, "mid-stream");
}
static void panicking_after(vie_ctx *c, void *s)
{
    note('A');
    vie_panic(c, "in an after hook");
}

static void resume_later(uv_timer_t *t)
{
    vie_ref *ref = t->data;
    assert_int_equal(vie_resume(*ref, VIE_NEXT), VIE_OK);
    uv_close((uv_handle_t *)t, NULL);
}

static uv_timer_t park_timer;
static vie_status parking_before(vie_ctx *c, void *s)
{
    vie_ref *ref = vie_alloc(c, sizeof *ref);
    *ref = vie_ref_of(c);
    uv_timer_init(vie_loop(c), &park_timer);
    park_timer.data = ref;
    uv_timer_start(&park_timer, resume_later, 5, 0);
    note('w');
    return VIE_PENDING;
}

static vie_middleware mw(const char *name, vie_phase ph, vie_status (*b)(vie_ctx *, void *),
                         void (*a)(vie_ctx *, void *))
{
    return (vie_middleware){.name = name, .phase = ph, .before = b, .after = a};
}

static void panic_in_a_layer_is_contained(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_middleware o = mw("outer", VIE_OBSERVE, outer_before, outer_after);
    vie_middleware p = mw("boom", VIE_GUARD, panicking_before, inner_after);
    vie_middleware n = mw("later", VIE_APP, never_before, NULL);
    vie_use(app, &o, NULL);
    vie_use(app, &p, NULL);
    vie_use(app, &n, NULL);
    vie_route(app, "GET", "/", ok_handler, NULL);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    events[0] = '\0';
    capture k;
    capture_begin(&k);
    vie_test_response *r = vie_test_request(app, "GET", "/", NULL, NULL, 0);
    char *log = capture_end(&k);
    assert_int_equal(r->status, 500);
    assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
    assert_true(r->keep_alive); /* nothing was sent before: the connection is fine */
    /* before hooks o, p; nothing after p; after hooks P, O in reverse; defer d */
    assert_string_equal(events, "opPOd");
    assert_true(log_has_line(log, "panic in layer boom", "route GET /", "the answer is 42", NULL));
    assert_int_equal(r->n_trail, 2);
    assert_int_equal(r->trail[1].outcome, -2);
    assert_int_equal(app->stats->panics, 1);
    assert_int_equal(app->layers[1]->n->panics, 1);
    free(log);
    vie_test_response_free(r);
    /* and the app goes on serving */
    r = vie_test_request(app, "GET", "/", NULL, NULL, 0);
    assert_int_equal(r->status, 500); /* the same layer panics again... */
    assert_int_equal(app->stats->panics, 2);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void assert_in_a_handler(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_middleware o = mw("outer", VIE_OBSERVE, outer_before, outer_after);
    vie_use(app, &o, NULL);
    vie_route(app, "GET", "/a", assert_handler, NULL);
    vie_route(app, "GET", "/ok", ok_handler, NULL);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    events[0] = '\0';
    capture k;
    capture_begin(&k);
    vie_test_response *r = vie_test_request(app, "GET", "/a", NULL, NULL, 0);
    char *log = capture_end(&k);
    assert_int_equal(r->status, 500);
    assert_string_equal(events, "oOd");
    assert_true(log_has_line(log, "panic in the handler of route GET /a",
                             "test_panic.c:", "assertion failed: x == 3", NULL));
    assert_int_equal(app->routes[0]->n->panics, 1);
    free(log);
    vie_test_response_free(r);
    r = vie_test_request(app, "GET", "/ok", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "ok");
    vie_test_response_free(r);
    vie_app_free(app);
}

static void panic_after_the_head_closes_the_connection(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_log_set_level(VIE_LOG_OFF);
    vie_route(app, "GET", "/s", streaming_panic, NULL);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = vie_test_request(app, "GET", "/s", NULL, NULL, 0);
    /* the 200 head went out: no 500 body after it, no clean end of the
     * chunked body either, and the connection closes */
    assert_int_equal(r->status, 200);
    assert_false(r->keep_alive);
    assert_null(strstr(r->raw, "500"));
    assert_null(strstr(r->raw, "\r\n0\r\n\r\n"));
    assert_non_null(strstr(r->raw, "partial"));
    vie_test_response_free(r);
    vie_app_free(app);
}

static void panic_in_an_after_hook_skips_only_that_hook(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_log_set_level(VIE_LOG_OFF);
    vie_middleware o = mw("outer", VIE_OBSERVE, outer_before, outer_after);
    vie_middleware a = mw("bad_after", VIE_GUARD, never_before, panicking_after);
    vie_use(app, &o, NULL);
    vie_use(app, &a, NULL);
    vie_route(app, "GET", "/", ok_handler, NULL);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    events[0] = '\0';
    vie_test_response *r = vie_test_request(app, "GET", "/", NULL, NULL, 0);
    assert_int_equal(r->status, 200); /* already answered before the after hooks */
    /* o, n, h; after hooks in reverse: A (panics), then outer's still runs
     * ('x': it sees 200, not 500); then the defer */
    assert_string_equal(events, "onhAxd");
    assert_int_equal(app->stats->panics, 1);
    assert_int_equal(app->layers[1]->n->panics, 1);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void panic_after_an_async_resume(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_log_set_level(VIE_LOG_OFF);
    vie_middleware o = mw("outer", VIE_OBSERVE, outer_before, outer_after);
    vie_middleware w = mw("waits", VIE_GUARD, parking_before, NULL);
    vie_use(app, &o, NULL);
    vie_use(app, &w, NULL);
    vie_route(app, "GET", "/a", assert_handler, NULL);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    events[0] = '\0';
    vie_test_response *r = vie_test_request(app, "GET", "/a", NULL, NULL, 0);
    assert_int_equal(r->status, 500);
    assert_string_equal(events, "owOd");
    assert_int_equal(app->routes[0]->n->panics, 1);
    vie_test_response_free(r);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(panic_in_a_layer_is_contained),
        cmocka_unit_test(assert_in_a_handler),
        cmocka_unit_test(panic_after_the_head_closes_the_connection),
        cmocka_unit_test(panic_in_an_after_hook_skips_only_that_hook),
        cmocka_unit_test(panic_after_an_async_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
