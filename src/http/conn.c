/* HTTP/1.1 connections.
 *
 * Reading: bytes land in a pooled read buffer; heads are parsed in place
 * (every request string points into it) and stay put until the request is
 * done. A Content-Length body is taken from the buffer when it fits, or
 * read straight into a buffer of its own; a chunked body is decoded into
 * one. Pipelined requests are served one after the other from the same
 * buffer, and their responses are appended to one output buffer that is
 * written with a single uv_try_write when the batch is done.
 *
 * Back-pressure: when the kernel does not take all the output, the rest is
 * queued with uv_write and the connection stops reading and serving until
 * it drains, so a client that sends without reading cannot make the
 * server buffer without bound.
 *
 * File bodies (vie_send_file): the response's head goes out with the
 * buffered output, then the file with sendfile(2) on the non-blocking
 * socket, before anything else is served on the connection (answers stay
 * in order; reading and serving wait, as for a queued write). Writing to
 * the socket directly is only done with nothing queued in libuv, which is
 * what uv_try_write does too. When the socket is full, the next bytes of
 * the file are read into the output buffer and handed to uv_write, so
 * libuv waits for writability as it owns the socket; its completion
 * resumes sendfile. The write timeout, a client leaving and errors take
 * the paths every write takes.
 */
#include "http/conn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/dispatch.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/writer.h"
#include "server/server.h"

/* Above this much pending output, a batch of pipelined requests is flushed
 * before the next one is served. */
#define OUT_FLUSH_THRESHOLD (64 * 1024)

/* File bytes sent with sendfile before giving the loop back (as nginx's
 * sendfile_max_chunk): a fast reader must not keep the loop on one
 * connection for a whole large file. */
#define FILE_SLICE (2u << 20)

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_process(vie_conn *c);
static void conn_flush(vie_conn *c);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* ------------------------------------------------------------------ */
/* Timeouts                                                            */

static void timeout_set(vie_conn *c, timeout_kind k)
{
    server *s = c->srv;
    dlink_remove(&c->tl);
    c->tkind = (uint8_t)k;
    if (k == TO_NONE) return;
    c->deadline = server_now(s) + s->timeouts[k].ms;
    dlist_push_back(&s->timeouts[k].head, &c->tl);
}

/* ------------------------------------------------------------------ */
/* Buffers                                                             */

static void release_rbuf_if_empty(vie_conn *c)
{
    if (c->rbuf && c->rpos == c->rlen && c->phase == CONN_IDLE) {
        buf_pool_put(&c->srv->rbufs, c->rbuf);
        c->rbuf = NULL;
        c->rpos = c->rlen = 0;
    }
}

static void release_out(vie_conn *c)
{
    if (!c->out.data) return;
    if (c->out.cap == c->srv->obufs.size)
        buf_pool_put(&c->srv->obufs, c->out.data);
    else
        free(c->out.data);
    c->out = (vie_buf){0};
}

static int ensure_out(vie_conn *c)
{
    if (c->out.data) return 0;
    c->out.data = buf_pool_get(&c->srv->obufs);
    if (!c->out.data) return -1;
    c->out.cap = c->srv->obufs.size;
    c->out.len = 0;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

static void on_closed(uv_handle_t *h)
{
    vie_conn *c = h->data;
    server *s = c->srv;
    if (c->ctx) {
        if (c->ctx->in_flight) metrics_request_done(c->ctx); /* cancelled: counted as 499 */
        if (c->ctx->blocking_running)
            c->ctx->orphan_pool = &s->ctxs; /* released when its thread returns */
        else
            ctx_release(&s->ctxs, c->ctx);
    }
    if (c->rbuf) buf_pool_put(&s->rbufs, c->rbuf);
    if (c->sending_file) close(c->file_fd);
    release_out(c);
    buf_free(&c->body);
    free(c);
    s->n_conns--;
    if (s->stopping && s->n_conns == 0) server_begin_stop(s); /* finishes the stop */
}

void conn_abort(vie_conn *c, const char *why)
{
    if (c->closing) return;
    if (why) LOG_DEBUG("conn %p: closing: %s", (void *)c, why);
    c->closing = true;
    /* A parked request learns now that its client is gone: its after
     * hooks and defers run, and its async work is told to stop. */
    if (c->ctx && c->ctx->exec == EXEC_PARKED) executor_cancel(c->ctx, "connection closed");
    dlink_remove(&c->tl);
    dlink_remove(&c->all);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Lingering reads are thrown away: one scratch buffer serves all of them
 * (the loop is single-threaded). */
static void on_linger_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char scratch[4096];
    (void)h;
    (void)suggested;
    *b = uv_buf_init(scratch, sizeof scratch);
}

static void on_linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    vie_conn *c = s->data;
    (void)b;
    if (n < 0) conn_abort(c, "peer closed after our shutdown");
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    vie_conn *c = req->data;
    free(req);
    if (c->closing) return;
    if (status < 0 || c->eof) {
        conn_abort(c, "shutdown done");
        return;
    }
    /* Keep reading (and discarding) for a moment: closing with unread data
     * would send a reset that can destroy the response in flight. */
    timeout_set(c, TO_LINGER);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = true;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_linger_alloc, on_linger_read) != 0)
        conn_abort(c, "linger read failed");
}

/* Graceful close, once all output is written: shut down our side, linger. */
static void conn_shutdown(vie_conn *c)
{
    if (c->closing || c->shut_down) return;
    c->shut_down = true;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) {
        conn_abort(c, "out of memory");
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        conn_abort(c, "shutdown failed");
    }
}

void conn_begin_stop(vie_conn *c)
{
    if (c->closing) return;
    /* An idle connection is not closed outright: its client may be sending
     * its next request right now (under load, most keep-alive connections
     * look idle between two requests). It gets a short grace; a request
     * that comes is answered with Connection: close; if none comes, it is
     * closed gracefully, never reset. */
    bool idle =
        c->phase == CONN_IDLE && !c->writes_pending && !c->sending_file && c->rpos == c->rlen;
    if (idle) {
        timeout_set(c, TO_GRACE);
        return;
    }
    /* In flight: its answer says the connection closes, and it does. */
    if (c->ctx && c->ctx->res.state == RESP_NONE) c->ctx->keep_alive = false;
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    vie_conn *c = h->data;
    (void)suggested;
    if (c->phase == CONN_BODY_DIRECT) {
        /* Exactly the rest of the body, so no pipelined byte lands here. */
        uint64_t left = c->body_need - c->body.len;
        b->base = c->body.data + c->body.len;
        b->len = left > (1u << 20) ? (1u << 20) : (size_t)left;
        return;
    }
    if (!c->rbuf) {
        c->rbuf = buf_pool_get(&c->srv->rbufs);
        c->rpos = c->rlen = 0;
        if (!c->rbuf) {
            *b = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
            return;
        }
    }
    b->base = c->rbuf + c->rlen;
    b->len = c->srv->rbufs.size - c->rlen;
}

static void reading_start(vie_conn *c)
{
    if (c->reading || c->closing || c->eof || c->shut_down) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

static void reading_stop(vie_conn *c)
{
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    vie_conn *c = s->data;
    (void)b;
    if (n > 0) {
        if (c->phase == CONN_BODY_DIRECT) {
            c->body.len += (size_t)n;
            timeout_set(c, TO_BODY);
        } else {
            c->rlen += (uint32_t)n;
            if (c->phase == CONN_BODY_INBUF || c->phase == CONN_BODY_CHUNKED)
                timeout_set(c, TO_BODY);
        }
        conn_process(c);
        return;
    }
    if (n == 0) return; /* EAGAIN */
    if (n == UV_ENOBUFS) {
        LOG_WARN("conn %p: out of memory for a read buffer; closing", (void *)c);
        conn_abort(c, NULL);
        return;
    }
    /* EOF or error. A half-closed client may still want the answers to
     * what it sent: serve what is complete, then close. */
    reading_stop(c);
    if (n != UV_EOF) {
        conn_abort(c, uv_strerror((int)n));
        return;
    }
    c->eof = true;
    if (c->ctx && c->ctx->exec == EXEC_PARKED) {
        /* Its client is gone: stop the pending work now rather than when it
         * finishes (nginx's 499). A client that only half-closed while
         * waiting loses this answer; cancelling abandoned work wins. */
        conn_abort(c, "client closed while a request was pending");
        return;
    }
    conn_process(c);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

static void answer_parse_error(vie_conn *c, http_error e)
{
    vie_ctx *x = c->ctx;
    x->keep_alive = false;
    c->srv->app->stats->bad_requests++;
    LOG_DEBUG("conn %p: bad request: %s", (void *)c, http_error_reason(e));
    /* The head may not have parsed: answer as HTTP/1.1 to an unknown method. */
    x->req.method_id = HTTP_M_OTHER;
    x->req.version_minor = 1;
    vie_send_problem(x, http_error_status(e), http_error_reason(e));
}

/* The request c->ctx is complete: drop it and decide what comes next. */
static void request_done(vie_conn *c)
{
    server *s = c->srv;
    if (s->app->tainted && !s->stopping) server_tainted(s);
    bool keep = c->ctx->keep_alive && !s->stopping;
    metrics_request_done(c->ctx);
    ctx_release(&s->ctxs, c->ctx);
    c->ctx = NULL;
    if (c->body.data) buf_free(&c->body);
    c->requests++;
    c->rpos = c->rnext;
    if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
    if (keep) {
        c->phase = CONN_IDLE;
    } else {
        c->phase = CONN_CLOSING;
        reading_stop(c);
    }
}

/* A request that parked has completed: answer it and go on. */
static void on_request_complete(vie_ctx *x)
{
    vie_conn *c = x->conn;
    request_done(c);
    conn_process(c);
}

/* Serve the request whose head and body are complete. False when it
 * parked: it completes later through on_request_complete. */
static bool serve(vie_conn *c)
{
    server *s = c->srv;
    vie_ctx *x = c->ctx;
    const vie_options *o = &s->app->opt;
    c->phase = CONN_BUSY;
    timeout_set(c, TO_NONE);
    x->keep_alive = x->req.keep_alive && !s->stopping &&
                    (o->max_keepalive_requests == 0 || c->requests + 1 < o->max_keepalive_requests);
    x->on_complete = on_request_complete;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) x->raw_fd = fd;
    metrics_request_start(x);
    dispatch_request(x);
    if (x->exec == EXEC_PARKED) return false;
    request_done(c);
    return true;
}

static void body_sink(void *ud, const char *data, size_t len)
{
    vie_conn *c = ud;
    if (buf_append(&c->body, data, len) != 0) c->body_need = UINT64_MAX; /* flags OOM */
}

/* Advance a request whose head is parsed; true when the body is complete. */
static bool read_body(vie_conn *c)
{
    vie_ctx *x = c->ctx;
    switch (c->phase) {
    case CONN_BODY_INBUF: {
        uint32_t start = c->rpos + x->req.head_len;
        if (c->rlen - start < x->req.content_length) return false;
        x->body = (vie_str){c->rbuf + start, (size_t)x->req.content_length};
        c->rnext = start + (uint32_t)x->req.content_length;
        return true;
    }
    case CONN_BODY_DIRECT:
        if (c->body.len < c->body_need) return false;
        x->body = (vie_str){c->body.data, c->body.len};
        c->rnext = c->rpos + x->req.head_len;
        return true;
    case CONN_BODY_CHUNKED: {
        size_t used = 0;
        http_error e = http_chunked_decode(&c->chunked, &c->srv->app->limits, c->rbuf + c->bpos,
                                           c->rlen - c->bpos, &used, body_sink, c);
        /* Decoded input is dead: close the gap so a long upload never fills
         * the read buffer, keeping the head where it is. */
        uint32_t head_end = c->rpos + x->req.head_len;
        uint32_t tail = c->rlen - (c->bpos + (uint32_t)used);
        memmove(c->rbuf + head_end, c->rbuf + c->bpos + used, tail);
        c->rlen = head_end + tail;
        c->bpos = head_end;
        if (c->body_need == UINT64_MAX) {
            LOG_WARN("conn %p: out of memory for a chunked body", (void *)c);
            answer_parse_error(c, HTTP_E_BODY_TOO_LARGE);
            c->rnext = c->rlen;
            return true;
        }
        if (e == HTTP_AGAIN) return false;
        if (e != HTTP_OK) {
            answer_parse_error(c, e);
            c->rnext = c->rlen;
            return true;
        }
        x->body = (vie_str){c->body.data ? c->body.data : "", c->body.len};
        c->rnext = head_end;
        return true;
    }
    default: return true;
    }
}

/* A head just parsed: choose how its body will be read. */
static void begin_body(vie_conn *c)
{
    vie_ctx *x = c->ctx;
    const http_request *r = &x->req;
    uint32_t head_end = c->rpos + r->head_len;
    uint32_t have = c->rlen - head_end;
    c->rnext = head_end;
    x->start_ns = clock_now_ns(); /* the request deadline counts from here */
    if (r->chunked) {
        c->phase = CONN_BODY_CHUNKED;
        c->bpos = head_end;
        http_chunked_init(&c->chunked);
    } else if (r->content_length == 0) {
        c->phase = CONN_BUSY;
        return;
    } else if (have >= r->content_length || head_end + r->content_length <= c->srv->rbufs.size) {
        c->phase = CONN_BODY_INBUF;
    } else {
        /* Too big for the read buffer: give it its own, sized once (the
         * parser already held it to max_body). */
        if (buf_reserve(&c->body, (size_t)r->content_length) != 0) {
            LOG_WARN("conn %p: out of memory for a %llu-byte body", (void *)c,
                     (unsigned long long)r->content_length);
            c->phase = CONN_BUSY;
            answer_parse_error(c, HTTP_E_BODY_TOO_LARGE);
            return;
        }
        buf_append(&c->body, c->rbuf + head_end, have);
        c->body_need = r->content_length;
        c->rlen = head_end;
        c->phase = CONN_BODY_DIRECT;
    }
    /* Tell a client that waits for it to send the body (RFC 9110 10.1.1),
     * unless the body is already arriving. */
    bool body_started = c->phase == CONN_BODY_DIRECT ? c->body.len > 0 : have > 0;
    if (r->expect_continue && !body_started && ensure_out(c) == 0)
        buf_append(&c->out, continue_100, sizeof continue_100 - 1);
    timeout_set(c, TO_BODY);
}

static void conn_process(vie_conn *c)
{
    server *s = c->srv;
again:
    while (!c->closing && c->phase != CONN_CLOSING) {
        /* Back-pressure: no new output until drained; a file body goes out
         * before the next answer. */
        if (c->writes_pending || c->sending_file) break;
        if (c->ctx && c->ctx->exec == EXEC_PARKED) break; /* answers stay in order */
        if (ensure_out(c) != 0) {
            conn_abort(c, "out of memory");
            return;
        }

        if (c->phase == CONN_IDLE || c->phase == CONN_HEAD) {
            uint32_t avail = c->rlen - c->rpos;
            if (avail == 0) break;
            if (!c->ctx) {
                c->ctx = ctx_acquire(&s->ctxs, &c->out);
                if (!c->ctx) {
                    conn_abort(c, "out of memory");
                    return;
                }
                c->ctx->conn = c;
                http_head_init(&c->hp);
                c->phase = CONN_HEAD;
                timeout_set(c, TO_HEAD);
            }
            http_error e =
                http_parse_head(&c->hp, &s->app->limits, c->rbuf + c->rpos, avail, &c->ctx->req);
            if (e == HTTP_AGAIN) {
                if (c->rlen == s->rbufs.size && c->rpos > 0) {
                    /* No pointer into the head exists yet: slide it down. */
                    memmove(c->rbuf, c->rbuf + c->rpos, avail);
                    c->rlen = avail;
                    c->rpos = 0;
                }
                break;
            }
            if (e != HTTP_OK) {
                c->phase = CONN_BUSY;
                answer_parse_error(c, e);
                c->rnext = c->rlen;
                request_done(c);
                break;
            }
            begin_body(c);
            if (c->ctx->res.state != RESP_NONE) { /* refused before the body */
                request_done(c);
                continue;
            }
        }
        if (c->phase != CONN_BUSY) {
            if (!read_body(c)) break;
            if (c->ctx->res.state != RESP_NONE) { /* a body error was answered */
                request_done(c);
                continue;
            }
        }
        if (!serve(c)) break;
        if (c->out.len >= OUT_FLUSH_THRESHOLD) conn_flush(c);
    }

    if (c->closing) return;
    if (c->eof && c->phase != CONN_BUSY && !c->writes_pending && !c->sending_file) {
        /* The client is gone or half-closed: nothing more can complete. */
        c->phase = CONN_CLOSING;
    }
    bool had_file = c->sending_file;
    conn_flush(c);
    if (c->closing) return;
    /* A file body went out at once: serve the requests that waited for it
     * (a loop, not a recursion, however many pipelined files). */
    if (had_file && !c->sending_file && !c->writes_pending) goto again;
    switch (c->phase) {
    case CONN_IDLE:
        release_rbuf_if_empty(c);
        /* Idle only now that a long answer (a file) is out, while the
         * server stops: the grace of conn_begin_stop, not a keep-alive. */
        if (!c->writes_pending) timeout_set(c, s->stopping ? TO_GRACE : TO_IDLE);
        if (c->rbuf && c->rlen == s->rbufs.size)
            reading_stop(c);
        else if (!c->writes_pending)
            reading_start(c);
        break;
    case CONN_HEAD:
    case CONN_BODY_INBUF:
    case CONN_BODY_CHUNKED:
    case CONN_BODY_DIRECT:
        if (c->writes_pending) break;
        /* A drained write replaced the read deadline: put it back. The head
         * deadline restarts, which only ever follows a full response. */
        if (c->tkind == TO_NONE) timeout_set(c, c->phase == CONN_HEAD ? TO_HEAD : TO_BODY);
        reading_start(c);
        break;
    case CONN_BUSY:
        /* Parked: keep reading pipelined bytes until the buffer is full. */
        if (c->rlen == s->rbufs.size)
            reading_stop(c);
        else if (!c->writes_pending)
            reading_start(c);
        break;
    default: break;
    }
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */

typedef struct write_req {
    uv_write_t req;
    vie_conn *conn;
    vie_buf buf;
} write_req;

static void after_output(vie_conn *c)
{
    if (c->phase == CONN_CLOSING && !c->writes_pending && !c->sending_file && c->out.len == 0)
        conn_shutdown(c);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *w = container_of(req, write_req, req);
    vie_conn *c = w->conn;
    if (w->buf.cap == c->srv->obufs.size)
        buf_pool_put(&c->srv->obufs, w->buf.data);
    else
        free(w->buf.data);
    free(w);
    c->writes_pending--;
    if (c->closing) return;
    if (status < 0) {
        conn_abort(c, uv_strerror(status));
        return;
    }
    if (c->writes_pending) return;
    timeout_set(c, TO_NONE);
    /* Drained: serve what was waiting behind the back-pressure. */
    conn_process(c);
}

static void file_close(vie_conn *c)
{
    close(c->file_fd);
    c->file_fd = -1;
    c->sending_file = false;
}

void conn_file_handoff(void *arg)
{
    conn_file_body *fb = arg;
    vie_ctx *x = fb->ctx;
    /* A blocking handler's request may outlive its connection: on_closed
     * then gave it an orphan pool and the connection is gone. Otherwise
     * the connection is alive here (perhaps closing). */
    vie_conn *c = x->orphan_pool ? NULL : x->conn;
    if (!c || c->closing || c->ctx != x || x->res.state != RESP_ENDED) {
        close(fb->fd);
        return;
    }
    if (c->sending_file) { /* cannot happen: serving waits for the file */
        close(fb->fd);
        x->keep_alive = false;
        conn_abort(c, "a second file body while one is being sent");
        return;
    }
    c->file_fd = fb->fd;
    c->file_off = fb->offset;
    c->file_left = fb->len;
    c->sending_file = true;
}

/* Set by tests (conn_test_no_sendfile); any thread may read it. */
static atomic_bool no_sendfile;

void conn_test_no_sendfile(bool on)
{
    atomic_store(&no_sendfile, on);
}

typedef enum file_step {
    FILE_DONE,   /* every byte went out */
    FILE_CHUNK,  /* the next bytes are in c->out: uv_write them */
    FILE_FAILED, /* the connection is closing */
} file_step;

/* The file is shorter than the head said: the only honest end is a close. */
static file_step file_short(vie_conn *c)
{
    LOG_WARN("conn %p: a file body ended %llu bytes early (the file shrank while being sent); "
             "closing",
             (void *)c, (unsigned long long)c->file_left);
    conn_abort(c, NULL);
    return FILE_FAILED;
}

/* Send the file with sendfile until it is done, the socket is full or the
 * slice is used up; then read its next bytes into c->out. Called with no
 * write queued and c->out empty. */
static file_step file_pump(vie_conn *c)
{
    uv_os_fd_t sock;
    if (uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0) {
        conn_abort(c, "no socket descriptor");
        return FILE_FAILED;
    }
    size_t sent = 0;
    while (c->file_left > 0 && sent < FILE_SLICE &&
           !atomic_load_explicit(&no_sendfile, memory_order_relaxed)) {
        size_t want = FILE_SLICE - sent;
        if (c->file_left < want) want = (size_t)c->file_left;
        off_t off = (off_t)c->file_off;
        ssize_t n = sendfile(sock, c->file_fd, &off, want);
        if (n > 0) {
            c->file_off += (uint64_t)n;
            c->file_left -= (uint64_t)n;
            sent += (size_t)n;
        } else if (n == 0) {
            return file_short(c);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EINVAL || errno == ENOSYS) {
            /* Full; or a file system without sendfile: pread does it. */
            break;
        } else {
            conn_abort(c, strerror(errno));
            return FILE_FAILED;
        }
    }
    if (c->file_left == 0) {
        file_close(c);
        return FILE_DONE;
    }
    if (ensure_out(c) != 0) {
        conn_abort(c, "out of memory");
        return FILE_FAILED;
    }
    size_t want = c->out.cap;
    if (c->file_left < want) want = (size_t)c->file_left;
    ssize_t n;
    do
        n = pread(c->file_fd, c->out.data, want, (off_t)c->file_off);
    while (n < 0 && errno == EINTR);
    if (n == 0) return file_short(c);
    if (n < 0) {
        LOG_WARN("conn %p: reading a file body failed: %s; closing", (void *)c, strerror(errno));
        conn_abort(c, NULL);
        return FILE_FAILED;
    }
    c->out.len = (size_t)n;
    c->file_off += (uint64_t)n;
    c->file_left -= (uint64_t)n;
    return FILE_CHUNK;
}

static void conn_flush(vie_conn *c)
{
    bool try_first = true;
    while (!c->closing) {
        if (c->out.len == 0) {
            if (c->sending_file && !c->writes_pending) {
                file_step st = file_pump(c);
                if (st == FILE_FAILED) return;
                if (st == FILE_CHUNK) {
                    /* Straight to uv_write: it writes what fits now and
                     * completes on a later turn of the loop, which is the
                     * wait for writability and the yield after a slice. */
                    try_first = false;
                    continue;
                }
            }
            release_out(c);
            after_output(c);
            return;
        }
        size_t off = 0;
        if (!c->writes_pending && try_first) {
            uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
            int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (n < 0 && n != UV_EAGAIN) {
                conn_abort(c, uv_strerror(n));
                return;
            }
            if (n > 0) off = (size_t)n;
            if (off == c->out.len) {
                c->out.len = 0;
                continue; /* a file body may follow */
            }
        }
        /* The kernel is full: hand the rest to libuv and stop taking input. */
        write_req *w = malloc(sizeof *w);
        if (!w) {
            conn_abort(c, "out of memory");
            return;
        }
        w->conn = c;
        w->buf = c->out;
        c->out = (vie_buf){0};
        uv_buf_t b = uv_buf_init(w->buf.data + off, (unsigned)(w->buf.len - off));
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
            free(w->buf.data);
            free(w);
            conn_abort(c, "write failed");
            return;
        }
        c->writes_pending++;
        reading_stop(c);
        c->write_mark = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        timeout_set(c, TO_WRITE);
        return;
    }
}

/* ------------------------------------------------------------------ */
/* Request accessors that need the socket                              */

vie_str vie_client_ip(vie_ctx *x)
{
    if (!x->conn) return (vie_str){"", 0};
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char *ip = arena_alloc(&x->arena, INET6_ADDRSTRLEN);
    if (!ip || uv_tcp_getpeername(&x->conn->tcp, (struct sockaddr *)&ss, &len) != 0)
        return (vie_str){"", 0};
    int rc = ss.ss_family == AF_INET6
                 ? uv_ip6_name((struct sockaddr_in6 *)&ss, ip, INET6_ADDRSTRLEN)
                 : uv_ip4_name((struct sockaddr_in *)&ss, ip, INET6_ADDRSTRLEN);
    if (rc != 0) return (vie_str){"", 0};
    return (vie_str){ip, strlen(ip)};
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */

void conn_start(vie_conn *c)
{
    c->tcp.data = c;
    c->phase = CONN_IDLE;
    c->file_fd = -1;
    uv_tcp_nodelay(&c->tcp, 1);
    timeout_set(c, TO_IDLE);
    reading_start(c);
    if (!c->reading) conn_abort(c, "read start failed");
}

void conn_on_timeout(vie_conn *c)
{
    server *s = c->srv;
    timeout_kind k = (timeout_kind)c->tkind;
    dlink_remove(&c->tl);
    c->tkind = TO_NONE;
    if (k == TO_IDLE || k == TO_LINGER || k == TO_GRACE) {
        /* Idle means every byte was read: the close is a FIN, not a reset. */
        conn_abort(c, "idle");
        return;
    }
    if (k == TO_WRITE) {
        /* The timeout bounds a pause, not the whole response: a slow
         * reader that made progress gets another period. */
        size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        if (queued < c->write_mark) {
            c->write_mark = queued;
            timeout_set(c, TO_WRITE);
            return;
        }
        s->app->stats->timeouts++;
        LOG_INFO("conn %p: client read nothing for %u ms; closing", (void *)c, s->timeouts[k].ms);
        conn_abort(c, NULL);
        return;
    }
    s->app->stats->timeouts++;
    /* Head or body too slow: say so, then close (slowloris). */
    LOG_INFO("conn %p: %s not received within %u ms; answering 408", (void *)c,
             k == TO_HEAD ? "request head" : "request body", s->timeouts[k].ms);
    if (c->ctx && c->ctx->res.state == RESP_NONE && ensure_out(c) == 0) {
        c->ctx->out = &c->out;
        c->ctx->keep_alive = false;
        c->ctx->req.method_id = HTTP_M_OTHER;
        vie_send_problem(c->ctx, 408, "the request was not received in time");
    }
    if (c->ctx) {
        ctx_release(&s->ctxs, c->ctx);
        c->ctx = NULL;
    }
    reading_stop(c);
    c->phase = CONN_CLOSING;
    conn_flush(c);
}
