/* The cors built-in: preflights answered or refused (origin, method,
 * headers), the headers of actual requests, "*", credentials, what is
 * refused at registration, and the YAML form. */
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

static vie_status data(vie_ctx *c, void *a)
{
    vie_header_add(c, "X-Handler", "yes");
    return vie_send_text(c, 200, "data");
}

static const char *const ORIGINS[] = {"https://app.example", "http://localhost:3000", NULL};
static const char *const METHODS[] = {"GET", "PUT", NULL};
static const char *const HEADERS[] = {"X-Custom", "Content-Type", NULL};
static const char *const EXPOSE[] = {"X-Request-Id", "X-Total", NULL};

static void opts(vie_cors_opts *o)
{
    vie_cors_opts_init(o);
    o->allow_origins = ORIGINS;
    o->allow_methods = METHODS;
    o->allow_headers = HEADERS;
    o->expose_headers = EXPOSE;
}

static vie_app *app_with(const vie_cors_opts *o)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/data", data, NULL);
    vie_route(app, "PUT", "/data", data, NULL);
    assert_int_equal(vie_use_cors(app, NULL, o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void done(vie_app *app)
{
    vie_test_end(app);
    vie_app_free(app);
}

static vie_test_response *req(vie_app *app, const char *method, const char *h1, const char *h2,
                              const char *h3, int status)
{
    const char *hs[] = {h1, h2, h3, NULL};
    vie_test_response *r = vie_test_request(app, method, "/data", hs, NULL, 0);
    assert_non_null(r);
    if (r->status != status) fprintf(stderr, "got %d: %s\n", r->status, r->raw);
    assert_int_equal(r->status, status);
    return r;
}

static void header_is(const vie_test_response *r, const char *name, const char *want)
{
    const char *v = vie_test_header(r, name);
    if (!want) {
        if (v) fprintf(stderr, "%s: unexpected \"%s\"\n", name, v);
        assert_null(v);
        return;
    }
    if (!v || strcmp(v, want)) fprintf(stderr, "%s: got \"%s\", want \"%s\"\n", name, v, want);
    assert_non_null(v);
    assert_string_equal(v, want);
}

static size_t cors_headers(const vie_test_response *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_headers; i++)
        if (!strncasecmp(r->headers[i].name, "Access-Control-", 15)) n++;
    return n;
}

#define PREFLIGHT_VARY "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

/* ------------------------------------------------------------------ */
/* Preflights                                                          */

static void preflight_allowed(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_app *app = app_with(&o);
    vie_test_response *r =
        req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: PUT",
            "Access-Control-Request-Headers: x-custom,  Content-Type", 204);
    header_is(r, "Access-Control-Allow-Origin", "https://app.example");
    header_is(r, "Access-Control-Allow-Methods", "GET, PUT");
    header_is(r, "Access-Control-Allow-Headers", "X-Custom, Content-Type");
    header_is(r, "Access-Control-Max-Age", "600");
    header_is(r, "Vary", PREFLIGHT_VARY);
    header_is(r, "Access-Control-Allow-Credentials", NULL);
    header_is(r, "X-Handler", NULL); /* answered by the layer */
    header_is(r, "Allow", NULL);     /* not the plain OPTIONS answer */
    assert_int_equal(r->body_len, 0);
    assert_int_equal(r->n_trail, 1);
    assert_string_equal(r->trail[0].layer, "cors");
    vie_test_response_free(r);

    /* Without requested headers; the other origin. */
    r = req(app, "OPTIONS", "Origin: http://localhost:3000", "Access-Control-Request-Method: GET",
            NULL, 204);
    header_is(r, "Access-Control-Allow-Origin", "http://localhost:3000");
    vie_test_response_free(r);
    done(app);
}

static void preflight_refused_origin(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_app *app = app_with(&o);
    const char *bad[] = {"https://evil.example", "https://app.example.evil", "null",
                         "https://app.example:443", "http://app.example"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char origin[128], detail[256];
        snprintf(origin, sizeof origin, "Origin: %s", bad[i]);
        vie_test_response *r =
            req(app, "OPTIONS", origin, "Access-Control-Request-Method: PUT", NULL, 403);
        header_is(r, "Content-Type", "application/problem+json");
        snprintf(detail, sizeof detail,
                 "\"detail\":\"CORS preflight refused: origin \\\"%s\\\" is not allowed\"", bad[i]);
        if (!strstr(r->body, detail)) fprintf(stderr, "%s\n", r->body);
        assert_non_null(strstr(r->body, detail));
        assert_int_equal(cors_headers(r), 0);
        header_is(r, "Vary", PREFLIGHT_VARY);
        vie_test_response_free(r);
    }
    done(app);
}

static void preflight_refused_method(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_app *app = app_with(&o);
    vie_test_response *r = req(app, "OPTIONS", "Origin: https://app.example",
                               "Access-Control-Request-Method: DELETE", NULL, 403);
    assert_non_null(
        strstr(r->body, "CORS preflight refused: method \\\"DELETE\\\" is not allowed"));
    assert_int_equal(cors_headers(r), 0);
    vie_test_response_free(r);
    /* Methods are case-sensitive: "put" is not "PUT". */
    r = req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: put",
            NULL, 403);
    vie_test_response_free(r);
    /* The safelisted methods need no permission, listed or not. */
    r = req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: POST",
            NULL, 204);
    vie_test_response_free(r);
    done(app);
}

static void preflight_refused_headers(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_app *app = app_with(&o);
    vie_test_response *r =
        req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: PUT",
            "Access-Control-Request-Headers: x-custom, x-evil", 403);
    assert_non_null(
        strstr(r->body, "CORS preflight refused: header \\\"x-evil\\\" is not allowed"));
    assert_int_equal(cors_headers(r), 0);
    vie_test_response_free(r);

    /* No headers allowed at all: any requested one is refused. */
    done(app);
    o.allow_headers = NULL;
    app = app_with(&o);
    r = req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: PUT",
            "Access-Control-Request-Headers: content-type", 403);
    vie_test_response_free(r);
    r = req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: PUT",
            NULL, 204);
    header_is(r, "Access-Control-Allow-Headers", NULL);
    vie_test_response_free(r);
    done(app);
}

/* OPTIONS with an Origin but no Access-Control-Request-Method is not a
 * preflight: the path's plain OPTIONS answer, with CORS headers. */
static void options_without_request_method_is_not_a_preflight(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_app *app = app_with(&o);
    vie_test_response *r = req(app, "OPTIONS", "Origin: https://app.example", NULL, NULL, 204);
    header_is(r, "Allow", "GET, HEAD, PUT, OPTIONS");
    header_is(r, "Access-Control-Allow-Origin", "https://app.example");
    header_is(r, "Access-Control-Allow-Methods", NULL);
    header_is(r, "Vary", "Origin");
    vie_test_response_free(r);
    done(app);
}

/* ------------------------------------------------------------------ */
/* Actual requests                                                     */

static void actual_request_from_an_allowed_origin(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_app *app = app_with(&o);
    vie_test_response *r = req(app, "GET", "Origin: https://app.example", NULL, NULL, 200);
    assert_string_equal(r->body, "data");
    header_is(r, "X-Handler", "yes");
    header_is(r, "Access-Control-Allow-Origin", "https://app.example");
    header_is(r, "Access-Control-Expose-Headers", "X-Request-Id, X-Total");
    header_is(r, "Access-Control-Allow-Credentials", NULL);
    header_is(r, "Vary", "Origin");
    header_is(r, "Access-Control-Allow-Methods", NULL); /* preflight only */
    header_is(r, "Access-Control-Max-Age", NULL);
    vie_test_response_free(r);
    done(app);

    o.allow_credentials = true;
    o.expose_headers = NULL;
    app = app_with(&o);
    r = req(app, "PUT", "Origin: http://localhost:3000", NULL, NULL, 200);
    header_is(r, "Access-Control-Allow-Origin", "http://localhost:3000");
    header_is(r, "Access-Control-Allow-Credentials", "true");
    header_is(r, "Access-Control-Expose-Headers", NULL);
    vie_test_response_free(r);
    r = req(app, "OPTIONS", "Origin: http://localhost:3000", "Access-Control-Request-Method: PUT",
            NULL, 204);
    header_is(r, "Access-Control-Allow-Credentials", "true");
    vie_test_response_free(r);
    done(app);
}

static void actual_request_from_another_origin_gets_no_cors_headers(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_app *app = app_with(&o);
    vie_test_response *r = req(app, "GET", "Origin: https://evil.example", NULL, NULL, 200);
    assert_string_equal(r->body, "data"); /* the request goes on: the browser blocks */
    assert_int_equal(cors_headers(r), 0);
    header_is(r, "Vary", "Origin");
    vie_test_response_free(r);
    /* No Origin at all: not a CORS request. */
    r = req(app, "GET", NULL, NULL, NULL, 200);
    assert_int_equal(cors_headers(r), 0);
    header_is(r, "Vary", "Origin");
    vie_test_response_free(r);
    done(app);
}

static void any_origin(void **state)
{
    static const char *const any[] = {"*", NULL};
    vie_cors_opts o;
    opts(&o);
    o.allow_origins = any;
    o.max_age_s = 30;
    vie_app *app = app_with(&o);
    vie_test_response *r = req(app, "GET", "Origin: https://whoever.example", NULL, NULL, 200);
    header_is(r, "Access-Control-Allow-Origin", "*");
    vie_test_response_free(r);
    r = req(app, "OPTIONS", "Origin: https://whoever.example", "Access-Control-Request-Method: PUT",
            NULL, 204);
    header_is(r, "Access-Control-Allow-Origin", "*");
    header_is(r, "Access-Control-Max-Age", "30");
    vie_test_response_free(r);
    done(app);
}

/* Browsers send scheme and host in lowercase; a config in capitals
 * still matches, and the header carries the browser's form. */
static void configured_origins_are_case_insensitive(void **state)
{
    static const char *const caps[] = {"HTTPS://App.Example", NULL};
    vie_cors_opts o;
    opts(&o);
    o.allow_origins = caps;
    vie_app *app = app_with(&o);
    vie_test_response *r = req(app, "GET", "Origin: https://app.example", NULL, NULL, 200);
    header_is(r, "Access-Control-Allow-Origin", "https://app.example");
    vie_test_response_free(r);
    done(app);
}

/* The headers are set before any later layer answers: an error from a
 * guard still carries them, so the page can read it. */
static vie_status deny(vie_ctx *c, void *s)
{
    return vie_send_problem(c, 401, "no");
}

static void error_answers_of_later_layers_keep_cors_headers(void **state)
{
    vie_cors_opts o;
    opts(&o);
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/data", data, NULL);
    vie_middleware guard = {.name = "guard", .phase = VIE_GUARD, .before = deny};
    assert_int_equal(vie_use(app, &guard, NULL), VIE_OK);
    assert_int_equal(vie_use_cors(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = req(app, "GET", "Origin: https://app.example", NULL, NULL, 401);
    header_is(r, "Access-Control-Allow-Origin", "https://app.example");
    vie_test_response_free(r);
    /* The preflight is answered before the guard (cors observes). */
    r = req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: GET",
            NULL, 204);
    vie_test_response_free(r);
    done(app);
}

/* ------------------------------------------------------------------ */
/* Refused at registration                                             */

static void refused(const vie_cors_opts *o, const char *needle)
{
    vie_app *app = vie_app_new(NULL);
    capture k;
    capture_begin(&k);
    int rc = vie_use_cors(app, NULL, o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    if (!log_has_line(log, "ERROR", "cors cors: ", needle, NULL)) fprintf(stderr, "%s\n", log);
    assert_true(log_has_line(log, "ERROR", "cors cors: ", needle, NULL));
    free(log);
    vie_app_free(app);
}

static void bad_options_are_refused(void **state)
{
    vie_cors_opts o;
    opts(&o);
    static const char *const any[] = {"*", NULL};
    o.allow_origins = any;
    o.allow_credentials = true;
    refused(&o, "allow_credentials with allow_origins \"*\" is refused");
    static const char *const with_null[] = {"https://a.example", "null", NULL};
    o.allow_origins = with_null;
    refused(&o, "allow_credentials with the origin \"null\" is refused");

    opts(&o);
    o.allow_origins = NULL;
    refused(&o, "allow_origins is required");
    static const char *const none[] = {NULL};
    o.allow_origins = none;
    refused(&o, "allow_origins is required");

    static const struct {
        const char *origin, *why;
    } bad[] = {
        {"https://app.example/", "an origin has no path, query or trailing slash"},
        {"https://app.example/x", "an origin has no path"},
        {"app.example", "it has no scheme"},
        {"https://*.example", "wildcards are not supported"},
        {"https://", "the host is empty"},
        {"https://a.example:80x", "the port must be digits"},
        {"https://a b", "the host holds a space"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *v[] = {bad[i].origin, NULL};
        o.allow_origins = v;
        refused(&o, bad[i].why);
    }
    static const char *const mixed[] = {"*", "https://a.example", NULL};
    o.allow_origins = mixed;
    refused(&o, "\"*\" allows every origin: list it alone");

    opts(&o);
    static const char *const star[] = {"*", NULL}, *const space[] = {"GE T", NULL},
                             *const empty[] = {NULL};
    o.allow_methods = star;
    refused(&o, "allow_methods: \"*\" is not a method");
    o.allow_methods = space;
    refused(&o, "allow_methods: \"GE T\" is not a method");
    o.allow_methods = empty;
    refused(&o, "allow_methods is empty");
    opts(&o);
    o.allow_headers = star;
    refused(&o, "allow_headers: \"*\" is not a header name");
    opts(&o);
    static const char *const colon[] = {"X:Y", NULL};
    o.expose_headers = colon;
    refused(&o, "expose_headers: \"X:Y\" is not a header name");
    opts(&o);
    o.max_age_s = 86401;
    refused(&o, "max_age 86401 s is above 86400");

    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_use_cors(app, NULL, NULL), VIE_EINVAL);
    assert_int_equal(vie_use_cors(NULL, NULL, &o), VIE_EINVAL);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

static int from_yaml(vie_app *app, const char *text, char **errs)
{
    cfg_ctx cx;
    if (cfg_load_text(&cx, "vie.yaml", text) != 0) {
        cfg_print_errors(&cx, stderr);
        fail_msg("the test's YAML does not load");
    }
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"cors\"");
    int rc = mw_cors_from_yaml(app, NULL, &p);
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

static vie_app *yaml_app(const char *text)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "GET", "/data", data, NULL);
    vie_route(app, "PUT", "/data", data, NULL);
    char *errs;
    int rc = from_yaml(app, text, &errs);
    if (rc != VIE_OK) fprintf(stderr, "%s", errs);
    assert_int_equal(rc, VIE_OK);
    assert_string_equal(errs, "");
    free(errs);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void yaml_reads_every_key(void **state)
{
    vie_app *app =
        yaml_app("allow_origins: [\"https://app.example\"]\nallow_methods: [GET, PUT]\n"
                 "allow_headers: [X-Custom]\nexpose_headers: X-Total\nallow_credentials: true\n"
                 "max_age: 10m\n");
    vie_test_response *r =
        req(app, "OPTIONS", "Origin: https://app.example", "Access-Control-Request-Method: PUT",
            "Access-Control-Request-Headers: X-Custom", 204);
    header_is(r, "Access-Control-Allow-Methods", "GET, PUT");
    header_is(r, "Access-Control-Allow-Headers", "X-Custom");
    header_is(r, "Access-Control-Allow-Credentials", "true");
    header_is(r, "Access-Control-Max-Age", "600");
    vie_test_response_free(r);
    r = req(app, "GET", "Origin: https://app.example", NULL, NULL, 200);
    header_is(r, "Access-Control-Expose-Headers", "X-Total");
    vie_test_response_free(r);
    done(app);

    /* An integer max_age is seconds; the defaults: GET, HEAD, POST. */
    app = yaml_app("allow_origins: \"*\"\nmax_age: 45\n");
    r = req(app, "OPTIONS", "Origin: https://x.example", "Access-Control-Request-Method: GET", NULL,
            204);
    header_is(r, "Access-Control-Max-Age", "45");
    header_is(r, "Access-Control-Allow-Methods", "GET, HEAD, POST");
    header_is(r, "Access-Control-Allow-Origin", "*");
    vie_test_response_free(r);
    done(app);
}

static void yaml_errors_point_at_the_key(void **state)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"allow_methods: [GET]\n", "middleware \"cors\": missing required key \"allow_origins\""},
        {"allow_origins: \"*\"\nallow_credentials: true\n",
         "vie.yaml:2:20: middleware \"cors\": key \"allow_credentials\": allow_credentials with "
         "allow_origins \"*\" is refused"},
        {"allow_origins: [\"https://a.example/\"]\n",
         "vie.yaml:1:16: middleware \"cors\": key \"allow_origins\": allow_origins: "
         "\"https://a.example/\": an origin has no path"},
        {"allow_origins: \"*\"\nmax_age: 1500ms\n",
         "vie.yaml:2:10: middleware \"cors\": key \"max_age\": expected whole seconds"},
        {"allow_origins: \"*\"\nmax_age: 90000\n",
         "vie.yaml:2:10: middleware \"cors\": key \"max_age\": expected an integer"},
        {"allow_origins: \"*\"\nmax_age: 2d\n",
         "vie.yaml:2:10: middleware \"cors\": key \"max_age\": "},
        {"allow_origins: \"*\"\nallow_header: [X]\n",
         "unknown key \"allow_header\" in middleware \"cors\"; did you mean \"allow_headers\"?"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vie_log_set_level(VIE_LOG_OFF);
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
        cmocka_unit_test(preflight_allowed),
        cmocka_unit_test(preflight_refused_origin),
        cmocka_unit_test(preflight_refused_method),
        cmocka_unit_test(preflight_refused_headers),
        cmocka_unit_test(options_without_request_method_is_not_a_preflight),
        cmocka_unit_test(actual_request_from_an_allowed_origin),
        cmocka_unit_test(actual_request_from_another_origin_gets_no_cors_headers),
        cmocka_unit_test(any_origin),
        cmocka_unit_test(configured_origins_are_case_insensitive),
        cmocka_unit_test(error_answers_of_later_layers_keep_cors_headers),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(yaml_reads_every_key),
        cmocka_unit_test(yaml_errors_point_at_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
