/* Unit tests for the HTTP/1.1 request parser: the head parser, table-driven
 * and fed whole, cumulatively byte by byte and split in two at every
 * boundary (each way must give the same result), and the chunked decoder,
 * fed the same three ways. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define MAXH 128

static const http_limits lim_default = {
    HTTP_DEFAULT_MAX_REQUEST_LINE,
    HTTP_DEFAULT_MAX_HEADER_BYTES,
    HTTP_DEFAULT_MAX_HEADERS,
    HTTP_DEFAULT_MAX_BODY,
};
/* "GET /abc HTTP/1.1" is 17 bytes */
static const http_limits lim_rl17 = {17, 1024, 10, 1024};
/* "GET / HTTP/1.1\r\nHost: a\r\n\r\n" is 27 bytes */
static const http_limits lim_head27 = {1024, 27, 10, 1024};
static const http_limits lim_3headers = {1024, 1024, 3, 1024};
static const http_limits lim_body5 = {1024, 1024, 10, 5};
static const http_limits lim_trailer8 = {1024, 8, 10, 1024};

/* ---- head cases --------------------------------------------------------- */

typedef struct head_case {
    const char *name;
    const char *raw;
    size_t raw_len;         /* 0: strlen(raw); set when raw holds a NUL */
    const http_limits *lim; /* NULL: defaults */
    http_error err;
    /* checked when err is HTTP_OK */
    const char *method;
    uint8_t mid;
    const char *path;
    const char *query; /* NULL: no '?' */
    const char *host;  /* NULL: none */
    bool v10;          /* HTTP/1.0 */
    bool close;        /* keep_alive false */
    bool chunked;
    bool has_cl;
    uint64_t cl;
    bool expect;
    uint32_t nh;
    uint32_t head_len; /* 0: the whole raw */
    /* when hname is set: headers[hidx] */
    int hidx;
    const char *hname;
    const char *hval;
} head_case;

#define GET  .method = "GET", .mid = HTTP_M_GET
#define POST .method = "POST", .mid = HTTP_M_POST

static const head_case head_cases[] = {
    /* accepted */
    {"minimal", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", GET, .path = "/", .host = "a", .nh = 1},
    {"query", "GET /p/q?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", GET, .path = "/p/q",
     .query = "x=1&y=%20", .host = "example.com:8080", .nh = 1},
    {"empty query", "GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", GET, .path = "/p", .query = "",
     .host = "a", .nh = 1},
    {"query with '?'", "GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n", GET, .path = "/a", .query = "b?c",
     .host = "a", .nh = 1},
    {"typical",
     "GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n"
     "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nAccept-Language: en-US\r\n"
     "Connection: keep-alive\r\n\r\n",
     GET, .path = "/index.html", .query = "x=1", .host = "example.com", .nh = 6, .hidx = 3,
     .hname = "Accept-Encoding", .hval = "gzip, deflate"},
    {"post with body",
     "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"
     "hello",
     POST, .path = "/upload", .host = "a", .has_cl = true, .cl = 5, .nh = 3, .head_len = 79},
    {"absolute-form", "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other\r\n\r\n", GET,
     .path = "/a/b", .query = "c=d", .host = "example.com:8080", .nh = 1},
    {"absolute-form https, empty path", "GET HTTPS://Example.COM HTTP/1.1\r\nHost: x\r\n\r\n", GET,
     .path = "/", .host = "Example.COM", .nh = 1},
    {"absolute-form query, no path", "GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", GET,
     .path = "/", .query = "q=1", .host = "h", .nh = 1},
    {"absolute-form ipv6", "GET http://[::1]:80/ HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", GET,
     .path = "/", .host = "[::1]:80", .nh = 1},
    {"options asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", .method = "OPTIONS",
     .mid = HTTP_M_OPTIONS, .path = "*", .host = "a", .nh = 1},
    {"connect authority-form", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
     .method = "CONNECT", .mid = HTTP_M_CONNECT, .path = "example.com:443",
     .host = "example.com:443", .nh = 1},
    {"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", GET, .path = "/", .host = "a",
     .nh = 1},
    {"leading LF", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", GET, .path = "/", .host = "a", .nh = 1},
    {"LF endings", "GET / HTTP/1.1\nHost: a\nX: y\n\n", GET, .path = "/", .host = "a", .nh = 2,
     .hidx = 1, .hname = "X", .hval = "y"},
    {"mixed endings", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\n", GET, .path = "/", .host = "a",
     .nh = 2},
    {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", GET, .path = "/", .v10 = true,
     .close = true},
    {"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", GET, .path = "/",
     .v10 = true, .nh = 1},
    {"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", GET, .path = "/",
     .host = "a", .close = true, .nh = 2},
    {"Connection lists",
     "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nConnection: , CLOSE \r\n\r\n",
     GET, .path = "/", .host = "a", .close = true, .nh = 3},
    {"OWS trimmed", "GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v a l \t \r\n\r\n", GET, .path = "/",
     .host = "a", .nh = 2, .hidx = 1, .hname = "X-A", .hval = "v a l"},
    {"empty value", "GET / HTTP/1.1\r\nHost: a\r\nX-E:   \r\n\r\n", GET, .path = "/", .host = "a",
     .nh = 2, .hidx = 1, .hname = "X-E", .hval = ""},
    {"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX-U: caf\xc3\xa9 \xff\r\n\r\n", GET,
     .path = "/", .host = "a", .nh = 2, .hidx = 1, .hname = "X-U", .hval = "caf\xc3\xa9 \xff"},
    {"tchar name", "GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n", GET,
     .path = "/", .host = "a", .nh = 2, .hidx = 1, .hname = "!#$%&'*+-.^_`|~09AZaz", .hval = "v"},
    {"Expect 100-continue",
     "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
     .method = "PUT", .mid = HTTP_M_PUT, .path = "/x", .host = "a", .expect = true, .has_cl = true,
     .cl = 3, .nh = 3},
    {"Expect ignored in HTTP/1.0",
     "POST / HTTP/1.0\r\nExpect: something-else\r\nContent-Length: 0\r\n\r\n", POST, .path = "/",
     .v10 = true, .close = true, .has_cl = true, .cl = 0, .nh = 2},
    {"Content-Length repeated, same",
     "POST / HTTP/1.1\r\nContent-Length: 42\r\nHost: a\r\ncontent-length: 42\r\n\r\n", POST,
     .path = "/", .host = "a", .has_cl = true, .cl = 42, .nh = 3},
    {"Content-Length list, same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7 ,7\r\n\r\n",
     POST, .path = "/", .host = "a", .has_cl = true, .cl = 7, .nh = 2},
    {"Content-Length leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
     POST, .path = "/", .host = "a", .has_cl = true, .cl = 7, .nh = 2},
    {"Content-Length at max_body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
     .lim = &lim_body5, POST, .path = "/", .host = "a", .has_cl = true, .cl = 5, .nh = 2},
    {"chunked",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     POST, .path = "/", .host = "a", .chunked = true, .nh = 2, .head_len = 56},
    {"chunked, case and OWS",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , Chunked ,\r\n\r\n", POST, .path = "/",
     .host = "a", .chunked = true, .nh = 2},
    {"chunked across fields",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n", POST,
     .path = "/", .host = "a", .chunked = true, .nh = 3},
    {"chunked with parameter",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked ; x=y\r\n\r\n", POST, .path = "/",
     .host = "a", .chunked = true, .nh = 2},
    {"HTTP/1.2 is 1.1", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", GET, .path = "/", .host = "a",
     .nh = 1},
    {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", GET, .path = "/", .host = "", .nh = 1},
    {"Host sub-delims and escapes", "GET / HTTP/1.1\r\nHost: a-b.c_d~!$&'()*+,;=%41:8080\r\n\r\n",
     GET, .path = "/", .host = "a-b.c_d~!$&'()*+,;=%41:8080", .nh = 1},
    {"other method", "PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", .method = "PURGE", .mid = HTTP_M_OTHER,
     .path = "/x", .host = "a", .nh = 1},
    {"method is case-sensitive", "get / HTTP/1.1\r\nHost: a\r\n\r\n", .method = "get",
     .mid = HTTP_M_OTHER, .path = "/", .host = "a", .nh = 1},
    {"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", GET,
     .path = "/1", .host = "a", .nh = 1, .head_len = 28},
    {"max_headers reached", "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
     .lim = &lim_3headers, GET, .path = "/", .host = "a", .nh = 3},
    {"request line at the limit", "GET /abc HTTP/1.1\r\nHost: a\r\n\r\n", .lim = &lim_rl17, GET,
     .path = "/abc", .host = "a", .nh = 1},
    {"request line at the limit, LF", "GET /abc HTTP/1.1\nHost: a\n\n", .lim = &lim_rl17, GET,
     .path = "/abc", .host = "a", .nh = 1},
    {"head at the limit", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", .lim = &lim_head27, GET, .path = "/",
     .host = "a", .nh = 1},
    {"head at the limit after an empty line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
     .lim = &lim_head27, GET, .path = "/", .host = "a", .nh = 1},

    /* refused */
    {"no version", "GET /\r\nHost: a\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"method only", "GET\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"double SP", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"trailing SP", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"extra part", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"leading SP", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"two empty lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"two empty LF lines", "\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_REQUEST_LINE},
    {"method not a token", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_METHOD},
    {"NUL in method", "G\0T / HTTP/1.1\r\nHost: a\r\n\r\n", 27, .err = HTTP_E_METHOD},
    {"HTAB after method", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_METHOD},
    {"TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", .err = HTTP_E_METHOD},
    {"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"asterisk and more", "OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"other scheme", "GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"userinfo", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", .err = HTTP_E_TARGET},
    {"bad escape in authority", "GET http://h%zz/ HTTP/1.1\r\nHost: a\r\n\r\n",
     .err = HTTP_E_TARGET},
    {"authority-form with GET", "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n",
     .err = HTTP_E_TARGET},
    {"CONNECT origin-form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_TARGET},
    {"CONNECT without port", "CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", .err = HTTP_E_TARGET},
    {"CONNECT empty port", "CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n", .err = HTTP_E_TARGET},
    {"version case", "GET / http/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION},
    {"version two digits", "GET / HTTP/11.1\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION},
    {"version short", "GET / HTTP/1\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION},
    {"version letter", "GET / HTTP/1.a\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION},
    {"version suffix", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION_UNSUPPORTED},
    {"HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION_UNSUPPORTED},
    {"HTTP/3.1", "GET / HTTP/3.1\r\nHost: a\r\n\r\n", .err = HTTP_E_VERSION_UNSUPPORTED},
    {"request line over the limit", "GET /abcd HTTP/1.1\r\nHost: a\r\n\r\n", .lim = &lim_rl17,
     .err = HTTP_E_URI_TOO_LONG},
    {"request line over the limit, LF", "GET /abc HTTP/1.1x\nHost: a\n\n", .lim = &lim_rl17,
     .err = HTTP_E_URI_TOO_LONG},
    {"head over the limit", "GET / HTTP/1.1\r\nHost: ab\r\n\r\n", .lim = &lim_head27,
     .err = HTTP_E_HEADERS_TOO_LARGE},
    {"too many headers", "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
     .lim = &lim_3headers, .err = HTTP_E_TOO_MANY_HEADERS},
    {"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", .err = HTTP_E_HEADER_NAME},
    {"name not a token", "GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", .err = HTTP_E_HEADER_NAME},
    {"no colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", .err = HTTP_E_HEADER_NAME},
    {"CTL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01: v\r\n\r\n", .err = HTTP_E_HEADER_NAME},
    {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", .err = HTTP_E_SPACE_BEFORE_COLON},
    {"tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nX\t: v\r\n\r\n",
     .err = HTTP_E_SPACE_BEFORE_COLON},
    {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n", .err = HTTP_E_OBS_FOLD},
    {"whitespace before the first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
     .err = HTTP_E_OBS_FOLD},
    {"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35,
     .err = HTTP_E_HEADER_VALUE},
    {"CTL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", .err = HTTP_E_HEADER_VALUE},
    {"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", .err = HTTP_E_HEADER_VALUE},
    {"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", .err = HTTP_E_LINE_ENDING},
    {"bare CR ending the request line", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
     .err = HTTP_E_LINE_ENDING},
    {"bare CR in target", "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", .err = HTTP_E_LINE_ENDING},
    {"bare CR line", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n", .err = HTTP_E_LINE_ENDING},
    {"bare CR before the request line", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
     .err = HTTP_E_LINE_ENDING},
    {"CL and TE",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     .err = HTTP_E_CL_AND_TE},
    {"CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL empty element", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    /* 2^64 + 5: wraps to 5 if the check comes after the multiply */
    {"CL wraps 2^64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551621\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL over 2^62", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387905\r\n\r\n",
     .err = HTTP_E_CL_INVALID},
    {"CL list differs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
     .err = HTTP_E_CL_MISMATCH},
    {"CL fields differ",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
     .err = HTTP_E_CL_MISMATCH},
    {"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
     .err = HTTP_E_TE_NOT_CHUNKED},
    {"TE chunked then gzip",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
     .err = HTTP_E_TE_NOT_CHUNKED},
    {"TE chunked twice",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
     .err = HTTP_E_TE_NOT_CHUNKED},
    {"TE chunked in two fields",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     .err = HTTP_E_TE_NOT_CHUNKED},
    {"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n",
     .err = HTTP_E_TE_NOT_CHUNKED},
    {"TE not a token", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\"\r\n\r\n",
     .err = HTTP_E_TE_NOT_CHUNKED},
    {"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     .err = HTTP_E_TE_UNSUPPORTED},
    {"TE identity, chunked",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     .err = HTTP_E_TE_UNSUPPORTED},
    {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
     .err = HTTP_E_TE_HTTP10},
    {"no Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", .err = HTTP_E_HOST_MISSING},
    {"no Host, absolute-form", "GET http://h/ HTTP/1.1\r\n\r\n", .err = HTTP_E_HOST_MISSING},
    {"two Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", .err = HTTP_E_HOST_REPEATED},
    {"two Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n",
     .err = HTTP_E_HOST_REPEATED},
    {"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .err = HTTP_E_HOST_INVALID},
    {"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .err = HTTP_E_HOST_INVALID},
    {"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", .err = HTTP_E_HOST_INVALID},
    {"Host bad port", "GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n", .err = HTTP_E_HOST_INVALID},
    {"Host open bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", .err = HTTP_E_HOST_INVALID},
    {"Host short escape", "GET / HTTP/1.1\r\nHost: h%2\r\n\r\n", .err = HTTP_E_HOST_INVALID},
    {"Expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: bar\r\n\r\n",
     .err = HTTP_E_EXPECTATION},
    {"Expect list", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n",
     .err = HTTP_E_EXPECTATION},
    {"CL over max_body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17000000\r\n\r\n",
     .err = HTTP_E_BODY_TOO_LARGE},
    {"CL over a small max_body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n",
     .lim = &lim_body5, .err = HTTP_E_BODY_TOO_LARGE},
    {"incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", .err = HTTP_AGAIN},
};

static size_t case_len(const head_case *c)
{
    return c->raw_len ? c->raw_len : strlen(c->raw);
}

static const http_limits *case_lim(const head_case *c)
{
    return c->lim ? c->lim : &lim_default;
}

static void expect_span(const head_case *c, const char *what, const char *want, const char *got,
                        uint32_t got_len)
{
    if (!want) {
        if (got) fail_msg("%s: %s should be absent, is \"%.*s\"", c->name, what, (int)got_len, got);
        return;
    }
    if (!got) fail_msg("%s: %s missing, want \"%s\"", c->name, what, want);
    if (strlen(want) != got_len || memcmp(want, got, got_len) != 0)
        fail_msg("%s: %s is \"%.*s\", want \"%s\"", c->name, what, (int)got_len, got, want);
}

/* A pointer from req must lie inside buf (zero-copy). */
static void expect_inside(const head_case *c, const char *buf, size_t len, const char *p,
                          uint32_t n)
{
    if (p && (p < buf || p + n > buf + len))
        fail_msg("%s: a span points outside the buffer", c->name);
}

static void check_fields(const head_case *c, const char *buf, size_t len, const http_request *r)
{
    expect_span(c, "method", c->method, r->method, r->method_len);
    expect_span(c, "path", c->path, r->path, r->path_len);
    expect_span(c, "query", c->query, r->query, r->query_len);
    expect_span(c, "host", c->host, r->host, r->host_len);
    if (r->method_id != c->mid) fail_msg("%s: method_id %d", c->name, r->method_id);
    if (r->version_minor != (c->v10 ? 0 : 1)) fail_msg("%s: version", c->name);
    if (r->keep_alive != !c->close) fail_msg("%s: keep_alive", c->name);
    if (r->chunked != c->chunked) fail_msg("%s: chunked", c->name);
    if (r->has_content_length != c->has_cl || r->content_length != c->cl)
        fail_msg("%s: content-length %d %llu", c->name, r->has_content_length,
                 (unsigned long long)r->content_length);
    if (r->expect_continue != c->expect) fail_msg("%s: expect_continue", c->name);
    if (r->n_headers != c->nh) fail_msg("%s: n_headers %u, want %u", c->name, r->n_headers, c->nh);
    uint32_t head_len = c->head_len ? c->head_len : (uint32_t)len;
    if (r->head_len != head_len)
        fail_msg("%s: head_len %u, want %u", c->name, r->head_len, head_len);
    if (c->hname) {
        const http_header *h = &r->headers[c->hidx];
        expect_span(c, "header name", c->hname, h->name, h->name_len);
        expect_span(c, "header value", c->hval, h->value, h->value_len);
    }
    expect_inside(c, buf, len, r->method, r->method_len);
    expect_inside(c, buf, len, r->target, r->target_len);
    expect_inside(c, buf, len, r->path, r->path_len);
    expect_inside(c, buf, len, r->query, r->query_len);
    expect_inside(c, buf, len, r->host, r->host_len);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        expect_inside(c, buf, len, r->headers[i].name, r->headers[i].name_len);
        expect_inside(c, buf, len, r->headers[i].value, r->headers[i].value_len);
    }
}

/* Same span at the same offset of its own buffer. */
static void same_span(const head_case *c, const char *what, const char *a, const char *abuf,
                      uint32_t alen, const char *b, const char *bbuf, uint32_t blen)
{
    if ((a == NULL) != (b == NULL) || alen != blen || (a && a - abuf != b - bbuf))
        fail_msg("%s: %s differs between whole and split", c->name, what);
}

static void same_request(const head_case *c, const http_request *a, const char *abuf,
                         const http_request *b, const char *bbuf)
{
    same_span(c, "method", a->method, abuf, a->method_len, b->method, bbuf, b->method_len);
    same_span(c, "target", a->target, abuf, a->target_len, b->target, bbuf, b->target_len);
    same_span(c, "path", a->path, abuf, a->path_len, b->path, bbuf, b->path_len);
    same_span(c, "query", a->query, abuf, a->query_len, b->query, bbuf, b->query_len);
    same_span(c, "host", a->host, abuf, a->host_len, b->host, bbuf, b->host_len);
    if (a->method_id != b->method_id || a->version_minor != b->version_minor ||
        a->keep_alive != b->keep_alive || a->chunked != b->chunked ||
        a->has_content_length != b->has_content_length || a->content_length != b->content_length ||
        a->expect_continue != b->expect_continue || a->n_headers != b->n_headers ||
        a->head_len != b->head_len)
        fail_msg("%s: fields differ between whole and split", c->name);
    for (uint32_t i = 0; i < a->n_headers; i++) {
        const http_header *x = &a->headers[i], *y = &b->headers[i];
        same_span(c, "header name", x->name, abuf, x->name_len, y->name, bbuf, y->name_len);
        same_span(c, "header value", x->value, abuf, x->value_len, y->value, bbuf, y->value_len);
    }
}

/* A fresh request full of garbage, so that nothing the parser leaves
 * unset, and nothing carried over from an earlier call, can pass. */
static void garbage_request(http_request *r, http_header *hs)
{
    memset(r, 0xA5, sizeof *r);
    memset(hs, 0x5A, sizeof(http_header) * MAXH);
    r->headers = hs;
}

/* An exact-size copy, so that AddressSanitizer sees any read past len. */
static char *copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

static void run_head_case(const head_case *c)
{
    size_t n = case_len(c);
    const http_limits *lim = case_lim(c);
    http_header whs[MAXH], hs[MAXH];
    http_request whole, r;
    http_head_parser p;

    /* whole */
    char *wbuf = copy(c->raw, n);
    garbage_request(&whole, whs);
    http_head_init(&p);
    http_error we = http_parse_head(&p, lim, wbuf, n, &whole);
    if (we != c->err)
        fail_msg("%s: whole: %d (%s), want %d (%s)", c->name, we, http_error_reason(we), c->err,
                 http_error_reason(c->err));
    if (we == HTTP_OK) check_fields(c, wbuf, n, &whole);

    /* cumulative prefixes 1..n with one parser, as a server sees them */
    http_head_init(&p);
    http_error e = HTTP_AGAIN;
    size_t k;
    for (k = 1; k <= n && e == HTTP_AGAIN; k++) {
        char *buf = copy(c->raw, k);
        garbage_request(&r, hs);
        e = http_parse_head(&p, lim, buf, k, &r);
        if (e == HTTP_OK) {
            if (k != r.head_len)
                fail_msg("%s: OK at %zu bytes, head_len %u", c->name, k, r.head_len);
            same_request(c, &whole, wbuf, &r, buf);
        }
        if (e == HTTP_AGAIN && p.scanned > k) fail_msg("%s: scanned past len", c->name);
        free(buf);
    }
    if (e != we) fail_msg("%s: bytewise: %d at %zu bytes, whole: %d", c->name, e, k - 1, we);

    /* two pieces split at every boundary */
    for (k = 1; k < n; k++) {
        char *buf = copy(c->raw, k);
        garbage_request(&r, hs);
        http_head_init(&p);
        e = http_parse_head(&p, lim, buf, k, &r);
        if (e == HTTP_AGAIN) {
            free(buf);
            buf = copy(c->raw, n);
            garbage_request(&r, hs);
            e = http_parse_head(&p, lim, buf, n, &r);
        } else if (e == HTTP_OK && k < whole.head_len) {
            fail_msg("%s: OK after %zu bytes of a %u-byte head", c->name, k, whole.head_len);
        }
        if (e != we) fail_msg("%s: split at %zu: %d, whole: %d", c->name, k, e, we);
        if (e == HTTP_OK) same_request(c, &whole, wbuf, &r, buf);
        free(buf);
    }
    free(wbuf);
}

static void test_head_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof head_cases / sizeof head_cases[0]; i++)
        run_head_case(&head_cases[i]);
}

static void test_method_ids(void **state)
{
    (void)state;
    static const struct {
        const char *m;
        uint8_t id;
    } ms[] = {
        {"GET", HTTP_M_GET},         {"HEAD", HTTP_M_HEAD},     {"POST", HTTP_M_POST},
        {"PUT", HTTP_M_PUT},         {"DELETE", HTTP_M_DELETE}, {"PATCH", HTTP_M_PATCH},
        {"OPTIONS", HTTP_M_OPTIONS}, {"TRACE", HTTP_M_TRACE},   {"GETS", HTTP_M_OTHER},
        {"Post", HTTP_M_OTHER},      {"DELETED", HTTP_M_OTHER}, {"X", HTTP_M_OTHER},
    };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        char raw[128];
        int n = snprintf(raw, sizeof raw, "%s /x HTTP/1.1\r\nHost: h\r\n\r\n", ms[i].m);
        http_header hs[MAXH];
        http_request r = {.headers = hs};
        http_head_parser p;
        http_head_init(&p);
        assert_int_equal(http_parse_head(&p, &lim_default, raw, (size_t)n, &r), HTTP_OK);
        assert_int_equal(r.method_id, ms[i].id);
        assert_int_equal(r.method_len, strlen(ms[i].m));
    }
}

/* Feed buf cumulatively; return the first non-AGAIN result and where. */
static http_error feed_until(const http_limits *lim, const char *raw, size_t n, size_t *at)
{
    http_header hs[MAXH];
    http_request r = {.headers = hs};
    http_head_parser p;
    http_head_init(&p);
    for (size_t k = 1; k <= n; k++) {
        http_error e = http_parse_head(&p, lim, raw, k, &r);
        if (e != HTTP_AGAIN) {
            *at = k;
            return e;
        }
    }
    *at = n;
    return HTTP_AGAIN;
}

static void test_limits_reported_early(void **state)
{
    (void)state;
    char raw[512];
    size_t at;

    /* a request line that never ends: 414 once the limit plus a CRLF's
     * worth of bytes arrived without a line end */
    static const http_limits rl16 = {16, 1024, 10, 1024};
    memset(raw, 'a', sizeof raw);
    memcpy(raw, "GET /", 5);
    assert_int_equal(feed_until(&rl16, raw, sizeof raw, &at), HTTP_E_URI_TOO_LONG);
    assert_int_equal(at, 18);
    /* the same after a skipped empty line */
    memcpy(raw, "\r\nGET /", 7);
    assert_int_equal(feed_until(&rl16, raw, sizeof raw, &at), HTTP_E_URI_TOO_LONG);
    assert_int_equal(at, 20);

    /* a head that never ends: 431 as soon as max_header_bytes arrived */
    static const http_limits h64 = {1024, 64, 10, 1024};
    memset(raw, 'a', sizeof raw);
    memcpy(raw, "GET / HTTP/1.1\r\nHost: a\r\nX: ", 28);
    assert_int_equal(feed_until(&h64, raw, sizeof raw, &at), HTTP_E_HEADERS_TOO_LARGE);
    assert_int_equal(at, 64);

    /* many short lines, still 431 at the limit */
    for (size_t i = 16; i + 1 < sizeof raw; i += 2)
        memcpy(raw + i, "a\n", 2);
    memcpy(raw, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(feed_until(&h64, raw, sizeof raw, &at), HTTP_E_HEADERS_TOO_LARGE);
    assert_int_equal(at, 64);

    /* when the head limit is the tighter one, a long request line gets 431 */
    static const http_limits h20 = {1024, 20, 10, 1024};
    memset(raw, 'a', sizeof raw);
    memcpy(raw, "GET /", 5);
    assert_int_equal(feed_until(&h20, raw, sizeof raw, &at), HTTP_E_HEADERS_TOO_LARGE);
    assert_int_equal(at, 20);

    /* garbage is refused at its first byte */
    assert_int_equal(feed_until(&lim_default, "\x16\x03\x01", 3, &at), HTTP_E_METHOD);
    assert_int_equal(at, 1);
}

/* The search resumes where it stopped rather than starting over. */
static void test_incremental_scan(void **state)
{
    (void)state;
    static const char raw[] = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n";
    size_t n = sizeof raw - 1;
    http_header hs[MAXH];
    http_request r = {.headers = hs};
    http_head_parser p;
    http_head_init(&p);
    assert_int_equal(http_parse_head(&p, &lim_default, raw, 0, &r), HTTP_AGAIN);
    for (size_t k = 1; k < n; k++) {
        assert_int_equal(http_parse_head(&p, &lim_default, raw, k, &r), HTTP_AGAIN);
        assert_true(p.scanned >= k - 1 && p.scanned <= k);
    }
    assert_int_equal(http_parse_head(&p, &lim_default, raw, n, &r), HTTP_OK);
    assert_int_equal(r.head_len, n);
    /* asking again gives the same answer */
    assert_int_equal(http_parse_head(&p, &lim_default, raw, n, &r), HTTP_OK);
    assert_int_equal(r.n_headers, 2);
}

/* A refused field line counts only once the head is complete: until then
 * the head might yet turn out too large, and that must not depend on how
 * the bytes arrived. */
static void test_field_errors_wait_for_the_head(void **state)
{
    (void)state;
    static const char raw[] = "GET / HTTP/1.1\r\nX(: a\r\nHost: a\r\n\r\n";
    size_t n = sizeof raw - 1;
    http_header hs[MAXH];
    http_request r = {.headers = hs};
    http_head_parser p;
    http_head_init(&p);
    assert_int_equal(http_parse_head(&p, &lim_default, raw, 23, &r), HTTP_AGAIN); /* ..."a\r\n" */
    assert_int_equal(http_parse_head(&p, &lim_default, raw, n - 2, &r), HTTP_AGAIN);
    assert_int_equal(http_parse_head(&p, &lim_default, raw, n, &r), HTTP_E_HEADER_NAME);

    /* the same with a head that grows too large instead of ending */
    static const http_limits h40 = {1024, 40, 10, 1024};
    char big[64];
    memset(big, 'a', sizeof big);
    memcpy(big, raw, 23);
    http_head_init(&p);
    assert_int_equal(http_parse_head(&p, &h40, big, 23, &r), HTTP_AGAIN);
    assert_int_equal(http_parse_head(&p, &h40, big, sizeof big, &r), HTTP_E_HEADERS_TOO_LARGE);
    http_head_init(&p);
    assert_int_equal(http_parse_head(&p, &h40, big, sizeof big, &r), HTTP_E_HEADERS_TOO_LARGE);
}

/* ---- chunked ------------------------------------------------------------ */

typedef struct chunk_case {
    const char *name;
    const char *raw;
    http_error err;
    const char *body;       /* decoded bytes (also up to an error) */
    size_t consumed;        /* on OK; 0: all of raw */
    const http_limits *lim; /* NULL: defaults */
} chunk_case;

static const chunk_case chunk_cases[] = {
    {"one chunk", "5\r\nhello\r\n0\r\n\r\n", HTTP_OK, .body = "hello"},
    {"empty body", "0\r\n\r\n", HTTP_OK, .body = ""},
    {"several chunks, hex case", "A\r\n0123456789\r\na\r\nabcdefghij\r\n1\r\n!\r\n0\r\n\r\n",
     HTTP_OK, .body = "0123456789abcdefghij!"},
    {"leading zeros", "005\r\nhello\r\n000\r\n\r\n", HTTP_OK, .body = "hello"},
    {"extensions", "5;a=b;c\r\nhello\r\n0;last\r\n\r\n", HTTP_OK, .body = "hello"},
    {"extensions with BWS", "5 ; a = b ;c ;d= e\t;f\r\nhello\r\n0\r\n\r\n", HTTP_OK,
     .body = "hello"},
    {"quoted extension", "5;a=\"x y\\\"z;\\\\\";b=\"\"\r\nhello\r\n0\r\n\r\n", HTTP_OK,
     .body = "hello"},
    {"trailers", "5\r\nhello\r\n0\r\nX-T: v\r\nY:\r\nZ: a b\xff\r\n\r\n", HTTP_OK, .body = "hello"},
    {"LF only", "5\nhello\n0\nX: y\n\n", HTTP_OK, .body = "hello"},
    {"pipelined bytes left alone", "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", HTTP_OK,
     .body = "abc", .consumed = 13},
    {"body at max_body", "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", HTTP_OK, .body = "abcde",
     .lim = &lim_body5},
    {"trailer at the limit", "0\r\nX: 123\r\n\r\n", HTTP_OK, .body = "", .lim = &lim_trailer8},
    {"no size", "\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SIZE, .body = ""},
    {"size not hex", "x\r\n", HTTP_E_CHUNK_SIZE, .body = ""},
    {"size with sign", "-5\r\n", HTTP_E_CHUNK_SIZE, .body = ""},
    {"size 0x", "0x5\r\n", HTTP_E_CHUNK_SIZE, .body = ""},
    {"size 17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SIZE, .body = ""},
    {"size over 2^62", "4000000000000001\r\n", HTTP_E_CHUNK_SIZE, .body = ""},
    {"size overflow", "FFFFFFFFFFFFFFFF\r\n", HTTP_E_CHUNK_SIZE, .body = ""},
    {"space then CRLF", "5 \r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"junk after size", "5 x\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"empty extension", "5;\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"extension without name", "5;=x\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"extension without value", "5;a=\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"extension space in value", "5;a=b c\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"CTL in quoted extension", "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX,
     .body = ""},
    {"open quoted extension", "5;a=\"x\r\nhello\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"bare CR in size line", "5\rhello\r\n", HTTP_E_CHUNK_SYNTAX, .body = ""},
    {"data too long", "5\r\nhelloX\r\n0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = "hello"},
    {"bare CR after data", "5\r\nhello\rX0\r\n\r\n", HTTP_E_CHUNK_SYNTAX, .body = "hello"},
    {"obs-fold in trailer", "0\r\nX: a\r\n b\r\n\r\n", HTTP_E_TRAILER, .body = ""},
    {"space before colon in trailer", "0\r\nX : a\r\n\r\n", HTTP_E_TRAILER, .body = ""},
    {"empty trailer name", "0\r\n: a\r\n\r\n", HTTP_E_TRAILER, .body = ""},
    {"no colon in trailer", "0\r\nX\r\n\r\n", HTTP_E_TRAILER, .body = ""},
    {"CTL in trailer", "0\r\nX: \x01\r\n\r\n", HTTP_E_TRAILER, .body = ""},
    {"bare CR in trailer", "0\r\nX: a\rb\r\n\r\n", HTTP_E_TRAILER, .body = ""},
    {"bare CR at the end", "0\r\n\rX", HTTP_E_TRAILER, .body = ""},
    {"trailer over the limit", "0\r\nX: 1234\r\n\r\n", HTTP_E_TRAILER, .body = "",
     .lim = &lim_trailer8},
    {"chunk over max_body", "6\r\nabcdef\r\n0\r\n\r\n", HTTP_E_BODY_TOO_LARGE, .body = "",
     .lim = &lim_body5},
    {"body over max_body", "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", HTTP_E_BODY_TOO_LARGE,
     .body = "abc", .lim = &lim_body5},
    {"incomplete", "5\r\nhel", HTTP_AGAIN, .body = "hel"},
};

typedef struct sink_buf {
    char data[16384];
    size_t len;
    const char *in; /* the input of the current call */
    size_t in_len;
} sink_buf;

static void sink(void *ud, const char *data, size_t len)
{
    sink_buf *s = ud;
    assert_true(len > 0);
    assert_true(data >= s->in && data + len <= s->in + s->in_len); /* zero-copy */
    assert_true(s->len + len <= sizeof s->data);
    memcpy(s->data + s->len, data, len);
    s->len += len;
}

/* Feed raw[from..to) in one call on an exact-size copy. */
static http_error feed_chunked(http_chunked *d, const http_limits *lim, const char *raw,
                               size_t from, size_t to, size_t *consumed, sink_buf *out)
{
    char *buf = copy(raw + from, to - from);
    out->in = buf;
    out->in_len = to - from;
    http_error e = http_chunked_decode(d, lim, buf, to - from, consumed, sink, out);
    free(buf);
    if (e == HTTP_AGAIN) assert_int_equal(*consumed, to - from);
    assert_true(*consumed <= to - from);
    return e;
}

static void check_chunk_result(const chunk_case *c, const char *how, http_error e, size_t consumed,
                               const sink_buf *out)
{
    size_t n = strlen(c->raw);
    if (e != c->err)
        fail_msg("%s: %s: %d (%s), want %d", c->name, how, e, http_error_reason(e), c->err);
    if (out->len != strlen(c->body) || memcmp(out->data, c->body, out->len) != 0)
        fail_msg("%s: %s: decoded \"%.*s\"", c->name, how, (int)out->len, out->data);
    if (e == HTTP_OK && consumed != (c->consumed ? c->consumed : n))
        fail_msg("%s: %s: consumed %zu", c->name, how, consumed);
}

static void run_chunk_case(const chunk_case *c)
{
    const http_limits *lim = c->lim ? c->lim : &lim_default;
    size_t n = strlen(c->raw), used;
    http_chunked d;
    sink_buf *out = malloc(sizeof *out);
    assert_non_null(out);

    /* whole */
    http_chunked_init(&d);
    out->len = 0;
    http_error e = feed_chunked(&d, lim, c->raw, 0, n, &used, out);
    check_chunk_result(c, "whole", e, used, out);
    if (e != HTTP_AGAIN) {
        /* finished or failed for good */
        http_error again = http_chunked_decode(&d, lim, "0\r\n\r\n", 5, &used, sink, out);
        assert_int_equal(again, e);
        assert_int_equal(used, 0);
    }

    /* two pieces split at every boundary */
    for (size_t k = 1; k < n; k++) {
        http_chunked_init(&d);
        out->len = 0;
        size_t total;
        e = feed_chunked(&d, lim, c->raw, 0, k, &total, out);
        if (e == HTTP_AGAIN) {
            e = feed_chunked(&d, lim, c->raw, k, n, &used, out);
            total += used;
        }
        char how[32];
        snprintf(how, sizeof how, "split at %zu", k);
        check_chunk_result(c, how, e, total, out);
    }

    /* byte by byte */
    http_chunked_init(&d);
    out->len = 0;
    size_t total = 0;
    e = HTTP_AGAIN;
    for (size_t k = 0; k < n && e == HTTP_AGAIN; k++) {
        e = feed_chunked(&d, lim, c->raw, k, k + 1, &used, out);
        total += used;
    }
    check_chunk_result(c, "bytewise", e, total, out);
    free(out);
}

static void test_chunk_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof chunk_cases / sizeof chunk_cases[0]; i++)
        run_chunk_case(&chunk_cases[i]);
}

static void test_chunk_line_bound(void **state)
{
    (void)state;
    /* an extension list longer than the chunk-line bound */
    size_t n = 8192;
    char *raw = malloc(n);
    assert_non_null(raw);
    raw[0] = '5';
    for (size_t i = 1; i + 1 < n; i += 2)
        memcpy(raw + i, ";a", 2);
    http_chunked d;
    http_chunked_init(&d);
    size_t used;
    assert_int_equal(http_chunked_decode(&d, &lim_default, raw, n, &used, NULL, NULL),
                     HTTP_E_CHUNK_SYNTAX);
    assert_true(used > 4000 && used <= 4097);

    /* below it, with no sink */
    static const char ok[] = "5;a=b\r\nhello\r\n0\r\n\r\n";
    http_chunked_init(&d);
    assert_int_equal(http_chunked_decode(&d, &lim_default, ok, sizeof ok - 1, &used, NULL, NULL),
                     HTTP_OK);
    assert_int_equal(used, sizeof ok - 1);
    free(raw);
}

/* Large data passes through in one span per call. */
static void test_chunk_large(void **state)
{
    (void)state;
    size_t n = 3 * 4096;
    char *raw = malloc(n + 32);
    assert_non_null(raw);
    int h = snprintf(raw, 32, "%zx\r\n", n - 100);
    memset(raw + h, 'z', n - 100);
    memcpy(raw + h + n - 100, "\r\n0\r\n\r\n", 7);
    size_t total = (size_t)h + n - 100 + 7;
    sink_buf *out = malloc(sizeof *out);
    assert_non_null(out);
    out->len = 0;
    out->in = raw;
    out->in_len = total;
    http_chunked d;
    http_chunked_init(&d);
    size_t used;
    assert_int_equal(http_chunked_decode(&d, &lim_default, raw, total, &used, sink, out), HTTP_OK);
    assert_int_equal(used, total);
    assert_int_equal(out->len, n - 100);
    assert_int_equal(d.total, n - 100);
    free(out);
    free(raw);
}

/* ---- errors and names --------------------------------------------------- */

static void test_every_error_tested(void **state)
{
    (void)state;
    bool seen[HTTP_ERROR_COUNT] = {0};
    for (size_t i = 0; i < sizeof head_cases / sizeof head_cases[0]; i++)
        seen[head_cases[i].err] = true;
    for (size_t i = 0; i < sizeof chunk_cases / sizeof chunk_cases[0]; i++)
        seen[chunk_cases[i].err] = true;
    for (int e = 0; e < HTTP_ERROR_COUNT; e++)
        if (!seen[e]) fail_msg("no test case ends in error %d (%s)", e, http_error_reason(e));
}

static void test_error_status_and_reason(void **state)
{
    (void)state;
    for (int e = HTTP_E_REQUEST_LINE; e < HTTP_ERROR_COUNT; e++) {
        int s = http_error_status((http_error)e);
        assert_true(s == 400 || s == 413 || s == 414 || s == 417 || s == 431 || s == 501 ||
                    s == 505);
        const char *r = http_error_reason((http_error)e);
        assert_non_null(r);
        assert_true(strlen(r) > 10);
    }
    assert_int_equal(http_error_status(HTTP_E_URI_TOO_LONG), 414);
    assert_int_equal(http_error_status(HTTP_E_HEADERS_TOO_LARGE), 431);
    assert_int_equal(http_error_status(HTTP_E_TOO_MANY_HEADERS), 431);
    assert_int_equal(http_error_status(HTTP_E_BODY_TOO_LARGE), 413);
    assert_int_equal(http_error_status(HTTP_E_EXPECTATION), 417);
    assert_int_equal(http_error_status(HTTP_E_TE_UNSUPPORTED), 501);
    assert_int_equal(http_error_status(HTTP_E_VERSION_UNSUPPORTED), 505);
    assert_int_equal(http_error_status(HTTP_E_CL_AND_TE), 400);
    assert_string_equal(http_error_reason(HTTP_E_CL_AND_TE),
                        "Content-Length and Transfer-Encoding are both present");
    assert_non_null(http_error_reason(HTTP_OK));
    assert_non_null(http_error_reason((http_error)HTTP_ERROR_COUNT));
    assert_non_null(http_error_reason((http_error)-1));
}

static void test_name_eq(void **state)
{
    (void)state;
    assert_true(http_name_eq("Content-Length", 14, "content-length"));
    assert_true(http_name_eq("HOST", 4, "host"));
    assert_true(http_name_eq("", 0, ""));
    assert_false(http_name_eq("Host", 4, "hos"));
    assert_false(http_name_eq("Hos", 3, "host"));
    assert_false(http_name_eq("Hosu", 4, "host"));
    assert_false(http_name_eq("Host", 4, "HOST")); /* the literal must be lowercase */
    /* only ASCII letters fold: '@' (0x40) is not '`' (0x60) */
    assert_false(http_name_eq("@", 1, "`"));
    assert_false(http_name_eq("[", 1, "{"));
    assert_false(http_name_eq("Ho\0t", 4, "ho"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_cases),
        cmocka_unit_test(test_method_ids),
        cmocka_unit_test(test_limits_reported_early),
        cmocka_unit_test(test_incremental_scan),
        cmocka_unit_test(test_field_errors_wait_for_the_head),
        cmocka_unit_test(test_chunk_cases),
        cmocka_unit_test(test_chunk_line_bound),
        cmocka_unit_test(test_chunk_large),
        cmocka_unit_test(test_every_error_tested),
        cmocka_unit_test(test_error_status_and_reason),
        cmocka_unit_test(test_name_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
