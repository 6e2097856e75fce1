/* libFuzzer target for the HTTP/1.1 parser.
 *
 * Input: one byte of flags (which limits; whether to run the chunked
 * decoder on the raw input too), two bytes choosing a split point, then the
 * bytes of the request. The head is parsed whole, split in two at the chosen
 * point, and (for short inputs) fed cumulatively byte by byte; every way
 * must give the same error and the same fields. When the head parses and
 * the request is chunked, the rest goes through the chunked decoder the
 * same three ways. Every piece is fed from an exact-size copy, so reading
 * past the bytes given is caught by AddressSanitizer. Any mismatch aborts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define MAXH         128
#define BYTEWISE_MAX 256

static const http_limits limit_sets[4] = {
    {HTTP_DEFAULT_MAX_REQUEST_LINE, HTTP_DEFAULT_MAX_HEADER_BYTES, HTTP_DEFAULT_MAX_HEADERS,
     HTTP_DEFAULT_MAX_BODY},
    {32, 128, 4, 64},
    {8, 40, 2, 16},
    {200, 100, MAXH, 100000},
};

static void check(bool ok)
{
    if (!ok) abort();
}

static char *copy(const uint8_t *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    check(p != NULL);
    if (n) memcpy(p, s, n);
    return p;
}

/* One way of parsing the head: its result and the buffer the spans point into. */
typedef struct head_run {
    http_error err;
    http_request req;
    http_header hs[MAXH];
    char *buf; /* owned */
    size_t at; /* bytes given to the call that answered */
} head_run;

static void run_call(head_run *r, http_head_parser *p, const http_limits *lim, const uint8_t *in,
                     size_t k)
{
    free(r->buf);
    r->buf = copy(in, k);
    memset(&r->req, 0xA5, sizeof r->req); /* nothing may survive from an earlier call */
    memset(r->hs, 0x5A, sizeof r->hs);
    r->req.headers = r->hs;
    r->err = http_parse_head(p, lim, r->buf, k, &r->req);
    r->at = k;
}

static void same_span(const char *a, const char *abuf, uint32_t alen, const char *b,
                      const char *bbuf, uint32_t blen)
{
    check((a == NULL) == (b == NULL));
    check(alen == blen);
    if (a) check(a - abuf == b - bbuf);
}

static void same_result(const head_run *x, const head_run *y)
{
    check(x->err == y->err);
    if (x->err != HTTP_OK) return;
    const http_request *a = &x->req, *b = &y->req;
    same_span(a->method, x->buf, a->method_len, b->method, y->buf, b->method_len);
    same_span(a->target, x->buf, a->target_len, b->target, y->buf, b->target_len);
    same_span(a->path, x->buf, a->path_len, b->path, y->buf, b->path_len);
    same_span(a->query, x->buf, a->query_len, b->query, y->buf, b->query_len);
    same_span(a->host, x->buf, a->host_len, b->host, y->buf, b->host_len);
    check(a->method_id == b->method_id && a->version_minor == b->version_minor);
    check(a->keep_alive == b->keep_alive && a->chunked == b->chunked);
    check(a->has_content_length == b->has_content_length);
    check(a->content_length == b->content_length);
    check(a->expect_continue == b->expect_continue);
    check(a->n_headers == b->n_headers && a->head_len == b->head_len);
    for (uint32_t i = 0; i < a->n_headers; i++) {
        const http_header *g = &a->headers[i], *h = &b->headers[i];
        same_span(g->name, x->buf, g->name_len, h->name, y->buf, h->name_len);
        same_span(g->value, x->buf, g->value_len, h->value, y->buf, h->value_len);
    }
}

static void inside(const char *p, uint32_t n, const head_run *r)
{
    if (p) check(p >= r->buf && p + n <= r->buf + r->req.head_len);
}

/* What must hold of any accepted head. */
static void sane(const head_run *r, const http_limits *lim)
{
    const http_request *q = &r->req;
    check(q->head_len >= 2 && q->head_len <= r->at);
    check(r->buf[q->head_len - 1] == '\n');
    check(q->method_len > 0 && q->target_len > 0 && q->path_len > 0);
    check(q->version_minor <= 1 && q->n_headers <= lim->max_headers);
    check(!(q->chunked && q->has_content_length));
    check(q->method_id <= HTTP_M_CONNECT);
    inside(q->method, q->method_len, r);
    inside(q->target, q->target_len, r);
    inside(q->path, q->path_len, r);
    inside(q->query, q->query_len, r);
    inside(q->host, q->host_len, r);
    for (uint32_t i = 0; i < q->n_headers; i++) {
        check(q->headers[i].name_len > 0);
        inside(q->headers[i].name, q->headers[i].name_len, r);
        inside(q->headers[i].value, q->headers[i].value_len, r);
    }
}

/* ---- chunked ------------------------------------------------------------ */

typedef struct body_out {
    char *data;
    size_t len, cap;
    const char *in; /* the input of the current call */
    size_t in_len;
} body_out;

static void sink(void *ud, const char *data, size_t len)
{
    body_out *o = ud;
    check(len > 0 && data >= o->in && data + len <= o->in + o->in_len);
    if (o->len + len > o->cap) {
        o->cap = (o->len + len) * 2;
        o->data = realloc(o->data, o->cap);
        check(o->data != NULL);
    }
    memcpy(o->data + o->len, data, len);
    o->len += len;
}

typedef struct body_run {
    http_error err;
    size_t consumed;
    body_out out;
} body_run;

/* Feed in[from..to) to d; returns the result, adds to r->consumed. */
static http_error feed_body(http_chunked *d, const http_limits *lim, const uint8_t *in, size_t from,
                            size_t to, body_run *r)
{
    char *buf = copy(in + from, to - from);
    size_t used = (size_t)-1;
    r->out.in = buf;
    r->out.in_len = to - from;
    http_error e = http_chunked_decode(d, lim, buf, to - from, &used, sink, &r->out);
    free(buf);
    check(used <= to - from);
    if (e == HTTP_AGAIN) check(used == to - from);
    r->consumed += used;
    r->err = e;
    return e;
}

static void same_body(const body_run *a, const body_run *b)
{
    check(a->err == b->err);
    check(a->out.len == b->out.len);
    if (a->out.len) check(memcmp(a->out.data, b->out.data, a->out.len) == 0);
    check(a->consumed == b->consumed);
}

static void fuzz_body(const http_limits *lim, const uint8_t *in, size_t n, size_t split)
{
    body_run whole = {0}, two = {0}, bytes = {0};
    http_chunked d;

    http_chunked_init(&d);
    feed_body(&d, lim, in, 0, n, &whole);
    check(whole.out.len <= lim->max_body && whole.out.len <= n);
    if (whole.err == HTTP_OK) {
        /* a finished body stays finished */
        size_t used = 1;
        check(http_chunked_decode(&d, lim, "0\r\n\r\n", 5, &used, sink, &whole.out) == HTTP_OK);
        check(used == 0);
    }

    size_t k = n ? split % (n + 1) : 0;
    http_chunked_init(&d);
    if (feed_body(&d, lim, in, 0, k, &two) == HTTP_AGAIN) feed_body(&d, lim, in, k, n, &two);
    same_body(&whole, &two);

    if (n <= BYTEWISE_MAX * 2) {
        http_chunked_init(&d);
        bytes.err = HTTP_AGAIN;
        for (size_t i = 0; i < n && bytes.err == HTTP_AGAIN; i++)
            feed_body(&d, lim, in, i, i + 1, &bytes);
        same_body(&whole, &bytes);
    }
    free(whole.out.data);
    free(two.out.data);
    free(bytes.out.data);
}

/* ---- entry -------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    uint8_t flags = data[0];
    size_t split = (size_t)data[1] << 8 | data[2];
    const uint8_t *in = data + 3;
    size_t n = size - 3;
    const http_limits *lim = &limit_sets[flags & 3];

    static head_run whole, two, bytes; /* large: keep them off the stack */
    http_head_parser p;

    http_head_init(&p);
    run_call(&whole, &p, lim, in, n);
    if (whole.err == HTTP_OK) sane(&whole, lim);
    check((unsigned)whole.err < HTTP_ERROR_COUNT);
    check(http_error_reason(whole.err) != NULL);

    /* two pieces */
    size_t k = split % (n + 1);
    http_head_init(&p);
    run_call(&two, &p, lim, in, k);
    if (two.err == HTTP_AGAIN) run_call(&two, &p, lim, in, n);
    same_result(&whole, &two);

    /* cumulative, byte by byte */
    if (n <= BYTEWISE_MAX) {
        http_head_init(&p);
        bytes.err = HTTP_AGAIN;
        for (size_t i = 1; i <= n && bytes.err == HTTP_AGAIN; i++)
            run_call(&bytes, &p, lim, in, i);
        if (n == 0) run_call(&bytes, &p, lim, in, 0);
        same_result(&whole, &bytes);
        /* an accepted head is reported as soon as its last byte arrives */
        if (bytes.err == HTTP_OK) check(bytes.at == bytes.req.head_len);
    }

    if (whole.err == HTTP_OK && whole.req.chunked)
        fuzz_body(lim, in + whole.req.head_len, n - whole.req.head_len, split);
    else if (flags & 4)
        fuzz_body(lim, in, n, split);

    free(whole.buf);
    free(two.buf);
    free(bytes.buf);
    whole.buf = two.buf = bytes.buf = NULL;
    return 0;
}
