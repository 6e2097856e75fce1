/* validate through the test kit: every rule with its exact answer, the
 * order of the rules, refused options, the YAML reader; and the strict
 * JSON checker on a table of documents with the offsets it reports. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"
#include "core/app.h"
#include "mw/json_check.h"
#include "mw/mw.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

#include "log_capture.h"

static vie_status ok(vie_ctx *c, void *a)
{
    return vie_send_text(c, 200, "ok");
}

static vie_app *app_with(const vie_validate_opts *o, const char *name)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "POST", "/r", ok, NULL), VIE_OK);
    vie_layer_opts lo = {.name = name};
    assert_int_equal(vie_use_validate(app, &lo, o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static void done(vie_app *app)
{
    vie_test_end(app);
    vie_app_free(app);
}

/* A request; its status, and for an error the problem's detail exactly. */
static void expect(vie_app *app, const char *method, const char *target, const char *h1,
                   const char *h2, const char *body, int status, const char *detail)
{
    const char *h[3] = {h1, h2, NULL};
    if (!h1) h[0] = h2, h[1] = NULL;
    vie_test_response *r = vie_test_request(app, method, target, h, body, body ? strlen(body) : 0);
    assert_non_null(r);
    if (r->status != status)
        fail_msg("%s %s: status %d, want %d\n%s", method, target, r->status, status, r->raw);
    if (detail) {
        char want[1024];
        snprintf(want, sizeof want,
                 "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\"}",
                 vie_reason_phrase(status), status, detail);
        assert_string_equal(vie_test_header(r, "Content-Type"), "application/problem+json");
        if (strcmp(r->body, want)) fail_msg("body\n  %s\nwant\n  %s", r->body, want);
    }
    vie_test_response_free(r);
}

static void require_headers(void **state)
{
    static const char *const hs[] = {"X-Api-Version", "X-Tenant", NULL};
    vie_validate_opts o;
    vie_validate_opts_init(&o);
    o.require_headers = hs;
    vie_app *app = app_with(&o, NULL);
    expect(app, "GET", "/r", "X-Api-Version: 2", "X-Tenant: t", NULL, 200, NULL);
    expect(app, "GET", "/r", "x-api-version: 2", "X-TENANT:", NULL, 200, NULL); /* empty is sent */
    expect(app, "GET", "/r", "X-Api-Version: 2", NULL, NULL, 400,
           "missing required header: X-Tenant");
    expect(app, "GET", "/r", NULL, NULL, NULL, 400,
           "missing required headers: X-Api-Version, "
           "X-Tenant");
    done(app);
}

static void require_query(void **state)
{
    static const char *const q[] = {"page", "size", NULL};
    vie_validate_opts o;
    vie_validate_opts_init(&o);
    o.require_query = q;
    vie_app *app = app_with(&o, NULL);
    expect(app, "GET", "/r?page=1&size=10", NULL, NULL, NULL, 200, NULL);
    expect(app, "GET", "/r?size=10&page", NULL, NULL, NULL, 200, NULL); /* no '=': empty value */
    expect(app, "GET", "/r?size=10", NULL, NULL, NULL, 400,
           "missing required query parameter: page");
    expect(app, "GET", "/r?pages=1&Size=1", NULL, NULL, NULL, 400,
           "missing required query parameters: page, size");
    expect(app, "GET", "/r", NULL, NULL, NULL, 400,
           "missing required query parameters: page, size");
    /* a value that cannot be decoded does not count as given */
    expect(app, "GET", "/r?page=%zz&size=1", NULL, NULL, NULL, 400,
           "missing required query parameter: page");
    done(app);
}

static void content_types(void **state)
{
    static const char *const ct[] = {"application/json", "TEXT/*", NULL};
    vie_validate_opts o;
    vie_validate_opts_init(&o);
    o.content_types = ct;
    vie_app *app = app_with(&o, NULL);
    expect(app, "POST", "/r", "Content-Type: application/json", NULL, "{}", 200, NULL);
    expect(app, "POST", "/r", "Content-Type: Application/JSON; charset=utf-8", NULL, "{}", 200,
           NULL);
    expect(app, "POST", "/r", "Content-Type: application/json ; charset=utf-8", NULL, "x", 200,
           NULL);
    expect(app, "POST", "/r", "Content-Type: text/plain", NULL, "hi", 200, NULL);
    expect(app, "POST", "/r", "Content-Type: text/csv;header=present", NULL, "a,b", 200, NULL);
    expect(app, "POST", "/r", "Content-Type: application/xml", NULL, "<a/>", 415,
           "Content-Type \\\"application/xml\\\" is not accepted; accepted: application/json, "
           "text/*");
    expect(app, "POST", "/r", "Content-Type: application/jsonx", NULL, "{}", 415,
           "Content-Type \\\"application/jsonx\\\" is not accepted; accepted: application/json, "
           "text/*");
    expect(app, "POST", "/r", "Content-Type: text", NULL, "{}", 415,
           "Content-Type \\\"text\\\" is not accepted; accepted: application/json, text/*");
    expect(app, "POST", "/r", NULL, NULL, "{}", 415,
           "a body needs a Content-Type; accepted: application/json, text/*");
    done(app);

    static const char *const any[] = {"*/*", NULL};
    o.content_types = any;
    app = app_with(&o, NULL);
    expect(app, "POST", "/r", "Content-Type: image/png", NULL, "x", 200, NULL);
    expect(app, "POST", "/r", "Content-Type: png", NULL, "x", 415,
           "Content-Type \\\"png\\\" is not accepted; accepted: */*");
    expect(app, "POST", "/r", NULL, NULL, "x", 415, "a body needs a Content-Type; accepted: */*");
    /* no body: nothing to check */
    expect(app, "POST", "/r", "Content-Type: application/xml", NULL, NULL, 200, NULL);
    expect(app, "GET", "/r", NULL, NULL, NULL, 200, NULL);
    done(app);
}

static void json_body(void **state)
{
    vie_validate_opts o;
    vie_validate_opts_init(&o);
    o.json_body = true;
    vie_app *app = app_with(&o, NULL);
    expect(app, "POST", "/r", "Content-Type: application/json", NULL, "{\"a\": [1, 2.5, null]}",
           200, NULL);
    expect(app, "POST", "/r", NULL, NULL, " \"just a string\" ", 200, NULL);
    expect(app, "POST", "/r", NULL, NULL, "{\"a\": 1,}", 400,
           "the body is not valid JSON: expected a string key (no trailing comma) at byte 8");
    expect(app, "POST", "/r", NULL, NULL, "{\"a\" 1}", 400,
           "the body is not valid JSON: expected ':' after a key at byte 5");
    expect(app, "POST", "/r", NULL, NULL, "[1, 2", 400,
           "the body is not valid JSON: unexpected end at byte 5");
    expect(app, "POST", "/r", NULL, NULL, NULL, 200, NULL); /* no body */
    done(app);
}

/* Headers, then query, then the body's type, then its JSON. */
static void rules_in_order(void **state)
{
    static const char *const hs[] = {"X-A", NULL}, *const q[] = {"q", NULL},
                             *const ct[] = {"application/json", NULL};
    vie_validate_opts o = {
        .require_headers = hs, .require_query = q, .content_types = ct, .json_body = true};
    vie_app *app = app_with(&o, "check.in");
    expect(app, "POST", "/r", "Content-Type: text/plain", NULL, "[", 400,
           "missing required header: X-A");
    expect(app, "POST", "/r", "Content-Type: text/plain", "X-A: 1", "[", 400,
           "missing required query parameter: q");
    expect(app, "POST", "/r?q", "Content-Type: text/plain", "X-A: 1", "[", 415,
           "Content-Type \\\"text/plain\\\" is not accepted; accepted: application/json");
    expect(app, "POST", "/r?q", "Content-Type: application/json", "X-A: 1", "[", 400,
           "the body is not valid JSON: unexpected end at byte 1");
    expect(app, "POST", "/r?q", "Content-Type: application/json", "X-A: 1", "[]", 200, NULL);
    /* the trail names the layer */
    const char *h[] = {"X-A: 1", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/r?q=1", h, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_true(r->n_trail >= 2);
    assert_string_equal(r->trail[0].layer, "check.in");
    assert_int_equal(r->trail[0].phase, VIE_APP);
    vie_test_response_free(r);
    done(app);
}

static void refuses_bad_options(void **state)
{
    static const char *const bad_header[] = {"X A", NULL}, *const bad_type[] = {"json", NULL},
                             *const bad_type2[] = {"text/", NULL},
                             *const bad_query[] = {"a=b", NULL}, *const empty_q[] = {"", NULL},
                             *const none[] = {NULL};
    static const struct {
        vie_validate_opts o;
        const char *said;
    } bad[] = {
        {{.require_headers = bad_header}, "option require_headers: \"X A\" is not a header name"},
        {{.content_types = bad_type}, "option content_types: \"json\" is not a media type"},
        {{.content_types = bad_type2}, "option content_types: \"text/\" is not a media type"},
        {{.require_query = bad_query}, "option require_query: \"a=b\" is not a query parameter"},
        {{.require_query = empty_q}, "option require_query: \"\" is empty"},
        {{.require_headers = none}, "nothing to check"},
        {{0}, "nothing to check"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vie_app *app = vie_app_new(NULL);
        vie_layer_opts lo = {.name = "v"};
        capture k;
        capture_begin(&k);
        int rc = vie_use_validate(app, &lo, &bad[i].o);
        char *log = capture_end(&k);
        if (rc != VIE_EINVAL ||
            !log_has_line(log, "ERROR", "validate \"v\" refused", bad[i].said, NULL))
            fail_msg("case %zu: rc %d, log:\n%s", i, rc, log);
        free(log);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
    vie_app *app = vie_app_new(NULL);
    vie_validate_opts o = {.json_body = true};
    capture k;
    capture_begin(&k);
    int rc1 = vie_use_validate(NULL, NULL, &o), rc2 = vie_use_validate(app, NULL, NULL);
    assert_int_equal(vie_app_freeze(app), VIE_OK);
    int rc3 = vie_use_validate(app, NULL, &o);
    char *log = capture_end(&k);
    assert_int_equal(rc1, VIE_EINVAL);
    assert_int_equal(rc2, VIE_EINVAL);
    assert_int_equal(rc3, VIE_EFROZEN);
    assert_true(log_has_line(log, "ERROR", "validate \"validate\" refused: the app is NULL", NULL));
    assert_true(
        log_has_line(log, "ERROR", "validate \"validate\" refused: the options are NULL", NULL));
    assert_true(log_has_line(log, "vie_use_validate(validate) refused", "frozen", NULL));
    free(log);
    vie_app_free(app);
}

/* The options are copied: the caller's strings may go away. */
static void options_are_copied(void **state)
{
    char name[] = "X-Temp", type[] = "text/plain";
    const char *hs[] = {name, NULL}, *ct[] = {type, NULL};
    vie_validate_opts o = {.require_headers = hs, .content_types = ct};
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "POST", "/r", ok, NULL);
    assert_int_equal(vie_use_validate(app, NULL, &o), VIE_OK);
    memset(name, 'Z', sizeof name - 1);
    memset(type, 'Z', sizeof type - 1);
    hs[0] = ct[0] = NULL;
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect(app, "POST", "/r", "Content-Type: text/plain", NULL, "x", 400,
           "missing required header: X-Temp");
    expect(app, "POST", "/r", "Content-Type: text/plain", "X-Temp: 1", "x", 200, NULL);
    done(app);
}

/* ------------------------------------------------------------------ */
/* YAML                                                                */

static int from_yaml(vie_app *app, const char *text, char **errs)
{
    cfg_ctx cx;
    assert_int_equal(cfg_load_text(&cx, "v.yaml", text), 0);
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"v\"");
    vie_layer_opts lo = {.name = "v"};
    int rc = mw_validate_from_yaml(app, &lo, &p);
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

static void yaml(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    vie_route(app, "POST", "/r", ok, NULL);
    char *e;
    /* a single string is a list of one */
    assert_int_equal(from_yaml(app,
                               "require_headers: X-A\nrequire_query: [q]\n"
                               "content_types: [application/json]\njson_body: true\n",
                               &e),
                     VIE_OK);
    assert_string_equal(e, "");
    free(e);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect(app, "POST", "/r?q", "X-A: 1", "Content-Type: application/json", "[1,]", 400,
           "the body is not valid JSON: expected a value (no trailing comma) at byte 3");
    expect(app, "POST", "/r", "X-A: 1", "Content-Type: application/json", "[1]", 400,
           "missing required query parameter: q");
    done(app);

    static const struct {
        const char *text, *said;
    } bad[] = {
        {"json_body: false\n", "nothing to check"},
        {"json_body: maybe\n", "key \"json_body\""},
        {"require_headers: [\"X A\"]\n", "key \"require_headers\": \"X A\" is not a header name"},
        {"content_types: [json]\n", "key \"content_types\": \"json\" is not a media type"},
        {"content_type: [application/json]\n", "did you mean \"content_types\""},
        {"require_query: {a: 1}\n", "key \"require_query\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        app = vie_app_new(NULL);
        int rc = from_yaml(app, bad[i].text, &e);
        if (rc == VIE_OK || !strstr(e, bad[i].said) || !strstr(e, "v.yaml:"))
            fail_msg("case %zu (%s): rc %d, errors:\n%s", i, bad[i].text, rc, e);
        free(e);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
}

/* ------------------------------------------------------------------ */
/* The JSON checker                                                    */

typedef struct jcase {
    const char *doc;
    size_t len;  /* 0: strlen */
    long offset; /* -1: valid */
    const char *msg;
} jcase;

#define OK(d)                                                                                      \
    {                                                                                              \
        d, 0, -1, NULL                                                                             \
    }
#define BAD(d, o, m)                                                                               \
    {                                                                                              \
        d, 0, o, m                                                                                 \
    }
#define BADN(d, o, m)                                                                              \
    {                                                                                              \
        d, sizeof(d) - 1, o, m                                                                     \
    }

static const jcase jcases[] = {
    /* well-formed */
    OK("{}"),
    OK("[]"),
    OK("0"),
    OK("-0"),
    OK("-0.0e+0"),
    OK("1.5E-10"),
    OK("123456789012345678901234567890"),
    OK("[1e5,-1,0.5,10E+2]"),
    OK("\"\""),
    OK("\"abc\""),
    OK("null"),
    OK("true"),
    OK(" \t\r\n{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":false} \n"),
    OK("\"\\u00e9\\n\\t\\\"\\\\\\/\\b\\f\\r\""),
    OK("\"\\ud83d\\ude00\""),                             /* a surrogate pair */
    OK("\"\\uDBFF\\uDFFF\""),                             /* the last pair, upper case */
    OK("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""),  /* 2, 3 and 4 byte UTF-8 */
    OK("\"\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf\""), /* around the surrogates; U+10FFFF */
    OK("{\"a\":1,\"a\":2}"),                              /* duplicate keys: allowed by RFC 8259 */
    OK("{\"\":{\"\":[]}}"),
    OK("[[],[[]],{}]"),
    /* malformed, with the offset of the first byte that cannot be accepted */
    BAD("", 0, "empty body"),
    BAD("   ", 3, "unexpected end"),
    BAD("[1,]", 3, "no trailing comma"),
    BAD("{\"a\":1,}", 7, "no trailing comma"),
    BAD("{\"a\" 1}", 5, "expected ':'"),
    BAD("{a:1}", 1, "expected a string key or '}'"),
    BAD("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'"),
    BAD("[1 2]", 3, "expected ',' or ']'"),
    BAD("[}", 1, "expected a value"),
    BAD("{]", 1, "expected a string key or '}'"),
    BAD("[01]", 2, "leading zero"),
    BAD("-01", 2, "leading zero"),
    BAD("-", 1, "expected a digit"),
    BAD("-a", 1, "expected a digit"),
    BAD("1.", 2, "after '.'"),
    BAD("1.e5", 2, "after '.'"),
    BAD(".5", 0, "expected a value"),
    BAD("1e", 2, "exponent"),
    BAD("1e+", 3, "exponent"),
    BAD("+1", 0, "expected a value"),
    BAD("0x10", 1, "unexpected data after the value"),
    BAD("1 2", 2, "unexpected data after the value"),
    BAD("{\"a\":1}}", 7, "unexpected data after the value"),
    BAD("tru", 3, "expected a value"),
    BAD("nul1", 3, "expected a value"),
    BAD("True", 0, "expected a value"),
    BAD("NaN", 0, "expected a value"),
    BAD("Infinity", 0, "expected a value"),
    BAD("'a'", 0, "expected a value"),
    BAD("/* c */ 1", 0, "expected a value"),
    BAD("[1] // c", 4, "unexpected data"),
    BAD("\"abc", 4, "unterminated string"),
    BAD("\"a\\", 3, "unterminated string"),
    BAD("\"a\\x\"", 2, "invalid escape"),
    BAD("\"\\U0041\"", 1, "invalid escape"),
    BAD("\"\\u12g4\"", 5, "4 hex digits"),
    BAD("\"\\u12", 5, "unterminated \\u escape"),
    BAD("\"\\ud800\"", 1, "lone high surrogate"),
    BAD("\"\\ud800\\u0041\"", 1, "lone high surrogate"),
    BAD("\"\\ud800\\ud800\"", 1, "lone high surrogate"),
    BAD("\"\\udc00\"", 1, "lone low surrogate"),
    BAD("\"\\ud83d\\ude0\"", 12, "4 hex digits"),
    BAD("\"a\tb\"", 2, "control character"),
    BAD("\"a\nb\"", 2, "control character"),
    BADN("\"a\0b\"", 2, "control character"),
    BAD("\"\xc0\x80\"", 1, "cannot start"),         /* overlong NUL */
    BAD("\"\xe0\x80\xaf\"", 2, "continuation"),     /* overlong '/' */
    BAD("\"\xed\xa0\x80\"", 2, "continuation"),     /* an encoded surrogate */
    BAD("\"\xf4\x90\x80\x80\"", 2, "continuation"), /* past U+10FFFF */
    BAD("\"\xf5\x80\x80\x80\"", 1, "cannot start"),
    BAD("\"\xe2\x82\"", 3, "continuation"), /* cut short by the quote */
    BAD("\"\xe2\x82", 3, "unterminated string"),
    BAD("\"\x80\"", 1, "cannot start"),
    BAD("\xef\xbb\xbf{}", 0, "expected a value"), /* a byte order mark */
    BAD("\xc3\xa9", 0, "expected a value"),
    BAD("[", 1, "unexpected end"),
    BAD("{\"a\":", 5, "unexpected end"),
    BAD("{\"a\"", 4, "unexpected end"),
};

static void json_checker_table(void **state)
{
    size_t nvalid = 0, ninvalid = 0;
    for (size_t i = 0; i < sizeof jcases / sizeof jcases[0]; i++) {
        const jcase *c = &jcases[i];
        size_t len = c->len ? c->len : strlen(c->doc);
        /* an exact-size copy, so a read past the end is caught under ASan */
        char *d = malloc(len ? len : 1);
        memcpy(d, c->doc, len);
        json_error e = {999, NULL};
        bool valid = json_check(d, len, &e);
        free(d);
        if (c->offset < 0) {
            nvalid++;
            if (!valid) fail_msg("case %zu %s: refused at %zu (%s)", i, c->doc, e.offset, e.msg);
        } else {
            ninvalid++;
            if (valid) fail_msg("case %zu %s: accepted", i, c->doc);
            if (e.offset != (size_t)c->offset || !strstr(e.msg, c->msg))
                fail_msg("case %zu %s: refused at %zu (%s), want %ld (%s)", i, c->doc, e.offset,
                         e.msg, c->offset, c->msg);
        }
    }
    assert_true(nvalid >= 15 && ninvalid >= 15);
    assert_false(json_check(NULL, 0, NULL)); /* no err: fine */
}

/* 64 levels pass; the 65th is refused at its bracket; iterative: a very
 * deep document costs no stack. */
static void json_checker_depth(void **state)
{
    char doc[6 * 200 + 2];
    for (int depth = 1; depth <= 200; depth++) {
        for (int kind = 0; kind < 2; kind++) {
            size_t n = 0;
            for (int i = 0; i < depth; i++)
                n += (size_t)sprintf(doc + n, "%s", kind ? "{\"k\":" : "[");
            n += (size_t)sprintf(doc + n, "1");
            for (int i = 0; i < depth; i++)
                doc[n++] = kind ? '}' : ']';
            json_error e;
            bool valid = json_check(doc, n, &e);
            if (valid != (depth <= JSON_CHECK_MAX_DEPTH))
                fail_msg("depth %d kind %d: %s", depth, kind, valid ? "accepted" : e.msg);
            if (!valid) {
                assert_int_equal(e.offset, (size_t)JSON_CHECK_MAX_DEPTH * (kind ? 5 : 1));
                assert_non_null(strstr(e.msg, "nested deeper than 64"));
            }
        }
    }
    /* a million brackets: refused at 64, quickly */
    size_t big = 1000000;
    char *b = malloc(big);
    memset(b, '[', big);
    json_error e;
    assert_false(json_check(b, big, &e));
    assert_int_equal(e.offset, 64);
    /* a million bytes of siblings "[[],[],...,0]": depth goes down again */
    size_t n = 0;
    b[n++] = '[';
    while (n + 4 < big) {
        b[n++] = '[';
        b[n++] = ']';
        b[n++] = ',';
    }
    b[n++] = '0';
    b[n++] = ']';
    assert_true(json_check(b, n, &e));
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(require_headers),    cmocka_unit_test(require_query),
        cmocka_unit_test(content_types),      cmocka_unit_test(json_body),
        cmocka_unit_test(rules_in_order),     cmocka_unit_test(refuses_bad_options),
        cmocka_unit_test(options_are_copied), cmocka_unit_test(yaml),
        cmocka_unit_test(json_checker_table), cmocka_unit_test(json_checker_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
