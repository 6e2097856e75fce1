/* vie_app_stop with workers: from another thread while the supervisor
 * runs, and before vie_app_run. Both must end the run cleanly (a stop the
 * supervisor ignored would hang here, or send workers into a restart loop). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include "vie/vie.h"

static vie_status hello(vie_ctx *c, void *a)
{
    return vie_send_text(c, 200, "ok");
}

static vie_app *make_app(void)
{
    vie_log_set_level(VIE_LOG_WARN);
    vie_options o;
    vie_options_init(&o);
    o.listen = "127.0.0.1:0";
    o.workers = 2;
    vie_app *app = vie_app_new(&o);
    vie_route(app, "GET", "/", hello, NULL);
    return app;
}

static void *stop_later(void *app)
{
    usleep(300 * 1000);
    vie_app_stop(app);
    return NULL;
}

static void stop_from_another_thread(void **state)
{
    vie_app *app = make_app();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_later, app), 0);
    alarm(20); /* a stop that is not honoured fails the test instead of hanging */
    assert_int_equal(vie_app_run(app), VIE_OK);
    alarm(0);
    pthread_join(t, NULL);
    vie_app_free(app);
}

static void stop_before_run(void **state)
{
    vie_app *app = make_app();
    vie_app_stop(app);
    alarm(20);
    assert_int_equal(vie_app_run(app), VIE_OK);
    alarm(0);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stop_from_another_thread),
        cmocka_unit_test(stop_before_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
