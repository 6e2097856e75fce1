/* request_id: ids generated (32 lowercase hex, seedable, different per
 * worker), well-formed incoming ids kept and echoed exactly, malformed
 * ones replaced, the options (header, trust_incoming, response_header)
 * and the refusals of bad options. Through the test kit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mw/ids.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

/* The handler answers with the id the key holds ("(none)" if unset). */
static vie_status show_id(vie_ctx *c, void *arg)
{
    (void)arg;
    const char *id = vie_request_id_get(c);
    return vie_send_text(c, 200, id ? id : "(none)");
}

/* A guard that refuses everything: the id must be on its answer too. */
static vie_status deny(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_problem(c, 401, "no");
}

static vie_app *make_app(const vie_request_id_opts *o)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    vie_layer_opts lo = {.name = "rid"};
    assert_int_equal(vie_use_request_id(app, &lo, o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/id", show_id, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    return app;
}

static bool is_hex32(const char *s)
{
    if (!s || strlen(s) != 32) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

/* GET /id with one optional header line; returns the response. */
static vie_test_response *get(vie_app *app, const char *header_line)
{
    const char *h[] = {header_line, NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/id", header_line ? h : NULL, NULL, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    return r;
}

static void generated_when_absent(void **state)
{
    (void)state;
    vie_app *app = make_app(NULL);
    vie_test_response *a = get(app, NULL), *b = get(app, NULL);
    const char *ha = vie_test_header(a, "X-Request-Id"), *hb = vie_test_header(b, "x-request-id");
    assert_true(is_hex32(ha));
    assert_true(is_hex32(hb));
    assert_string_equal(a->body, ha); /* the key holds what the header says */
    assert_string_equal(b->body, hb);
    assert_string_not_equal(ha, hb);
    vie_test_response_free(a);
    vie_test_response_free(b);
    vie_test_end(app);
    vie_app_free(app);
}

/* The generator is seedable: the same seed, the same ids. */
static void seeded_ids_repeat(void **state)
{
    (void)state;
    vie_app *app = make_app(NULL); /* vie_test_begin reseeds: seed after it */
    char first[33];
    ids_seed(42);
    vie_test_response *a = get(app, NULL);
    snprintf(first, sizeof first, "%s", a->body);
    ids_seed(42);
    vie_test_response *b = get(app, NULL);
    ids_seed(43);
    vie_test_response *c = get(app, NULL);
    assert_string_equal(b->body, first);
    assert_string_not_equal(c->body, first);
    assert_true(is_hex32(first));
    vie_test_response_free(a);
    vie_test_response_free(b);
    vie_test_response_free(c);
    vie_test_end(app);
    vie_app_free(app);
}

/* ids_hex: exactly n lowercase hex digits, never all zeros. */
static void hex_ids_shape(void **state)
{
    (void)state;
    char buf[40];
    for (uint64_t seed = 0; seed < 200; seed++) {
        ids_seed(seed);
        memset(buf, 'x', sizeof buf);
        ids_hex(buf, 16);
        assert_int_equal(strlen(buf), 16);
        assert_true(strspn(buf, "0123456789abcdef") == 16);
        assert_true(strspn(buf, "0") < 16);
        ids_hex(buf, 1); /* one digit: nonzero always, from 15 values */
        assert_true(buf[0] != '0' && buf[1] == '\0');
    }
}

/* Workers forked from one process share its generator's state: the
 * reseed at WORKER_START is what makes their ids differ. */
static void forked_workers_differ_after_reseed(void **state)
{
    (void)state;
    for (int reseed = 0; reseed <= 1; reseed++) {
        ids_seed(7);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (reseed) ids_worker_start(NULL, NULL, NULL);
            char id[33];
            ids_hex(id, 32);
            _exit(write(fds[1], id, 32) == 32 ? 0 : 1);
        }
        if (reseed) ids_worker_start(NULL, NULL, NULL);
        char mine[33], theirs[33] = {0};
        ids_hex(mine, 32);
        close(fds[1]);
        assert_int_equal(read(fds[0], theirs, 32), 32);
        close(fds[0]);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (reseed)
            assert_string_not_equal(mine, theirs);
        else
            assert_string_equal(mine, theirs);
    }
}

/* Well-formed incoming ids are kept byte for byte. */
static void incoming_kept_exactly(void **state)
{
    (void)state;
    vie_app *app = make_app(NULL);
    char longest[129];
    memset(longest, 'A', 128);
    longest[128] = '\0';
    const char *ok[] = {"abc",
                        "7",
                        "9f0c2d3e-1b7a-4c5d-8e9f-0a1b2c3d4e5f",
                        "host-1:4242:17",
                        "a.b_c-d:e+f/g=h@i",
                        "dGVzdCBpZA==",
                        longest};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char line[200];
        snprintf(line, sizeof line, "X-Request-Id: %s", ok[i]);
        vie_test_response *r = get(app, line);
        assert_string_equal(vie_test_header(r, "X-Request-Id"), ok[i]);
        assert_string_equal(r->body, ok[i]);
        vie_test_response_free(r);
    }
    /* The header name matches case-insensitively. */
    vie_test_response *r = get(app, "x-REQUEST-id: lower-upper");
    assert_string_equal(r->body, "lower-upper");
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

/* Malformed incoming ids are replaced by a generated one. */
static void bad_ids_replaced(void **state)
{
    (void)state;
    vie_app *app = make_app(NULL);
    char too_long[200];
    memset(too_long, 'a', 129);
    too_long[129] = '\0';
    const char *bad[] = {
        "",            /* empty */
        too_long,      /* 129 characters */
        "a b",         /* space: splits a log line */
        "a\tb",        /* tab */
        "a\"b",        /* quote: needs escaping in JSON */
        "a\\b",        /* backslash */
        "a,b",         /* a list separator */
        "a;b",         /* a parameter separator */
        "<script>",    /* markup */
        "caf\xc3\xa9", /* non-ASCII */
        "100%",        /* not in the charset */
        /* (DEL and the other controls never get this far: the parser answers 400.) */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[300];
        snprintf(line, sizeof line, "X-Request-Id: %s", bad[i]);
        vie_test_response *r = get(app, line);
        const char *h = vie_test_header(r, "X-Request-Id");
        if (!is_hex32(h)) fail_msg("case %zu (\"%s\"): got \"%s\"", i, bad[i], h ? h : "(none)");
        assert_string_equal(r->body, h);
        vie_test_response_free(r);
    }
    vie_test_end(app);
    vie_app_free(app);
}

static void untrusted_incoming_ignored(void **state)
{
    (void)state;
    vie_request_id_opts o;
    vie_request_id_opts_init(&o);
    o.trust_incoming = false;
    vie_app *app = make_app(&o);
    vie_test_response *r = get(app, "X-Request-Id: client-chosen");
    assert_true(is_hex32(vie_test_header(r, "X-Request-Id")));
    assert_string_equal(r->body, vie_test_header(r, "X-Request-Id"));
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

static void custom_header_and_no_echo(void **state)
{
    (void)state;
    vie_request_id_opts o;
    vie_request_id_opts_init(&o);
    o.header = "X-Correlation-Id";
    vie_app *app = make_app(&o);
    vie_test_response *r = get(app, "X-Correlation-Id: corr-1");
    assert_string_equal(vie_test_header(r, "X-Correlation-Id"), "corr-1");
    assert_null(vie_test_header(r, "X-Request-Id"));
    assert_string_equal(r->body, "corr-1");
    vie_test_response_free(r);
    /* X-Request-Id means nothing to this instance. */
    r = get(app, "X-Request-Id: other");
    assert_true(is_hex32(r->body));
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);

    vie_request_id_opts_init(&o);
    o.response_header = false;
    app = make_app(&o);
    r = get(app, "X-Request-Id: kept-quiet");
    assert_null(vie_test_header(r, "X-Request-Id"));
    assert_string_equal(r->body, "kept-quiet"); /* the key is still set */
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

/* A guard that answers on its own: the answer still carries the id. */
static void id_on_short_circuit(void **state)
{
    (void)state;
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_use_request_id(app, NULL, NULL), VIE_OK);
    vie_middleware guard = {.name = "deny", .phase = VIE_GUARD, .before = deny};
    assert_int_equal(vie_use(app, &guard, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/id", show_id, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    const char *h[] = {"X-Request-Id: denied-1", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/id", h, NULL, 0);
    assert_int_equal(r->status, 401);
    assert_string_equal(vie_test_header(r, "X-Request-Id"), "denied-1");
    assert_int_equal(r->n_trail, 2);
    assert_string_equal(r->trail[0].layer, "request_id"); /* the default name */
    vie_test_response_free(r);
    vie_test_end(app);
    vie_app_free(app);
}

static void refuse(vie_app *app, const vie_request_id_opts *o, const char *needle)
{
    capture k;
    capture_begin(&k);
    vie_layer_opts lo = {.name = "rid.bad"};
    int rc = vie_use_request_id(app, &lo, o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    if (!log_has_line(log, "request_id rid.bad", needle, NULL))
        fail_msg("no log line naming the layer and \"%s\" in:\n%s", needle, log);
    free(log);
}

static void bad_options_refused(void **state)
{
    (void)state;
    vie_app *app = vie_app_new(NULL);
    vie_request_id_opts o;
    const char *bad[] = {"X Request", "", "Content-Length", "X-Id:", "X-\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vie_request_id_opts_init(&o);
        o.header = bad[i];
        refuse(app, &o, "option header");
    }
    char long_name[80];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    o.header = long_name;
    refuse(app, &o, "longer than 64");
    capture k;
    capture_begin(&k);
    int rc = vie_use_request_id(NULL, NULL, NULL);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    assert_true(log_has_line(log, "request_id", "app is NULL", NULL));
    free(log);
    /* Nothing half-registered: the app still freezes with no layer. */
    assert_int_equal(vie_app_freeze(app), VIE_OK);
    assert_int_equal(vie_use_request_id(app, NULL, NULL), VIE_EFROZEN);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generated_when_absent),
        cmocka_unit_test(seeded_ids_repeat),
        cmocka_unit_test(hex_ids_shape),
        cmocka_unit_test(forked_workers_differ_after_reseed),
        cmocka_unit_test(incoming_kept_exactly),
        cmocka_unit_test(bad_ids_replaced),
        cmocka_unit_test(untrusted_incoming_ignored),
        cmocka_unit_test(custom_header_and_no_echo),
        cmocka_unit_test(id_on_short_circuit),
        cmocka_unit_test(bad_options_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
