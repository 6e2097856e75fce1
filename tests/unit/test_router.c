/* Unit tests for the radix router. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h"

/* ---- helpers ---- */

/* Distinct addresses to register as routes. */
static int R[64];

static void add_ok(vie_router *r, const char *method, const char *pattern, void *route)
{
    char err[256];
    router_error e = router_add(r, method, pattern, route, err, sizeof err);
    if (e != ROUTER_OK) fail_msg("router_add(%s %s) = %d: %s", method, pattern, e, err);
}

static router_result find(const vie_router *r, const char *method, const char *path,
                          router_match *m)
{
    return router_find(r, method, strlen(method), path, strlen(path), m);
}

/* Expect a match of route with the given params ("name=value" pairs). */
static void expect_found(const vie_router *r, const char *method, const char *path, void *route,
                         int n_params, ...)
{
    router_match m;
    router_result res = find(r, method, path, &m);
    if (res != ROUTER_FOUND) fail_msg("%s %s: result %d, expected found", method, path, res);
    if (m.route != route) fail_msg("%s %s: matched the wrong route", method, path);
    if ((int)m.n_params != n_params)
        fail_msg("%s %s: %u params, expected %d", method, path, m.n_params, n_params);
    va_list ap;
    va_start(ap, n_params);
    for (int i = 0; i < n_params; i++) {
        const char *name = va_arg(ap, const char *);
        const char *value = va_arg(ap, const char *);
        if (strcmp(m.params[i].name, name) != 0)
            fail_msg("%s %s: param %d named %s, expected %s", method, path, i, m.params[i].name,
                     name);
        if (m.params[i].raw_len != strlen(value) ||
            memcmp(m.params[i].raw, value, m.params[i].raw_len) != 0)
            fail_msg("%s %s: param %s = \"%.*s\", expected \"%s\"", method, path, name,
                     (int)m.params[i].raw_len, m.params[i].raw, value);
        /* raw points into the looked-up path */
        assert_true(m.params[i].raw >= path && m.params[i].raw <= path + strlen(path));
    }
    va_end(ap);
}

static void expect_not_found(const vie_router *r, const char *method, const char *path)
{
    router_match m;
    router_result res = find(r, method, path, &m);
    if (res != ROUTER_NOT_FOUND)
        fail_msg("%s %s: result %d, expected not found", method, path, res);
    assert_null(m.route);
}

static void expect_405(const vie_router *r, const char *method, const char *path, const char *allow)
{
    router_match m;
    router_result res = find(r, method, path, &m);
    if (res != ROUTER_METHOD_NOT_ALLOWED)
        fail_msg("%s %s: result %d, expected 405", method, path, res);
    assert_null(m.route);
    assert_non_null(m.allow);
    if (strcmp(m.allow, allow) != 0)
        fail_msg("%s %s: Allow \"%s\", expected \"%s\"", method, path, m.allow, allow);
}

/* Expect router_add to fail with code, and the message to hold each of the
 * NULL-terminated strings. */
static void expect_add_error(vie_router *r, const char *method, const char *pattern,
                             router_error code, ...)
{
    char err[512];
    size_t before = router_count(r);
    router_error e = router_add(r, method, pattern, &R[63], err, sizeof err);
    if (e != code) fail_msg("router_add(%s %s) = %d, expected %d", method, pattern, e, code);
    assert_true(strlen(err) > 0);
    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(err, s)) fail_msg("message \"%s\" lacks \"%s\"", err, s);
    }
    va_end(ap);
    assert_int_equal(router_count(r), before);
}

/* ---- matching ---- */

static void test_static(void **state)
{
    (void)state;
    vie_router *r = router_new();
    assert_non_null(r);
    add_ok(r, "GET", "/", &R[0]);
    add_ok(r, "GET", "/users", &R[1]);
    add_ok(r, "GET", "/users/", &R[2]);
    add_ok(r, "GET", "/about/team", &R[3]);
    add_ok(r, "GET", "/about/teams", &R[4]);
    add_ok(r, "GET", "/abc", &R[5]);
    add_ok(r, "GET", "/ab", &R[6]);
    assert_int_equal(router_count(r), 7);

    expect_found(r, "GET", "/", &R[0], 0);
    expect_found(r, "GET", "/users", &R[1], 0);
    expect_found(r, "GET", "/users/", &R[2], 0);
    expect_found(r, "GET", "/about/team", &R[3], 0);
    expect_found(r, "GET", "/about/teams", &R[4], 0);
    expect_found(r, "GET", "/abc", &R[5], 0);
    expect_found(r, "GET", "/ab", &R[6], 0);

    /* prefixes and extensions of routes do not match */
    expect_not_found(r, "GET", "");
    expect_not_found(r, "GET", "/u");
    expect_not_found(r, "GET", "/use");
    expect_not_found(r, "GET", "/userss");
    expect_not_found(r, "GET", "/users/x");
    expect_not_found(r, "GET", "/users//");
    expect_not_found(r, "GET", "/about");
    expect_not_found(r, "GET", "/about/");
    expect_not_found(r, "GET", "/about/tea");
    expect_not_found(r, "GET", "/about/teamss");
    expect_not_found(r, "GET", "/a");
    expect_not_found(r, "GET", "/abcd");
    expect_not_found(r, "GET", "//");
    expect_not_found(r, "GET", "users");
    expect_not_found(r, "GET", "/USERS");
    router_free(r);
}

static void test_find_uses_lengths(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/ab", &R[0]);
    add_ok(r, "GET", "/a", &R[1]);
    router_match m;
    /* neither path nor method is NUL-terminated at the given length */
    assert_int_equal(router_find(r, "GETX", 3, "/abc", 3, &m), ROUTER_FOUND);
    assert_ptr_equal(m.route, &R[0]);
    assert_int_equal(router_find(r, "GETX", 3, "/abc", 2, &m), ROUTER_FOUND);
    assert_ptr_equal(m.route, &R[1]);
    assert_int_equal(router_find(r, "GETX", 4, "/abc", 2, &m), ROUTER_METHOD_NOT_ALLOWED);
    router_free(r);
}

static void test_params(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/users/:id", &R[0]);
    add_ok(r, "GET", "/a/:x/b/:y", &R[1]);
    add_ok(r, "GET", "/:lang/docs", &R[2]);
    add_ok(r, "GET", "/p/:v/", &R[3]);

    expect_found(r, "GET", "/users/42", &R[0], 1, "id", "42");
    expect_found(r, "GET", "/users/a%2Fb", &R[0], 1, "id", "a%2Fb");
    expect_found(r, "GET", "/users/.x", &R[0], 1, "id", ".x");
    expect_not_found(r, "GET", "/users/");
    expect_not_found(r, "GET", "/users");
    expect_not_found(r, "GET", "/users/42/");
    expect_not_found(r, "GET", "/users/42/x");

    expect_found(r, "GET", "/a/1/b/2", &R[1], 2, "x", "1", "y", "2");
    expect_not_found(r, "GET", "/a/1/b/");
    expect_not_found(r, "GET", "/a//b/2");
    expect_not_found(r, "GET", "/a/1/c/2");

    expect_found(r, "GET", "/en/docs", &R[2], 1, "lang", "en");
    expect_not_found(r, "GET", "/en/doc");
    expect_not_found(r, "GET", "/en/docs/");

    expect_found(r, "GET", "/p/1/", &R[3], 1, "v", "1");
    expect_not_found(r, "GET", "/p/1");

    router_match m;
    assert_int_equal(find(r, "GET", "/users/7", &m), ROUTER_FOUND);
    assert_false(m.has_catchall);
    router_free(r);
}

static void test_catchall(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/files/*path", &R[0]);
    add_ok(r, "GET", "/*all", &R[1]);
    add_ok(r, "GET", "/x/:a/*rest", &R[2]);

    expect_found(r, "GET", "/files/", &R[0], 1, "path", "");
    expect_found(r, "GET", "/files/a", &R[0], 1, "path", "a");
    expect_found(r, "GET", "/files/a/b/c", &R[0], 1, "path", "a/b/c");
    expect_found(r, "GET", "/files/a/b/", &R[0], 1, "path", "a/b/");
    expect_found(r, "GET", "/files//", &R[0], 1, "path", "/");
    /* "/files" is not under "/files/": the root catch-all takes it */
    expect_found(r, "GET", "/files", &R[1], 1, "all", "files");
    expect_found(r, "GET", "/", &R[1], 1, "all", "");
    expect_found(r, "GET", "/anything/at/all", &R[1], 1, "all", "anything/at/all");

    expect_found(r, "GET", "/x/1/", &R[2], 2, "a", "1", "rest", "");
    expect_found(r, "GET", "/x/1/2/3", &R[2], 2, "a", "1", "rest", "2/3");
    expect_found(r, "GET", "/x/1", &R[1], 1, "all", "x/1");

    router_match m;
    assert_int_equal(find(r, "GET", "/files/z", &m), ROUTER_FOUND);
    assert_true(m.has_catchall);
    router_free(r);

    r = router_new();
    add_ok(r, "GET", "/static/*p", &R[0]);
    expect_not_found(r, "GET", "/static");
    expect_not_found(r, "GET", "/stat");
    expect_not_found(r, "GET", "/");
    router_free(r);
}

static void test_priority(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/users/*rest", &R[2]);
    add_ok(r, "GET", "/users/:id", &R[1]);
    add_ok(r, "GET", "/users/new", &R[0]);
    add_ok(r, "GET", "/users/", &R[3]);

    expect_found(r, "GET", "/users/new", &R[0], 0);
    expect_found(r, "GET", "/users/ne", &R[1], 1, "id", "ne");
    expect_found(r, "GET", "/users/newer", &R[1], 1, "id", "newer");
    expect_found(r, "GET", "/users/7", &R[1], 1, "id", "7");
    expect_found(r, "GET", "/users/7/x", &R[2], 1, "rest", "7/x");
    expect_found(r, "GET", "/users/new/", &R[2], 1, "rest", "new/");
    /* an exact static route beats an empty catch-all */
    expect_found(r, "GET", "/users/", &R[3], 0);
    router_free(r);
}

static void test_backtracking(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/users/new", &R[0]);
    add_ok(r, "GET", "/users/:id/edit", &R[1]);
    expect_found(r, "GET", "/users/new", &R[0], 0);
    expect_found(r, "GET", "/users/new/edit", &R[1], 1, "id", "new");
    expect_found(r, "GET", "/users/5/edit", &R[1], 1, "id", "5");
    expect_not_found(r, "GET", "/users/new/editx");
    router_free(r);

    /* static fails deep down, param fails too, the catch-all takes it */
    r = router_new();
    add_ok(r, "GET", "/s/new/x", &R[0]);
    add_ok(r, "GET", "/s/:id/y", &R[1]);
    add_ok(r, "GET", "/s/*rest", &R[2]);
    expect_found(r, "GET", "/s/new/x", &R[0], 0);
    expect_found(r, "GET", "/s/new/y", &R[1], 1, "id", "new");
    expect_found(r, "GET", "/s/new/z", &R[2], 1, "rest", "new/z");
    expect_found(r, "GET", "/s/new", &R[2], 1, "rest", "new");
    router_free(r);

    /* a static edge that splits mid-segment */
    r = router_new();
    add_ok(r, "GET", "/abc", &R[0]);
    add_ok(r, "GET", "/abd", &R[1]);
    add_ok(r, "GET", "/:x", &R[2]);
    add_ok(r, "GET", "/ab/c", &R[3]);
    add_ok(r, "GET", "/:x/d", &R[4]);
    expect_found(r, "GET", "/abc", &R[0], 0);
    expect_found(r, "GET", "/abd", &R[1], 0);
    expect_found(r, "GET", "/ab", &R[2], 1, "x", "ab");
    expect_found(r, "GET", "/abe", &R[2], 1, "x", "abe");
    expect_found(r, "GET", "/a", &R[2], 1, "x", "a");
    expect_found(r, "GET", "/ab/c", &R[3], 0);
    expect_found(r, "GET", "/ab/d", &R[4], 1, "x", "ab");
    expect_found(r, "GET", "/abc/d", &R[4], 1, "x", "abc");
    expect_not_found(r, "GET", "/ab/e");
    expect_not_found(r, "GET", "/");
    router_free(r);

    /* backtracking through two param levels keeps the right captures */
    r = router_new();
    add_ok(r, "GET", "/:a/:b/c", &R[0]);
    add_ok(r, "GET", "/:a/x/d", &R[1]);
    add_ok(r, "GET", "/:a/*rest", &R[2]);
    expect_found(r, "GET", "/1/x/c", &R[0], 2, "a", "1", "b", "x");
    expect_found(r, "GET", "/1/x/d", &R[1], 1, "a", "1");
    expect_found(r, "GET", "/1/x/e", &R[2], 2, "a", "1", "rest", "x/e");
    expect_found(r, "GET", "/1/y/c", &R[0], 2, "a", "1", "b", "y");
    router_free(r);
}

static void test_param_names_per_route(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/users/:id/posts", &R[0]);
    add_ok(r, "GET", "/users/:uid/friends", &R[1]);
    add_ok(r, "GET", "/users/:user", &R[2]);
    /* same shape, other method: its own names */
    add_ok(r, "POST", "/users/:name/posts", &R[3]);

    expect_found(r, "GET", "/users/1/posts", &R[0], 1, "id", "1");
    expect_found(r, "GET", "/users/2/friends", &R[1], 1, "uid", "2");
    expect_found(r, "GET", "/users/3", &R[2], 1, "user", "3");
    expect_found(r, "POST", "/users/4/posts", &R[3], 1, "name", "4");
    router_free(r);
}

static void test_max_params(void **state)
{
    (void)state;
    vie_router *r = router_new();
    char pat[256] = "", path[256] = "";
    for (int i = 0; i < ROUTER_MAX_PARAMS - 1; i++) {
        char seg[16];
        snprintf(seg, sizeof seg, "/:p%d", i);
        strcat(pat, seg);
        snprintf(seg, sizeof seg, "/v%d", i);
        strcat(path, seg);
    }
    strcat(pat, "/*tail");
    strcat(path, "/t/u");
    add_ok(r, "GET", pat, &R[0]);

    router_match m;
    assert_int_equal(find(r, "GET", path, &m), ROUTER_FOUND);
    assert_int_equal(m.n_params, ROUTER_MAX_PARAMS);
    assert_true(m.has_catchall);
    for (int i = 0; i < ROUTER_MAX_PARAMS - 1; i++) {
        char name[8], value[8];
        snprintf(name, sizeof name, "p%d", i);
        snprintf(value, sizeof value, "v%d", i);
        assert_string_equal(m.params[i].name, name);
        assert_int_equal(m.params[i].raw_len, strlen(value));
        assert_memory_equal(m.params[i].raw, value, strlen(value));
    }
    assert_string_equal(m.params[ROUTER_MAX_PARAMS - 1].name, "tail");
    assert_memory_equal(m.params[ROUTER_MAX_PARAMS - 1].raw, "t/u", 3);

    expect_add_error(r, "GET", "/:a/:b/:c/:d/:e/:f/:g/:h/:i/:j/:k/:l/:m/:n/:o/:p/:q",
                     ROUTER_EPATTERN, "more than 16 params", NULL);
    router_free(r);
}

/* ---- methods ---- */

static void test_405_allow(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "DELETE", "/r", &R[0]);
    add_ok(r, "POST", "/r", &R[1]);
    add_ok(r, "GET", "/r", &R[2]);
    add_ok(r, "OPTIONS", "/r", &R[3]);
    expect_found(r, "DELETE", "/r", &R[0], 0);
    expect_found(r, "POST", "/r", &R[1], 0);
    expect_found(r, "GET", "/r", &R[2], 0);
    expect_found(r, "OPTIONS", "/r", &R[3], 0);
    expect_405(r, "PUT", "/r", "GET, HEAD, POST, DELETE, OPTIONS");
    expect_405(r, "PATCH", "/r", "GET, HEAD, POST, DELETE, OPTIONS");
    /* a method no route uses at all */
    expect_405(r, "BREW", "/r", "GET, HEAD, POST, DELETE, OPTIONS");
    expect_405(r, "get", "/r", "GET, HEAD, POST, DELETE, OPTIONS");
    expect_not_found(r, "PUT", "/s");

    /* all nine well-known methods, then custom ones in registration order */
    add_ok(r, "LINK", "/all", &R[10]);
    const char *methods[] = {"CONNECT", "TRACE", "OPTIONS", "PATCH", "DELETE",
                             "PUT",     "POST",  "HEAD",    "GET"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        add_ok(r, methods[i], "/all", &R[11 + i]);
    add_ok(r, "PURGE", "/all", &R[20]);
    expect_405(r, "UNLINK", "/all",
               "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT, LINK, PURGE");

    /* HEAD alone is listed alone */
    add_ok(r, "HEAD", "/h", &R[21]);
    expect_405(r, "GET", "/h", "HEAD");
    router_free(r);
}

static void test_405_best_match_and_fallthrough(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/x/new", &R[0]);
    add_ok(r, "POST", "/x/:id", &R[1]);
    add_ok(r, "PUT", "/x/*rest", &R[2]);

    /* the static leaf lacks POST: the param route has it */
    expect_found(r, "POST", "/x/new", &R[1], 1, "id", "new");
    /* and PUT falls through to the catch-all */
    expect_found(r, "PUT", "/x/new", &R[2], 1, "rest", "new");
    expect_found(r, "PUT", "/x/7", &R[2], 1, "rest", "7");
    /* nobody has DELETE: Allow is that of the best path match */
    expect_405(r, "DELETE", "/x/new", "GET, HEAD");
    expect_405(r, "DELETE", "/x/7", "POST");
    expect_405(r, "DELETE", "/x/7/8", "PUT");
    expect_405(r, "GET", "/x/", "PUT");
    /* HEAD falls back to the GET of the static leaf */
    expect_found(r, "HEAD", "/x/new", &R[0], 0);
    expect_405(r, "HEAD", "/x/7", "POST");
    router_free(r);

    /* fall-through after backtracking: the static branch matches deep down
     * but without the method */
    r = router_new();
    add_ok(r, "GET", "/users/new/edit", &R[0]);
    add_ok(r, "POST", "/users/:id/edit", &R[1]);
    expect_found(r, "POST", "/users/new/edit", &R[1], 1, "id", "new");
    expect_405(r, "PUT", "/users/new/edit", "GET, HEAD");
    router_free(r);
}

static void test_head(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/a", &R[0]);
    add_ok(r, "GET", "/b", &R[1]);
    add_ok(r, "HEAD", "/b", &R[2]);
    add_ok(r, "HEAD", "/c", &R[3]);
    add_ok(r, "GET", "/u/:id", &R[4]);

    expect_found(r, "HEAD", "/a", &R[0], 0);
    expect_found(r, "HEAD", "/b", &R[2], 0); /* an explicit HEAD route wins */
    expect_found(r, "GET", "/b", &R[1], 0);
    expect_found(r, "HEAD", "/c", &R[3], 0);
    expect_405(r, "GET", "/c", "HEAD");
    expect_found(r, "HEAD", "/u/9", &R[4], 1, "id", "9");
    expect_405(r, "POST", "/a", "GET, HEAD");
    expect_not_found(r, "HEAD", "/d");
    router_free(r);
}

static void test_custom_methods_match(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "PURGE", "/cache/*key", &R[0]);
    add_ok(r, "MKCOL", "/dav/:dir", &R[1]);
    add_ok(r, "M-SEARCH", "/", &R[2]);
    add_ok(r, "GET", "/cache/*key", &R[3]);
    add_ok(r, "X_1.0~!", "/", &R[4]);

    expect_found(r, "PURGE", "/cache/a/b", &R[0], 1, "key", "a/b");
    expect_found(r, "GET", "/cache/a/b", &R[3], 1, "key", "a/b");
    expect_found(r, "MKCOL", "/dav/x", &R[1], 1, "dir", "x");
    expect_found(r, "M-SEARCH", "/", &R[2], 0);
    expect_found(r, "X_1.0~!", "/", &R[4], 0);
    expect_405(r, "PURG", "/cache/a", "GET, HEAD, PURGE");
    expect_405(r, "PURGEX", "/cache/a", "GET, HEAD, PURGE");
    expect_405(r, "purge", "/cache/a", "GET, HEAD, PURGE");
    expect_405(r, "GET", "/", "M-SEARCH, X_1.0~!");
    router_free(r);
}

static void test_too_many_methods(void **state)
{
    (void)state;
    vie_router *r = router_new();
    char m[16];
    int i = 0;
    for (;; i++) {
        snprintf(m, sizeof m, "M%d", i);
        char err[256];
        router_error e = router_add(r, m, "/", &R[0], err, sizeof err);
        if (e != ROUTER_OK) {
            assert_int_equal(e, ROUTER_EPATTERN);
            assert_non_null(strstr(err, "too many distinct methods"));
            break;
        }
    }
    assert_int_equal(i, 64 - 9);
    /* known methods and already registered ones still work */
    add_ok(r, "GET", "/", &R[1]);
    add_ok(r, "M3", "/x", &R[2]);
    expect_found(r, "M54", "/", &R[0], 0);
    expect_found(r, "M3", "/x", &R[2], 0);
    router_free(r);
}

/* ---- registration errors ---- */

static void test_conflicts(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/users/:id", &R[0]);
    add_ok(r, "GET", "/static/*path", &R[1]);
    add_ok(r, "GET", "/a/b", &R[2]);
    add_ok(r, "PUT", "/p/:x/q/:y", &R[3]);

    expect_add_error(r, "GET", "/users/:name", ROUTER_ECONFLICT,
                     "GET /users/:name conflicts with GET /users/:id (already registered)", NULL);
    expect_add_error(r, "GET", "/static/*file", ROUTER_ECONFLICT, "GET /static/*file",
                     "GET /static/*path", NULL);
    expect_add_error(r, "GET", "/a/b", ROUTER_ECONFLICT, "GET /a/b conflicts with GET /a/b", NULL);
    expect_add_error(r, "PUT", "/p/:a/q/:b", ROUTER_ECONFLICT, "PUT /p/:a/q/:b", "PUT /p/:x/q/:y",
                     NULL);

    /* what does not conflict */
    add_ok(r, "POST", "/users/:name", &R[4]); /* another method */
    add_ok(r, "HEAD", "/users/:id", &R[5]);   /* HEAD next to GET */
    add_ok(r, "GET", "/users/:id/", &R[6]);   /* trailing slash */
    add_ok(r, "GET", "/users/*rest", &R[7]);  /* catch-all vs param */
    add_ok(r, "GET", "/users/me", &R[8]);     /* static vs param */
    add_ok(r, "GET", "/static/:one", &R[9]);  /* param vs catch-all */
    add_ok(r, "GET", "/a/b/", &R[10]);
    add_ok(r, "GET", "/a/:b", &R[11]);
    add_ok(r, "PUT", "/p/:x/q/:y/", &R[12]);
    add_ok(r, "PUT", "/p/:x/q", &R[13]);
    assert_int_equal(router_count(r), 14);

    /* a failed add leaves the existing routes as they were */
    expect_found(r, "GET", "/users/1", &R[0], 1, "id", "1");
    expect_found(r, "HEAD", "/users/1", &R[5], 1, "id", "1");
    expect_found(r, "POST", "/users/1", &R[4], 1, "name", "1");
    expect_found(r, "GET", "/static/x/y", &R[1], 1, "path", "x/y");
    expect_found(r, "GET", "/static/x", &R[9], 1, "one", "x");
    router_free(r);
}

static void test_pattern_errors(void **state)
{
    (void)state;
    vie_router *r = router_new();
    add_ok(r, "GET", "/ok", &R[0]);

    expect_add_error(r, "GET", "", ROUTER_EPATTERN, "must start with '/'", NULL);
    expect_add_error(r, "GET", "users", ROUTER_EPATTERN, "GET users", "must start with '/'", NULL);
    expect_add_error(r, "GET", "*", ROUTER_EPATTERN, "must start with '/'", NULL);
    expect_add_error(r, "GET", "/a:b", ROUTER_EPATTERN, "GET /a:b", "does not start a segment",
                     NULL);
    expect_add_error(r, "GET", "/a*b", ROUTER_EPATTERN, "does not start a segment", NULL);
    expect_add_error(r, "GET", "/x/:id.json", ROUTER_EPATTERN, "/x/:id.json",
                     "letters, digits and '_'", NULL);
    expect_add_error(r, "GET", "/x/:id-2", ROUTER_EPATTERN, "letters, digits and '_'", NULL);
    expect_add_error(r, "GET", "/x/:a:b", ROUTER_EPATTERN, "does not start a segment", NULL);
    expect_add_error(r, "GET", "/:", ROUTER_EPATTERN, "empty param name", NULL);
    expect_add_error(r, "GET", "/:/x", ROUTER_EPATTERN, "empty param name", NULL);
    expect_add_error(r, "GET", "/*", ROUTER_EPATTERN, "empty catch-all name", NULL);
    expect_add_error(r, "GET", "/a/*rest/b", ROUTER_EPATTERN, "must be the last segment", NULL);
    expect_add_error(r, "GET", "/a/*rest/", ROUTER_EPATTERN, "must be the last segment", NULL);
    expect_add_error(r, "GET", "/:id/:id", ROUTER_EPATTERN, "\"id\" is used twice", NULL);
    expect_add_error(r, "GET", "/:id/x/*id", ROUTER_EPATTERN, "\"id\" is used twice", NULL);
    expect_add_error(r, "GET", "/a b", ROUTER_EPATTERN, "not visible ASCII", NULL);
    expect_add_error(r, "GET", "/a\tb", ROUTER_EPATTERN, "not visible ASCII", NULL);
    expect_add_error(r, "GET", "/caf\xc3\xa9", ROUTER_EPATTERN, "not visible ASCII", NULL);
    expect_add_error(r, "GET", "/a\x7f", ROUTER_EPATTERN, "not visible ASCII", NULL);
    expect_add_error(r, "GET", "/a/./b", ROUTER_EPATTERN, "not a normalized path", NULL);
    expect_add_error(r, "GET", "/a/..", ROUTER_EPATTERN, "not a normalized path", NULL);
    expect_add_error(r, "GET", "/..", ROUTER_EPATTERN, "not a normalized path", NULL);
    expect_add_error(r, "GET", "/%41", ROUTER_EPATTERN, "not a normalized path", NULL);
    expect_add_error(r, "GET", "/%zz", ROUTER_EPATTERN, "not a normalized path", NULL);
    expect_add_error(r, "GET", "/%00", ROUTER_EPATTERN, "not a normalized path", NULL);

    /* invalid methods */
    expect_add_error(r, "", "/x", ROUTER_EPATTERN, "invalid method", NULL);
    expect_add_error(r, "get", "/x", ROUTER_EPATTERN, "invalid method", NULL);
    expect_add_error(r, "GE T", "/x", ROUTER_EPATTERN, "invalid method", NULL);
    expect_add_error(r, "GET\r\n", "/x", ROUTER_EPATTERN, "invalid method", NULL);
    expect_add_error(r, "P(ST", "/x", ROUTER_EPATTERN, "invalid method", NULL);
    expect_add_error(r, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/x", ROUTER_EPATTERN,
                     "invalid method", NULL);

    /* still usable: escapes of reserved characters and odd but valid text */
    add_ok(r, "GET", "/a%2Fb", &R[1]);
    add_ok(r, "GET", "/a%20b", &R[2]);
    add_ok(r, "GET", "/.well-known/x", &R[3]);
    add_ok(r, "GET", "//double", &R[4]);
    add_ok(r, "GET", "/a.b/..c/...", &R[5]);
    add_ok(r, "GET", "/:_/:A9", &R[6]);
    expect_found(r, "GET", "/a%2Fb", &R[1], 0);
    expect_found(r, "GET", "/a%20b", &R[2], 0);
    expect_found(r, "GET", "/.well-known/x", &R[3], 0);
    expect_found(r, "GET", "//double", &R[4], 0);
    expect_found(r, "GET", "/a.b/..c/...", &R[5], 0);
    expect_found(r, "GET", "/1/2", &R[6], 2, "_", "1", "A9", "2");
    expect_found(r, "GET", "/ok", &R[0], 0);
    assert_int_equal(router_count(r), 7);
    router_free(r);
}

static void test_no_err_buffer(void **state)
{
    (void)state;
    vie_router *r = router_new();
    assert_int_equal(router_add(r, "GET", "/x", &R[0], NULL, 0), ROUTER_OK);
    assert_int_equal(router_add(r, "GET", "/x", &R[0], NULL, 0), ROUTER_ECONFLICT);
    assert_int_equal(router_add(r, "GET", "x", &R[0], NULL, 0), ROUTER_EPATTERN);
    char small[8];
    assert_int_equal(router_add(r, "GET", "/:id", &R[0], small, sizeof small), ROUTER_OK);
    assert_int_equal(router_add(r, "GET", "/:name", &R[0], small, sizeof small), ROUTER_ECONFLICT);
    assert_int_equal(strlen(small), sizeof small - 1); /* truncated, terminated */
    router_free(r);
    router_free(NULL);
}

static void test_empty_router(void **state)
{
    (void)state;
    vie_router *r = router_new();
    assert_int_equal(router_count(r), 0);
    expect_not_found(r, "GET", "/");
    expect_not_found(r, "GET", "");
    expect_not_found(r, "FOO", "/x");
    router_free(r);
}

/* ---- property test against a brute-force reference ---- */

#define N_ROUTES 400
#define N_WORDS  8

static const char *const words[N_WORDS] = {"a", "b", "ab", "abc", "ba", "users", "u", "new"};
static const char *const prop_methods[] = {"GET", "HEAD", "POST", "PUT", "PURGE", "LINK"};
#define N_PROP_METHODS (sizeof prop_methods / sizeof prop_methods[0])

typedef struct proute {
    char pattern[128];
    char shape[128]; /* the pattern without param names */
    const char *method;
} proute;

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    /* xorshift64*: deterministic across platforms */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 33) % n;
}

static void make_shape(const char *pattern, char *shape)
{
    size_t o = 0;
    for (size_t i = 0; pattern[i];) {
        char c = pattern[i++];
        shape[o++] = c;
        if ((c == ':' || c == '*') && (i == 1 || pattern[i - 2] == '/')) {
            while (pattern[i] && pattern[i] != '/')
                i++;
        }
    }
    shape[o] = '\0';
}

/* Match a pattern against path the way router.h describes; captures go to
 * caps (pointer, length pairs). */
static bool ref_match(const char *pat, const char *path, size_t len, const char **caps,
                      uint32_t *cap_len, uint32_t *n_caps)
{
    size_t pos = 0;
    *n_caps = 0;
    for (size_t i = 0; pat[i];) {
        char c = pat[i];
        if (c == ':' || c == '*') {
            while (pat[i] && pat[i] != '/')
                i++;
            size_t end = pos;
            if (c == '*') {
                end = len;
            } else {
                while (end < len && path[end] != '/')
                    end++;
                if (end == pos) return false;
            }
            caps[*n_caps] = path + pos;
            cap_len[(*n_caps)++] = (uint32_t)(end - pos);
            pos = end;
            continue;
        }
        if (pos >= len || path[pos] != c) return false;
        pos++;
        i++;
    }
    return pos == len;
}

/* Order two shapes that both match the same path: at the first place they
 * differ, static text (or the end) beats a param, which beats a catch-all. */
static int kind_rank(const char *s)
{
    if (*s == ':') return 1;
    if (*s == '*') return 2;
    return 0;
}

static int ref_cmp(const char *a, const char *b)
{
    for (;;) {
        int ka = kind_rank(a), kb = kind_rank(b);
        if (ka != kb) return ka - kb;
        if (!*a && !*b) return 0;
        if (*a != *b) return 0; /* both static and matching the same path: cannot happen */
        a++;
        b++;
    }
}

static void property_round(uint64_t seed)
{
    rng_state = seed;
    static proute routes[N_ROUTES];
    int n = 0;
    vie_router *r = router_new();
    assert_non_null(r);
    /* custom methods are listed in order of first registration */
    const char *custom_order[2];
    int n_custom = 0;

    for (int k = 0; k < N_ROUTES; k++) {
        proute *pr = &routes[n];
        char *p = pr->pattern;
        p[0] = '\0';
        int segs = 1 + (int)rnd(4);
        for (int s = 0; s < segs; s++) {
            uint32_t kind = rnd(10);
            char seg[32];
            if (kind < 7 || (kind == 9 && s != segs - 1))
                snprintf(seg, sizeof seg, "/%s", words[rnd(N_WORDS)]);
            else if (kind < 9)
                snprintf(seg, sizeof seg, "/:%s%d", rnd(2) ? "p" : "q", s);
            else
                snprintf(seg, sizeof seg, "/*%s%d", rnd(2) ? "c" : "d", s);
            strcat(p, seg);
        }
        if (rnd(8) == 0 && !strstr(p, "/*")) strcat(p, "/");
        pr->method = prop_methods[rnd(N_PROP_METHODS)];
        make_shape(p, pr->shape);

        int dup = -1;
        for (int j = 0; j < n; j++) {
            if (routes[j].method == pr->method && strcmp(routes[j].shape, pr->shape) == 0) dup = j;
        }
        char err[512];
        router_error e = router_add(r, pr->method, p, pr, err, sizeof err);
        if (dup >= 0) {
            if (e != ROUTER_ECONFLICT) fail_msg("%s %s should conflict", pr->method, p);
            if (!strstr(err, routes[dup].pattern)) fail_msg("message: %s", err);
            continue;
        }
        if (e != ROUTER_OK) fail_msg("%s %s: %s", pr->method, p, err);
        bool known = false;
        for (int c = 0; c < n_custom; c++)
            known |= strcmp(custom_order[c], pr->method) == 0;
        if (!known && (strcmp(pr->method, "PURGE") == 0 || strcmp(pr->method, "LINK") == 0))
            custom_order[n_custom++] = pr->method;
        n++;
    }
    assert_int_equal(router_count(r), (size_t)n);

    /* paths: every route instantiated, plus random ones */
    int n_paths = 4 * N_ROUTES;
    for (int k = 0; k < n_paths; k++) {
        char path[256] = "";
        if (k < n) {
            const char *pat = routes[k].pattern;
            for (size_t i = 0; pat[i];) {
                if ((pat[i] == ':' || pat[i] == '*') && pat[i - 1] == '/') {
                    char c = pat[i];
                    while (pat[i] && pat[i] != '/')
                        i++;
                    /* values that sometimes collide with static words */
                    int parts = c == '*' ? (int)rnd(3) : 1;
                    for (int q = 0; q < parts; q++) {
                        if (q > 0) strcat(path, "/");
                        strcat(path, rnd(2) ? words[rnd(N_WORDS)] : "v1");
                    }
                    continue;
                }
                size_t l = strlen(path);
                path[l] = pat[i++];
                path[l + 1] = '\0';
            }
        } else {
            int segs = (int)rnd(5);
            for (int s = 0; s < segs; s++) {
                strcat(path, "/");
                strcat(path, rnd(4) ? words[rnd(N_WORDS)] : "zz");
            }
            if (segs == 0 || rnd(6) == 0) strcat(path, "/");
            if (rnd(20) == 0) path[strlen(path) - 1] = '\0'; /* maybe cut a byte */
        }
        size_t plen = strlen(path);

        /* candidates, best shape first */
        int cand[N_ROUTES];
        int n_cand = 0;
        for (int j = 0; j < n; j++) {
            const char *caps[ROUTER_MAX_PARAMS];
            uint32_t cl[ROUTER_MAX_PARAMS], nc;
            if (ref_match(routes[j].pattern, path, plen, caps, cl, &nc)) cand[n_cand++] = j;
        }
        for (int a = 1; a < n_cand; a++) { /* insertion sort, stable */
            int v = cand[a], b = a - 1;
            while (b >= 0 && ref_cmp(routes[cand[b]].shape, routes[v].shape) > 0) {
                cand[b + 1] = cand[b];
                b--;
            }
            cand[b + 1] = v;
        }

        for (size_t mi = 0; mi < N_PROP_METHODS + 1; mi++) {
            const char *method = mi < N_PROP_METHODS ? prop_methods[mi] : "DELETE";
            /* expected: the first shape holding the method (HEAD: or GET) */
            int want = -1;
            for (int a = 0; a < n_cand && want < 0; a++) {
                const char *shape = routes[cand[a]].shape;
                int get = -1;
                for (int b = 0; b < n_cand; b++) {
                    const proute *pr = &routes[cand[b]];
                    if (strcmp(pr->shape, shape) != 0) continue;
                    if (strcmp(pr->method, method) == 0) want = cand[b];
                    if (strcmp(pr->method, "GET") == 0) get = cand[b];
                }
                if (want < 0 && strcmp(method, "HEAD") == 0) want = get;
            }

            router_match m;
            router_result res = router_find(r, method, strlen(method), path, plen, &m);
            if (want >= 0) {
                if (res != ROUTER_FOUND || m.route != &routes[want])
                    fail_msg("seed %llu: %s %s: got %d %s, expected %s", (unsigned long long)seed,
                             method, path, res,
                             res == ROUTER_FOUND ? ((proute *)m.route)->pattern : "-",
                             routes[want].pattern);
                const char *caps[ROUTER_MAX_PARAMS];
                uint32_t cl[ROUTER_MAX_PARAMS], nc;
                assert_true(ref_match(routes[want].pattern, path, plen, caps, cl, &nc));
                assert_int_equal(m.n_params, nc);
                assert_int_equal(m.has_catchall, strstr(routes[want].pattern, "/*") != NULL);
                const char *pat = routes[want].pattern;
                for (uint32_t i = 0; i < nc; i++) {
                    assert_ptr_equal(m.params[i].raw, caps[i]);
                    assert_int_equal(m.params[i].raw_len, cl[i]);
                    /* names: the i-th param of the pattern */
                    const char *q = pat;
                    for (uint32_t skip = 0;; q++) {
                        if ((*q == ':' || *q == '*') && q[-1] == '/' && skip++ == i) break;
                    }
                    size_t nl = strcspn(q + 1, "/");
                    assert_int_equal(strlen(m.params[i].name), nl);
                    assert_memory_equal(m.params[i].name, q + 1, nl);
                }
            } else if (n_cand == 0) {
                if (res != ROUTER_NOT_FOUND)
                    fail_msg("seed %llu: %s %s: got %d, expected 404", (unsigned long long)seed,
                             method, path, res);
            } else {
                if (res != ROUTER_METHOD_NOT_ALLOWED)
                    fail_msg("seed %llu: %s %s: got %d, expected 405", (unsigned long long)seed,
                             method, path, res);
                /* Allow of the best shape */
                const char *shape = routes[cand[0]].shape;
                static const char *const order[] = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
                                                    "PATCH", "OPTIONS", "TRACE", "CONNECT"};
                bool has[11] = {false};
                for (int b = 0; b < n_cand; b++) {
                    const proute *pr = &routes[cand[b]];
                    if (strcmp(pr->shape, shape) != 0) continue;
                    for (int o = 0; o < 9; o++)
                        has[o] |= strcmp(pr->method, order[o]) == 0;
                    for (int c = 0; c < n_custom; c++)
                        has[9 + c] |= strcmp(pr->method, custom_order[c]) == 0;
                }
                has[1] |= has[0];
                char allow[128] = "";
                for (int o = 0; o < 9 + n_custom; o++) {
                    if (!has[o]) continue;
                    if (allow[0]) strcat(allow, ", ");
                    strcat(allow, o < 9 ? order[o] : custom_order[o - 9]);
                }
                assert_string_equal(m.allow, allow);
            }
        }
    }
    router_free(r);
}

static void test_property_random_routes(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++)
        property_round(seed * 0x9E3779B97F4A7C15ull);
}

/* Many distinct static routes, all found, none of their strict prefixes. */
static void test_many_static_routes(void **state)
{
    (void)state;
    rng_state = 42;
    enum { N = 500 };
    static char pats[N][48];
    static int ids[N];
    vie_router *r = router_new();
    int n = 0;
    while (n < N) {
        char *p = pats[n];
        p[0] = '\0';
        int segs = 1 + (int)rnd(4);
        for (int s = 0; s < segs; s++) {
            char seg[12];
            int l = 1 + (int)rnd(6);
            seg[0] = '/';
            for (int i = 0; i < l; i++)
                seg[1 + i] = "abcdxyz-_"[rnd(9)];
            seg[1 + l] = '\0';
            strcat(p, seg);
        }
        bool dup = false;
        for (int j = 0; j < n && !dup; j++)
            dup = strcmp(pats[j], p) == 0;
        if (dup) continue;
        ids[n] = n;
        add_ok(r, "GET", p, &ids[n]);
        n++;
    }
    for (int i = 0; i < N; i++)
        expect_found(r, "GET", pats[i], &ids[i], 0);
    for (int i = 0; i < N; i++) {
        /* every strict prefix that is not a route itself is not found */
        size_t len = strlen(pats[i]);
        for (size_t l = 0; l < len; l++) {
            bool is_route = false;
            for (int j = 0; j < N && !is_route; j++)
                is_route = strlen(pats[j]) == l && memcmp(pats[j], pats[i], l) == 0;
            router_match m;
            router_result res = router_find(r, "GET", 3, pats[i], l, &m);
            assert_int_equal(res, is_route ? ROUTER_FOUND : ROUTER_NOT_FOUND);
        }
    }
    router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static),
        cmocka_unit_test(test_find_uses_lengths),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_catchall),
        cmocka_unit_test(test_priority),
        cmocka_unit_test(test_backtracking),
        cmocka_unit_test(test_param_names_per_route),
        cmocka_unit_test(test_max_params),
        cmocka_unit_test(test_405_allow),
        cmocka_unit_test(test_405_best_match_and_fallthrough),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_custom_methods_match),
        cmocka_unit_test(test_too_many_methods),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_pattern_errors),
        cmocka_unit_test(test_no_err_buffer),
        cmocka_unit_test(test_empty_router),
        cmocka_unit_test(test_property_random_routes),
        cmocka_unit_test(test_many_static_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
