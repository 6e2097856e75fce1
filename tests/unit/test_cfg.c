/* Unit tests for the YAML config loader and its typed readers
 * (src/config/cfg.h): node positions, ${VAR} substitution, the
 * vie.<env>.yaml overlay and its merge, cfg_find, every reader's accepted
 * and refused values with the exact error lines, unknown keys with "did
 * you mean", and the refusals of the loader (duplicate keys, syntax
 * errors, a second document, a top level that is not a map). Files go to
 * a mkdtemp directory removed at the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/cfg.h"

static char dir[64];
static char paths[16][128];
static int n_paths;

/* Write text to dir/name; returns the path (kept for the cleanup). */
static const char *write_file(const char *name, const char *text)
{
    assert_true(n_paths < 16);
    char *path = paths[n_paths++];
    snprintf(path, sizeof paths[0], "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int group_setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vie_cfg_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < n_paths; i++)
        unlink(paths[i]);
    return rmdir(dir);
}

/* Fail with every error line when a load that should work does not. */
static void load_ok(cfg_ctx *cx, const char *text)
{
    int rc = cfg_load_text(cx, "t.yaml", text);
    if (rc != 0) cfg_print_errors(cx, stderr);
    assert_int_equal(rc, 0);
    assert_non_null(cx->root);
    assert_int_equal(cx->errs.n, 0);
}

/* The load fails with exactly one error line, line. */
static void load_fails(const char *text, const char *line)
{
    cfg_ctx cx;
    assert_int_equal(cfg_load_text(&cx, "t.yaml", text), -1);
    assert_null(cx.root);
    if (cx.errs.n != 1) cfg_print_errors(&cx, stderr);
    assert_int_equal(cx.errs.n, 1);
    assert_string_equal(cx.errs.lines[0], line);
    cfg_free(&cx);
}

/* ------------------------------------------------------------------ */
/* Reading one value "v: VALUE" through a reader                       */

static cfg_ctx vcx;
static cfg_params vp;

/* Load "v: value" as t.yaml and read its top level as 'thing "x"': the
 * value starts at 1:4. */
static void value(const char *v)
{
    char text[512];
    cfg_free(&vcx);
    snprintf(text, sizeof text, "v: %s\n", v);
    load_ok(&vcx, text);
    cfg_params_init(&vp, &vcx, vcx.root, "thing \"x\"");
}

/* Exactly one error since value(), and its text. */
static void one_error(const char *line)
{
    if (vcx.errs.n != 1) cfg_print_errors(&vcx, stderr);
    assert_int_equal(vcx.errs.n, 1);
    assert_string_equal(vcx.errs.lines[0], line);
    assert_int_equal(vp.errors, 1);
}

static void no_error(void)
{
    if (vcx.errs.n) cfg_print_errors(&vcx, stderr);
    assert_int_equal(vcx.errs.n, 0);
    assert_int_equal(cfg_params_finish(&vp), 0);
}

static int value_teardown(void **state)
{
    (void)state;
    cfg_free(&vcx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The tree                                                            */

static void test_positions(void **state)
{
    (void)state;
    cfg_ctx cx;
    load_ok(&cx, "# a comment\n"
                 "server:\n"
                 "  listen: \"127.0.0.1:8080\"\n"
                 "  timeouts: {request: 60s, header: 10s}\n"
                 "  empty:\n"
                 "list:\n"
                 "  - a\n"
                 "  - 'b'\n"
                 "nulls: [~, null, x]\n");
    const cfg_node *root = cx.root;
    assert_int_equal(root->kind, CFG_MAP);
    assert_int_equal(root->n, 3);
    assert_string_equal(cx.files[0], "t.yaml");
    assert_int_equal(cx.n_files, 1);

    const cfg_node *server = cfg_member(root, "server");
    assert_non_null(server);
    assert_int_equal(server->kind, CFG_MAP);
    assert_int_equal(server->key_mark.line, 2);
    assert_int_equal(server->key_mark.col, 1);
    assert_int_equal(server->mark.line, 3); /* a block map starts at its first key */
    assert_int_equal(server->mark.col, 3);

    const cfg_node *listen = cfg_member(server, "listen");
    assert_int_equal(listen->kind, CFG_SCALAR);
    assert_string_equal(listen->text, "127.0.0.1:8080");
    assert_true(listen->quoted);
    assert_string_equal(listen->mark.file, "t.yaml");
    assert_int_equal(listen->mark.line, 3);
    assert_int_equal(listen->mark.col, 11);
    assert_string_equal(listen->key, "listen");
    assert_int_equal(listen->key_mark.col, 3);

    const cfg_node *t = cfg_member(server, "timeouts");
    assert_int_equal(t->mark.line, 4);
    assert_int_equal(t->mark.col, 13); /* the '{' */
    const cfg_node *h = cfg_member(t, "header");
    assert_string_equal(h->text, "10s");
    assert_false(h->quoted);
    assert_int_equal(h->mark.col, 36);

    const cfg_node *e = cfg_member(server, "empty");
    assert_int_equal(e->kind, CFG_NULL);
    assert_null(e->text);
    assert_int_equal(e->mark.line, 5); /* an empty value points at its key */

    const cfg_node *list = cfg_member(root, "list");
    assert_int_equal(list->kind, CFG_SEQ);
    assert_int_equal(list->n, 2);
    assert_string_equal(list->first->text, "a");
    assert_null(list->first->key);
    assert_int_equal(list->first->next->mark.line, 8);
    assert_int_equal(list->first->next->mark.col, 5);
    assert_true(list->first->next->quoted);

    const cfg_node *nulls = cfg_member(root, "nulls");
    assert_int_equal(nulls->first->kind, CFG_NULL);
    assert_int_equal(nulls->first->next->kind, CFG_NULL);
    assert_int_equal(nulls->first->next->next->kind, CFG_SCALAR);

    assert_null(cfg_member(root, "nope"));
    assert_null(cfg_member(list, "a"));
    assert_string_equal(cfg_kind_name(server), "a map");
    assert_string_equal(cfg_kind_name(list), "a list");
    assert_string_equal(cfg_kind_name(listen), "a string");
    assert_string_equal(cfg_kind_name(e), "nothing");
    cfg_free(&cx);
}

static void test_aliases_and_empty(void **state)
{
    (void)state;
    cfg_ctx cx;
    load_ok(&cx, "base: &b {a: 1, b: [x, y]}\n"
                 "copy: *b\n");
    const cfg_node *copy = cfg_member(cx.root, "copy");
    assert_int_equal(copy->kind, CFG_MAP);
    assert_int_equal(copy->mark.line, 2); /* where the alias is */
    assert_string_equal(cfg_find(cx.root, "copy.b.1")->text, "y");
    assert_string_equal(copy->key, "copy");
    cfg_free(&cx);

    /* an empty file, or one with only comments, is an empty map */
    load_ok(&cx, "");
    assert_int_equal(cx.root->kind, CFG_MAP);
    assert_int_equal(cx.root->n, 0);
    cfg_free(&cx);
    load_ok(&cx, "# nothing yet\n");
    assert_int_equal(cx.root->n, 0);
    cfg_free(&cx);

    load_fails("a: *nope\n", "t.yaml:1:4: alias \"*nope\" refers to no anchor \"&nope\" before it");
    load_fails("a: &x [1, *x]\n", "t.yaml:1:11: alias \"*x\" is inside the value it refers to");
    /* expanding aliases has a budget */
    cfg_ctx big;
    assert_int_equal(cfg_load_text(&big, "t.yaml",
                                   "a: &a [1,2,3,4,5,6,7,8,9,10]\n"
                                   "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                                   "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                                   "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                                   "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"),
                     -1);
    assert_int_equal(big.errs.n, 1);
    assert_non_null(strstr(big.errs.lines[0], "aliases expanding too much"));
    cfg_free(&big);
}

static void test_refusals(void **state)
{
    (void)state;
    load_fails("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key \"a\" (first at t.yaml:1:1)");
    load_fails("m: {x: 1, x: 2}\n", "t.yaml:1:11: duplicate key \"x\" (first at t.yaml:1:5)");
    load_fails("- a\n- b\n", "t.yaml:1:1: expected a map at the top level, got a list");
    load_fails("just text\n", "t.yaml:1:1: expected a map at the top level, got a string");
    load_fails("a: 1\n---\nb: 2\n",
               "t.yaml:2:1: a second YAML document is not allowed: the config is one document");
    load_fails("a: 1\n...\nb: 2\n",
               "t.yaml:3:1: a second YAML document is not allowed: the config is one document");
    load_fails("{a: 1}: 2\n", "t.yaml:1:1: expected a string as a key, got a map");
    load_fails("a: \"x\\0y\"\n", "t.yaml:1:4: a NUL character is not allowed in a value");
    /* UTF-8 only; the second also made libfyaml 0.7.12 loop forever */
    load_fails("a: 1\nb: caf\xc3\xa9 \xff\n",
               "t.yaml:2:9: invalid UTF-8 (byte 0xff): the config must be UTF-8 text");
    load_fails("a: b\n%\x90",
               "t.yaml:2:2: invalid UTF-8 (byte 0x90): the config must be UTF-8 text");
    load_fails("a: \xc0\xaf\n",
               "t.yaml:1:4: invalid UTF-8 (byte 0xc0): the config must be UTF-8 text");
    load_fails("a: \xed\xa0\x80\n",
               "t.yaml:1:4: invalid UTF-8 (byte 0xed): the config must be UTF-8 text");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    /* libfyaml's message, one line, with its position */
    load_fails("a:\n\t- x\n",
               "t.yaml:2:1: invalid YAML: tab character may not be used as indentation");
    load_fails("x: [a, }\n", "t.yaml:1:8: invalid YAML: mismatched flow mapping end");
    load_fails("a: [1, 2\n", "t.yaml:2:1: invalid YAML: flow sequence without a closing bracket");
    load_fails("a: \"open\n",
               "t.yaml:1:5: invalid YAML: double-quoted scalar without closing quote");
    load_fails("a: b: c\n",
               "t.yaml:1:5: invalid YAML: invalid nested block mapping on the same line");
}

/* ------------------------------------------------------------------ */
/* ${VAR}                                                              */

static void test_env(void **state)
{
    (void)state;
    setenv("VIE_T_A", "abc", 1);
    setenv("VIE_T_EMPTY", "", 1);
    unsetenv("VIE_T_NOPE");
    cfg_ctx cx;
    load_ok(&cx, "a: ${VIE_T_A}\n"
                 "b: x${VIE_T_A}y${VIE_T_A}\n"
                 "c: ${VIE_T_NOPE:-dflt}\n"
                 "d: ${VIE_T_EMPTY:-dflt}\n"
                 "e: \"${VIE_T_A}\"\n"
                 "f: $${VIE_T_A}\n"
                 "g: $$x $y $\n"
                 "h: ${VIE_T_EMPTY}\n"
                 "i: ${VIE_T_NOPE:-}\n"
                 "${VIE_T_A}: keys are not substituted\n"
                 "j: |\n  ${VIE_T_A}\n");
    const cfg_node *r = cx.root;
    assert_string_equal(cfg_member(r, "a")->text, "abc");
    assert_string_equal(cfg_member(r, "b")->text, "xabcyabc");
    assert_string_equal(cfg_member(r, "c")->text, "dflt");
    assert_string_equal(cfg_member(r, "d")->text, "dflt");
    assert_string_equal(cfg_member(r, "e")->text, "abc");
    assert_true(cfg_member(r, "e")->quoted);
    assert_string_equal(cfg_member(r, "f")->text, "${VIE_T_A}");
    assert_string_equal(cfg_member(r, "g")->text, "$$x $y $");
    assert_int_equal(cfg_member(r, "h")->kind, CFG_SCALAR);
    assert_string_equal(cfg_member(r, "h")->text, "");
    assert_string_equal(cfg_member(r, "i")->text, "");
    assert_non_null(cfg_member(r, "${VIE_T_A}"));
    assert_string_equal(cfg_member(r, "j")->text, "abc\n");
    cfg_free(&cx);

    load_fails("a: 1\nport: ${VIE_T_NOPE}\n",
               "t.yaml:2:7: environment variable \"VIE_T_NOPE\" is not set (use "
               "${VIE_T_NOPE:-default} to give a default)");
    load_fails("a: \"x ${VIE_T_NOPE}\"\n",
               "t.yaml:1:4: environment variable \"VIE_T_NOPE\" is not set (use "
               "${VIE_T_NOPE:-default} to give a default)");
    load_fails("a: ${VIE_T_A\n",
               "t.yaml:1:4: unterminated \"${\" in \"${VIE_T_A\" (write \"$${\" for a literal "
               "\"${\")");
    load_fails("a: ${9x}\n", "t.yaml:1:4: invalid variable name \"9x\" in \"${...}\"");
    load_fails("a: ${}\n", "t.yaml:1:4: invalid variable name \"\" in \"${...}\"");

    /* every bad value is reported, not just the first */
    cfg_ctx two;
    assert_int_equal(cfg_load_text(&two, "t.yaml", "a: ${VIE_T_NOPE}\nb: ${VIE_T_NOPE2}\n"), -1);
    assert_int_equal(two.errs.n, 2);
    assert_non_null(strstr(two.errs.lines[1], "t.yaml:2:4: environment variable \"VIE_T_NOPE2\""));
    cfg_free(&two);
}

/* ------------------------------------------------------------------ */
/* Files and the overlay                                               */

static void test_overlay(void **state)
{
    (void)state;
    const char *base = write_file("vie.yaml", "server:\n"
                                              "  listen: 127.0.0.1:8080\n"
                                              "  timeouts:\n"
                                              "    request: 60s\n"
                                              "    header: 10s\n"
                                              "  workers: 2\n"
                                              "pipeline: [rid, log]\n"
                                              "routes:\n"
                                              "  - path: /a\n"
                                              "  - path: /b\n");
    const char *over = write_file("vie.prod.yaml", "server:\n"
                                                   "  timeouts:\n"
                                                   "    request: 5s\n"
                                                   "  workers: ~\n"
                                                   "  debug_endpoints: true\n"
                                                   "pipeline: [log]\n"
                                                   "routes: {}\n");
    cfg_ctx cx;
    int rc = cfg_load(&cx, base, "prod", true);
    if (rc) cfg_print_errors(&cx, stderr);
    assert_int_equal(rc, 0);
    assert_int_equal(cx.n_files, 2);
    assert_string_equal(cx.files[0], base);
    assert_string_equal(cx.files[1], over);

    /* maps merge key by key: the base's header stays, request comes from
     * the overlay with the overlay's position */
    const cfg_node *req = cfg_find(cx.root, "server.timeouts.request");
    assert_string_equal(req->text, "5s");
    assert_string_equal(req->mark.file, over);
    assert_int_equal(req->mark.line, 3);
    assert_int_equal(req->mark.col, 14);
    const cfg_node *hdr = cfg_find(cx.root, "server.timeouts.header");
    assert_string_equal(hdr->text, "10s");
    assert_string_equal(hdr->mark.file, base);
    assert_int_equal(hdr->mark.line, 5);
    assert_string_equal(cfg_find(cx.root, "server.listen")->mark.file, base);
    /* a null replaces (so readers see the default again); new keys come last */
    assert_int_equal(cfg_find(cx.root, "server.workers")->kind, CFG_NULL);
    const cfg_node *server = cfg_member(cx.root, "server");
    assert_int_equal(server->n, 4);
    assert_string_equal(server->first->key, "listen");
    assert_string_equal(server->first->next->next->key, "workers");
    assert_string_equal(server->first->next->next->next->key, "debug_endpoints");
    /* lists are replaced whole, and anything replaces anything */
    const cfg_node *pipe = cfg_member(cx.root, "pipeline");
    assert_int_equal(pipe->n, 1);
    assert_string_equal(pipe->first->text, "log");
    assert_string_equal(pipe->mark.file, over);
    assert_int_equal(cfg_member(cx.root, "routes")->kind, CFG_MAP);
    cfg_free(&cx);

    /* no env: the base alone */
    assert_int_equal(cfg_load(&cx, base, NULL, true), 0);
    assert_int_equal(cx.n_files, 1);
    assert_string_equal(cfg_find(cx.root, "server.timeouts.request")->text, "60s");
    cfg_free(&cx);

    /* a missing overlay: skipped unless strict */
    assert_int_equal(cfg_load(&cx, base, "staging", false), 0);
    assert_int_equal(cx.n_files, 1);
    cfg_free(&cx);
    assert_int_equal(cfg_load(&cx, base, "staging", true), -1);
    assert_null(cx.root);
    assert_int_equal(cx.errs.n, 1);
    char want[300];
    snprintf(want, sizeof want,
             "%s/vie.staging.yaml: cannot read the config: No such file or directory", dir);
    assert_string_equal(cx.errs.lines[0], want);
    cfg_free(&cx);

    /* a missing base */
    char nope[128];
    snprintf(nope, sizeof nope, "%s/nope.yaml", dir);
    assert_int_equal(cfg_load(&cx, nope, NULL, false), -1);
    snprintf(want, sizeof want, "%s: cannot read the config: No such file or directory", nope);
    assert_int_equal(cx.errs.n, 1);
    assert_string_equal(cx.errs.lines[0], want);
    cfg_free(&cx);
    cfg_free(&cx); /* twice is fine */

    assert_int_equal(cfg_load(&cx, base, "../x", true), -1);
    assert_string_equal(cx.errs.lines[0],
                        "invalid environment name \"../x\": expected letters, digits, '_' or '-'");
    cfg_free(&cx);

    /* errors in the overlay carry its name */
    write_file("vie.bad.yaml", "server:\n  listen: [\n");
    assert_int_equal(cfg_load(&cx, base, "bad", true), -1);
    snprintf(want, sizeof want,
             "%s/vie.bad.yaml:3:1: invalid YAML: flow sequence without a closing bracket", dir);
    assert_int_equal(cx.errs.n, 1);
    assert_string_equal(cx.errs.lines[0], want);
    cfg_free(&cx);

    /* a NUL byte in a file */
    const char *nul_path = write_file("nul.yaml", "");
    FILE *f = fopen(nul_path, "w");
    assert_non_null(f);
    fwrite("a: 1\nb: x\0y\n", 1, 13, f);
    fclose(f);
    assert_int_equal(cfg_load(&cx, nul_path, NULL, false), -1);
    snprintf(want, sizeof want, "%s:2:5: a NUL byte (0x00): the config must be UTF-8 text",
             nul_path);
    assert_int_equal(cx.errs.n, 1);
    assert_string_equal(cx.errs.lines[0], want);
    cfg_free(&cx);

    /* .yml, and a name without an extension */
    const char *yml = write_file("app.yml", "a: 1\nb: 2\n");
    write_file("app.dev.yml", "b: 3\n");
    assert_int_equal(cfg_load(&cx, yml, "dev", true), 0);
    assert_string_equal(cfg_member(cx.root, "b")->text, "3");
    assert_string_equal(cfg_member(cx.root, "a")->text, "1");
    cfg_free(&cx);
    const char *plain = write_file("conf", "a: 1\n");
    write_file("conf.dev", "a: 2\n");
    assert_int_equal(cfg_load(&cx, plain, "dev", true), 0);
    assert_string_equal(cfg_member(cx.root, "a")->text, "2");
    cfg_free(&cx);
}

/* ------------------------------------------------------------------ */
/* cfg_find                                                            */

static void test_find(void **state)
{
    (void)state;
    cfg_ctx cx;
    load_ok(&cx, "server:\n"
                 "  listen: 127.0.0.1:8080\n"
                 "  timeouts: {request: 60s}\n"
                 "middleware:\n"
                 "  - name: auth\n"
                 "    type: basic_auth\n"
                 "    realm: r\n"
                 "  - type: request_id\n"
                 "    header: X-Id\n"
                 "routes:\n"
                 "  - path: /hello\n"
                 "    timeout: 2s\n"
                 "  - path: /page.html\n"
                 "    timeout: 3s\n"
                 "  - path: /x\n");
    const cfg_node *r = cx.root;
    assert_string_equal(cfg_find(r, "server.listen")->text, "127.0.0.1:8080");
    assert_string_equal(cfg_find(r, "server.timeouts.request")->text, "60s");
    assert_int_equal(cfg_find(r, "server")->kind, CFG_MAP);
    assert_ptr_equal(cfg_find(r, ""), r);
    assert_string_equal(cfg_find(r, "routes.2.path")->text, "/x");
    assert_string_equal(cfg_find(r, "routes.0.timeout")->text, "2s");
    assert_string_equal(cfg_find(r, "middleware.auth.realm")->text, "r");
    const cfg_node *realm = cfg_find(r, "middleware.auth.realm");
    assert_int_equal(realm->mark.line, 7);
    assert_int_equal(realm->mark.col, 12);
    /* no name: the type is the name */
    assert_string_equal(cfg_find(r, "middleware.request_id.header")->text, "X-Id");
    /* by path, dots and all */
    assert_string_equal(cfg_find(r, "routes./hello.timeout")->text, "2s");
    assert_string_equal(cfg_find(r, "routes./page.html.timeout")->text, "3s");
    assert_null(cfg_find(r, "server.nope"));
    assert_null(cfg_find(r, "routes.3"));
    assert_null(cfg_find(r, "routes.0.timeout.x"));
    assert_null(cfg_find(r, "middleware.basic_auth.realm")); /* it has a name */
    assert_null(cfg_find(r, "server.listenx"));
    assert_null(cfg_find(NULL, "a"));
    cfg_free(&cx);
}

/* ------------------------------------------------------------------ */
/* Readers                                                             */

static void test_str(void **state)
{
    (void)state;
    const char *s;
    value("hello");
    assert_true(cfg_get_str(&vp, "v", &s, "d"));
    assert_string_equal(s, "hello");
    no_error();
    value("123");
    assert_true(cfg_get_str(&vp, "v", &s, "d"));
    assert_string_equal(s, "123");
    value("~");
    assert_false(cfg_get_str(&vp, "v", &s, "d"));
    assert_string_equal(s, "d");
    assert_false(cfg_has(&vp, "v"));
    no_error();
    value("{a: 1}");
    assert_false(cfg_get_str(&vp, "v", &s, "d"));
    assert_string_equal(s, "d");
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a string, got a map");
    value("[a]");
    assert_false(cfg_get_str(&vp, "v", &s, NULL));
    assert_null(s);
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a string, got a list");
    /* absent */
    value("1");
    assert_false(cfg_get_str(&vp, "w", &s, "d"));
    assert_string_equal(s, "d");
    assert_true(cfg_has(&vp, "v"));
    assert_false(cfg_has(&vp, "w"));
}

static void test_bool(void **state)
{
    (void)state;
    static const char *const yes[] = {"true", "yes", "on", "True", "YES"};
    static const char *const no[] = {"false", "no", "off", "False", "OFF"};
    bool b;
    for (size_t i = 0; i < 5; i++) {
        value(yes[i]);
        assert_true(cfg_get_bool(&vp, "v", &b, false));
        assert_true(b);
        no_error();
        value(no[i]);
        assert_true(cfg_get_bool(&vp, "v", &b, true));
        assert_false(b);
        no_error();
    }
    value("maybe");
    assert_false(cfg_get_bool(&vp, "v", &b, true));
    assert_true(b);
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected true or false, got \"maybe\"");
    value("\"true\"");
    assert_false(cfg_get_bool(&vp, "v", &b, false));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected true or false, got a quoted string "
              "\"true\"");
    value("{a: 1}");
    assert_false(cfg_get_bool(&vp, "v", &b, false));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected true or false, got a map");
    value("1");
    assert_false(cfg_get_bool(&vp, "v", &b, false));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected true or false, got \"1\"");
}

static void test_integers(void **state)
{
    (void)state;
    uint32_t u;
    uint64_t u64;
    int i;
    value("8080");
    assert_true(cfg_get_u32(&vp, "v", &u, 1, 65535, 1));
    assert_int_equal(u, 8080);
    no_error();
    value("007");
    assert_true(cfg_get_u32(&vp, "v", &u, 1, 65535, 1));
    assert_int_equal(u, 7);

    static const struct {
        const char *in, *got;
    } bad[] = {
        {"80x", "\"80x\""},
        {"0", "\"0\""},
        {"65536", "\"65536\""},
        {"-1", "\"-1\""},
        {"+1", "\"+1\""},
        {"0x10", "\"0x10\""},
        {"1.0", "\"1.0\""},
        {"1_000", "\"1_000\""},
        {"\"80\"", "a quoted string \"80\""},
        {"[1]", "a list"},
        {"99999999999999999999999", "\"99999999999999999999999\""},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        value(bad[k].in);
        assert_false(cfg_get_u32(&vp, "v", &u, 1, 65535, 42));
        assert_int_equal(u, 42);
        char want[256];
        snprintf(want, sizeof want,
                 "t.yaml:1:4: thing \"x\": key \"v\": expected an integer from 1 to 65535, got %s",
                 bad[k].got);
        one_error(want);
    }

    value("18446744073709551615");
    assert_true(cfg_get_u64(&vp, "v", &u64, 0, UINT64_MAX, 0));
    assert_true(u64 == UINT64_MAX);
    value("18446744073709551616");
    assert_false(cfg_get_u64(&vp, "v", &u64, 0, UINT64_MAX, 5));
    assert_true(u64 == 5);
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a non-negative integer, got "
              "\"18446744073709551616\"");
    value("3");
    assert_false(cfg_get_u64(&vp, "v", &u64, 4, UINT64_MAX, 5));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected an integer of at least 4, got \"3\"");
    value("4294967296");
    assert_false(cfg_get_u32(&vp, "v", &u, 0, UINT32_MAX, 0));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a non-negative integer, got "
              "\"4294967296\"");

    value("-5");
    assert_true(cfg_get_int(&vp, "v", &i, -10, 10, 0));
    assert_int_equal(i, -5);
    no_error();
    value("-11");
    assert_false(cfg_get_int(&vp, "v", &i, -10, 10, 3));
    assert_int_equal(i, 3);
    one_error(
        "t.yaml:1:4: thing \"x\": key \"v\": expected an integer from -10 to 10, got \"-11\"");
    value("--1");
    assert_false(cfg_get_int(&vp, "v", &i, -10, 10, 3));
    one_error(
        "t.yaml:1:4: thing \"x\": key \"v\": expected an integer from -10 to 10, got \"--1\"");
    value("-2147483648");
    assert_true(cfg_get_int(&vp, "v", &i, INT_MIN, INT_MAX, 0));
    assert_int_equal(i, INT_MIN);
    value("2147483648");
    assert_false(cfg_get_int(&vp, "v", &i, INT_MIN, INT_MAX, 0));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected an integer, got \"2147483648\"");
}

static void test_double_percent(void **state)
{
    (void)state;
    double d;
    value("0.25");
    assert_true(cfg_get_double(&vp, "v", &d, 0, 1, 0));
    assert_true(d == 0.25);
    value("1e-1");
    assert_true(cfg_get_double(&vp, "v", &d, 0, 1, 0));
    assert_true(d == 0.1);
    value("-0.5");
    assert_true(cfg_get_double(&vp, "v", &d, -1, 1, 0));
    assert_true(d == -0.5);
    static const char *const bad[] = {"1.5", "nan", ".inf", "1e999", ".5", "0x1p3", "1,5"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        value(bad[k]);
        assert_false(cfg_get_double(&vp, "v", &d, 0, 1, 0.75));
        assert_true(d == 0.75);
        char want[200];
        snprintf(want, sizeof want,
                 "t.yaml:1:4: thing \"x\": key \"v\": expected a number from 0 to 1, got \"%s\"",
                 bad[k]);
        one_error(want);
    }
    value("'0.5'");
    assert_false(cfg_get_double(&vp, "v", &d, 0, 1, 0));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a number from 0 to 1, got a quoted "
              "string \"0.5\"");

    static const struct {
        const char *in;
        double out;
    } ok[] = {{"5", 5}, {"2.5", 2.5}, {"5%", 5}, {"0", 0}, {"100%", 100}, {"\"7.5%\"", 7.5}};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        value(ok[k].in);
        assert_true(cfg_get_percent(&vp, "v", &d, -1));
        assert_true(d == ok[k].out);
        no_error();
    }
    static const char *const badp[] = {"101", "-1", "5 %", "abc", "5%%"};
    for (size_t k = 0; k < sizeof badp / sizeof badp[0]; k++) {
        value(badp[k]);
        assert_false(cfg_get_percent(&vp, "v", &d, 1));
        assert_true(d == 1);
        char want[200];
        snprintf(want, sizeof want,
                 "t.yaml:1:4: thing \"x\": key \"v\": expected a percentage from 0 to 100, got "
                 "\"%s\"",
                 badp[k]);
        one_error(want);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint32_t ms;
    } ok[] = {{"250", 250},    {"250ms", 250},   {"2s", 2000},  {"1.5s", 1500}, {"5m", 300000},
              {"1h", 3600000}, {"\"2s\"", 2000}, {"2 s", 2000}, {"0.5ms", 1},   {"1.25m", 75000}};
    uint32_t ms;
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        value(ok[k].in);
        assert_true(cfg_get_ms(&vp, "v", &ms, 1, 3600000, 7));
        assert_int_equal(ms, ok[k].ms);
        no_error();
    }
    static const struct {
        const char *in;
        bool shape; /* well formed, out of range */
    } bad[] = {{"2h", true},    {"0", true},    {"0ms", true},  {"61m", true},
               {"2sec", false}, {"1.5", false}, {"-1s", false}, {"s", false},
               {"1d", false},   {"1e3", false}, {"", false}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        if (!*bad[k].in)
            value("''");
        else
            value(bad[k].in);
        assert_false(cfg_get_ms(&vp, "v", &ms, 1, 3600000, 7));
        assert_int_equal(ms, 7);
        char want[300];
        snprintf(want, sizeof want,
                 "t.yaml:1:4: thing \"x\": key \"v\": expected a duration from 1ms to 1h, got "
                 "\"%s\"%s",
                 bad[k].in, bad[k].shape ? "" : " (a number of ms, s, m or h: 250ms, 1.5s)");
        one_error(want);
    }
    value("{a: 1}");
    assert_false(cfg_get_ms(&vp, "v", &ms, 1, 3600000, 7));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a duration from 1ms to 1h, got a map");
    value("100ms");
    assert_false(cfg_get_ms(&vp, "v", &ms, 1000, 90000, 7));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a duration from 1s to 90s, got "
              "\"100ms\"");
    value("50000h");
    assert_false(cfg_get_ms(&vp, "v", &ms, 0, UINT32_MAX, 7));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a duration of at least 0ms, got "
              "\"50000h\"");
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t b;
    } ok[] = {{"512", 512},     {"16k", 16384},      {"16K", 16384},    {"16KiB", 16384},
              {"1KB", 1000},    {"1M", 1048576},     {"1MiB", 1048576}, {"1MB", 1000000},
              {"1.5KiB", 1536}, {"16MiB", 16777216}, {"512B", 512},     {"\"2 KiB\"", 2048}};
    uint64_t b;
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        value(ok[k].in);
        assert_true(cfg_get_bytes(&vp, "v", &b, 1, 16 << 20, 7));
        assert_true(b == ok[k].b);
        no_error();
    }
    value("1GiB");
    assert_true(cfg_get_bytes(&vp, "v", &b, 0, UINT64_MAX, 7));
    assert_true(b == 1ULL << 30);
    value("2GB");
    assert_true(cfg_get_bytes(&vp, "v", &b, 0, UINT64_MAX, 7));
    assert_true(b == 2000000000ULL);
    static const struct {
        const char *in;
        bool shape;
    } bad[] = {{"17MiB", true}, {"0", true},   {"1G", true},    {"12XB", false},
               {"1.5", false},  {"-1", false}, {"1kib", false}, {"KiB", false}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        value(bad[k].in);
        assert_false(cfg_get_bytes(&vp, "v", &b, 1, 16 << 20, 7));
        assert_true(b == 7);
        char want[300];
        snprintf(want, sizeof want,
                 "t.yaml:1:4: thing \"x\": key \"v\": expected a size from 1 to 16MiB, got "
                 "\"%s\"%s",
                 bad[k].in,
                 bad[k].shape ? ""
                              : " (bytes, or a number with k, KiB, KB, M, MiB, MB, G, GiB or GB)");
        one_error(want);
    }
    value("99999999999G");
    assert_false(cfg_get_bytes(&vp, "v", &b, 0, UINT64_MAX, 7));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a size, got \"99999999999G\"");
    value("[1]");
    assert_false(cfg_get_bytes(&vp, "v", &b, 0, UINT64_MAX, 7));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a size, got a list");
}

static void test_enum(void **state)
{
    (void)state;
    static const char *const modes[] = {"recover", "exit", NULL};
    static const char *const phases[] = {"observe", "guard", "app", NULL};
    int i;
    value("exit");
    assert_true(cfg_get_enum(&vp, "v", &i, modes, 0));
    assert_int_equal(i, 1);
    no_error();
    value("'recover'");
    assert_true(cfg_get_enum(&vp, "v", &i, modes, 1));
    assert_int_equal(i, 0);
    value("exti");
    assert_false(cfg_get_enum(&vp, "v", &i, modes, 0));
    assert_int_equal(i, 0);
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected one of recover|exit, got \"exti\"; "
              "did you mean \"exit\"?");
    value("gaurd");
    assert_false(cfg_get_enum(&vp, "v", &i, phases, 2));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected one of observe|guard|app, got "
              "\"gaurd\"; did you mean \"guard\"?");
    value("zzz");
    assert_false(cfg_get_enum(&vp, "v", &i, phases, 2));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected one of observe|guard|app, got \"zzz\"");
    value("{a: 1}");
    assert_false(cfg_get_enum(&vp, "v", &i, modes, 0));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected one of recover|exit, got a map");
    value("Exit");
    assert_false(cfg_get_enum(&vp, "v", &i, modes, 0));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected one of recover|exit, got \"Exit\"; "
              "did you mean \"exit\"?");
}

static void test_strv(void **state)
{
    (void)state;
    const char *const *v;
    value("[a, b]");
    assert_true(cfg_get_strv(&vp, "v", &v));
    assert_string_equal(v[0], "a");
    assert_string_equal(v[1], "b");
    assert_null(v[2]);
    no_error();
    value("one");
    assert_true(cfg_get_strv(&vp, "v", &v));
    assert_string_equal(v[0], "one");
    assert_null(v[1]);
    value("[]");
    assert_true(cfg_get_strv(&vp, "v", &v));
    assert_null(v[0]);
    value("~");
    assert_false(cfg_get_strv(&vp, "v", &v));
    assert_null(v);
    no_error();
    value("[a, {b: 1}]");
    assert_false(cfg_get_strv(&vp, "v", &v));
    assert_null(v);
    one_error("t.yaml:1:8: thing \"x\": key \"v.1\": expected a string, got a map");
    value("[a, ~]");
    assert_false(cfg_get_strv(&vp, "v", &v));
    one_error("t.yaml:1:8: thing \"x\": key \"v.1\": expected a string, got nothing");
    value("{a: 1}");
    assert_false(cfg_get_strv(&vp, "v", &v));
    one_error("t.yaml:1:4: thing \"x\": key \"v\": expected a list of strings, got a map");
}

static void test_node_require_error(void **state)
{
    (void)state;
    value("{a: 1}");
    const cfg_node *n = cfg_get_node(&vp, "v");
    assert_non_null(n);
    assert_int_equal(n->kind, CFG_MAP);
    assert_null(cfg_get_node(&vp, "w"));
    assert_true(cfg_require(&vp, "v"));
    assert_false(cfg_require(&vp, "realm"));
    one_error("t.yaml:1:1: thing \"x\": missing required key \"realm\"");

    value("1");
    cfg_error(&vp, "v", "cannot use %d here", 1);
    one_error("t.yaml:1:4: thing \"x\": key \"v\": cannot use 1 here");
    value("1");
    cfg_error(&vp, NULL, "something is wrong");
    one_error("t.yaml:1:1: thing \"x\": something is wrong");
    value("1");
    cfg_error(&vp, "absent", "needs %s", "a value");
    one_error("t.yaml:1:1: thing \"x\": key \"absent\": needs a value");

    /* init with something that is not a map */
    value("[1, 2]");
    cfg_params q;
    cfg_params_init(&q, &vcx, cfg_member(vcx.root, "v"), "route \"/a\"");
    assert_int_equal(q.errors, 1);
    assert_int_equal(vcx.errs.n, 1);
    assert_string_equal(vcx.errs.lines[0], "t.yaml:1:4: route \"/a\": expected a map, got a list");
    uint32_t u;
    assert_false(cfg_get_u32(&q, "x", &u, 0, 9, 4)); /* every key absent */
    assert_int_equal(u, 4);
    assert_int_equal(cfg_params_finish(&q), 1);
    /* NULL and a null node read as an empty map */
    cfg_params_init(&q, &vcx, NULL, NULL);
    assert_int_equal(cfg_params_finish(&q), 0);
    value("~");
    cfg_params_init(&q, &vcx, cfg_member(vcx.root, "v"), "x");
    assert_int_equal(cfg_params_finish(&q), 0);
    assert_int_equal(vcx.errs.n, 0);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    cfg_ctx cx;
    load_ok(&cx, "type: auth\n"
                 "realn: x\n"
                 "users: [a]\n"
                 "zzz: 1\n"
                 "Users: 2\n");
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"auth\"");
    const char *s;
    const char *const *v;
    cfg_get_str(&p, "type", &s, NULL);
    cfg_get_str(&p, "realm", &s, "r");
    cfg_get_strv(&p, "users", &v);
    assert_true(cfg_has(&p, "users")); /* asked twice: known once */
    assert_int_equal(p.n_known, 3);
    assert_int_equal(cfg_params_finish(&p), 3);
    assert_int_equal(cx.errs.n, 3);
    assert_string_equal(cx.errs.lines[0],
                        "t.yaml:2:1: unknown key \"realn\" in middleware \"auth\"; did you mean "
                        "\"realm\"?");
    assert_string_equal(cx.errs.lines[1], "t.yaml:4:1: unknown key \"zzz\" in middleware \"auth\"");
    assert_string_equal(cx.errs.lines[2],
                        "t.yaml:5:1: unknown key \"Users\" in middleware \"auth\"; did you mean "
                        "\"users\"?");
    cfg_free(&cx);

    /* the top level (no what), and nested maps through cfg_params_sub */
    load_ok(&cx, "sever: 1\n"
                 "server:\n"
                 "  timeouts: {reqest: 5s, header: 2x}\n"
                 "  limits: [1]\n");
    cfg_params_init(&p, &cx, cx.root, NULL);
    cfg_params srv, to, lim;
    cfg_params_sub(&p, "server", &srv);
    cfg_params_sub(&srv, "timeouts", &to);
    cfg_params_sub(&srv, "limits", &lim);
    uint32_t ms;
    cfg_get_ms(&to, "request", &ms, 1, 3600000, 1);
    cfg_get_ms(&to, "header", &ms, 1, 60000, 1);
    assert_int_equal(cfg_params_finish(&to), 2);
    assert_int_equal(cfg_params_finish(&lim), 0);
    assert_int_equal(cfg_params_finish(&srv), 1);
    assert_int_equal(cfg_params_finish(&p), 1);
    assert_int_equal(cx.errs.n, 4);
    assert_string_equal(cx.errs.lines[0],
                        "t.yaml:4:11: key \"server.limits\": expected a map, got a list");
    assert_string_equal(cx.errs.lines[1],
                        "t.yaml:3:34: key \"server.timeouts.header\": expected a duration from 1ms "
                        "to 1m, got \"2x\" (a number of ms, s, m or h: 250ms, 1.5s)");
    assert_string_equal(cx.errs.lines[2], "t.yaml:3:14: unknown key \"server.timeouts.reqest\"; "
                                          "did you mean \"server.timeouts.request\"?");
    assert_string_equal(cx.errs.lines[3], "t.yaml:1:1: unknown key \"sever\"; did you mean "
                                          "\"server\"?");
    cfg_free(&cx);

    /* one line per error, whatever the key holds */
    load_ok(&cx, "\"a\\nb\\\"c\": 1\n");
    cfg_params_init(&p, &cx, cx.root, "x\ty");
    assert_int_equal(cfg_params_finish(&p), 1);
    assert_string_equal(cx.errs.lines[0], "t.yaml:1:1: unknown key \"a\\nb\\\"c\" in x\\x09y");
    cfg_free(&cx);

    /* an absent sub map: its keys are absent, errors point at the parent */
    load_ok(&cx, "a: 1\n");
    cfg_params_init(&p, &cx, cx.root, "app");
    cfg_params_sub(&p, "server", &srv);
    assert_false(cfg_require(&srv, "listen"));
    assert_string_equal(cx.errs.lines[0],
                        "t.yaml:1:1: app: missing required key \"server.listen\"");
    cfg_free(&cx);
}

static void test_closest(void **state)
{
    (void)state;
    static const char *const names[] = {"realm", "users", "name", "timeout", NULL};
    assert_string_equal(cfg_closest("realn", names, 4), "realm");
    assert_string_equal(cfg_closest("raelm", names, 4), "realm"); /* a swap is one typo */
    assert_string_equal(cfg_closest("timeuot", names, 4), "timeout");
    assert_null(cfg_closest("tmeot", names, 4)); /* 2 typos in 5 letters: too far */
    assert_null(cfg_closest("xyz", names, 4));
    assert_null(cfg_closest("realm", names, 0));
    assert_string_equal(cfg_closest("nam", names, 99), "name"); /* stops at NULL */
    assert_null(cfg_closest(NULL, names, 4));
}

static void test_free_and_zeroed(void **state)
{
    (void)state;
    cfg_ctx cx;
    memset(&cx, 0, sizeof cx);
    cfg_error_at(&cx, NULL, "plain %s", "message");
    cfg_mark m = {"f.yaml", 0, 0};
    cfg_error_at(&cx, &m, "no line");
    m.line = 3;
    m.col = 9;
    cfg_error_at(&cx, &m, "with position");
    assert_int_equal(cx.errs.n, 3);
    assert_string_equal(cx.errs.lines[0], "plain message");
    assert_string_equal(cx.errs.lines[1], "f.yaml: no line");
    assert_string_equal(cx.errs.lines[2], "f.yaml:3:9: with position");
    char *s = cfg_strdup(&cx, "abc");
    assert_string_equal(s, "abc");
    unsigned char *z = cfg_alloc(&cx, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    /* many errors grow the list */
    for (int i = 0; i < 100; i++)
        cfg_error_at(&cx, NULL, "e%d", i);
    assert_string_equal(cx.errs.lines[102], "e99");
    cfg_free(&cx);
    cfg_free(&cx);
    assert_null(cx.mem);
    assert_int_equal(cx.errs.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_aliases_and_empty),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_find),
        cmocka_unit_test_teardown(test_str, value_teardown),
        cmocka_unit_test_teardown(test_bool, value_teardown),
        cmocka_unit_test_teardown(test_integers, value_teardown),
        cmocka_unit_test_teardown(test_double_percent, value_teardown),
        cmocka_unit_test_teardown(test_durations, value_teardown),
        cmocka_unit_test_teardown(test_sizes, value_teardown),
        cmocka_unit_test_teardown(test_enum, value_teardown),
        cmocka_unit_test_teardown(test_strv, value_teardown),
        cmocka_unit_test_teardown(test_node_require_error, value_teardown),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_closest),
        cmocka_unit_test(test_free_and_zeroed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
