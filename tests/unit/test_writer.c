/* The response writer: exact bytes on the wire and every refusal of its
 * state machine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/ctx.h"
#include "http/writer.h"

typedef struct fixture {
    vie_app *app;
    ctx_pool pool;
    vie_buf out;
    vie_ctx *c;
} fixture;

static int setup(void **state)
{
    static fixture f;
    memset(&f, 0, sizeof f);
    vie_log_set_level(VIE_LOG_OFF);
    f.app = vie_app_new(NULL);
    ctx_pool_init(&f.pool, f.app, NULL);
    f.c = ctx_acquire(&f.pool, &f.out);
    f.c->req.version_minor = 1;
    f.c->req.method_id = HTTP_M_GET;
    f.c->req.method = "GET";
    f.c->req.method_len = 3;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ctx_release(&f->pool, f->c);
    ctx_pool_destroy(&f->pool);
    buf_free(&f->out);
    vie_app_free(f->app);
    return 0;
}

/* The output with the Date value masked, NUL-terminated. */
static const char *wire(fixture *f)
{
    static char s[65536];
    size_t n = f->out.len < sizeof s - 1 ? f->out.len : sizeof s - 1;
    memcpy(s, f->out.data, n);
    s[n] = '\0';
    char *d = strstr(s, "Date: ");
    if (d) memset(d + 6, 'D', 29);
    return s;
}

#define DATE "Date: DDDDDDDDDDDDDDDDDDDDDDDDDDDDD\r\n"

static void send_text_exact_bytes(void **state)
{
    fixture *f = *state;
    assert_int_equal(vie_send_text(f->c, 200, "Hello, World!"), VIE_DONE);
    assert_string_equal(wire(f), "HTTP/1.1 200 OK\r\n" DATE "Server: vie\r\n"
                                 "Content-Type: text/plain; charset=utf-8\r\n"
                                 "Content-Length: 13\r\n\r\nHello, World!");
    assert_int_equal(f->c->res.state, RESP_ENDED);
}

static void date_is_imf_fixdate(void **state)
{
    fixture *f = *state;
    vie_send_text(f->c, 200, "x");
    const char *d = strstr(f->out.data, "Date: ") + 6;
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    assert_int_equal(d[3], ',');
    assert_int_equal(d[7], ' ');
    assert_int_equal(d[19], ':');
    assert_memory_equal(d + 25, " GMT\r\n", 6);
}

static void head_request_gets_length_without_body(void **state)
{
    fixture *f = *state;
    f->c->req.method_id = HTTP_M_HEAD;
    vie_send_text(f->c, 200, "Hello, World!");
    const char *w = wire(f);
    assert_non_null(strstr(w, "Content-Length: 13\r\n"));
    assert_true(strstr(w, "\r\n\r\n")[4] == '\0');
}

static void no_content_has_no_length_nor_body(void **state)
{
    fixture *f = *state;
    vie_send(f->c, 204, NULL, "ignored", 7);
    const char *w = wire(f);
    assert_null(strstr(w, "Content-Length"));
    assert_string_equal(w, "HTTP/1.1 204 No Content\r\n" DATE "Server: vie\r\n\r\n");
}

static void second_send_is_refused(void **state)
{
    fixture *f = *state;
    vie_send_text(f->c, 200, "one");
    size_t len = f->out.len;
    assert_int_equal(vie_send_text(f->c, 500, "two"), VIE_DONE);
    assert_int_equal(f->out.len, len); /* nothing more on the wire */
    assert_int_equal(f->app->stats->writer_refusals, 1);
    assert_int_equal(vie_response_status(f->c), 200);
}

static void header_after_head_is_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(vie_write(f->c, "a", 1), VIE_OK);
    assert_int_equal(vie_header_add(f->c, "X-Late", "1"), VIE_ESTATE);
    assert_int_equal(vie_set_status(f->c, 404), VIE_ESTATE);
    assert_int_equal(vie_set_content_length(f->c, 5), VIE_ESTATE);
    assert_int_equal(f->app->stats->writer_refusals, 3);
}

static void write_after_end_is_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(vie_end(f->c), VIE_OK);
    size_t len = f->out.len;
    assert_int_equal(vie_write(f->c, "x", 1), VIE_ESTATE);
    assert_int_equal(vie_end(f->c), VIE_ESTATE);
    assert_int_equal(f->out.len, len);
}

static void empty_end_sends_zero_length(void **state)
{
    fixture *f = *state;
    vie_set_status(f->c, 202);
    vie_end(f->c);
    assert_string_equal(wire(f), "HTTP/1.1 202 Accepted\r\n" DATE "Server: vie\r\n"
                                 "Content-Length: 0\r\n\r\n");
}

static void streaming_is_chunked_in_http11(void **state)
{
    fixture *f = *state;
    assert_int_equal(vie_header_add(f->c, "Content-Type", "text/plain"), VIE_OK);
    assert_int_equal(vie_write(f->c, "Hello, ", 7), VIE_OK);
    assert_int_equal(vie_write(f->c, "", 0), VIE_OK); /* an empty write is not a last chunk */
    assert_int_equal(vie_write(f->c, "World!!!!!!!!!!!", 16), VIE_OK);
    assert_int_equal(vie_end(f->c), VIE_OK);
    assert_string_equal(wire(f), "HTTP/1.1 200 OK\r\n" DATE "Server: vie\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n"
                                 "7\r\nHello, \r\n10\r\nWorld!!!!!!!!!!!\r\n0\r\n\r\n");
}

static void streaming_is_close_delimited_in_http10(void **state)
{
    fixture *f = *state;
    f->c->req.version_minor = 0;
    vie_write(f->c, "abc", 3);
    vie_end(f->c);
    assert_string_equal(wire(f), "HTTP/1.1 200 OK\r\n" DATE "Server: vie\r\n"
                                 "Connection: close\r\n\r\nabc");
    assert_false(f->c->keep_alive);
}

static void http10_keep_alive_is_announced(void **state)
{
    fixture *f = *state;
    f->c->req.version_minor = 0;
    vie_send_text(f->c, 200, "x");
    assert_non_null(strstr(wire(f), "Connection: keep-alive\r\n"));
}

static void closing_connection_is_announced(void **state)
{
    fixture *f = *state;
    f->c->keep_alive = false;
    vie_send_text(f->c, 200, "x");
    assert_non_null(strstr(wire(f), "Connection: close\r\n"));
}

static void declared_length_is_enforced(void **state)
{
    fixture *f = *state;
    assert_int_equal(vie_set_content_length(f->c, 5), VIE_OK);
    assert_int_equal(vie_write(f->c, "abc", 3), VIE_OK);
    assert_int_equal(vie_write(f->c, "def", 3), VIE_EINVAL); /* 6 > 5 */
    assert_int_equal(vie_end(f->c), VIE_EINVAL);             /* 3 < 5: close */
    assert_false(f->c->keep_alive);
    const char *w = wire(f);
    assert_non_null(strstr(w, "Content-Length: 5\r\n"));
    assert_null(strstr(w, "chunked"));
}

static void declared_length_exact(void **state)
{
    fixture *f = *state;
    vie_set_content_length(f->c, 6);
    vie_write(f->c, "abc", 3);
    vie_write(f->c, "def", 3);
    assert_int_equal(vie_end(f->c), VIE_OK);
    assert_true(f->c->keep_alive);
    assert_non_null(strstr(wire(f), "Content-Length: 6\r\n\r\nabcdef"));
}

static void header_injection_is_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(vie_header_add(f->c, "X-A", "a\r\nSet-Cookie: x=1"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "X-A", "a\nb"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "X A", "v"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "X:A", "v"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "", "v"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, NULL, "v"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "Content-Length", "3"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "transfer-encoding", "chunked"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "Connection", "close"), VIE_EINVAL);
    assert_int_equal(vie_header_add(f->c, "X-Ok", "tab\tand obs-text \xc3\xa9"), VIE_OK);
    vie_send_text(f->c, 200, "x");
    const char *w = wire(f);
    assert_null(strstr(w, "Set-Cookie"));
    assert_non_null(strstr(w, "X-Ok: tab\tand obs-text \xc3\xa9\r\n"));
}

static void many_headers_grow_the_buffer(void **state)
{
    fixture *f = *state;
    char name[32], value[64];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "X-H%d", i);
        snprintf(value, sizeof value, "value-%d-0123456789012345678901234567890123456789", i);
        assert_int_equal(vie_header_add(f->c, name, value), VIE_OK);
    }
    vie_send_text(f->c, 200, "x");
    const char *w = wire(f);
    assert_non_null(strstr(w, "X-H0: value-0-"));
    assert_non_null(strstr(w, "X-H99: value-99-"));
}

static void problem_json_shape_and_escaping(void **state)
{
    fixture *f = *state;
    vie_send_problem(f->c, 404, "no \"route\" \\ here\n");
    const char *w = wire(f);
    assert_non_null(strstr(w, "Content-Type: application/problem+json\r\n"));
    const char *body = strstr(w, "\r\n\r\n") + 4;
    assert_string_equal(body, "{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,"
                              "\"detail\":\"no \\\"route\\\" \\\\ here\\u000a\"}");
}

static void problem_detail_is_bounded(void **state)
{
    fixture *f = *state;
    char big[4000];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    vie_send_problem(f->c, 500, big);
    const char *body = strstr(wire(f), "\r\n\r\n") + 4;
    size_t n = strlen(body);
    assert_true(n < 1024);
    assert_memory_equal(body + n - 2, "\"}", 2); /* still valid JSON: no half escape */
    assert_true(body[n - 3] == '"' && body[n - 4] == '\\');
}

static void status_out_of_range(void **state)
{
    fixture *f = *state;
    assert_int_equal(vie_set_status(f->c, 99), VIE_EINVAL);
    assert_int_equal(vie_set_status(f->c, 600), VIE_EINVAL);
    vie_send_text(f->c, 1000, "x");
    assert_int_equal(vie_response_status(f->c), 500);
}

static void finish_ends_an_open_stream(void **state)
{
    fixture *f = *state;
    vie_write(f->c, "ab", 2);
    writer_finish(f->c);
    assert_int_equal(f->c->res.state, RESP_ENDED);
    const char *w = wire(f);
    assert_string_equal(w + strlen(w) - 5, "0\r\n\r\n");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(send_text_exact_bytes),
        T(date_is_imf_fixdate),
        T(head_request_gets_length_without_body),
        T(no_content_has_no_length_nor_body),
        T(second_send_is_refused),
        T(header_after_head_is_refused),
        T(write_after_end_is_refused),
        T(empty_end_sends_zero_length),
        T(streaming_is_chunked_in_http11),
        T(streaming_is_close_delimited_in_http10),
        T(http10_keep_alive_is_announced),
        T(closing_connection_is_announced),
        T(declared_length_is_enforced),
        T(declared_length_exact),
        T(header_injection_is_refused),
        T(many_headers_grow_the_buffer),
        T(problem_json_shape_and_escaping),
        T(problem_detail_is_bounded),
        T(status_out_of_range),
        T(finish_ends_an_open_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
