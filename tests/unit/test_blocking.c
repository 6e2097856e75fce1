/* Blocking routes: the handler runs on libuv's thread pool, its answer is
 * joined on the loop, and a panic there is contained like anywhere else. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "core/app.h"
#include "vie/vie_test.h"

static pthread_t main_thread;
static int ran_elsewhere;
static int defers;

static void count_defer(void *arg)
{
    (void)arg;
    defers++;
}

static vie_status blocking_hello(vie_ctx *c, void *a)
{
    ran_elsewhere = !pthread_equal(pthread_self(), main_thread);
    vie_defer(c, count_defer, NULL);
    vie_header_add(c, "X-Thread", ran_elsewhere ? "pool" : "loop");
    return vie_send_text(c, 200, "done on the pool");
}

static vie_status blocking_panic(vie_ctx *c, void *a)
{
    vie_defer(c, count_defer, NULL);
    VIE_ASSERT(c, 1 + 1 == 3);
    return vie_send_text(c, 200, "unreachable");
}

static vie_status blocking_silent(vie_ctx *c, void *a)
{
    return VIE_DONE; /* answers nothing */
}

static vie_status observe(vie_ctx *c, void *s)
{
    return VIE_NEXT;
}

static vie_app *make_app(void)
{
    vie_log_set_level(VIE_LOG_OFF);
    main_thread = pthread_self();
    vie_app *app = vie_app_new(NULL);
    vie_middleware m = {.name = "observe", .phase = VIE_OBSERVE, .before = observe};
    vie_use(app, &m, NULL);
    vie_route_opts o = {.blocking = true};
    vie_route_with(app, "GET", "/hello", blocking_hello, NULL, &o);
    vie_route_with(app, "GET", "/panic", blocking_panic, NULL, &o);
    vie_route_with(app, "GET", "/silent", blocking_silent, NULL, &o);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void runs_on_the_pool_and_answers(void **state)
{
    vie_app *app = make_app();
    defers = 0;
    vie_test_response *r = vie_test_request(app, "GET", "/hello", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "done on the pool");
    assert_string_equal(vie_test_header(r, "X-Thread"), "pool");
    assert_true(ran_elsewhere);
    assert_int_equal(defers, 1);
    assert_int_equal(r->n_trail, 2);
    assert_int_equal(r->trail[1].outcome, VIE_DONE);
    assert_true(r->trail[1].leave_ns >= r->trail[1].enter_ns);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void a_panic_on_the_pool_is_contained(void **state)
{
    vie_app *app = make_app();
    defers = 0;
    vie_test_response *r = vie_test_request(app, "GET", "/panic", NULL, NULL, 0);
    assert_int_equal(r->status, 500);
    assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
    assert_int_equal(defers, 1);
    assert_int_equal(app->stats->panics, 1);
    assert_int_equal(app->routes[1]->n->panics, 1);
    vie_test_response_free(r);
    /* the app goes on */
    r = vie_test_request(app, "GET", "/hello", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void a_silent_blocking_handler_is_a_chain_break(void **state)
{
    vie_app *app = make_app();
    vie_test_response *r = vie_test_request(app, "GET", "/silent", NULL, NULL, 0);
    assert_int_equal(r->status, 500);
    assert_int_equal(app->routes[2]->n->unanswered, 1);
    vie_test_response_free(r);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runs_on_the_pool_and_answers),
        cmocka_unit_test(a_panic_on_the_pool_is_contained),
        cmocka_unit_test(a_silent_blocking_handler_is_a_chain_break),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
