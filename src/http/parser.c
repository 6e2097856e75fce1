/* HTTP/1.1 request parser (RFC 9112), see parser.h.
 *
 * The head parser works in two steps. While bytes arrive it only searches
 * for line ends (memchr, resuming where the previous call stopped), checks
 * the size limits against the bytes seen so far, and validates the request
 * line as soon as it is complete. Once the empty line that ends the head is
 * found, the field lines are parsed in one strict pass. (When the bytes
 * already end with a line end, the usual case of a head read in one go, the
 * strict pass is tried first and the search only runs if it did not reach
 * the end of the head.) Every decision is a function of the bytes before
 * the point where it is taken, and the limits never let the search look
 * past the largest acceptable head, so a request fed whole or split at any
 * byte boundary gives the same result.
 *
 * The chunked decoder is a byte-level state machine whose only buffering is
 * its state, so it consumes every byte it is given until the body ends.
 */
#include "http/parser.h"

#include <string.h>

/* Character classes, one bit each, in one table so the hot loops are a load
 * and a test per byte. Each entry of cls is the OR of the classes of that
 * byte. */
enum {
    C_TCHAR = 1,   /* token character, RFC 9110 5.6.2 */
    C_VALUE = 2,   /* field-value byte: HTAB, SP, VCHAR, obs-text */
    C_TARGET = 4,  /* request-target byte: VCHAR except '#' */
    C_REG = 8,     /* reg-name byte: unreserved / sub-delims (RFC 3986) */
    C_QDTEXT = 16, /* quoted-string text: C_VALUE except '"' and '\\' */
    C_HEX = 32,    /* HEXDIG */
};

static const uint8_t cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  18, 0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    18, 31, 6,  19, 31, 23, 31, 31, 30, 30, 31, 31, 30, 31, 31, 22, /* 0x20 */
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 22, 30, 22, 30, 22, 22, /* 0x30 */
    22, 63, 63, 63, 63, 63, 63, 31, 31, 31, 31, 31, 31, 31, 31, 31, /* 0x40 */
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 22, 6,  22, 23, 31, /* 0x50 */
    23, 63, 63, 63, 63, 63, 63, 31, 31, 31, 31, 31, 31, 31, 31, 31, /* 0x60 */
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 22, 23, 22, 31, 0,  /* 0x70 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0x80 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0x90 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0xA0 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0xB0 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0xC0 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0xD0 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0xE0 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, /* 0xF0 */
};

/* Content-Length and chunk sizes above this are refused: far beyond any
 * body limit, and sums of two of them cannot overflow 64 bits. */
#define SIZE_CAP (UINT64_C(1) << 62)

/* Bound on one chunk-size line, extensions included, so a peer cannot keep
 * the decoder reading an endless extension. */
#define CHUNK_LINE_MAX 4096u

/* ---- errors ------------------------------------------------------------ */

static const struct {
    uint16_t status;
    const char *reason;
} error_info[HTTP_ERROR_COUNT] = {
    [HTTP_OK] = {200, "The request was parsed"},
    [HTTP_AGAIN] = {200, "More bytes are needed"},
    [HTTP_E_REQUEST_LINE] = {400, "The request line is malformed"},
    [HTTP_E_METHOD] = {400, "The method is not a valid token"},
    [HTTP_E_TARGET] = {400, "The request target is invalid"},
    [HTTP_E_VERSION] = {400, "The HTTP version is malformed"},
    [HTTP_E_VERSION_UNSUPPORTED] = {505, "This HTTP version is not supported"},
    [HTTP_E_URI_TOO_LONG] = {414, "The request line is too long"},
    [HTTP_E_HEADERS_TOO_LARGE] = {431, "The request header section is too large"},
    [HTTP_E_TOO_MANY_HEADERS] = {431, "The request has too many header fields"},
    [HTTP_E_HEADER_NAME] = {400, "A header field name is empty or not a valid token"},
    [HTTP_E_SPACE_BEFORE_COLON] = {400, "A header field name is followed by whitespace"},
    [HTTP_E_OBS_FOLD] = {400, "A header field line starts with whitespace (obsolete line folding)"},
    [HTTP_E_HEADER_VALUE] = {400, "A header field value contains a control character"},
    [HTTP_E_LINE_ENDING] = {400, "A carriage return is not followed by a line feed"},
    [HTTP_E_CL_AND_TE] = {400, "Content-Length and Transfer-Encoding are both present"},
    [HTTP_E_CL_INVALID] = {400, "The Content-Length value is invalid"},
    [HTTP_E_CL_MISMATCH] = {400, "The Content-Length values differ"},
    [HTTP_E_TE_NOT_CHUNKED] = {400, "The final transfer coding is not chunked, or chunked is "
                                    "applied more than once"},
    [HTTP_E_TE_UNSUPPORTED] = {501, "A transfer coding other than chunked is not supported"},
    [HTTP_E_TE_HTTP10] = {400, "Transfer-Encoding is not allowed in an HTTP/1.0 request"},
    [HTTP_E_HOST_MISSING] = {400, "The Host header field is missing"},
    [HTTP_E_HOST_REPEATED] = {400, "The Host header field is present more than once"},
    [HTTP_E_HOST_INVALID] = {400, "The Host header field value is not a valid authority"},
    [HTTP_E_EXPECTATION] = {417, "The expectation is not supported"},
    [HTTP_E_BODY_TOO_LARGE] = {413, "The request body is too large"},
    [HTTP_E_CHUNK_SIZE] = {400, "A chunk size is malformed or too large"},
    [HTTP_E_CHUNK_SYNTAX] = {400, "The chunked body is malformed"},
    [HTTP_E_TRAILER] = {400, "The trailer section is malformed or too large"},
};

int http_error_status(http_error e)
{
    if ((unsigned)e >= HTTP_ERROR_COUNT) return 500;
    return error_info[e].status;
}

const char *http_error_reason(http_error e)
{
    if ((unsigned)e >= HTTP_ERROR_COUNT) return "Unknown parser error";
    return error_info[e].reason;
}

/* ---- small helpers ------------------------------------------------------ */

bool http_name_eq(const char *name, size_t len, const char *lower_literal)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 'A' && c <= 'Z') c |= 0x20;
        /* a NUL in the literal ends it: compares unequal to any name byte
         * except NUL, which a token never contains */
        if (c != (unsigned char)lower_literal[i] || lower_literal[i] == '\0') return false;
    }
    return lower_literal[len] == '\0';
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Case-insensitive compare of s[0..n) with a lowercase literal of length n. */
static bool ci_eq(const uint8_t *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 'A' && c <= 'Z') c |= 0x20;
        if (c != (uint8_t)lower[i]) return false;
    }
    return true;
}

static uint8_t method_id(const uint8_t *m, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0) return HTTP_M_GET;
        if (memcmp(m, "PUT", 3) == 0) return HTTP_M_PUT;
        break;
    case 4:
        if (memcmp(m, "POST", 4) == 0) return HTTP_M_POST;
        if (memcmp(m, "HEAD", 4) == 0) return HTTP_M_HEAD;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0) return HTTP_M_PATCH;
        if (memcmp(m, "TRACE", 5) == 0) return HTTP_M_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0) return HTTP_M_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0) return HTTP_M_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0) return HTTP_M_CONNECT;
        break;
    }
    return HTTP_M_OTHER;
}

/* authority = host [ ":" port ] (RFC 3986 3.2, without userinfo, which
 * RFC 9110 4.2.4 forbids in http(s) targets). */
static bool authority_ok(const uint8_t *s, size_t n, bool need_host, bool need_port)
{
    size_t i = 0;
    if (n > 0 && s[0] == '[') {
        /* IP-literal: checked loosely (address syntax is the resolver's
         * business), but confined to the characters it may contain */
        for (i = 1; i < n && s[i] != ']'; i++)
            if (!(cls[s[i]] & C_REG) && s[i] != ':') return false;
        if (i == n || i == 1) return false;
        i++;
    } else {
        while (i < n && s[i] != ':') {
            if (s[i] == '%') {
                if (n - i < 3 || !(cls[s[i + 1]] & C_HEX) || !(cls[s[i + 2]] & C_HEX)) return false;
                i += 3;
            } else if (cls[s[i]] & C_REG) {
                i++;
            } else {
                return false;
            }
        }
        if (need_host && i == 0) return false;
    }
    if (i == n) return !need_port;
    if (s[i] != ':') return false;
    if (++i == n && need_port) return false;
    for (; i < n; i++)
        if (!is_digit(s[i])) return false;
    return true;
}

/* Split an origin-form style "path[?query]" into req. */
static void split_path(const uint8_t *t, size_t n, http_request *req)
{
    const uint8_t *q = memchr(t, '?', n);
    req->path = (const char *)t;
    if (q) {
        req->path_len = (uint32_t)(q - t);
        req->query = (const char *)q + 1;
        req->query_len = (uint32_t)(n - (size_t)(q - t) - 1);
    } else {
        req->path_len = (uint32_t)n;
    }
}

/* ---- request line ------------------------------------------------------- */

/* request-line = method SP request-target SP HTTP-version, in b[rs..end)
 * (line ending excluded). The first offending byte decides the error, so
 * the early method check in http_parse_head agrees with this one. */
static http_error parse_request_line(const uint8_t *b, size_t rs, size_t end, http_request *req)
{
    const uint8_t *s = b + rs, *e = b + end;

    const uint8_t *m = s;
    while (s < e && (cls[*s] & C_TCHAR))
        s++;
    if (s == e) return HTTP_E_REQUEST_LINE;
    if (*s != ' ') return *s == '\r' ? HTTP_E_LINE_ENDING : HTTP_E_METHOD;
    if (s == m) return HTTP_E_REQUEST_LINE;
    size_t mlen = (size_t)(s - m);

    const uint8_t *t = ++s;
    while (s < e && (cls[*s] & C_TARGET))
        s++;
    if (s == e) return HTTP_E_REQUEST_LINE;
    if (*s != ' ') return *s == '\r' ? HTTP_E_LINE_ENDING : HTTP_E_TARGET;
    if (s == t) return HTTP_E_REQUEST_LINE;
    size_t tlen = (size_t)(s - t);

    const uint8_t *v = ++s;
    for (; s < e; s++) {
        if (*s == ' ') return HTTP_E_REQUEST_LINE;
        if (*s == '\r') return HTTP_E_LINE_ENDING;
    }
    if (e - v != 8 || memcmp(v, "HTTP/", 5) != 0 || !is_digit(v[5]) || v[6] != '.' ||
        !is_digit(v[7]))
        return HTTP_E_VERSION;
    if (v[5] != '1') return HTTP_E_VERSION_UNSUPPORTED;
    /* RFC 9110 2.5: a higher minor version is answered as the highest we do */
    req->version_minor = v[7] == '0' ? 0 : 1;

    uint8_t id = method_id(m, mlen);
    req->method = (const char *)m;
    req->method_len = (uint32_t)mlen;
    req->method_id = id;
    req->target = (const char *)t;
    req->target_len = (uint32_t)tlen;
    req->query = NULL;
    req->query_len = 0;
    req->host = NULL; /* set here only when the target names the authority */
    req->host_len = 0;

    if (id == HTTP_M_CONNECT) {
        /* authority-form, and only it (RFC 9112 3.2.3) */
        if (!authority_ok(t, tlen, true, true)) return HTTP_E_TARGET;
        req->path = req->host = (const char *)t;
        req->path_len = req->host_len = (uint32_t)tlen;
    } else if (t[0] == '/') {
        split_path(t, tlen, req);
    } else if (tlen == 1 && t[0] == '*') {
        if (id != HTTP_M_OPTIONS) return HTTP_E_TARGET;
        req->path = (const char *)t;
        req->path_len = 1;
    } else {
        size_t slen;
        if (tlen >= 7 && ci_eq(t, "http://", 7))
            slen = 4;
        else if (tlen >= 8 && ci_eq(t, "https://", 8))
            slen = 5;
        else
            return HTTP_E_TARGET;
        const uint8_t *a = t + slen + 3, *te = t + tlen, *ae = a;
        while (ae < te && *ae != '/' && *ae != '?')
            ae++;
        if (!authority_ok(a, (size_t)(ae - a), true, false)) return HTTP_E_TARGET;
        req->host = (const char *)a;
        req->host_len = (uint32_t)(ae - a);
        if (ae < te && *ae == '/') {
            split_path(ae, (size_t)(te - ae), req);
        } else {
            /* empty path: "/" is the second slash of "://", keeping every
             * pointer inside the buffer */
            req->path = (const char *)t + slen + 2;
            req->path_len = 1;
            if (ae < te) {
                req->query = (const char *)ae + 1;
                req->query_len = (uint32_t)(te - ae - 1);
            }
        }
    }
    return HTTP_OK;
}

/* ---- field lines -------------------------------------------------------- */

/* What the field lines say about framing and the connection, gathered while
 * they are parsed and judged once they all are. */
typedef struct field_state {
    const uint8_t *host;
    size_t host_len;
    uint64_t content_length;
    bool host_seen, cl_seen, te_seen;
    bool te_chunked, te_chunked_twice, te_last_chunked, te_other;
    bool conn_close, conn_keep_alive;
    bool expect_continue, expect_other;
} field_state;

/* Take the list element at v[*pos..n) up to the next comma, OWS trimmed and
 * possibly empty (RFC 9110 5.6.1). Returns false once the list is used up. */
static bool next_element(const uint8_t *v, size_t n, size_t *pos, const uint8_t **el,
                         size_t *el_len)
{
    size_t i = *pos;
    if (i > n) return false;
    const uint8_t *comma = memchr(v + i, ',', n - i);
    size_t e = comma ? (size_t)(comma - v) : n;
    while (i < e && is_ows(v[i]))
        i++;
    size_t t = e;
    while (t > i && is_ows(v[t - 1]))
        t--;
    *el = v + i;
    *el_len = t - i;
    *pos = e + 1;
    return true;
}

/* Content-Length = 1*DIGIT. A list of equal values (a duplicate folded by an
 * intermediary) counts as that value, differing ones are refused (RFC 9110
 * 8.6); unlike in other lists an empty element is an error here. */
static http_error content_length(field_state *st, const uint8_t *v, size_t n)
{
    const uint8_t *el;
    size_t el_len, pos = 0;
    while (next_element(v, n, &pos, &el, &el_len)) {
        if (el_len == 0) return HTTP_E_CL_INVALID;
        uint64_t x = 0;
        for (size_t i = 0; i < el_len; i++) {
            if (!is_digit(el[i])) return HTTP_E_CL_INVALID;
            /* Checked before the multiply: 10 * 2^62 would wrap. */
            if (x > SIZE_CAP / 10) return HTTP_E_CL_INVALID;
            x = x * 10 + (uint64_t)(el[i] - '0');
            if (x > SIZE_CAP) return HTTP_E_CL_INVALID;
        }
        if (st->cl_seen && x != st->content_length) return HTTP_E_CL_MISMATCH;
        st->cl_seen = true;
        st->content_length = x;
    }
    return HTTP_OK;
}

/* The codings of every Transfer-Encoding field form one list (RFC 9110
 * 5.3); only the name before a ';' parameter matters. */
static void transfer_encoding(field_state *st, const uint8_t *v, size_t n)
{
    const uint8_t *el;
    size_t el_len, pos = 0;
    st->te_seen = true;
    while (next_element(v, n, &pos, &el, &el_len)) {
        if (el_len == 0) continue;
        const uint8_t *semi = memchr(el, ';', el_len);
        size_t name_len = semi ? (size_t)(semi - el) : el_len;
        while (name_len > 0 && is_ows(el[name_len - 1]))
            name_len--;
        bool chunked = name_len == 7 && ci_eq(el, "chunked", 7);
        if (chunked) {
            if (st->te_chunked) st->te_chunked_twice = true;
            st->te_chunked = true;
        } else {
            st->te_other = true;
        }
        st->te_last_chunked = chunked;
    }
}

static void connection(field_state *st, const uint8_t *v, size_t n)
{
    const uint8_t *el;
    size_t el_len, pos = 0;
    while (next_element(v, n, &pos, &el, &el_len)) {
        if (el_len == 5 && ci_eq(el, "close", 5))
            st->conn_close = true;
        else if (el_len == 10 && ci_eq(el, "keep-alive", 10))
            st->conn_keep_alive = true;
    }
}

static void expect(field_state *st, const uint8_t *v, size_t n)
{
    const uint8_t *el;
    size_t el_len, pos = 0;
    while (next_element(v, n, &pos, &el, &el_len)) {
        if (el_len == 12 && ci_eq(el, "100-continue", 12))
            st->expect_continue = true;
        else if (el_len > 0)
            st->expect_other = true;
    }
}

/* Skip field-value bytes from s, 8 at a time while they fit before limit
 * and none is below 0x20 or DEL (an HTAB, rare in values, drops to the byte
 * loop, which decides). */
static const uint8_t *skip_value(const uint8_t *s, const uint8_t *limit)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    while (limit - s >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        uint64_t del = x ^ (ones * 0x7F);
        if ((((x - ones * 0x20) & ~x) | ((del - ones) & ~del)) & highs) break;
        s += 8;
    }
    while (cls[*s] & C_VALUE)
        s++;
    return s;
}

/* Parse the field lines from b[from] up to the empty line that ends the
 * head, and fill req. b[limit - 1] must be an LF: it bounds every scan, so
 * the loops need no other bounds checks (a CR is always followed by a
 * byte). *head_end is set when the empty line was reached, in which case
 * the result is final; it stays 0 when limit came first (HTTP_AGAIN) or a
 * line before the end was refused. */
static http_error parse_fields(const http_limits *lim, const uint8_t *b, size_t from, size_t limit,
                               http_request *req, size_t *head_end)
{
    field_state st = {0};
    http_header *hs = req->headers;
    uint32_t n = 0;
    bool http11 = req->version_minor == 1;
    const uint8_t *s = b + from, *stop = b + limit;

    *head_end = 0;
    for (;;) {
        if (s == stop) return HTTP_AGAIN;
        if (*s == '\n' || (*s == '\r' && s[1] == '\n')) break;
        /* also for the first line: whitespace after the request line must
         * not be taken for a continuation (RFC 9112 2.2) */
        if (is_ows(*s)) return HTTP_E_OBS_FOLD;
        if (n == lim->max_headers) return HTTP_E_TOO_MANY_HEADERS;

        const uint8_t *name = s;
        /* four at a time: fewer branches for the usual name lengths */
        while (stop - s >= 4 && (cls[s[0]] & cls[s[1]] & cls[s[2]] & cls[s[3]] & C_TCHAR))
            s += 4;
        while (cls[*s] & C_TCHAR)
            s++;
        size_t name_len = (size_t)(s - name);
        if (*s != ':' || name_len == 0) {
            if (*s == '\r' && s[1] != '\n') return HTTP_E_LINE_ENDING;
            if (name_len > 0 && is_ows(*s)) {
                while (is_ows(*s))
                    s++;
                return *s == ':' ? HTTP_E_SPACE_BEFORE_COLON : HTTP_E_HEADER_NAME;
            }
            return HTTP_E_HEADER_NAME;
        }
        s++;
        while (is_ows(*s))
            s++;
        const uint8_t *v = s;
        s = skip_value(s, stop);
        const uint8_t *ve = s;
        if (*s == '\r') {
            if (s[1] != '\n') return HTTP_E_LINE_ENDING;
            s += 2;
        } else if (*s == '\n') {
            s++;
        } else {
            return HTTP_E_HEADER_VALUE;
        }
        while (ve > v && is_ows(ve[-1]))
            ve--;
        size_t v_len = (size_t)(ve - v);

        hs[n].name = (const char *)name;
        hs[n].name_len = (uint32_t)name_len;
        hs[n].value = (const char *)v;
        hs[n].value_len = (uint32_t)v_len;
        n++;

        /* the length picks the candidate, so most fields cost one switch */
        switch (name_len) {
        case 4:
            if (ci_eq(name, "host", 4)) {
                if (st.host_seen) return HTTP_E_HOST_REPEATED;
                if (!authority_ok(v, v_len, false, false)) return HTTP_E_HOST_INVALID;
                st.host_seen = true;
                st.host = v;
                st.host_len = v_len;
            }
            break;
        case 6:
            /* RFC 9110 10.1.1: an HTTP/1.0 server ignores 100-continue */
            if (http11 && ci_eq(name, "expect", 6)) expect(&st, v, v_len);
            break;
        case 10:
            if (ci_eq(name, "connection", 10)) connection(&st, v, v_len);
            break;
        case 14:
            if (ci_eq(name, "content-length", 14)) {
                http_error err = content_length(&st, v, v_len);
                if (err != HTTP_OK) return err;
            }
            break;
        case 17:
            if (ci_eq(name, "transfer-encoding", 17)) transfer_encoding(&st, v, v_len);
            break;
        }
    }
    *head_end = (size_t)(s - b) + (*s == '\r' ? 2 : 1);

    if (http11 && !st.host_seen) return HTTP_E_HOST_MISSING;
    if (st.te_seen) {
        /* RFC 9112 6.1 and 6.3: the framing must be unambiguous */
        if (st.cl_seen) return HTTP_E_CL_AND_TE;
        if (!http11) return HTTP_E_TE_HTTP10;
        if (!st.te_last_chunked || st.te_chunked_twice) return HTTP_E_TE_NOT_CHUNKED;
        if (st.te_other) return HTTP_E_TE_UNSUPPORTED;
    } else if (st.cl_seen && st.content_length > lim->max_body) {
        return HTTP_E_BODY_TOO_LARGE;
    }
    if (st.expect_other) return HTTP_E_EXPECTATION;

    if (!req->host) { /* the target's authority wins over Host (RFC 9112 3.2.2) */
        req->host = (const char *)st.host;
        req->host_len = (uint32_t)st.host_len;
    }
    req->keep_alive = !st.conn_close && (http11 || st.conn_keep_alive);
    req->chunked = st.te_seen;
    req->has_content_length = st.cl_seen;
    req->content_length = st.content_length;
    req->expect_continue = st.expect_continue;
    req->n_headers = n;
    return HTTP_OK;
}

/* ---- head --------------------------------------------------------------- */

enum {
    PH_START,  /* nothing seen: maybe an empty line to skip */
    PH_METHOD, /* checking the method as it arrives */
    PH_LINE,   /* searching for the end of the request line */
    PH_FIELDS, /* request line parsed, searching for the empty line */
};

void http_head_init(http_head_parser *p)
{
    memset(p, 0, sizeof *p);
}

/* Fill req from a request line parsed by an earlier call: req need not
 * survive between calls. It succeeded before on the same bytes. */
static void reparse_request_line(const http_head_parser *p, const uint8_t *b, http_request *req)
{
    size_t end = p->fields - 1;
    if (end > p->rl_start && b[end - 1] == '\r') end--;
    (void)parse_request_line(b, p->rl_start, end, req);
}

http_error http_parse_head(http_head_parser *p, const http_limits *limits, const char *buf,
                           size_t len, http_request *req)
{
    const uint8_t *b = (const uint8_t *)buf;
    bool resumed = p->phase == PH_FIELDS;    /* the request line is not in req */
    if (len < p->scanned) return HTTP_AGAIN; /* the buffer only grows; stay safe if not */

    if (p->phase == PH_START) {
        if (len == 0) return HTTP_AGAIN;
        uint8_t rs = 0;
        if (b[0] == '\n') {
            rs = 1;
        } else if (b[0] == '\r') {
            if (len < 2) return HTTP_AGAIN;
            if (b[1] == '\n') rs = 2;
        }
        p->rl_start = rs;
        p->scanned = rs;
        p->phase = PH_METHOD;
    }

    size_t rs = p->rl_start;
    /* The search never looks past the largest acceptable head (or request
     * line): whatever lies beyond cannot change the outcome, which is what
     * makes the limits report the same error however the bytes arrive. */
    uint32_t max_head = limits->max_header_bytes;
    if (max_head > UINT32_MAX - 2) max_head = UINT32_MAX - 2; /* offsets fit in 32 bits */
    size_t head_win = rs + max_head;

    if (p->phase != PH_FIELDS) {
        uint64_t line_win = (uint64_t)rs + limits->max_request_line + 2; /* + CRLF */
        bool uri_first = line_win <= head_win;
        size_t win = uri_first ? (size_t)line_win : head_win;
        size_t avail = len < win ? len : win;
        size_t i = p->scanned;
        if (p->phase == PH_METHOD) {
            /* checked as it arrives, so that garbage (a TLS hello sent to
             * the plain port) is refused at its first byte; the first bad
             * byte gives the error parse_request_line would give */
            while (i < avail && (cls[b[i]] & C_TCHAR))
                i++;
            if (i < avail) {
                uint8_t c = b[i];
                if (c == ' ' && i == rs) return HTTP_E_REQUEST_LINE;
                if (c != ' ' && c != '\r' && c != '\n') return HTTP_E_METHOD;
                p->phase = PH_LINE;
            }
        }
        const uint8_t *nl = NULL;
        if (p->phase == PH_LINE) nl = memchr(b + i, '\n', avail - i);
        if (!nl) {
            p->scanned = (uint32_t)avail;
            if (len >= win) return uri_first ? HTTP_E_URI_TOO_LONG : HTTP_E_HEADERS_TOO_LARGE;
            return HTTP_AGAIN;
        }
        size_t e = (size_t)(nl - b);
        size_t line_end = e > rs && b[e - 1] == '\r' ? e - 1 : e;
        if (line_end - rs > limits->max_request_line) return HTTP_E_URI_TOO_LONG;
        http_error err = parse_request_line(b, rs, line_end, req);
        if (err != HTTP_OK) return err;
        p->phase = PH_FIELDS;
        p->fields = p->line_start = p->scanned = (uint32_t)(e + 1);
    }

    size_t avail = len < head_win ? len : head_win;
    size_t head_end;
    http_error err;

    /* Fast path, tried once per request: the head is usually complete by
     * now, so parse it without searching for its end first, bounded by the
     * last line end available (found from the back: it is the last byte
     * unless body bytes follow). Only a result reached at the end of the
     * head counts; otherwise the search below decides, as it would have. */
    if (p->scanned == p->fields && avail > p->fields) {
        const uint8_t *last =
            b[avail - 1] == '\n' ? b + avail - 1 : memrchr(b + p->fields, '\n', avail - p->fields);
        if (last) {
            if (resumed) reparse_request_line(p, b, req);
            resumed = false;
            err = parse_fields(limits, b, p->fields, (size_t)(last - b) + 1, req, &head_end);
            if (head_end) {
                req->head_len = (uint32_t)head_end;
                return err;
            }
        }
    }

    size_t ls = p->line_start, i = p->scanned, e;
    for (;;) {
        const uint8_t *nl = memchr(b + i, '\n', avail - i);
        if (!nl) {
            p->line_start = (uint32_t)ls;
            p->scanned = (uint32_t)avail;
            return len >= head_win ? HTTP_E_HEADERS_TOO_LARGE : HTTP_AGAIN;
        }
        e = (size_t)(nl - b);
        if (e == ls || (e == ls + 1 && b[ls] == '\r')) break; /* the empty line */
        ls = i = e + 1;
    }
    if (resumed) reparse_request_line(p, b, req);
    err = parse_fields(limits, b, p->fields, e + 1, req, &head_end);
    req->head_len = (uint32_t)head_end;
    return err;
}

/* ---- chunked body ------------------------------------------------------- */

enum {
    /* the chunk-size line; every state up to CK_SIZE_LF counts toward
     * CHUNK_LINE_MAX */
    CK_SIZE,            /* chunk-size digits */
    CK_SIZE_WS,         /* BWS after the size or a value: ';' must follow */
    CK_EXT_NAME_WS,     /* after ';': BWS, then a name */
    CK_EXT_NAME,        /* in an extension name */
    CK_EXT_NAME_AFTER,  /* BWS after a name: '=' or ';' must follow */
    CK_EXT_VALUE_WS,    /* after '=': BWS, then a token or a quoted-string */
    CK_EXT_TOKEN,       /* in a token value */
    CK_EXT_QUOTED,      /* in a quoted-string value */
    CK_EXT_QUOTED_PAIR, /* after a backslash in a quoted-string */
    CK_EXT_QUOTED_END,  /* after the closing quote */
    CK_SIZE_LF,         /* after the CR of the size line */
    CK_DATA,            /* chunk data; `remaining` bytes to go */
    CK_DATA_CR,         /* after the data: CR or LF */
    CK_DATA_LF,         /* after the data and a CR: LF */
    CK_TRAILER,         /* at the start of a trailer line (or of the final empty line) */
    CK_TRAILER_NAME,    /* in a trailer field name */
    CK_TRAILER_VALUE,   /* in a trailer field value */
    CK_TRAILER_LF,      /* after the CR of a trailer line */
    CK_END_LF,          /* after the CR of the final empty line */
    CK_DONE,
    CK_FAILED, /* aux holds the error */
};

void http_chunked_init(http_chunked *d)
{
    memset(d, 0, sizeof *d);
}

static unsigned hex_value(uint8_t c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* The size line ended: data follows, or the trailer section for size 0. */
static void size_line_done(http_chunked *d)
{
    d->aux = 0;
    d->state = d->remaining > 0 ? CK_DATA : CK_TRAILER;
}

static void next_chunk(http_chunked *d)
{
    d->state = CK_SIZE;
    d->size_digits = 0;
    d->aux = 0;
}

http_error http_chunked_decode(http_chunked *d, const http_limits *limits, const char *in,
                               size_t len, size_t *consumed, http_body_sink sink, void *ud)
{
    const uint8_t *b = (const uint8_t *)in;
    size_t i = 0;
    http_error err;

    if (d->state == CK_DONE) {
        *consumed = 0;
        return HTTP_OK;
    }
    if (d->state == CK_FAILED) {
        *consumed = 0;
        return (http_error)d->aux;
    }

    while (i < len) {
        if (d->state == CK_DATA) {
            size_t n = len - i;
            if (n > d->remaining) n = (size_t)d->remaining;
            if (sink) sink(ud, in + i, n);
            i += n;
            d->remaining -= n;
            d->total += n;
            if (d->remaining == 0) d->state = CK_DATA_CR;
            continue;
        }

        uint8_t c = b[i++];
        if (d->state <= CK_SIZE_LF && ++d->aux > CHUNK_LINE_MAX) {
            err = HTTP_E_CHUNK_SYNTAX;
            goto fail;
        }
        switch (d->state) {
        case CK_SIZE:
            if (cls[c] & C_HEX) {
                /* 16 digits of leading zeros are already absurd */
                if (d->size_digits == 16 || d->remaining > SIZE_CAP >> 4) goto bad_size;
                d->remaining = d->remaining << 4 | hex_value(c);
                if (d->remaining > SIZE_CAP) goto bad_size;
                d->size_digits++;
                break;
            }
            if (d->size_digits == 0) goto bad_size;
            /* judged on the announced size, before any of it is read;
             * total <= max_body holds, so the subtraction cannot wrap */
            if (d->remaining > limits->max_body - d->total) {
                err = HTTP_E_BODY_TOO_LARGE;
                goto fail;
            }
            if (c == ';')
                d->state = CK_EXT_NAME_WS;
            else if (is_ows(c))
                d->state = CK_SIZE_WS;
            else if (c == '\r')
                d->state = CK_SIZE_LF;
            else if (c == '\n')
                size_line_done(d);
            else
                goto bad_size;
            break;
        case CK_SIZE_WS:
            if (c == ';')
                d->state = CK_EXT_NAME_WS;
            else if (!is_ows(c))
                goto bad_syntax;
            break;
        case CK_EXT_NAME_WS:
            if (cls[c] & C_TCHAR)
                d->state = CK_EXT_NAME;
            else if (!is_ows(c))
                goto bad_syntax;
            break;
        case CK_EXT_NAME:
            if (cls[c] & C_TCHAR) break;
            if (c == '=')
                d->state = CK_EXT_VALUE_WS;
            else if (c == ';')
                d->state = CK_EXT_NAME_WS;
            else if (is_ows(c))
                d->state = CK_EXT_NAME_AFTER;
            else if (c == '\r')
                d->state = CK_SIZE_LF;
            else if (c == '\n')
                size_line_done(d);
            else
                goto bad_syntax;
            break;
        case CK_EXT_NAME_AFTER:
            if (c == '=')
                d->state = CK_EXT_VALUE_WS;
            else if (c == ';')
                d->state = CK_EXT_NAME_WS;
            else if (!is_ows(c))
                goto bad_syntax;
            break;
        case CK_EXT_VALUE_WS:
            if (cls[c] & C_TCHAR)
                d->state = CK_EXT_TOKEN;
            else if (c == '"')
                d->state = CK_EXT_QUOTED;
            else if (!is_ows(c))
                goto bad_syntax;
            break;
        case CK_EXT_TOKEN:
        case CK_EXT_QUOTED_END:
            if (d->state == CK_EXT_TOKEN && (cls[c] & C_TCHAR)) break;
            if (c == ';')
                d->state = CK_EXT_NAME_WS;
            else if (is_ows(c))
                d->state = CK_SIZE_WS;
            else if (c == '\r')
                d->state = CK_SIZE_LF;
            else if (c == '\n')
                size_line_done(d);
            else
                goto bad_syntax;
            break;
        case CK_EXT_QUOTED:
            if (c == '"')
                d->state = CK_EXT_QUOTED_END;
            else if (c == '\\')
                d->state = CK_EXT_QUOTED_PAIR;
            else if (!(cls[c] & C_QDTEXT))
                goto bad_syntax;
            break;
        case CK_EXT_QUOTED_PAIR:
            if (!(cls[c] & C_VALUE)) goto bad_syntax;
            d->state = CK_EXT_QUOTED;
            break;
        case CK_SIZE_LF:
            if (c != '\n') goto bad_syntax;
            size_line_done(d);
            break;
        case CK_DATA_CR:
            if (c == '\r')
                d->state = CK_DATA_LF;
            else if (c == '\n') /* a bare LF ends the data too */
                next_chunk(d);
            else
                goto bad_syntax;
            break;
        case CK_DATA_LF:
            if (c != '\n') goto bad_syntax;
            next_chunk(d);
            break;
        case CK_TRAILER:
            if (c == '\r') {
                d->state = CK_END_LF;
                break;
            }
            if (c == '\n') goto done;
            /* no obs-fold, no empty name, no bare CR: as in the head */
            if (!(cls[c] & C_TCHAR)) goto bad_trailer;
            d->state = CK_TRAILER_NAME;
            goto count_trailer;
        case CK_TRAILER_NAME:
            if (c == ':')
                d->state = CK_TRAILER_VALUE;
            else if (!(cls[c] & C_TCHAR))
                goto bad_trailer;
            goto count_trailer;
        case CK_TRAILER_VALUE:
            if (c == '\r')
                d->state = CK_TRAILER_LF;
            else if (c == '\n')
                d->state = CK_TRAILER;
            else if (!(cls[c] & C_VALUE))
                goto bad_trailer;
            goto count_trailer;
        case CK_TRAILER_LF:
            if (c != '\n') goto bad_trailer;
            d->state = CK_TRAILER;
            goto count_trailer;
        case CK_END_LF:
            if (c != '\n') goto bad_trailer;
            goto done;
        default: goto bad_syntax;
        }
        continue;
    count_trailer:
        /* the field lines count toward the limit, the final empty line not */
        if (++d->aux > limits->max_header_bytes) goto bad_trailer;
    }
    *consumed = len;
    return HTTP_AGAIN;

done:
    d->state = CK_DONE;
    *consumed = i;
    return HTTP_OK;
bad_size:
    err = HTTP_E_CHUNK_SIZE;
    goto fail;
bad_syntax:
    err = HTTP_E_CHUNK_SYNTAX;
    goto fail;
bad_trailer:
    err = HTTP_E_TRAILER;
fail:
    d->state = CK_FAILED;
    d->aux = (uint32_t)err;
    *consumed = i;
    return err;
}
