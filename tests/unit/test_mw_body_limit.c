/* The body_limit built-in: 413 past max_bytes, by Content-Length or by
 * the bytes of a chunked body; what is refused; the YAML form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"
#include "log_capture.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

static int handled;

static vie_status echo(vie_ctx *c, void *a)
{
    handled++;
    char n[32];
    snprintf(n, sizeof n, "%zu", vie_body(c).len);
    return vie_send_text(c, 200, n);
}

static vie_app *app_with(uint64_t max)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "POST", "/up", echo, NULL);
    vie_body_limit_opts o;
    vie_body_limit_opts_init(&o);
    o.max_bytes = max;
    assert_int_equal(vie_use_body_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void done(vie_app *app)
{
    vie_test_end(app);
    vie_app_free(app);
}

static void post(vie_app *app, size_t len, int status, const char *body)
{
    char *b = malloc(len + 1);
    memset(b, 'x', len);
    handled = 0;
    vie_test_response *r = vie_test_request(app, "POST", "/up", NULL, b, len);
    assert_int_equal(r->status, status);
    assert_int_equal(handled, status == 200);
    if (!strstr(r->body, body)) fprintf(stderr, "%s\n", r->body);
    assert_non_null(strstr(r->body, body));
    if (status == 413)
        assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
    vie_test_response_free(r);
    free(b);
}

static void at_the_limit_passes_above_gets_413(void **state)
{
    vie_app *app = app_with(10);
    post(app, 0, 200, "0");
    post(app, 9, 200, "9");
    post(app, 10, 200, "10");
    post(app, 11, 413,
         "\"detail\":\"the request body is 11 bytes; this route accepts at most 10\"");
    post(app, 5000, 413, "the request body is 5000 bytes");
    done(app);
}

/* A chunked body has no Content-Length: its received size counts. */
static void chunked_body_is_measured(void **state)
{
    vie_app *app = app_with(10);
    static const char small[] = "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    static const char big[] = "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "6\r\nhello,\r\n6\r\nworld!\r\n0\r\n\r\n";
    handled = 0;
    vie_test_response *r = vie_test_raw(app, small, sizeof small - 1);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "10");
    vie_test_response_free(r);
    r = vie_test_raw(app, big, sizeof big - 1);
    assert_int_equal(r->status, 413);
    assert_non_null(strstr(r->body, "the request body is 12 bytes; this route accepts at most 10"));
    assert_int_equal(handled, 1);
    vie_test_response_free(r);
    done(app);
}

static void refused(vie_app *app, const vie_body_limit_opts *o, const char *needle)
{
    capture k;
    capture_begin(&k);
    int rc = vie_use_body_limit(app, NULL, o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    if (!log_has_line(log, "ERROR", "body_limit body_limit: ", needle, NULL))
        fprintf(stderr, "%s\n", log);
    assert_true(log_has_line(log, "ERROR", "body_limit body_limit: ", needle, NULL));
    free(log);
}

static void bad_options_are_refused(void **state)
{
    vie_app *app = vie_app_new(NULL);
    vie_body_limit_opts o;
    vie_body_limit_opts_init(&o);
    refused(app, &o, "max_bytes 0 is out of range: required, 1 byte .. 1 TiB");
    o.max_bytes = (1ull << 40) + 1;
    refused(app, &o, "max_bytes 1099511627777 is out of range");
    assert_int_equal(vie_use_body_limit(app, NULL, NULL), VIE_EINVAL);
    assert_int_equal(vie_use_body_limit(NULL, NULL, &o), VIE_EINVAL);

    /* A limit the server's max_body already enforces is allowed, with a
     * warning that it never fires. */
    o.max_bytes = 32u << 20;
    capture k;
    capture_begin(&k);
    int rc = vie_use_body_limit(app, NULL, &o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_OK);
    assert_true(
        log_has_line(log, "WARN", "max_bytes 33554432 is not below the server's max_body", NULL));
    free(log);
    vie_app_free(app);
}

static int from_yaml(vie_app *app, const char *text, char **errs)
{
    cfg_ctx cx;
    if (cfg_load_text(&cx, "vie.yaml", text) != 0) {
        cfg_print_errors(&cx, stderr);
        fail_msg("the test's YAML does not load");
    }
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"body_limit\"");
    int rc = mw_body_limit_from_yaml(app, NULL, &p);
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
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "POST", "/up", echo, NULL);
    char *errs;
    assert_int_equal(from_yaml(app, "max_bytes: 1KiB\n", &errs), VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    post(app, 1024, 200, "1024");
    post(app, 1025, 413, "at most 1024");
    done(app);

    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{}\n", "middleware \"body_limit\": missing required key \"max_bytes\""},
        {"max_bytes: 0\n", "vie.yaml:1:12: middleware \"body_limit\": key \"max_bytes\": "},
        {"max_bytes: 2TiB\n", "vie.yaml:1:12: middleware \"body_limit\": key \"max_bytes\": "},
        {"max_bytes: lots\n", "vie.yaml:1:12: middleware \"body_limit\": key \"max_bytes\": "},
        {"max_bytes: 1k\nmax: 2\n", "unknown key \"max\" in middleware \"body_limit\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        app = vie_app_new(NULL);
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
        cmocka_unit_test(at_the_limit_passes_above_gets_413),
        cmocka_unit_test(chunked_body_is_measured),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(yaml_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
