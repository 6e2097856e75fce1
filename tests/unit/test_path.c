/* Unit tests for request path normalization and percent-decoding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/path.h"

typedef struct norm_case {
    const char *in;
    const char *out; /* NULL: invalid */
} norm_case;

static const norm_case norm_cases[] = {
    /* already normal */
    {"/", "/"},
    {"/a", "/a"},
    {"/a/", "/a/"},
    {"/a/b/c", "/a/b/c"},
    {"//a//b", "//a//b"},
    {"/a.b/c..d/...", "/a.b/c..d/..."},
    {"/.a/..b/.../a.", "/.a/..b/.../a."},
    /* dot segments */
    {"/.", "/"},
    {"/./", "/"},
    {"/./a", "/a"},
    {"/a/.", "/a/"},
    {"/a/./b", "/a/b"},
    {"/a/b/.", "/a/b/"},
    {"/a/b/./", "/a/b/"},
    {"/a/..", "/"},
    {"/a/../", "/"},
    {"/a/../b", "/b"},
    {"/a/b/..", "/a/"},
    {"/a/b/../", "/a/"},
    {"/a/b/../c", "/a/c"},
    {"/a/b/c/../../d", "/a/d"},
    {"/a/./b/./../c/.", "/a/c/"},
    {"//..", "/"},
    {"/a//..", "/a/"},
    {"/a/b/c/../../..", "/"},
    /* above the root */
    {"/..", NULL},
    {"/../", NULL},
    {"/../a", NULL},
    {"/a/../..", NULL},
    {"/a/../../x", NULL},
    {"/./..", NULL},
    {"/a/b/../../../c", NULL},
    /* escapes of unreserved characters are decoded, case-insensitively */
    {"/%7e", "/~"},
    {"/%7E", "/~"},
    {"/%41%62%2D%5f%30", "/Ab-_0"},
    {"/%2e", "/"},
    {"/a/%2e%2E/b", "/b"},
    {"/a/%2E./b", "/b"},
    {"/a/.%2e", "/"},
    {"/a/b/%2e", "/a/b/"},
    {"/%2e%2e/etc", NULL},
    {"/%2E%2E", NULL},
    {"/a/%2e%2e%2e", "/a/..."},
    /* other escapes stay as sent */
    {"/a%2Fb", "/a%2Fb"},
    {"/a%2fb", "/a%2fb"},
    {"/a%20b", "/a%20b"},
    {"/%2e%2F..", "/.%2F.."},
    {"/%25", "/%25"},
    {"/%ff%FE", "/%ff%FE"},
    {"/%3A", "/%3A"},
    /* malformed */
    {"", NULL},
    {"a", NULL},
    {"a/b", NULL},
    {"%2F", NULL},
    {"/%", NULL},
    {"/a%", NULL},
    {"/a%4", NULL},
    {"/%G1", NULL},
    {"/%1G", NULL},
    {"/%-1", NULL},
    {"/% 1", NULL},
    {"/%00", NULL},
    {"/a/%00/b", NULL},
    {"/ok/%2", NULL},
};

static void test_normalize_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        const norm_case *c = &norm_cases[i];
        size_t len = strlen(c->in);
        char *out = malloc(len + 1);
        assert_non_null(out);
        ssize_t n = path_normalize(c->in, len, out);
        if (!c->out) {
            if (n != -1) fail_msg("\"%s\": expected invalid, got %zd", c->in, n);
        } else {
            if (n < 0) fail_msg("\"%s\": expected \"%s\", got invalid", c->in, c->out);
            out[n] = '\0';
            if (strcmp(out, c->out) != 0)
                fail_msg("\"%s\": expected \"%s\", got \"%s\"", c->in, c->out, out);
            /* normalizing again changes nothing */
            char *again = malloc((size_t)n + 1);
            assert_non_null(again);
            ssize_t n2 = path_normalize(out, (size_t)n, again);
            assert_int_equal(n2, n);
            assert_memory_equal(again, out, (size_t)n);
            free(again);
        }
        free(out);
    }
}

static void test_normalize_in_place(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        const norm_case *c = &norm_cases[i];
        size_t len = strlen(c->in);
        char *buf = malloc(len + 1);
        assert_non_null(buf);
        memcpy(buf, c->in, len + 1);
        ssize_t n = path_normalize(buf, len, buf);
        if (!c->out) {
            assert_int_equal(n, -1);
        } else {
            assert_int_equal(n, (ssize_t)strlen(c->out));
            assert_memory_equal(buf, c->out, (size_t)n);
        }
        free(buf);
    }
}

static void test_normalize_does_not_read_past_len(void **state)
{
    (void)state;
    /* the bytes after len must not be seen: "/a/.." cut to "/a/." */
    char out[16];
    ssize_t n = path_normalize("/a/..", 4, out);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "/a/", 3);
    /* an escape cut by len is malformed */
    assert_int_equal(path_normalize("/%41", 3, out), -1);
}

static void test_is_normal(void **state)
{
    (void)state;
    static const char *const normal[] = {
        "/", "/a", "/a/", "//", "/a/b.c", "/.a", "/..a", "/...", "/a./b", "/a/...", "/a b",
    };
    static const char *const not_normal[] = {
        "", "a", "/.", "/..", "/./a", "/../a", "/a/.", "/a/..", "/a/./b", "/a%20", "/%41", "%",
    };
    for (size_t i = 0; i < sizeof normal / sizeof normal[0]; i++) {
        if (!path_is_normal(normal[i], strlen(normal[i])))
            fail_msg("\"%s\" should be normal", normal[i]);
    }
    for (size_t i = 0; i < sizeof not_normal / sizeof not_normal[0]; i++) {
        if (path_is_normal(not_normal[i], strlen(not_normal[i])))
            fail_msg("\"%s\" should not be normal", not_normal[i]);
    }
    /* every table case the checker calls normal normalizes to itself */
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        const norm_case *c = &norm_cases[i];
        size_t len = strlen(c->in);
        if (!path_is_normal(c->in, len)) continue;
        assert_non_null(c->out);
        assert_string_equal(c->in, c->out);
    }
    /* the length bounds the scan: "/a" of "/a/.." is normal */
    assert_true(path_is_normal("/a/..", 2));
}

typedef struct decode_case {
    const char *in;
    const char *out;  /* NULL: invalid */
    const char *qout; /* expected from path_decode_query, NULL: invalid */
} decode_case;

static const decode_case decode_cases[] = {
    {"", "", ""},
    {"abc", "abc", "abc"},
    {"a+b", "a+b", "a b"},
    {"%2B", "+", "+"},
    {"a%20b", "a b", "a b"},
    {"%2f%2F", "//", "//"},
    {"%41%62", "Ab", "Ab"},
    {"%e2%82%ac", "\xe2\x82\xac", "\xe2\x82\xac"},
    {"%25", "%", "%"},
    {"%2525", "%25", "%25"},
    {"++", "++", "  "},
    {"%", NULL, NULL},
    {"%4", NULL, NULL},
    {"a%", NULL, NULL},
    {"%G1", NULL, NULL},
    {"%1g", NULL, NULL},
    {"%00", NULL, NULL},
    {"ab%00cd", NULL, NULL},
};

static void test_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof decode_cases / sizeof decode_cases[0]; i++) {
        const decode_case *c = &decode_cases[i];
        size_t len = strlen(c->in);
        char out[64];
        ssize_t n = path_decode(c->in, len, out);
        if (!c->out) {
            if (n != -1) fail_msg("decode \"%s\": expected invalid", c->in);
        } else {
            if (n != (ssize_t)strlen(c->out)) fail_msg("decode \"%s\": length %zd", c->in, n);
            assert_memory_equal(out, c->out, (size_t)n);
        }
        n = path_decode_query(c->in, len, out);
        if (!c->qout) {
            if (n != -1) fail_msg("decode_query \"%s\": expected invalid", c->in);
        } else {
            if (n != (ssize_t)strlen(c->qout))
                fail_msg("decode_query \"%s\": length %zd", c->in, n);
            assert_memory_equal(out, c->qout, (size_t)n);
        }
    }
}

static void test_decode_in_place(void **state)
{
    (void)state;
    char buf[] = "a%20b+c%2Fd";
    ssize_t n = path_decode_query(buf, strlen(buf), buf);
    assert_int_equal(n, 7);
    assert_memory_equal(buf, "a b c/d", 7);
}

static void test_has_dot_segment(void **state)
{
    (void)state;
    static const char *const yes[] = {
        ".", "..", "./a", "../a", "a/.", "a/..", "a/./b", "a/../b", "/..", "../", "a//../b",
    };
    static const char *const no[] = {
        "", "a", "/", "...", ".a", "a.", "..a", "a..", "a/.../b", "a/.b/c", "a\\..\\b", "//",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!path_has_dot_segment(yes[i], strlen(yes[i])))
            fail_msg("\"%s\" has a dot segment", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (path_has_dot_segment(no[i], strlen(no[i])))
            fail_msg("\"%s\" has no dot segment", no[i]);
    }
    /* bounded by len */
    assert_false(path_has_dot_segment("ab/..", 2));
    assert_true(path_has_dot_segment("a/.x", 3));
    assert_true(path_has_dot_segment("a/..", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_table),
        cmocka_unit_test(test_normalize_in_place),
        cmocka_unit_test(test_normalize_does_not_read_past_len),
        cmocka_unit_test(test_is_normal),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_decode_in_place),
        cmocka_unit_test(test_has_dot_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
