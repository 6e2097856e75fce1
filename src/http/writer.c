/* The response writer. Every call checks the state first and refuses
 * what would corrupt the stream (a second head, a header after the head,
 * bytes after the end), logging who asked and counting it. */
#include "http/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "http/conn.h"
#include "http/date.h"

static const char *const state_names[] = {"none", "head", "body", "ended"};

static int refuse(vie_ctx *c, const char *call, int err, const char *why)
{
    c->app->stats->writer_refusals++;
    LOG_WARN("response: %s refused for %.*s %.*s: %s (state %s, in %s)", call,
             (int)c->req.method_len, c->req.method ? c->req.method : "", (int)c->path.len,
             c->path.ptr ? c->path.ptr : "", why, state_names[c->res.state],
             c->actor ? c->actor : "vie");
    return err;
}

/* Digits of v into the end of a 20-byte buffer; returns the first digit. */
static char *u64_digits(char end[static 20], uint64_t v)
{
    char *p = end + 20;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

static char *put_length(char *p, uint64_t length)
{
    char digits[20];
    char *d = u64_digits(digits, length);
    size_t n = (size_t)(digits + 20 - d);
    memcpy(p, "Content-Length: ", 16);
    p += 16;
    memcpy(p, d, n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static bool status_has_no_body(int status)
{
    return status < 200 || status == 204 || status == 304;
}

/* Bytes of the head that do not depend on the handler's headers. */
#define HEAD_FIXED_MAX 256

/* Write the head into c->out. content_type may be NULL. The framing is
 * chosen here: a known length, else chunked (1.1) or close-delimited (1.0). */
static int write_head(vie_ctx *c, const char *content_type, size_t ctype_len, bool known_length,
                      uint64_t length)
{
    vie_response *r = &c->res;
    if (r->status == 0) r->status = 200;
    r->no_body = c->req.method_id == HTTP_M_HEAD || status_has_no_body(r->status);

    const char *reason = vie_reason_phrase(r->status);
    size_t reason_len = strlen(reason);
    size_t need = HEAD_FIXED_MAX + reason_len + r->hdrs_len + ctype_len;
    vie_buf *o = c->out;
    if (buf_reserve(o, need) != 0) return VIE_ENOMEM;

    char *p = o->data + o->len;
    memcpy(p, "HTTP/1.1 ", 9);
    p[9] = (char)('0' + r->status / 100);
    p[10] = (char)('0' + r->status / 10 % 10);
    p[11] = (char)('0' + r->status % 10);
    p[12] = ' ';
    p += 13;
    memcpy(p, reason, reason_len);
    p += reason_len;
    memcpy(p, "\r\nDate: ", 8);
    p += 8;
    memcpy(p, http_date_now(), HTTP_DATE_LEN);
    p += HTTP_DATE_LEN;
    memcpy(p, "\r\nServer: vie\r\n", 15);
    p += 15;
    if (content_type) {
        memcpy(p, "Content-Type: ", 14);
        p += 14;
        memcpy(p, content_type, ctype_len);
        p += ctype_len;
        *p++ = '\r';
        *p++ = '\n';
    }
    if (r->hdrs_len) {
        memcpy(p, r->hdrs, r->hdrs_len);
        p += r->hdrs_len;
    }
    if (r->status < 200 || r->status == 204) {
        /* RFC 9110 8.6: no Content-Length on 1xx and 204 */
    } else if (r->status == 304) {
        /* A 304's Content-Length may only be the one a 200 would carry
         * (RFC 9110 8.6): a made-up 0 would make caches store a length of
         * 0 for the entry. Sent only when the handler set it. */
        if (r->has_length) p = put_length(p, r->content_length);
    } else if (known_length) {
        p = put_length(p, length);
    } else {
        if (c->req.version_minor >= 1) {
            memcpy(p, "Transfer-Encoding: chunked\r\n", 28);
            p += 28;
            r->chunked = !r->no_body;
        } else {
            r->close_delimited = true;
            c->keep_alive = false;
        }
    }
    if (!c->keep_alive) {
        memcpy(p, "Connection: close\r\n", 19);
        p += 19;
    } else if (c->req.version_minor == 0) {
        memcpy(p, "Connection: keep-alive\r\n", 24);
        p += 24;
    }
    *p++ = '\r';
    *p++ = '\n';
    o->len = (size_t)(p - o->data);
    r->state = RESP_HEAD;
    return VIE_OK;
}

int vie_set_status(vie_ctx *c, int status)
{
    if (status < 100 || status > 599)
        return refuse(c, "vie_set_status", VIE_EINVAL, "status out of range");
    if (c->res.state != RESP_NONE)
        return refuse(c, "vie_set_status", VIE_ESTATE, "the status line was already sent");
    c->res.status = status;
    return VIE_OK;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool alnum = (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z');
        if (!alnum && !strchr("!#$%&'*+-.^_`|~", ch)) return false;
        if (ch == 0) return false;
    }
    return true;
}

static bool is_field_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
    }
    return true;
}

static bool is_managed_header(const char *name)
{
    return !strcasecmp(name, "content-length") || !strcasecmp(name, "transfer-encoding") ||
           !strcasecmp(name, "connection") || !strcasecmp(name, "date");
}

int vie_header_add(vie_ctx *c, const char *name, const char *value)
{
    static const char call[] = "vie_header_add";
    if (!name || !value) return refuse(c, call, VIE_EINVAL, "NULL name or value");
    if (c->res.state != RESP_NONE) return refuse(c, call, VIE_ESTATE, "the head was already sent");
    size_t nl = strlen(name), vl = strlen(value);
    if (!is_token(name, nl)) return refuse(c, call, VIE_EINVAL, "header name is not a token");
    if (!is_field_value(value, vl))
        return refuse(c, call, VIE_EINVAL, "header value holds CR, LF or another control byte");
    if (is_managed_header(name))
        return refuse(c, call, VIE_EINVAL,
                      "Content-Length, Transfer-Encoding, Connection and Date are set by Vie");
    vie_response *r = &c->res;
    size_t need = nl + vl + 4;
    if (r->hdrs_cap - r->hdrs_len < need) {
        size_t cap = r->hdrs_cap ? r->hdrs_cap * 2 : 256;
        while (cap - r->hdrs_len < need)
            cap *= 2;
        char *p = arena_alloc(&c->arena, cap);
        if (!p) return refuse(c, call, VIE_ENOMEM, "out of memory");
        if (r->hdrs_len) memcpy(p, r->hdrs, r->hdrs_len);
        r->hdrs = p;
        r->hdrs_cap = (uint32_t)cap;
    }
    char *p = r->hdrs + r->hdrs_len;
    memcpy(p, name, nl);
    p += nl;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vl);
    p += vl;
    *p++ = '\r';
    *p++ = '\n';
    r->hdrs_len += (uint32_t)need;
    return VIE_OK;
}

int vie_set_content_length(vie_ctx *c, uint64_t length)
{
    if (c->res.state != RESP_NONE)
        return refuse(c, "vie_set_content_length", VIE_ESTATE, "the head was already sent");
    c->res.has_length = true;
    c->res.content_length = length;
    return VIE_OK;
}

static int append_body(vie_ctx *c, const void *data, size_t len)
{
    vie_response *r = &c->res;
    r->body_bytes += len;
    if (r->no_body || len == 0) return VIE_OK;
    vie_buf *o = c->out;
    if (!r->chunked) return buf_append(o, data, len) == 0 ? VIE_OK : VIE_ENOMEM;
    char size[20];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    if (buf_reserve(o, (size_t)n + len + 2) != 0) return VIE_ENOMEM;
    buf_append(o, size, (size_t)n);
    buf_append(o, data, len);
    buf_append_lit(o, "\r\n");
    return VIE_OK;
}

int vie_write(vie_ctx *c, const void *data, size_t len)
{
    static const char call[] = "vie_write";
    vie_response *r = &c->res;
    if (r->state == RESP_ENDED) return refuse(c, call, VIE_ESTATE, "the response already ended");
    if (len && !data) return refuse(c, call, VIE_EINVAL, "NULL data");
    if (r->has_length && len > r->content_length - r->body_bytes)
        return refuse(c, call, VIE_EINVAL, "more bytes than the declared Content-Length");
    if (r->state == RESP_NONE) {
        int rc = write_head(c, NULL, 0, r->has_length, r->content_length);
        if (rc != VIE_OK) return rc;
    }
    r->state = RESP_BODY;
    return append_body(c, data, len);
}

int vie_end(vie_ctx *c)
{
    vie_response *r = &c->res;
    if (r->state == RESP_ENDED)
        return refuse(c, "vie_end", VIE_ESTATE, "the response already ended");
    if (r->state == RESP_NONE) {
        int rc = write_head(c, NULL, 0, true, r->has_length ? r->content_length : 0);
        if (rc != VIE_OK) return rc;
    }
    int rc = VIE_OK;
    if (r->chunked) {
        if (buf_append_lit(c->out, "0\r\n\r\n") != 0) rc = VIE_ENOMEM;
    } else if (r->has_length && r->body_bytes != r->content_length && !r->no_body) {
        /* The client was promised more bytes than it will get: the only
         * honest end is closing the connection. */
        c->keep_alive = false;
        refuse(c, "vie_end", VIE_EINVAL, "fewer bytes than the declared Content-Length; closing");
        rc = VIE_EINVAL;
    }
    r->state = RESP_ENDED;
    return rc;
}

void writer_finish(vie_ctx *c)
{
    if (c->res.state == RESP_HEAD || c->res.state == RESP_BODY) vie_end(c);
}

vie_status vie_send(vie_ctx *c, int status, const char *content_type, const void *body, size_t len)
{
    static const char call[] = "vie_send";
    vie_response *r = &c->res;
    if (r->state != RESP_NONE) {
        refuse(c, call, VIE_ESTATE, "a response was already sent");
        return VIE_DONE;
    }
    if (status < 100 || status > 599) {
        refuse(c, call, VIE_EINVAL, "status out of range; answering 500");
        status = 500;
    }
    if (len && !body) {
        refuse(c, call, VIE_EINVAL, "NULL body; answering 500");
        status = 500;
        len = 0;
    }
    r->status = status;
    size_t ct_len = content_type ? strlen(content_type) : 0;
    if (content_type && !is_field_value(content_type, ct_len)) {
        refuse(c, call, VIE_EINVAL, "content type holds a control byte; omitted");
        content_type = NULL;
        ct_len = 0;
    }
    if (write_head(c, content_type, ct_len, true, len) != VIE_OK) return VIE_DONE;
    r->body_bytes = len;
    if (!r->no_body && len) buf_append(c->out, body, len);
    r->state = RESP_ENDED;
    return VIE_DONE;
}

vie_status vie_send_text(vie_ctx *c, int status, const char *text)
{
    return vie_send(c, status, "text/plain; charset=utf-8", text, text ? strlen(text) : 0);
}

vie_status vie_send_json(vie_ctx *c, int status, const char *json)
{
    return vie_send(c, status, "application/json", json, json ? strlen(json) : 0);
}

/* ------------------------------------------------------------------ */
/* File bodies                                                         */

/* Up to this size a file body is copied into the output buffer rather
 * than sent with sendfile(2): for small files the copy costs less than
 * the extra system calls, and pipelined answers stay in one write. */
#define FILE_INLINE_MAX (16 * 1024)

static vie_status file_refused(vie_ctx *c, int fd, const char *why)
{
    close(fd);
    refuse(c, "vie_send_file", VIE_EINVAL, why);
    return vie_send_problem(c, 500, "the file cannot be sent");
}

/* Read [offset, offset + len) of fd after the head in c->out. A file
 * that turns out shorter than promised is answered 500 instead: nothing
 * of this response has left yet. */
static vie_status file_inline(vie_ctx *c, int fd, const char *ctype, size_t ct_len, uint64_t offset,
                              uint64_t len)
{
    vie_response *r = &c->res;
    vie_buf *o = c->out;
    size_t mark = o->len;
    if (write_head(c, ctype, ct_len, true, len) != VIE_OK || buf_reserve(o, (size_t)len) != 0) {
        o->len = mark;
        r->state = RESP_NONE;
        r->status = 0;
        return file_refused(c, fd, "out of memory for the file's bytes");
    }
    uint64_t got = 0;
    int err = 0;
    while (got < len) {
        ssize_t n = pread(fd, o->data + o->len + got, (size_t)(len - got), (off_t)(offset + got));
        if (n > 0) {
            got += (uint64_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            err = n < 0 ? errno : 0;
            break;
        }
    }
    close(fd);
    if (got < len) {
        o->len = mark;
        r->state = RESP_NONE;
        r->status = 0;
        LOG_ERROR("vie_send_file: %s after %llu of %llu bytes (in %s); 500 sent",
                  err ? strerror(err) : "the file ended early", (unsigned long long)got,
                  (unsigned long long)len, c->actor ? c->actor : "vie");
        return vie_send_problem(c, 500, "the file could not be read");
    }
    o->len += (size_t)len;
    r->body_bytes = len;
    r->state = RESP_ENDED;
    return VIE_DONE;
}

vie_status writer_send_file_owned(vie_ctx *c, int status, const char *content_type, int fd,
                                  uint64_t offset, uint64_t len)
{
    vie_response *r = &c->res;
    if (r->state != RESP_NONE) {
        close(fd);
        refuse(c, "vie_send_file", VIE_ESTATE, "a response was already sent");
        return VIE_DONE;
    }
    if (status < 200 || status > 599)
        return file_refused(c, fd, "status out of range (a file body needs 200..599); 500 sent");
    size_t ct_len = content_type ? strlen(content_type) : 0;
    if (content_type && !is_field_value(content_type, ct_len)) {
        refuse(c, "vie_send_file", VIE_EINVAL, "content type holds a control byte; omitted");
        content_type = NULL;
        ct_len = 0;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return file_refused(c, fd, "fd is not a regular file; 500 sent");
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size || len > size - offset)
        return file_refused(c, fd, "the range reaches past the end of the file; 500 sent");
    if (len > SIZE_MAX / 2) return file_refused(c, fd, "the range is too large; 500 sent");
    r->status = status;
    bool no_body = c->req.method_id == HTTP_M_HEAD || status_has_no_body(status);
    if (no_body || len == 0) {
        /* HEAD: the head says how long the body would be; nothing is read. */
        close(fd);
        if (write_head(c, content_type, ct_len, true, len) != VIE_OK) return VIE_DONE;
        r->body_bytes = len;
        r->state = RESP_ENDED;
        return VIE_DONE;
    }
    /* No socket (the test kit) or a small file: the bytes go in the body. */
    if (!c->conn || len <= FILE_INLINE_MAX)
        return file_inline(c, fd, content_type, ct_len, offset, len);
    /* The connection sends the file after the head, from the loop, once
     * the request is done: a defer (which runs on every path, on the loop)
     * hands the file over, or closes it when the client is gone. */
    conn_file_body *fb = arena_alloc(&c->arena, sizeof *fb);
    if (!fb) return file_refused(c, fd, "out of memory; 500 sent");
    *fb = (conn_file_body){.ctx = c, .fd = fd, .offset = offset, .len = len};
    if (vie_defer(c, conn_file_handoff, fb) != VIE_OK)
        return file_refused(c, fd, "the request cannot take a file now; 500 sent");
    /* From here the defer owns fd: on failure it sees no ended response
     * and closes it. */
    if (write_head(c, content_type, ct_len, true, len) != VIE_OK) return VIE_DONE;
    r->body_bytes = len;
    r->state = RESP_ENDED;
    return VIE_DONE;
}

vie_status vie_send_file(vie_ctx *c, int status, const char *content_type, int fd, uint64_t offset,
                         uint64_t len)
{
    if (!c) {
        LOG_ERROR("vie_send_file refused: the request is NULL");
        return VIE_DONE;
    }
    if (c->res.state != RESP_NONE) {
        refuse(c, "vie_send_file", VIE_ESTATE, "a response was already sent");
        return VIE_DONE;
    }
    if (fd < 0) {
        refuse(c, "vie_send_file", VIE_EINVAL, "fd is negative; 500 sent");
        return vie_send_problem(c, 500, "the file cannot be sent");
    }
    /* The caller keeps its fd: the response gets its own. */
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        LOG_ERROR("vie_send_file: cannot duplicate fd %d: %s (in %s); 500 sent", fd,
                  strerror(errno), c->actor ? c->actor : "vie");
        return vie_send_problem(c, 500, "the file cannot be sent");
    }
    return writer_send_file_owned(c, status, content_type, own, offset, len);
}

size_t json_escape(char *dst, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap < 2) return 0;
    dst[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[6];
        size_t n = 0;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            n = 2;
        } else if (ch < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        } else {
            esc[0] = (char)ch;
            n = 1;
        }
        if (o + n + 1 > cap) break;
        memcpy(dst + o, esc, n);
        o += n;
    }
    dst[o++] = '"';
    return o;
}

vie_status vie_send_problem(vie_ctx *c, int status, const char *detail)
{
    if (status < 100 || status > 599) status = 500;
    const char *title = vie_reason_phrase(status);
    char body[1024];
    int n = snprintf(body, sizeof body, "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d",
                     title, status);
    size_t len = (size_t)n;
    if (detail) {
        memcpy(body + len, ",\"detail\":", 10);
        len += 10;
        /* leave room for the closing brace */
        len += json_escape(body + len, sizeof body - len - 2, detail, strlen(detail));
    }
    body[len++] = '}';
    return vie_send(c, status, "application/problem+json", body, len);
}

int vie_response_status(const vie_ctx *c)
{
    return c->res.status;
}

uint64_t vie_response_bytes(const vie_ctx *c)
{
    return c ? c->res.body_bytes : 0;
}

bool vie_responded(const vie_ctx *c)
{
    return c->res.state != RESP_NONE;
}
