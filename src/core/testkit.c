/* The in-process test kit (vie_test.h): a request parsed by the real
 * parser, served by the real executor, answered by the real writer into a
 * buffer, and read back as a client would. */
#include "vie/vie_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "core/clock.h"
#include "core/ctx.h"
#include "core/dispatch.h"
#include "core/log.h"
#include "core/metrics.h"

typedef struct testkit {
    uv_loop_t loop;
    ctx_pool pool;
} testkit;

int vie_test_begin(vie_app *app)
{
    if (!app) return VIE_EINVAL;
    if (app->testkit) return VIE_OK;
    int rc = vie_app_freeze(app);
    if (rc != VIE_OK) return rc;
    testkit *tk = calloc(1, sizeof *tk);
    if (!tk) return VIE_ENOMEM;
    if (uv_loop_init(&tk->loop) != 0) {
        free(tk);
        return VIE_EIO;
    }
    ctx_pool_init(&tk->pool, app, &tk->loop);
    app->testkit = tk;
    /* The test kit is a worker of its own: layers open what they need. */
    app_run_hooks(app, VIE_EV_WORKER_START, &tk->loop);
    return VIE_OK;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void vie_test_end(vie_app *app)
{
    if (!app || !app->testkit) return;
    testkit *tk = app->testkit;
    app_run_hooks(app, VIE_EV_WORKER_STOP, &tk->loop);
    uv_walk(&tk->loop, close_walk, NULL);
    uv_run(&tk->loop, UV_RUN_DEFAULT);
    uv_loop_close(&tk->loop);
    ctx_pool_destroy(&tk->pool);
    free(tk);
    app->testkit = NULL;
}

void *vie_test_loop(vie_app *app)
{
    return app && app->testkit ? &app->testkit->loop : NULL;
}

static void on_run_for(uv_timer_t *t)
{
    uv_stop(t->loop);
}

void vie_test_run_for(vie_app *app, uint32_t ms)
{
    if (!app || !app->testkit) return;
    uv_timer_t t;
    uv_timer_init(&app->testkit->loop, &t);
    uv_update_time(&app->testkit->loop); /* the cached time may be stale */
    uv_timer_start(&t, on_run_for, ms, 0);
    uv_run(&app->testkit->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&app->testkit->loop, UV_RUN_NOWAIT);
}

/* ------------------------------------------------------------------ */
/* Reading the response back                                           */

static void body_append(void *ud, const char *data, size_t len)
{
    buf_append(ud, data, len);
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void parse_response(vie_test_response *r, bool head_request)
{
    const char *p = r->raw, *end = r->raw + r->raw_len;
    /* Skip interim 1xx responses (100 Continue). */
    for (;;) {
        const char *eoh = strstr(p, "\r\n\r\n");
        if (!eoh || end - p < 12 || strncmp(p, "HTTP/1.1 ", 9) != 0) return;
        int status = atoi(p + 9);
        if (status >= 200 || status < 100) break;
        p = eoh + 4;
    }
    r->status = atoi(p + 9);
    const char *line = strstr(p, "\r\n") + 2;
    const char *eoh = strstr(p, "\r\n\r\n");
    size_t cap = 0;
    for (const char *q = line; q < eoh; q = strstr(q, "\r\n") + 2)
        cap++;
    r->headers = calloc(cap + 1, sizeof *r->headers);
    bool chunked = false;
    long long length = -1;
    r->keep_alive = true;
    while (line < eoh && r->headers) {
        const char *le = strstr(line, "\r\n");
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon) {
            const char *v = colon + 1;
            while (v < le && *v == ' ')
                v++;
            vie_test_field *h = &r->headers[r->n_headers++];
            h->name = dup_n(line, (size_t)(colon - line));
            h->value = dup_n(v, (size_t)(le - v));
            if (h->name && h->value) {
                if (!strcasecmp(h->name, "transfer-encoding") && !strcasecmp(h->value, "chunked"))
                    chunked = true;
                if (!strcasecmp(h->name, "content-length")) length = atoll(h->value);
                if (!strcasecmp(h->name, "connection") && !strcasecmp(h->value, "close"))
                    r->keep_alive = false;
            }
        }
        line = le + 2;
    }
    const char *body = eoh + 4;
    size_t avail = (size_t)(end - body);
    vie_buf b = {0};
    if (head_request || r->status == 204 || r->status == 304) {
        /* no body */
    } else if (chunked) {
        http_chunked d;
        http_chunked_init(&d);
        http_limits lim = {.max_header_bytes = 1u << 20, .max_body = UINT64_MAX / 4};
        size_t used;
        http_chunked_decode(&d, &lim, body, avail, &used, body_append, &b);
    } else if (length >= 0) {
        buf_append(&b, body, (size_t)length < avail ? (size_t)length : avail);
    } else {
        buf_append(&b, body, avail);
    }
    buf_reserve(&b, 1);
    if (b.data) b.data[b.len] = '\0';
    r->body = b.data ? b.data : calloc(1, 1);
    r->body_len = b.len;
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

static void on_complete(vie_ctx *c)
{
    (void)c; /* the wait loop below watches c->exec */
}

static void on_wait_timeout(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

vie_test_response *vie_test_raw(vie_app *app, const void *bytes, size_t len)
{
    if (!app || !bytes) return NULL;
    if (!app->testkit && vie_test_begin(app) != VIE_OK) return NULL;
    testkit *tk = app->testkit;
    vie_test_response *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    /* The parser needs the bytes to stay put for the request's life. */
    char *in = dup_n(bytes, len);
    vie_buf outb = {0};
    vie_buf body = {0};
    vie_ctx *c = ctx_acquire(&tk->pool, &outb);
    if (!in || !c) {
        free(in);
        free(r);
        if (c) ctx_release(&tk->pool, c);
        return NULL;
    }
    http_head_parser hp;
    http_head_init(&hp);
    http_error e = http_parse_head(&hp, &app->limits, in, len, &c->req);
    bool head_request = false;
    if (e == HTTP_OK) {
        head_request = c->req.method_id == HTTP_M_HEAD;
        const char *rest = in + c->req.head_len;
        size_t rest_len = len - c->req.head_len;
        if (c->req.chunked) {
            http_chunked d;
            http_chunked_init(&d);
            size_t used;
            e = http_chunked_decode(&d, &app->limits, rest, rest_len, &used, body_append, &body);
            if (e == HTTP_AGAIN) e = HTTP_E_CHUNK_SYNTAX;
            c->body = (vie_str){body.data ? body.data : "", body.len};
        } else if (c->req.content_length > rest_len) {
            e = HTTP_E_BODY_TOO_LARGE;
            LOG_WARN("vie_test: the body is shorter than its Content-Length");
        } else {
            c->body = (vie_str){rest, (size_t)c->req.content_length};
        }
    } else if (e == HTTP_AGAIN) {
        e = HTTP_E_REQUEST_LINE;
    }
    if (e != HTTP_OK) {
        c->keep_alive = false;
        c->req.method_id = HTTP_M_OTHER;
        c->req.version_minor = 1;
        vie_send_problem(c, http_error_status(e), http_error_reason(e));
    } else {
        c->keep_alive = c->req.keep_alive;
        c->on_complete = on_complete;
        c->start_ns = clock_now_ns();
        metrics_request_start(c);
        dispatch_request(c);
        if (c->exec == EXEC_PARKED) {
            bool timed_out = false;
            uv_timer_t t;
            uv_timer_init(&tk->loop, &t);
            t.data = &timed_out;
            uv_timer_start(&t, on_wait_timeout, 30000, 0);
            while (c->exec != EXEC_DONE && !timed_out)
                uv_run(&tk->loop, UV_RUN_ONCE);
            uv_close((uv_handle_t *)&t, NULL);
            uv_run(&tk->loop, UV_RUN_NOWAIT);
            if (c->exec != EXEC_DONE) {
                LOG_ERROR("vie_test: the request did not complete within 30 s; cancelling it");
                executor_cancel(c, "vie_test gave up");
                /* A blocking handler's thread still uses the context and
                 * the request bytes: they must outlive it. */
                while (c->blocking_running)
                    uv_run(&tk->loop, UV_RUN_ONCE);
            }
        }
    }
    r->raw = dup_n(outb.data ? outb.data : "", outb.len);
    r->raw_len = outb.len;
    r->n_trail = c->n_trail;
    if (c->n_trail) {
        r->trail = malloc(c->n_trail * sizeof *r->trail);
        if (r->trail) memcpy(r->trail, c->trail, c->n_trail * sizeof *r->trail);
    }
    bool keep = c->keep_alive;
    metrics_request_done(c);
    ctx_release(&tk->pool, c);
    if (r->raw) parse_response(r, head_request);
    if (!keep) r->keep_alive = false;
    buf_free(&outb);
    buf_free(&body);
    free(in);
    return r;
}

vie_test_response *vie_test_request(vie_app *app, const char *method, const char *target,
                                    const char *const *headers, const void *body, size_t body_len)
{
    if (!app || !method || !target || (body_len && !body)) return NULL;
    vie_buf b = {0};
    char line[64];
    buf_append(&b, method, strlen(method));
    buf_append_lit(&b, " ");
    buf_append(&b, target, strlen(target));
    buf_append_lit(&b, " HTTP/1.1\r\nHost: vie.test\r\n");
    for (const char *const *h = headers; h && *h; h++) {
        buf_append(&b, *h, strlen(*h));
        buf_append_lit(&b, "\r\n");
    }
    if (body_len || (body && strcmp(method, "GET") && strcmp(method, "HEAD"))) {
        int n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", body_len);
        buf_append(&b, line, (size_t)n);
    }
    buf_append_lit(&b, "\r\n");
    if (body_len) buf_append(&b, body, body_len);
    vie_test_response *r = b.data ? vie_test_raw(app, b.data, b.len) : NULL;
    buf_free(&b);
    return r;
}

const char *vie_test_header(const vie_test_response *r, const char *name)
{
    for (size_t i = 0; r && i < r->n_headers; i++)
        if (r->headers[i].name && !strcasecmp(r->headers[i].name, name)) return r->headers[i].value;
    return NULL;
}

void vie_test_response_free(vie_test_response *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    free(r->trail);
    free(r->raw);
    free(r);
}
