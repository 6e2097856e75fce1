/* The security_headers built-in: the exact headers for the defaults and
 * for every option, on answers of the handler and of later layers; what
 * is refused; the YAML form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/cfg.h"
#include "log_capture.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

static vie_status ok(vie_ctx *c, void *a)
{
    return vie_send_text(c, 200, "ok");
}

static vie_app *app_with(const vie_security_headers_opts *o)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/", ok, NULL);
    assert_int_equal(vie_use_security_headers(app, NULL, o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void done(vie_app *app)
{
    vie_test_end(app);
    vie_app_free(app);
}

/* The response's headers other than the ones Vie always sends, as
 * "Name: value\n" lines in order. */
static char *added_headers(vie_app *app, const char *path, int status)
{
    vie_test_response *r = vie_test_request(app, "GET", path, NULL, NULL, 0);
    assert_int_equal(r->status, status);
    static const char *const skip[] = {"Date", "Content-Length", "Content-Type", "Connection",
                                       "Server"};
    size_t cap = 1;
    for (size_t i = 0; i < r->n_headers; i++)
        cap += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 3;
    char *s = calloc(1, cap);
    for (size_t i = 0; i < r->n_headers; i++) {
        bool keep = true;
        for (size_t k = 0; k < 5; k++)
            if (!strcasecmp(r->headers[i].name, skip[k])) keep = false;
        if (!keep) continue;
        strcat(s, r->headers[i].name);
        strcat(s, ": ");
        strcat(s, r->headers[i].value);
        strcat(s, "\n");
    }
    vie_test_response_free(r);
    return s;
}

static void expect_headers(const vie_security_headers_opts *o, const char *want)
{
    vie_app *app = app_with(o);
    char *got = added_headers(app, "/", 200);
    if (strcmp(got, want)) fprintf(stderr, "got:\n%swant:\n%s", got, want);
    assert_string_equal(got, want);
    free(got);
    done(app);
}

static void defaults(void **state)
{
    vie_security_headers_opts o;
    vie_security_headers_opts_init(&o);
    expect_headers(&o, "X-Frame-Options: DENY\n"
                       "X-Content-Type-Options: nosniff\n"
                       "Referrer-Policy: no-referrer\n");
}

static void every_option(void **state)
{
    vie_security_headers_opts o;
    vie_security_headers_opts_init(&o);
    o.hsts_max_age_s = 31536000;
    o.hsts_include_subdomains = true;
    o.frame_options = "sameorigin";
    o.referrer_policy = "no-referrer, strict-origin-when-cross-origin";
    o.content_security_policy = "default-src 'self'; img-src *";
    o.permissions_policy = "geolocation=(), camera=()";
    expect_headers(&o, "Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
                       "X-Frame-Options: SAMEORIGIN\n"
                       "X-Content-Type-Options: nosniff\n"
                       "Referrer-Policy: no-referrer, strict-origin-when-cross-origin\n"
                       "Content-Security-Policy: default-src 'self'; img-src *\n"
                       "Permissions-Policy: geolocation=(), camera=()\n");

    vie_security_headers_opts_init(&o);
    o.hsts_max_age_s = 600;
    o.frame_options = NULL;
    o.nosniff = false;
    o.referrer_policy = NULL;
    expect_headers(&o, "Strict-Transport-Security: max-age=600\n");
}

/* Added before the chain goes on: an answer of a later layer carries
 * them too. */
static vie_status deny(vie_ctx *c, void *s)
{
    return vie_send_problem(c, 403, "no");
}

static void answers_of_later_layers_carry_them(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/", ok, NULL);
    vie_middleware guard = {.name = "guard", .phase = VIE_GUARD, .before = deny};
    assert_int_equal(vie_use(app, &guard, NULL), VIE_OK);
    vie_security_headers_opts o;
    vie_security_headers_opts_init(&o);
    assert_int_equal(vie_use_security_headers(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    char *got = added_headers(app, "/", 403);
    assert_string_equal(got, "X-Frame-Options: DENY\nX-Content-Type-Options: nosniff\n"
                             "Referrer-Policy: no-referrer\n");
    free(got);
    done(app);
}

static void refused(const vie_security_headers_opts *o, const char *needle)
{
    vie_app *app = vie_app_new(NULL);
    capture k;
    capture_begin(&k);
    int rc = vie_use_security_headers(app, NULL, o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    if (!log_has_line(log, "ERROR", "security_headers security_headers: ", needle, NULL))
        fprintf(stderr, "%s\n", log);
    assert_true(log_has_line(log, "ERROR", "security_headers security_headers: ", needle, NULL));
    free(log);
    vie_app_free(app);
}

static void bad_options_are_refused(void **state)
{
    vie_security_headers_opts o;
    vie_security_headers_opts_init(&o);
    o.content_security_policy = "default-src 'self'\r\nSet-Cookie: x=1";
    refused(&o, "content_security_policy holds CR, LF or another control byte");
    vie_security_headers_opts_init(&o);
    o.permissions_policy = "a\nb";
    refused(&o, "permissions_policy holds CR, LF");
    vie_security_headers_opts_init(&o);
    o.referrer_policy = "no-referer"; /* the misspelling of the header name, not a policy */
    refused(&o, "referrer_policy \"no-referer\": \"no-referer\" is not a policy");
    o.referrer_policy = "same-origin,\r\n";
    refused(&o, "referrer_policy holds CR, LF");
    vie_security_headers_opts_init(&o);
    o.frame_options = "ALLOW-FROM https://x";
    refused(&o, "frame_options \"ALLOW-FROM https://x\" is neither DENY nor SAMEORIGIN");
    vie_security_headers_opts_init(&o);
    o.content_security_policy = "";
    refused(&o, "content_security_policy is empty");
    vie_security_headers_opts_init(&o);
    o.hsts_include_subdomains = true;
    refused(&o, "hsts_include_subdomains needs hsts_max_age above 0");
    o.hsts_max_age_s = 315360001;
    refused(&o, "hsts_max_age 315360001 s is above ten years");
    vie_security_headers_opts_init(&o);
    o.frame_options = NULL;
    o.nosniff = false;
    o.referrer_policy = NULL;
    refused(&o, "every header is off");

    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_use_security_headers(app, NULL, NULL), VIE_EINVAL);
    assert_int_equal(vie_use_security_headers(NULL, NULL, &o), VIE_EINVAL);
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
    cfg_params_init(&p, &cx, cx.root, "middleware \"security_headers\"");
    int rc = mw_security_headers_from_yaml(app, NULL, &p);
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

static void expect_yaml(const char *text, const char *want)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/", ok, NULL);
    char *errs;
    int rc = from_yaml(app, text, &errs);
    if (rc != VIE_OK) fprintf(stderr, "%s", errs);
    assert_int_equal(rc, VIE_OK);
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    char *got = added_headers(app, "/", 200);
    if (strcmp(got, want)) fprintf(stderr, "got:\n%swant:\n%s", got, want);
    assert_string_equal(got, want);
    free(got);
    done(app);
}

static void yaml_form(void **state)
{
    expect_yaml("{}\n", "X-Frame-Options: DENY\nX-Content-Type-Options: nosniff\n"
                        "Referrer-Policy: no-referrer\n");
    expect_yaml("hsts_max_age: 365d\nhsts_include_subdomains: true\nframe_options: SAMEORIGIN\n"
                "nosniff: false\nreferrer_policy: same-origin\n"
                "content_security_policy: \"default-src 'none'\"\n"
                "permissions_policy: \"camera=()\"\n",
                "Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
                "X-Frame-Options: SAMEORIGIN\n"
                "Referrer-Policy: same-origin\n"
                "Content-Security-Policy: default-src 'none'\n"
                "Permissions-Policy: camera=()\n");
    /* Integer seconds; false switches a header off; null keeps the default. */
    expect_yaml("hsts_max_age: 63072000\nframe_options: false\nreferrer_policy: null\n",
                "Strict-Transport-Security: max-age=63072000\n"
                "X-Content-Type-Options: nosniff\n"
                "Referrer-Policy: no-referrer\n");
    expect_yaml("hsts_max_age: 2h\nreferrer_policy: off\n",
                "Strict-Transport-Security: max-age=7200\n"
                "X-Frame-Options: DENY\nX-Content-Type-Options: nosniff\n");

    static const struct {
        const char *text, *want;
    } cases[] = {
        {"hsts_max_age: 1y\n", "vie.yaml:1:15: middleware \"security_headers\": key "
                               "\"hsts_max_age\": expected whole seconds (31536000) or a "
                               "duration (365d, 8760h) up to ten years, got \"1y\""},
        {"hsts_max_age: 4000d\n", "key \"hsts_max_age\": expected whole seconds"},
        {"frame_options: ALLOWALL\n", "vie.yaml:1:16: middleware \"security_headers\": key "
                                      "\"frame_options\": frame_options \"ALLOWALL\" is "
                                      "neither DENY nor SAMEORIGIN"},
        {"hsts_include_subdomains: true\n",
         "key \"hsts_include_subdomains\": hsts_include_subdomains needs hsts_max_age above 0"},
        {"referrer_policy: strict\n", "key \"referrer_policy\": referrer_policy \"strict\""},
        {"nosniff: maybe\n", "key \"nosniff\": expected true or false"},
        {"frame_option: DENY\n", "unknown key \"frame_option\" in middleware \"security_headers\"; "
                                 "did you mean \"frame_options\"?"},
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
        cmocka_unit_test(defaults),
        cmocka_unit_test(every_option),
        cmocka_unit_test(answers_of_later_layers_carry_them),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(yaml_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
