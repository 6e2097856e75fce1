/* The pipeline's order and validation: registration after start, phases
 * and declared constraints, the checks at freeze (duplicates, unknown
 * names, cycles, constraints against the phases), groups with their own
 * layers, route requirements, and the descriptions of the pipeline
 * (text, JSON, Mermaid, GET /debug/pipeline). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/app.h"
#include "vie/vie.h"
#include "vie/vie_test.h"

/* vie_app_freeze with its log captured. */
/* ------------------------------------------------------------------ */
/* A minimal JSON validator (RFC 8259 grammar, no semantics)           */

static const char *js_value(const char *p, int depth);

static const char *js_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *js_string(const char *p)
{
    if (*p++ != '"') return NULL;
    for (;;) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '\0' || ch < 0x20) return NULL;
        if (ch == '"') return p + 1;
        if (ch == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p[i])) return NULL;
                p += 5;
                continue;
            }
            if (*p == '\0' || !strchr("\"\\/bfnrt", *p)) return NULL;
        }
        p++;
    }
}

static const char *js_number(const char *p)
{
    if (*p == '-') p++;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (isdigit((unsigned char)*p))
            p++;
    } else {
        return NULL;
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p;
}

static const char *js_value(const char *p, int depth)
{
    if (depth > 64) return NULL;
    p = js_ws(p);
    if (*p == '{') {
        p = js_ws(p + 1);
        if (*p == '}') return p + 1;
        for (;;) {
            p = js_string(js_ws(p));
            if (!p) return NULL;
            p = js_ws(p);
            if (*p++ != ':') return NULL;
            p = js_value(p, depth + 1);
            if (!p) return NULL;
            p = js_ws(p);
            if (*p == '}') return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    if (*p == '[') {
        p = js_ws(p + 1);
        if (*p == ']') return p + 1;
        for (;;) {
            p = js_value(p, depth + 1);
            if (!p) return NULL;
            p = js_ws(p);
            if (*p == ']') return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    if (*p == '"') return js_string(p);
    if (!strncmp(p, "true", 4)) return p + 4;
    if (!strncmp(p, "false", 5)) return p + 5;
    if (!strncmp(p, "null", 4)) return p + 4;
    return js_number(p);
}

static bool json_valid(const char *s)
{
    const char *p = s ? js_value(s, 0) : NULL;
    return p && *js_ws(p) == '\0';
}

static void json_validator_works(void **state)
{
    assert_true(json_valid("{\"a\":[1,-2.5e3,true,false,null,\"x\\\"y\\u00e9\"],\"b\":{}}"));
    assert_true(json_valid(" [ ] "));
    assert_false(json_valid("{\"a\":1,}"));
    assert_false(json_valid("{\"a\" 1}"));
    assert_false(json_valid("[1,2"));
    assert_false(json_valid("{\"a\":\"bad\nnewline\"}"));
    assert_false(json_valid("{\"a\":01}"));
    assert_false(json_valid("{} {}"));
    assert_false(json_valid("{\"a\":\"\\q\"}"));
}

/* ------------------------------------------------------------------ */
/* Layers that record the order they ran in                            */

static char ran[256];

typedef struct rec {
    const char *name; /* recorded as "name," */
    int status;       /* > 0: answer this status unless the request has X-Token */
    bool bypass;      /* vie_bypass and go on */
    int befores;
} rec;

static vie_status rec_before(vie_ctx *c, void *state)
{
    rec *r = state;
    r->befores++;
    strncat(ran, r->name, sizeof ran - strlen(ran) - 1);
    strncat(ran, ",", sizeof ran - strlen(ran) - 1);
    if (r->bypass) vie_bypass(c);
    if (r->status && !vie_header(c, "X-Token").ptr)
        return vie_send_problem(c, r->status, "no token");
    return VIE_NEXT;
}

static vie_middleware mw(const char *name, vie_phase phase)
{
    return (vie_middleware){.name = name, .phase = phase, .before = rec_before};
}

static int handler_calls;

static vie_status ok_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    strncat(ran, "H", sizeof ran - strlen(ran) - 1);
    return vie_send_text(c, 200, "ok");
}

static vie_status silent_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    return VIE_NEXT;
}

/* The names of the trail's layers, comma separated, handler included
 * as "H" (the label is checked separately). */
static void trail_names(const vie_test_response *r, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < r->n_trail; i++) {
        const char *name = r->trail[i].layer;
        bool handler = i + 1 == r->n_trail && strchr(name, ' ');
        strncat(out, handler ? "H" : name, cap - strlen(out) - 1);
        if (!handler) strncat(out, ",", cap - strlen(out) - 1);
    }
}

static vie_test_response *request(vie_app *app, const char *target, const char *token)
{
    const char *hdrs[] = {"X-Token: t", NULL};
    vie_test_response *r = vie_test_request(app, "GET", target, token ? hdrs : NULL, NULL, 0);
    assert_non_null(r);
    return r;
}

/* GET target with a token; check the status and the order the layers
 * ran in (both as recorded and in the trail). */
static void expect_chain(vie_app *app, const char *target, int status, const char *order)
{
    ran[0] = '\0';
    vie_test_response *r = request(app, target, "t");
    assert_int_equal(r->status, status);
    assert_string_equal(ran, order);
    char names[256];
    trail_names(r, names, sizeof names);
    assert_string_equal(names, order);
    vie_test_response_free(r);
}

static const route_entry *route_labelled(const vie_app *app, const char *label)
{
    for (size_t i = 0; i < app->n_routes; i++)
        if (!strcmp(app->routes[i]->label, label)) return app->routes[i];
    fail_msg("no route %s", label);
    return NULL;
}

static const layer *layer_named(const vie_app *app, const char *name)
{
    for (size_t i = 0; i < app->n_layers; i++)
        if (!strcmp(app->layers[i]->mw.name, name)) return app->layers[i];
    fail_msg("no layer %s", name);
    return NULL;
}

static int reset(void **state)
{
    (void)state;
    ran[0] = '\0';
    handler_calls = 0;
    vie_log_set_level(VIE_LOG_OFF);
    return 0;
}

/* ================================================================== */
/* 3. Registration after start                                         */

static vie_key late_key = {"late_key", VIE_KEY_WRITE_ONCE, NULL, 0, 0};

static void registration_after_start_is_refused(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec early = {.name = "early"}, late = {.name = "late"}, late_g = {.name = "late-g"};
    vie_middleware m_early = mw("early", VIE_OBSERVE), m_late = mw("late", VIE_GUARD),
                   m_late_g = mw("late-g", VIE_GUARD);
    vie_group *g;
    assert_int_equal(vie_use(app, &m_early, &early), VIE_OK);
    assert_int_equal(vie_group_new(app, NULL, "/g", &g), VIE_OK);
    vie_route_opts og = {.group = g};
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &og), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(app->stats->frozen_refusals, 0);

    capture k;
    capture_begin(&k);
    assert_int_equal(vie_use(app, &m_late, &late), VIE_EFROZEN);
    assert_int_equal(vie_group_use(g, &m_late_g, &late_g), VIE_EFROZEN);
    vie_group *g2 = (vie_group *)1;
    assert_int_equal(vie_group_new(app, NULL, "/g2", &g2), VIE_EFROZEN);
    assert_null(g2);
    assert_int_equal(vie_route(app, "GET", "/y", ok_handler, NULL), VIE_EFROZEN);
    assert_int_equal(vie_route_with(app, "GET", "/z", ok_handler, NULL, &og), VIE_EFROZEN);
    assert_int_equal(vie_key_register(app, &late_key), VIE_EFROZEN);
    char *log = capture_end(&k);

    assert_int_equal(app->stats->frozen_refusals, 6);
    /* Each refusal is logged, naming what was refused. */
    assert_true(log_has_line(log, "vie_use", "late", "frozen", NULL));
    assert_true(log_has_line(log, "vie_group_use", "late-g", "frozen", NULL));
    assert_true(log_has_line(log, "vie_group_new", "/g2", "frozen", NULL));
    assert_true(log_has_line(log, "/y", "frozen", NULL));
    assert_true(log_has_line(log, "/z", "frozen", NULL));
    assert_true(log_has_line(log, "vie_key_register", "late_key", "frozen", NULL));
    free(log);

    /* Freezing again is harmless; the app serves exactly as before. */
    assert_int_equal(vie_app_freeze(app), VIE_OK);
    expect_chain(app, "/x", 200, "early,H");
    expect_chain(app, "/g/x", 200, "early,H");
    assert_int_equal(late.befores + late_g.befores, 0);
    vie_test_response *r = request(app, "/y", NULL);
    assert_int_equal(r->status, 404);
    vie_test_response_free(r);
    r = request(app, "/g/z", NULL);
    assert_int_equal(r->status, 404);
    vie_test_response_free(r);
    assert_int_equal(app->n_layers, 1);
    assert_int_equal(app->n_groups, 1);
    vie_app_free(app);
}

/* ================================================================== */
/* 4. Order: phases, constraints, registration                         */

static void phases_order_the_chain(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec v = {.name = "validate"}, g1 = {.name = "limit"}, o1 = {.name = "log"},
        g2 = {.name = "breaker"}, o2 = {.name = "trace"};
    vie_middleware mv = mw("validate", VIE_APP), mg1 = mw("limit", VIE_GUARD),
                   mo1 = mw("log", VIE_OBSERVE), mg2 = mw("breaker", VIE_GUARD),
                   mo2 = mw("trace", VIE_OBSERVE);
    /* Registered against the phases, interleaved. */
    assert_int_equal(vie_use(app, &mv, &v), VIE_OK);
    assert_int_equal(vie_use(app, &mg1, &g1), VIE_OK);
    assert_int_equal(vie_use(app, &mo1, &o1), VIE_OK);
    assert_int_equal(vie_use(app, &mg2, &g2), VIE_OK);
    assert_int_equal(vie_use(app, &mo2, &o2), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    /* Phase first; registration order within a phase. */
    expect_chain(app, "/x", 200, "log,trace,limit,breaker,validate,H");
    vie_app_free(app);
}

/* ratelimit requires auth: the same chain whatever the registration order. */
static vie_app *auth_app(bool ratelimit_first)
{
    static rec auth = {.name = "auth"}, limit = {.name = "ratelimit"}, log = {.name = "log"};
    static const char *const needs_auth[] = {"auth", NULL};
    vie_middleware ma = mw("auth", VIE_GUARD), ml = mw("log", VIE_OBSERVE);
    vie_middleware mr = mw("ratelimit", VIE_GUARD);
    mr.requires = needs_auth;
    vie_app *app = vie_app_new(NULL);
    if (ratelimit_first) {
        assert_int_equal(vie_use(app, &mr, &limit), VIE_OK);
        assert_int_equal(vie_use(app, &ma, &auth), VIE_OK);
    } else {
        assert_int_equal(vie_use(app, &ma, &auth), VIE_OK);
        assert_int_equal(vie_use(app, &mr, &limit), VIE_OK);
    }
    assert_int_equal(vie_use(app, &ml, &log), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    return app;
}

static void requires_orders_whatever_the_registration(void **state)
{
    for (int first = 0; first < 2; first++) {
        vie_app *app = auth_app(first);
        assert_int_equal(vie_test_begin(app), VIE_OK);
        expect_chain(app, "/x", 200, "log,auth,ratelimit,H");
        char *json = vie_app_describe(app, VIE_FORMAT_JSON);
        assert_non_null(json);
        assert_true(json_valid(json));
        const char *a = strstr(json, "\"name\":\"auth\"");
        const char *l = strstr(json, "\"name\":\"ratelimit\"");
        const char *o = strstr(json, "\"name\":\"log\"");
        assert_non_null(a);
        assert_non_null(l);
        assert_non_null(o);
        assert_true(o < a && a < l);
        assert_non_null(strstr(l, "\"reason\":\"declared: ratelimit requires auth\""));
        free(json);
        char *text = vie_app_describe(app, VIE_FORMAT_TEXT);
        assert_non_null(text);
        assert_non_null(strstr(text, "declared: ratelimit requires auth"));
        free(text);
        vie_app_free(app);
    }
}

static void runs_before_and_runs_after_order(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec y = {.name = "y"}, x = {.name = "x"}, w = {.name = "w"}, z = {.name = "z"};
    static const char *const before_y[] = {"y", NULL};
    static const char *const after_w[] = {"w", NULL};
    vie_middleware my = mw("y", VIE_GUARD), mx = mw("x", VIE_GUARD), mz = mw("z", VIE_GUARD),
                   mww = mw("w", VIE_GUARD);
    mx.runs_before = before_y;
    mz.runs_after = after_w;
    assert_int_equal(vie_use(app, &my, &y), VIE_OK);  /* #0 */
    assert_int_equal(vie_use(app, &mx, &x), VIE_OK);  /* #1: runs before y */
    assert_int_equal(vie_use(app, &mz, &z), VIE_OK);  /* #2: runs after w */
    assert_int_equal(vie_use(app, &mww, &w), VIE_OK); /* #3 */
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect_chain(app, "/x", 200, "x,y,w,z,H");
    char *text = vie_app_describe(app, VIE_FORMAT_TEXT);
    assert_non_null(text);
    assert_non_null(strstr(text, "x runs_before y"));
    assert_non_null(strstr(text, "z runs_after w"));
    free(text);
    vie_app_free(app);
}

/* A constraint on a layer outside a chain does not matter to that chain,
 * but the name must exist somewhere. */
static void constraint_on_layer_outside_the_chain(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec x = {.name = "x"}, y = {.name = "y"};
    static const char *const before_y[] = {"y", NULL};
    vie_middleware mx = mw("x", VIE_APP), my = mw("y", VIE_OBSERVE);
    mx.runs_before = before_y; /* against the phases, but y is never in x's chains */
    my.phase = VIE_APP;
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/g", &g), VIE_OK);
    assert_int_equal(vie_use(app, &mx, &x), VIE_OK);
    assert_int_equal(vie_group_use(g, &my, &y), VIE_OK);
    vie_route_opts og = {.group = g};
    assert_int_equal(vie_route(app, "GET", "/plain", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &og), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect_chain(app, "/plain", 200, "x,H");
    expect_chain(app, "/g/x", 200, "x,y,H");
    vie_app_free(app);
}

static void duplicate_name_refuses_to_start(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec a1 = {.name = "auth"}, a2 = {.name = "auth"};
    vie_middleware m = mw("auth", VIE_GUARD);
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/api", &g), VIE_OK);
    assert_int_equal(vie_use(app, &m, &a1), VIE_OK);
    assert_int_equal(vie_group_use(g, &m, &a2), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "duplicate", "\"auth\"", "/api", NULL));
    free(log);
    assert_false(app->frozen);
    /* Every entry point refuses the same way. */
    assert_int_equal(vie_app_freeze(app), VIE_ECONFIG);
    assert_int_equal(vie_test_begin(app), VIE_ECONFIG);
    assert_null(vie_app_describe(app, VIE_FORMAT_JSON));
    vie_app_free(app);
}

static void unknown_names_refuse_to_start(void **state)
{
    static const char *const nope[] = {"nope", NULL};
    static const char *const typo[] = {"autth", NULL};
    static const char *const ghost[] = {"ghost", NULL};
    struct {
        const char *field, *word;
    } cases[] = {{"requires", "nope"}, {"runs_before", "autth"}, {"runs_after", "ghost"}};
    for (int i = 0; i < 3; i++) {
        vie_app *app = vie_app_new(NULL);
        rec a = {.name = "auth"}, b = {.name = "limit"};
        vie_middleware ma = mw("auth", VIE_GUARD), mb = mw("limit", VIE_GUARD);
        if (i == 0) mb.requires = nope;
        if (i == 1) mb.runs_before = typo;
        if (i == 2) mb.runs_after = ghost;
        assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
        assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
        assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
        char *log;
        assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
        char quoted[32];
        snprintf(quoted, sizeof quoted, "\"%s\"", cases[i].word);
        assert_true(log_has_line(log, "limit", cases[i].field, quoted, NULL));
        free(log);
        vie_app_free(app);
    }
}

static void family_names_satisfy_requires(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec a = {.name = "auth.api"}, l = {.name = "ratelimit"};
    static const char *const needs_auth[] = {"auth", NULL};
    vie_middleware ml = mw("ratelimit", VIE_GUARD), ma = mw("auth.api", VIE_GUARD);
    ml.requires = needs_auth;
    assert_int_equal(vie_use(app, &ml, &l), VIE_OK);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    expect_chain(app, "/x", 200, "auth.api,ratelimit,H");
    vie_app_free(app);

    /* "authz" is another name, not a member of the family "auth". */
    app = vie_app_new(NULL);
    rec z = {.name = "authz"};
    vie_middleware mz = mw("authz", VIE_GUARD);
    assert_int_equal(vie_use(app, &ml, &l), VIE_OK);
    assert_int_equal(vie_use(app, &mz, &z), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "ratelimit", "requires", "\"auth\"", NULL));
    free(log);
    vie_app_free(app);
}

/* The cycle's message lists it as a -> b -> ... -> a, in some rotation. */
static bool lists_cycle(const char *log, const char *const *names, int n)
{
    for (int start = 0; start < n; start++) {
        char want[256] = "";
        for (int i = 0; i <= n; i++) {
            strcat(want, names[(start + i) % n]);
            if (i < n) strcat(want, " -> ");
        }
        if (log_has_line(log, "cycle", want, NULL)) return true;
    }
    return false;
}

static void two_layer_cycle_refuses_to_start(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec a = {.name = "cyc-a"}, b = {.name = "cyc-b"};
    static const char *const before_b[] = {"cyc-b", NULL};
    static const char *const before_a[] = {"cyc-a", NULL};
    vie_middleware ma = mw("cyc-a", VIE_GUARD), mb = mw("cyc-b", VIE_GUARD);
    ma.runs_before = before_b;
    mb.runs_before = before_a;
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    static const char *const cyc[] = {"cyc-a", "cyc-b"};
    assert_true(lists_cycle(log, cyc, 2));
    assert_true(log_has_line(log, "cycle", "GET /x", NULL)); /* names the route */
    assert_true(log_has_line(log, "refuses to start", NULL));
    free(log);
    assert_int_equal(vie_test_begin(app), VIE_ECONFIG);
    vie_app_free(app);
}

static void three_layer_cycle_names_a_real_constraint(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec x = {.name = "x"}, y = {.name = "y"}, z = {.name = "z"}, free_ = {.name = "bystander"};
    static const char *const before_y[] = {"y", NULL};
    static const char *const before_z[] = {"z", NULL};
    static const char *const before_x[] = {"x", NULL};
    vie_middleware mx = mw("x", VIE_GUARD), my = mw("y", VIE_GUARD), mz = mw("z", VIE_GUARD),
                   mf = mw("bystander", VIE_GUARD);
    mx.runs_before = before_y;
    my.runs_before = before_z;
    mz.runs_before = before_x;
    assert_int_equal(vie_use(app, &mf, &free_), VIE_OK);
    assert_int_equal(vie_use(app, &mx, &x), VIE_OK);
    assert_int_equal(vie_use(app, &my, &y), VIE_OK);
    assert_int_equal(vie_use(app, &mz, &z), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    static const char *const cyc[] = {"x", "y", "z"};
    assert_true(lists_cycle(log, cyc, 3));
    assert_false(log_has_line(log, "cycle", "bystander", NULL));
    /* The constraint quoted with the cycle is one that was declared. */
    bool real = log_has_line(log, "cycle", "\"x runs_before y\"", NULL) ||
                log_has_line(log, "cycle", "\"y runs_before z\"", NULL) ||
                log_has_line(log, "cycle", "\"z runs_before x\"", NULL);
    if (!real) print_message("cycle log was:\n%s", log);
    assert_true(real);
    free(log);
    vie_app_free(app);
}

/* requires and runs_after can close a cycle between them. */
static void requires_and_runs_after_cycle(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec a = {.name = "auth"}, l = {.name = "ratelimit"};
    static const char *const needs_auth[] = {"auth", NULL};
    static const char *const after_limit[] = {"ratelimit", NULL};
    vie_middleware ma = mw("auth", VIE_GUARD), ml = mw("ratelimit", VIE_GUARD);
    ml.requires = needs_auth;
    ma.runs_after = after_limit;
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &ml, &l), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    static const char *const cyc[] = {"auth", "ratelimit"};
    assert_true(lists_cycle(log, cyc, 2));
    free(log);
    vie_app_free(app);
}

static void constraint_against_phases_refuses_to_start(void **state)
{
    static const char *const guard_name[] = {"auth", NULL};
    static const char *const observe_name[] = {"log", NULL};
    for (int i = 0; i < 3; i++) {
        vie_app *app = vie_app_new(NULL);
        rec a = {.name = "auth"}, o = {.name = "log"};
        vie_middleware ma = mw("auth", VIE_GUARD), mo = mw("log", VIE_OBSERVE);
        if (i == 0) mo.runs_after = guard_name; /* an observer after a guard */
        if (i == 1) mo.requires = guard_name;   /* requires a later phase */
        if (i == 2) ma.runs_before = observe_name;
        assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
        assert_int_equal(vie_use(app, &mo, &o), VIE_OK);
        assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
        char *log;
        assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
        assert_true(log_has_line(log, "contradicts the phases", "log", "auth", NULL));
        free(log);
        vie_app_free(app);
    }
}

static void vie_app_run_refuses_an_invalid_pipeline(void **state)
{
    vie_options opt;
    vie_options_init(&opt);
    opt.listen = "127.0.0.1:0";
    opt.handle_signals = false;
    vie_app *app = vie_app_new(&opt);
    rec a = {.name = "cyc-a"}, b = {.name = "cyc-b"};
    static const char *const before_b[] = {"cyc-b", NULL};
    static const char *const before_a[] = {"cyc-a", NULL};
    vie_middleware ma = mw("cyc-a", VIE_GUARD), mb = mw("cyc-b", VIE_GUARD);
    ma.runs_before = before_b;
    mb.runs_before = before_a;
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    /* Should vie_app_run wrongly start, the pending stop ends it at once. */
    vie_app_stop(app);
    capture k;
    capture_begin(&k);
    int rc = vie_app_run(app);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_ECONFIG);
    assert_true(log_has_line(log, "cycle", NULL));
    assert_int_equal(vie_app_port(app), 0);
    free(log);
    vie_app_free(app);
}

static void layer_requirement_missing_from_a_chain(void **state)
{
    /* ratelimit covers every route but auth only /api: the routes outside
     * /api would run ratelimit without auth. */
    vie_app *app = vie_app_new(NULL);
    rec a = {.name = "auth"}, l = {.name = "ratelimit"};
    static const char *const needs_auth[] = {"auth", NULL};
    vie_middleware ma = mw("auth", VIE_GUARD), ml = mw("ratelimit", VIE_GUARD);
    ml.requires = needs_auth;
    vie_group *api;
    assert_int_equal(vie_group_new(app, NULL, "/api", &api), VIE_OK);
    assert_int_equal(vie_use(app, &ml, &l), VIE_OK);
    assert_int_equal(vie_group_use(api, &ma, &a), VIE_OK);
    vie_route_opts o = {.group = api};
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/public", ok_handler, NULL), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "GET /public", "ratelimit", "auth", NULL));
    assert_false(log_has_line(log, "GET /api/x", "not in this route", NULL));
    free(log);
    vie_app_free(app);
}

/* ================================================================== */
/* 5. Groups and route requirements                                    */

static void groups_have_their_own_layers(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec log = {.name = "log"}, auth = {.name = "auth", .status = 401}, audit = {.name = "audit"},
        admin = {.name = "admin"};
    vie_middleware mlog = mw("log", VIE_OBSERVE), mauth = mw("auth", VIE_GUARD),
                   maudit = mw("audit", VIE_APP), madmin = mw("admin", VIE_GUARD);
    vie_group *api, *v2, *pub, *adm;
    assert_int_equal(vie_group_new(app, NULL, "/api", &api), VIE_OK);
    assert_int_equal(vie_group_new(app, api, "/v2", &v2), VIE_OK);
    assert_int_equal(vie_group_new(app, NULL, "/public", &pub), VIE_OK);
    assert_int_equal(vie_group_new(app, NULL, "/admin", &adm), VIE_OK);
    vie_route_opts o_api = {.group = api}, o_v2 = {.group = v2}, o_pub = {.group = pub},
                   o_adm = {.group = adm};
    /* Routes first, layers after: the layers still cover them. */
    assert_int_equal(vie_route_with(app, "GET", "/items", ok_handler, NULL, &o_api), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/items", ok_handler, NULL, &o_v2), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/page", ok_handler, NULL, &o_pub), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/panel", ok_handler, NULL, &o_adm), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_group_use(api, &mauth, &auth), VIE_OK);
    assert_int_equal(vie_group_use(v2, &maudit, &audit), VIE_OK);
    assert_int_equal(vie_group_use(adm, &madmin, &admin), VIE_OK);
    assert_int_equal(vie_use(app, &mlog, &log), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    expect_chain(app, "/", 200, "log,H");
    expect_chain(app, "/public/page", 200, "log,H");
    expect_chain(app, "/api/items", 200, "log,auth,H");
    expect_chain(app, "/api/v2/items", 200, "log,auth,audit,H");
    expect_chain(app, "/admin/panel", 200, "log,admin,H");

    /* Without a token the group's guard answers; the public route does not care. */
    ran[0] = '\0';
    vie_test_response *r = request(app, "/api/v2/items", NULL);
    assert_int_equal(r->status, 401);
    assert_string_equal(ran, "log,auth,");
    vie_test_response_free(r);
    r = request(app, "/public/page", NULL);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);

    /* The labels carry the full pattern. */
    assert_non_null(route_labelled(app, "GET /api/v2/items"));
    vie_app_free(app);
}

static void route_requires_a_layer_that_ran(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec auth = {.name = "auth.api"}, log = {.name = "log"};
    vie_middleware mauth = mw("auth.api", VIE_GUARD), mlog = mw("log", VIE_OBSERVE);
    static const char *const needs_auth[] = {"auth", NULL};
    vie_route_opts o = {.requires = needs_auth};
    assert_int_equal(vie_use(app, &mlog, &log), VIE_OK);
    assert_int_equal(vie_use(app, &mauth, &auth), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/secret", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/open", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    /* auth ran: the handler runs. */
    expect_chain(app, "/secret", 200, "log,auth.api,H");
    assert_int_equal(handler_calls, 1);

    /* auth let the request through without doing its work. */
    auth.bypass = true;
    capture k;
    capture_begin(&k);
    ran[0] = '\0';
    vie_test_response *r = request(app, "/secret", "t");
    char *log_text = capture_end(&k);
    assert_int_equal(r->status, 500);
    assert_string_equal(vie_test_header(r, "content-type"), "application/problem+json");
    assert_string_equal(ran, "log,auth.api,");
    assert_int_equal(handler_calls, 1); /* not called */
    assert_int_equal(route_labelled(app, "GET /secret")->n->requires_refused, 1);
    assert_int_equal(app->stats->requires_refused, 1);
    assert_true(log_has_line(log_text, "GET /secret", "auth", NULL));
    free(log_text);
    /* The trail shows the layers that ran; if it shows the handler at all,
     * it is named and marked refused, never left "running". */
    assert_true(r->n_trail == 2 || r->n_trail == 3);
    assert_string_equal(r->trail[0].layer, "log");
    assert_string_equal(r->trail[1].layer, "auth.api");
    assert_int_equal(r->trail[1].outcome, VIE_NEXT);
    if (r->n_trail == 3) {
        assert_int_equal(r->trail[2].outcome, -2);
        assert_string_equal(r->trail[2].layer, "GET /secret");
    }
    vie_test_response_free(r);

    /* A route that requires nothing is not affected by the bypass. */
    expect_chain(app, "/open", 200, "log,auth.api,H");
    assert_int_equal(app->stats->requires_refused, 1);

    /* The next request with auth working is served again: the mask is per request. */
    auth.bypass = false;
    expect_chain(app, "/secret", 200, "log,auth.api,H");
    assert_int_equal(route_labelled(app, "GET /secret")->n->requires_refused, 1);
    vie_app_free(app);
}

static void route_requirement_not_in_chain_refuses_to_start(void **state)
{
    vie_app *app = vie_app_new(NULL);
    rec auth = {.name = "auth"};
    vie_middleware mauth = mw("auth", VIE_GUARD);
    vie_group *api;
    assert_int_equal(vie_group_new(app, NULL, "/api", &api), VIE_OK);
    assert_int_equal(vie_group_use(api, &mauth, &auth), VIE_OK);
    static const char *const needs_auth[] = {"auth", NULL};
    vie_route_opts in_api = {.group = api, .requires = needs_auth};
    vie_route_opts outside = {.requires = needs_auth};
    assert_int_equal(vie_route_with(app, "GET", "/ok", ok_handler, NULL, &in_api), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/naked", ok_handler, NULL, &outside), VIE_OK);
    char *log;
    assert_int_equal(freeze_logged(app, &log), VIE_ECONFIG);
    assert_true(log_has_line(log, "GET /naked", "auth", NULL));
    assert_false(log_has_line(log, "GET /api/ok", "requires", NULL));
    free(log);
    vie_app_free(app);
}

/* ================================================================== */
/* 10. Describing the pipeline                                         */

static vie_app *described_app(void)
{
    static rec log = {.name = "log"}, auth = {.name = "auth"}, limit = {.name = "ratelimit"},
               a1 = {.name = "audit"}, a2 = {.name = "metrics"};
    static const char *const needs_auth[] = {"auth", NULL};
    vie_middleware mlog = mw("log", VIE_OBSERVE), mauth = mw("auth", VIE_GUARD),
                   mlimit = mw("ratelimit", VIE_GUARD), ma1 = mw("audit", VIE_APP),
                   ma2 = mw("metrics", VIE_APP);
    mlimit.requires = needs_auth;
    vie_app *app = vie_app_new(NULL);
    vie_group *api;
    assert_int_equal(vie_group_new(app, NULL, "/api", &api), VIE_OK);
    assert_int_equal(vie_use(app, &mlog, &log), VIE_OK);
    assert_int_equal(vie_group_use(api, &mlimit, &limit), VIE_OK);
    assert_int_equal(vie_group_use(api, &mauth, &auth), VIE_OK);
    assert_int_equal(vie_group_use(api, &ma1, &a1), VIE_OK);
    assert_int_equal(vie_group_use(api, &ma2, &a2), VIE_OK);
    vie_route_opts o = {.group = api, .requires = needs_auth};
    assert_int_equal(vie_route_with(app, "GET", "/users/:id", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/health", ok_handler, NULL), VIE_OK);
    return app;
}

static void describe_text_gives_reasons(void **state)
{
    vie_app *app = described_app();
    char *text = vie_app_describe(app, VIE_FORMAT_TEXT);
    assert_non_null(text);
    assert_true(app->frozen); /* describing froze it */
    const char *route = strstr(text, "GET /api/users/:id");
    assert_non_null(route);
    assert_non_null(strstr(text, "GET /health"));
    /* Order within the route, and why. */
    const char *l = strstr(route, "log"), *a = strstr(route, "auth"),
               *r = strstr(route, "ratelimit"), *au = strstr(route, "audit"),
               *m = strstr(route, "metrics");
    assert_true(l && a && r && au && m);
    assert_true(l < a && a < r && r < au && au < m);
    assert_non_null(strstr(route, "guard"));
    assert_non_null(strstr(route, "observe"));
    assert_non_null(strstr(route, "phase: guard after observe"));
    assert_non_null(strstr(route, "declared: ratelimit requires auth"));
    assert_non_null(strstr(route, "phase: app after guard"));
    assert_non_null(strstr(route, "registration order")); /* metrics after audit */
    assert_non_null(strstr(route, "requires=auth"));
    free(text);

    /* The chain the description shows is the chain that runs. */
    expect_chain(app, "/api/users/7", 200, "log,auth,ratelimit,audit,metrics,H");
    vie_app_free(app);
}

static void describe_json_parses(void **state)
{
    vie_app *app = described_app();
    char *json = vie_app_describe(app, VIE_FORMAT_JSON);
    assert_non_null(json);
    if (!json_valid(json)) print_message("invalid JSON:\n%s\n", json);
    assert_true(json_valid(json));
    assert_int_equal(json[0], '{');
    assert_non_null(strstr(json, "\"routes\":["));
    const char *route = strstr(json, "\"route\":\"GET /api/users/:id\"");
    assert_non_null(route);
    const char *ch = strstr(route, "\"chain\":[");
    assert_non_null(ch);
    const char *a = strstr(ch, "{\"name\":\"auth\"");
    const char *r = strstr(ch, "{\"name\":\"ratelimit\"");
    assert_true(a && r && a < r);
    assert_non_null(strstr(a, "\"phase\":\"guard\""));
    assert_non_null(strstr(r, "\"requires\":[\"auth\"]"));
    assert_non_null(strstr(ch, "\"reason\":\"phase: guard after observe\""));
    assert_non_null(strstr(ch, "\"reason\":\"registration order\""));
    assert_non_null(strstr(route, "\"requires\":[\"auth\"]"));
    assert_non_null(strstr(json, "\"route\":\"GET /health\""));
    assert_non_null(strstr(json, "\"counters\":{\"requests\":"));
    free(json);
    vie_app_free(app);
}

static void describe_mermaid_is_a_flowchart(void **state)
{
    vie_app *app = described_app();
    char *mm = vie_app_describe(app, VIE_FORMAT_MERMAID);
    assert_non_null(mm);
    assert_int_equal(strncmp(mm, "flowchart", 9), 0);
    assert_non_null(strstr(mm, "GET /api/users/:id"));
    assert_non_null(strstr(mm, "ratelimit"));
    assert_non_null(strstr(mm, "declared: ratelimit requires auth"));
    assert_non_null(strstr(mm, "-->"));
    /* Labels are quoted, so a quote inside would break the chart. */
    size_t quotes = 0;
    for (const char *p = mm; *p; p++)
        quotes += *p == '"';
    assert_int_equal(quotes % 2, 0);
    free(mm);
    vie_app_free(app);
}

/* The value of "key": in s after from, as a number; -1 when absent. */
static long long json_number_after(const char *from, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = from ? strstr(from, pat) : NULL;
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* The app-wide counters object (the last "counters" of the document). */
static const char *app_counters(const char *json)
{
    const char *last = NULL;
    for (const char *p = json; (p = strstr(p, "\"counters\":{\"requests\"")) != NULL; p++)
        last = p;
    return last;
}

/* A before hook that returns VIE_DONE without answering. */
static vie_status sink_before(vie_ctx *c, void *state)
{
    return VIE_DONE;
}

static void debug_endpoint_serves_live_counters(void **state)
{
    vie_options opt;
    vie_options_init(&opt);
    opt.debug_endpoints = true;
    vie_app *app = vie_app_new(&opt);
    vie_middleware sink = {.name = "sink", .phase = VIE_GUARD, .before = sink_before};
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/broken", &g), VIE_OK);
    assert_int_equal(vie_group_use(g, &sink, NULL), VIE_OK);
    vie_route_opts o = {.group = g};
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/silent", silent_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    vie_test_response *r = request(app, "/debug/pipeline", NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(vie_test_header(r, "content-type"), "application/json");
    assert_true(json_valid(r->body));
    assert_non_null(strstr(r->body, "\"route\":\"GET /broken/x\""));
    assert_non_null(strstr(r->body, "\"route\":\"GET /debug/pipeline\""));
    assert_int_equal(json_number_after(app_counters(r->body), "chain_breaks"), 0);
    assert_int_equal(json_number_after(strstr(r->body, "{\"name\":\"sink\""), "chain_breaks"), 0);
    assert_int_equal(json_number_after(strstr(r->body, "\"route\":\"GET /silent\""), "unanswered"),
                     0);
    vie_test_response_free(r);

    /* A layer breaks the chain, then a handler does not answer. */
    r = request(app, "/broken/x", NULL);
    assert_int_equal(r->status, 500);
    vie_test_response_free(r);
    r = request(app, "/silent", NULL);
    assert_int_equal(r->status, 500);
    vie_test_response_free(r);

    r = request(app, "/debug/pipeline", NULL);
    assert_int_equal(r->status, 200);
    assert_true(json_valid(r->body));
    assert_int_equal(json_number_after(app_counters(r->body), "chain_breaks"), 2);
    /* answered: debug, broken, silent (this one is still being served) */
    assert_int_equal(json_number_after(app_counters(r->body), "requests"), 3);
    assert_int_equal(json_number_after(strstr(r->body, "{\"name\":\"sink\""), "chain_breaks"), 1);
    assert_int_equal(json_number_after(strstr(r->body, "\"route\":\"GET /silent\""), "unanswered"),
                     1);
    assert_int_equal(layer_named(app, "sink")->n->chain_breaks, 1);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void debug_endpoint_is_off_by_default(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = request(app, "/debug/pipeline", NULL);
    assert_int_equal(r->status, 404);
    vie_test_response_free(r);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup(f, reset)
        T(json_validator_works),
        T(registration_after_start_is_refused),
        T(phases_order_the_chain),
        T(requires_orders_whatever_the_registration),
        T(runs_before_and_runs_after_order),
        T(constraint_on_layer_outside_the_chain),
        T(duplicate_name_refuses_to_start),
        T(unknown_names_refuse_to_start),
        T(family_names_satisfy_requires),
        T(two_layer_cycle_refuses_to_start),
        T(three_layer_cycle_names_a_real_constraint),
        T(requires_and_runs_after_cycle),
        T(constraint_against_phases_refuses_to_start),
        T(vie_app_run_refuses_an_invalid_pipeline),
        T(layer_requirement_missing_from_a_chain),
        T(groups_have_their_own_layers),
        T(route_requires_a_layer_that_ran),
        T(route_requirement_not_in_chain_refuses_to_start),
        T(describe_text_gives_reasons),
        T(describe_json_parses),
        T(describe_mermaid_is_a_flowchart),
        T(debug_endpoint_serves_live_counters),
        T(debug_endpoint_is_off_by_default),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
