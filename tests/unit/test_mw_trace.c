/* trace: W3C traceparent parsing (a table of valid and invalid values),
 * continuing a valid trace and starting a new one otherwise, the sampled
 * flag, tracestate kept only with a valid traceparent and only when
 * well-formed, and the options. Through the test kit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mw/ids.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

/* The handler shows the trace key: trace|parent|span|flags|tracestate. */
static vie_status show_trace(vie_ctx *c, void *arg)
{
    (void)arg;
    const vie_trace_context *t = vie_trace_get(c);
    if (!t) return vie_send_text(c, 200, "(none)");
    char *out = vie_alloc(c, 1024);
    snprintf(out, 1024, "%s|%s|%s|%02x|%s", t->trace_id, t->parent_id, t->span_id, t->flags,
             t->tracestate ? t->tracestate : "-");
    return vie_send_text(c, 200, out);
}

static vie_app *make_app(const vie_trace_opts *o)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(vie_use_trace(app, NULL, o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/t", show_trace, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static bool is_hex(const char *s, size_t n)
{
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return strspn(s, "0") < n;
}

typedef struct seen {
    char trace[33], parent[17], span[17], flags[3], state[600];
    char header[64]; /* the response's traceparent */
} seen;

/* One request with the given header lines; what the handler saw, checked
 * against the response's traceparent. */
static void request(vie_app *app, const char *const *headers, seen *s)
{
    vie_test_response *r = vie_test_request(app, "GET", "/t", headers, NULL, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    memset(s, 0, sizeof *s);
    /* trace|parent|span|flags|state: parent may be empty */
    char *body = r->body, *f[5];
    for (int i = 0; i < 5; i++) {
        f[i] = body;
        char *bar = strchr(body, '|');
        if (i < 4) {
            assert_non_null(bar);
            *bar = '\0';
            body = bar + 1;
        }
    }
    snprintf(s->trace, sizeof s->trace, "%s", f[0]);
    snprintf(s->parent, sizeof s->parent, "%s", f[1]);
    snprintf(s->span, sizeof s->span, "%s", f[2]);
    snprintf(s->flags, sizeof s->flags, "%s", f[3]);
    snprintf(s->state, sizeof s->state, "%s", f[4]);
    const char *h = vie_test_header(r, "traceparent");
    snprintf(s->header, sizeof s->header, "%s", h ? h : "");
    assert_true(is_hex(s->trace, 32));
    assert_true(is_hex(s->span, 16));
    if (h) {
        char want[64];
        snprintf(want, sizeof want, "00-%s-%s-%s", s->trace, s->span, s->flags);
        assert_string_equal(h, want);
    }
    vie_test_response_free(r);
}

typedef struct tp_case {
    const char *value;
    bool valid;
    const char *flags; /* when valid: the flags kept */
} tp_case;

static const tp_case tp_cases[] = {
    /* valid */
    {"00-" TID "-" PID "-01", true, "01"},
    {"00-" TID "-" PID "-00", true, "00"},
    {"00-" TID "-" PID "-09", true, "01"}, /* unknown bits cleared, sampled kept */
    {"00-" TID "-" PID "-fe", true, "00"},
    {"01-" TID "-" PID "-01", true, "01"},                              /* a later version */
    {"cc-" TID "-" PID "-01-what-the-future-will-be-like", true, "01"}, /* longer, '-' at 55 */
    {"fe-" TID "-" PID "-00-", true, "00"},
    {"00-00000000000000000000000000000001-0000000000000001-01", true, "01"},
    /* invalid */
    {"ff-" TID "-" PID "-01", false, NULL},                          /* version ff */
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01", false, NULL}, /* uppercase */
    {"00-" TID "-00F067AA0BA902B7-01", false, NULL},                 /* uppercase parent */
    {"00-00000000000000000000000000000000-" PID "-01", false, NULL}, /* zero trace-id */
    {"00-" TID "-0000000000000000-01", false, NULL},                 /* zero parent-id */
    {"00-" TID "-" PID "-01-extra", false, NULL},                    /* 00 must be 55 long */
    {"00-" TID "-" PID "-1", false, NULL},                           /* too short */
    {"00-4bf92f3577b34da6a3ce929d0e0e473-" PID "-01", false, NULL},  /* 31-digit trace-id */
    {"00-" TID "-00f067aa0ba902b-01", false, NULL},                  /* 15-digit parent-id */
    {"00_" TID "-" PID "-01", false, NULL},                          /* wrong separator */
    {"00-" TID "_" PID "-01", false, NULL},
    {"00-" TID "-00f067aa0ba9g2b7-01", false, NULL}, /* not hex */
    {"00-" TID "-" PID "-0A", false, NULL},          /* uppercase flags */
    {"0A-" TID "-" PID "-01", false, NULL},          /* uppercase version */
    {"01-" TID "-" PID "-01x", false, NULL},         /* later version, no '-' at 55 */
    {"", false, NULL},                               /* empty */
    {"00", false, NULL},
    {"garbage", false, NULL},
};

static void traceparent_table(void **state)
{
    (void)state;
    vie_app *app = make_app(NULL);
    for (size_t i = 0; i < sizeof tp_cases / sizeof tp_cases[0]; i++) {
        const tp_case *tc = &tp_cases[i];
        char line[200], want_trace[33] = {0}, want_parent[17] = {0};
        snprintf(line, sizeof line, "traceparent: %s", tc->value);
        const char *h[] = {line, "tracestate: vendor=x", NULL};
        seen s;
        request(app, h, &s);
        if (tc->valid) {
            memcpy(want_trace, tc->value + 3, 32);
            memcpy(want_parent, tc->value + 36, 16);
            if (strcmp(s.trace, want_trace) || strcmp(s.parent, want_parent) ||
                strcmp(s.flags, tc->flags) || !strcmp(s.span, want_parent) ||
                strcmp(s.state, "vendor=x"))
                fail_msg("case %zu %s should continue the trace: got %s|%s|%s|%s|%s", i, tc->value,
                         s.trace, s.parent, s.span, s.flags, s.state);
        } else {
            if (!strncmp(s.trace, TID, 32) || s.parent[0] || strcmp(s.flags, "01") ||
                strcmp(s.state, "-"))
                fail_msg("case %zu \"%s\" should start a new trace: got %s|%s|%s|%s|%s", i,
                         tc->value, s.trace, s.parent, s.span, s.flags, s.state);
        }
    }
    vie_test_end(app);
    vie_app_free(app);
}

/* Two traceparent fields: not one valid traceparent. */
static void duplicate_traceparent_starts_new(void **state)
{
    (void)state;
    vie_app *app = make_app(NULL);
    const char *h[] = {"traceparent: 00-" TID "-" PID "-01", "traceparent: 00-" TID "-" PID "-01",
                       NULL};
    seen s;
    request(app, h, &s);
    assert_string_not_equal(s.trace, TID);
    assert_string_equal(s.parent, "");
    vie_test_end(app);
    vie_app_free(app);
}

static void new_traces_and_spans_differ(void **state)
{
    (void)state;
    vie_app *app = make_app(NULL);
    seen a, b, c, d;
    request(app, NULL, &a);
    request(app, NULL, &b);
    assert_string_not_equal(a.trace, b.trace);
    assert_string_not_equal(a.span, b.span);
    assert_string_equal(a.parent, "");
    assert_string_equal(a.flags, "01"); /* sample defaults to true */
    /* Continuing: same trace, the caller's span as parent, a new span each time. */
    const char *h[] = {"traceparent: 00-" TID "-" PID "-01", NULL};
    request(app, h, &c);
    request(app, h, &d);
    assert_string_equal(c.trace, TID);
    assert_string_equal(d.trace, TID);
    assert_string_equal(c.parent, PID);
    assert_string_not_equal(c.span, d.span);
    assert_string_not_equal(c.span, PID);
    /* The next hop continues from this request's span. */
    char line[100];
    snprintf(line, sizeof line, "traceparent: %s", c.header);
    const char *h2[] = {line, NULL};
    seen e;
    request(app, h2, &e);
    assert_string_equal(e.trace, TID);
    assert_string_equal(e.parent, c.span);
    /* Seeded: the same new trace again. */
    ids_seed(5);
    request(app, NULL, &a);
    ids_seed(5);
    request(app, NULL, &b);
    assert_string_equal(a.trace, b.trace);
    assert_string_equal(a.span, b.span);
    vie_test_end(app);
    vie_app_free(app);
}

static void sample_option(void **state)
{
    (void)state;
    vie_trace_opts o;
    vie_trace_opts_init(&o);
    o.sample = false;
    vie_app *app = make_app(&o);
    seen s;
    request(app, NULL, &s);
    assert_string_equal(s.flags, "00");
    /* A caller's decision wins over the option. */
    const char *h[] = {"traceparent: 00-" TID "-" PID "-01", NULL};
    request(app, h, &s);
    assert_string_equal(s.flags, "01");
    vie_test_end(app);
    vie_app_free(app);
}

static void no_response_header(void **state)
{
    (void)state;
    vie_trace_opts o;
    vie_trace_opts_init(&o);
    o.response_header = false;
    vie_app *app = make_app(&o);
    const char *h[] = {"traceparent: 00-" TID "-" PID "-01", NULL};
    seen s;
    request(app, h, &s);
    assert_string_equal(s.header, "");
    assert_string_equal(s.trace, TID); /* the key is still set */
    vie_test_end(app);
    vie_app_free(app);
}

typedef struct ts_case {
    const char *headers[4];
    const char *kept; /* NULL: dropped */
} ts_case;

static void tracestate_table(void **state)
{
    (void)state;
    static char members32[600], members33[600], long_value[600];
    members32[0] = members33[0] = '\0';
    for (int i = 0; i < 33; i++) {
        char m[16];
        snprintf(m, sizeof m, "%sk%d=v", i ? "," : "", i);
        if (i < 32) strcat(members32, m);
        strcat(members33, m);
    }
    /* 513 characters: over the cap. */
    snprintf(long_value, sizeof long_value, "a=");
    memset(long_value + 2, 'x', 511);
    long_value[513] = '\0';
    char lv_header[640], m32[640], m33[640];
    snprintf(lv_header, sizeof lv_header, "tracestate: %s", long_value);
    snprintf(m32, sizeof m32, "tracestate: %s", members32);
    snprintf(m33, sizeof m33, "tracestate: %s", members33);
    const ts_case cases[] = {
        {{"tracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
         "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
        {{"tracestate: rojo=1", "tracestate: congo=2"}, "rojo=1,congo=2"}, /* combined */
        {{"tracestate: a=1,, b=2 ,"}, "a=1,, b=2 ,"}, /* empty members allowed */
        {{"tracestate: tenant@sys=v"}, "tenant@sys=v"},
        {{"tracestate: a-b_c*d/e=x y"}, "a-b_c*d/e=x y"},
        {{m32}, members32},
        {{m33}, NULL},                  /* 33 members */
        {{lv_header}, NULL},            /* over 512 */
        {{"tracestate: Rojo=1"}, NULL}, /* uppercase key */
        {{"tracestate: 1a=1"}, NULL},   /* simple keys start with a letter */
        {{"tracestate: a=b=c"}, NULL},  /* '=' in a value */
        {{"tracestate: a="}, NULL},     /* empty value */
        {{"tracestate: =1"}, NULL},     /* empty key */
        {{"tracestate: novalue"}, NULL},
        {{"tracestate: a=1", "tracestate: B=2"}, NULL}, /* one bad field spoils the list */
        {{"tracestate: t@toolongsystemid1=v"}, NULL},   /* system-id over 14 */
        {{"tracestate: a=caf\xc3\xa9"}, NULL},          /* not ASCII */
    };
    vie_app *app = make_app(NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *h[6] = {"traceparent: 00-" TID "-" PID "-01"};
        size_t n = 1;
        for (int j = 0; j < 4 && cases[i].headers[j]; j++)
            h[n++] = cases[i].headers[j];
        h[n] = NULL;
        seen s;
        request(app, h, &s);
        const char *want = cases[i].kept ? cases[i].kept : "-";
        if (strcmp(s.state, want))
            fail_msg("tracestate case %zu: want \"%s\", got \"%s\"", i, want, s.state);
    }
    /* Without a valid traceparent a tracestate means nothing. */
    const char *h[] = {"traceparent: ff-" TID "-" PID "-01", "tracestate: rojo=1", NULL};
    seen s;
    request(app, h, &s);
    assert_string_equal(s.state, "-");
    const char *h2[] = {"tracestate: rojo=1", NULL};
    request(app, h2, &s);
    assert_string_equal(s.state, "-");
    vie_test_end(app);
    vie_app_free(app);
}

static void refusals(void **state)
{
    (void)state;
    capture k;
    capture_begin(&k);
    int rc = vie_use_trace(NULL, NULL, NULL);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    assert_true(log_has_line(log, "trace", "app is NULL", NULL));
    free(log);
    /* Two owners of the one key: the app does not start. */
    vie_app *app = vie_app_new(NULL);
    vie_layer_opts a = {.name = "trace.a"}, b = {.name = "trace.b"};
    assert_int_equal(vie_use_trace(app, &a, NULL), VIE_OK);
    assert_int_equal(vie_use_trace(app, &b, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/t", show_trace, NULL), VIE_OK);
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "vie_trace", "two owners", "trace.a", "trace.b", NULL));
    free(log);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(traceparent_table),
        cmocka_unit_test(duplicate_traceparent_starts_new),
        cmocka_unit_test(new_traces_and_spans_differ),
        cmocka_unit_test(sample_option),
        cmocka_unit_test(no_response_header),
        cmocka_unit_test(tracestate_table),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
