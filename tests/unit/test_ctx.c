/* Request accessors, the request arena and the context pool. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/arena.h"
#include "core/ctx.h"

static vie_app *app;
static ctx_pool pool;
static vie_buf out;

static int setup(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    app = vie_app_new(NULL);
    ctx_pool_init(&pool, app, NULL);
    return 0;
}

static int teardown(void **state)
{
    ctx_pool_destroy(&pool);
    buf_free(&out);
    vie_app_free(app);
    return 0;
}

static bool str_is(vie_str s, const char *want)
{
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static vie_ctx *ctx_with_query(const char *q)
{
    vie_ctx *c = ctx_acquire(&pool, &out);
    c->req.query = q;
    c->req.query_len = q ? (uint32_t)strlen(q) : 0;
    return c;
}

static void query_params(void **state)
{
    vie_ctx *c = ctx_with_query("a=1&b=hello+world&c=%41%42&flag&empty=&a=2&%62%6fx=y");
    assert_true(str_is(vie_query_param(c, "a"), "1")); /* the first wins */
    assert_true(str_is(vie_query_param(c, "b"), "hello world"));
    assert_true(str_is(vie_query_param(c, "c"), "AB"));
    assert_true(str_is(vie_query_param(c, "flag"), ""));
    assert_true(str_is(vie_query_param(c, "empty"), ""));
    assert_true(str_is(vie_query_param(c, "box"), "y")); /* encoded key */
    assert_null(vie_query_param(c, "missing").ptr);
    assert_null(vie_query_param(c, "fla").ptr); /* no prefix match */
    assert_true(str_is(vie_query(c), "a=1&b=hello+world&c=%41%42&flag&empty=&a=2&%62%6fx=y"));
    ctx_release(&pool, c);
}

static void query_absent_and_bad_escape(void **state)
{
    vie_ctx *c = ctx_with_query(NULL);
    assert_null(vie_query(c).ptr);
    assert_null(vie_query_param(c, "a").ptr);
    ctx_release(&pool, c);
    c = ctx_with_query("a=%zz&b=%00");
    assert_null(vie_query_param(c, "a").ptr);
    assert_null(vie_query_param(c, "b").ptr);
    ctx_release(&pool, c);
}

static void headers_are_case_insensitive(void **state)
{
    vie_ctx *c = ctx_acquire(&pool, &out);
    c->headers[0] = (http_header){"Content-Type", "text/plain", 12, 10};
    c->headers[1] = (http_header){"X-Tag", "one", 5, 3};
    c->headers[2] = (http_header){"x-tag", "two", 5, 3};
    c->req.n_headers = 3;
    assert_true(str_is(vie_header(c, "content-type"), "text/plain"));
    assert_true(str_is(vie_header(c, "X-TAG"), "one"));
    assert_null(vie_header(c, "X-Ta").ptr);
    vie_str n, v;
    assert_true(vie_header_at(c, 2, &n, &v));
    assert_true(str_is(n, "x-tag") && str_is(v, "two"));
    assert_false(vie_header_at(c, 3, &n, &v));
    ctx_release(&pool, c);
}

static void params_are_decoded(void **state)
{
    vie_ctx *c = ctx_acquire(&pool, &out);
    c->match.n_params = 2;
    c->match.params[0] = (router_param){"name", "J%C3%B6rg%20K", 13};
    c->match.params[1] = (router_param){"rest", "a/b%2Fc", 7};
    assert_true(str_is(vie_param(c, "name"), "J\xc3\xb6rg K"));
    assert_true(str_is(vie_param(c, "rest"), "a/b/c"));
    assert_null(vie_param(c, "other").ptr);
    ctx_release(&pool, c);
}

static void body_is_never_null(void **state)
{
    vie_ctx *c = ctx_acquire(&pool, &out);
    vie_str b = vie_body(c);
    assert_non_null(b.ptr);
    assert_int_equal(b.len, 0);
    ctx_release(&pool, c);
}

static void pool_reuses_contexts(void **state)
{
    vie_ctx *a = ctx_acquire(&pool, &out);
    a->res.status = 418;
    ctx_release(&pool, a);
    vie_ctx *b = ctx_acquire(&pool, &out);
    assert_ptr_equal(a, b);             /* no malloc for the next request */
    assert_int_equal(b->res.status, 0); /* and nothing leaks across requests */
    assert_true(b->keep_alive);
    ctx_release(&pool, b);
}

static void arena_reuses_its_first_block(void **state)
{
    vie_arena a;
    assert_int_equal(arena_init(&a, 1024), 0);
    char *p1 = arena_alloc(&a, 100);
    assert_non_null(p1);
    assert_int_equal((uintptr_t)p1 % 16, 0);
    char *big = arena_alloc(&a, 10000); /* spills into an extra block */
    assert_non_null(big);
    memset(big, 1, 10000);
    assert_true(arena_used(&a) >= 10100);
    arena_reset(&a);
    assert_int_equal(arena_used(&a), 0);
    assert_ptr_equal(arena_alloc(&a, 100), p1); /* rewound, extra block freed */
    char *s = arena_strndup(&a, "abcdef", 3);
    assert_string_equal(s, "abc");
    arena_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(query_params),
        cmocka_unit_test(query_absent_and_bad_escape),
        cmocka_unit_test(headers_are_case_insensitive),
        cmocka_unit_test(params_are_decoded),
        cmocka_unit_test(body_is_never_null),
        cmocka_unit_test(pool_reuses_contexts),
        cmocka_unit_test(arena_reuses_its_first_block),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
