/* Vie's HTTP/1.1 request parser (RFC 9112): incremental and zero-copy.
 *
 * The head parser scans for the end of the header section as bytes arrive,
 * remembering how far it got, and parses the section in one strict pass once
 * it is complete. Every pointer it returns points into the caller's buffer,
 * which must stay put until the request is done. The chunked decoder is a
 * byte-level state machine that hands out data spans, also pointing into the
 * input, so a body split at any byte boundary decodes the same.
 */
#ifndef VIE_HTTP_PARSER_H
#define VIE_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_limits {
    uint32_t max_request_line; /* bytes of the request line, CRLF excluded; above: 414 */
    uint32_t max_header_bytes; /* bytes of the whole head (request line + fields); above: 431 */
    uint32_t max_headers;      /* number of header fields; above: 431 */
    uint64_t max_body;         /* decoded body bytes; above: 413 */
} http_limits;

#define HTTP_DEFAULT_MAX_REQUEST_LINE 8192u
#define HTTP_DEFAULT_MAX_HEADER_BYTES 16384u
#define HTTP_DEFAULT_MAX_HEADERS      100u
#define HTTP_DEFAULT_MAX_BODY         (16ull * 1024 * 1024)

/* Outcome of a parse step. HTTP_OK and HTTP_AGAIN are not errors; every
 * other value is, and maps to a status and a reason (http_error_status,
 * http_error_reason). After an error the connection must be closed. */
typedef enum http_error {
    HTTP_OK = 0,
    HTTP_AGAIN,                 /* need more bytes */
    HTTP_E_REQUEST_LINE,        /* 400 malformed request line */
    HTTP_E_METHOD,              /* 400 method is not a token */
    HTTP_E_TARGET,              /* 400 bad request-target */
    HTTP_E_VERSION,             /* 400 malformed HTTP-version */
    HTTP_E_VERSION_UNSUPPORTED, /* 505 HTTP/2.0, HTTP/0.9, HTTP/3.x ... */
    HTTP_E_URI_TOO_LONG,        /* 414 */
    HTTP_E_HEADERS_TOO_LARGE,   /* 431 head over max_header_bytes */
    HTTP_E_TOO_MANY_HEADERS,    /* 431 over max_headers */
    HTTP_E_HEADER_NAME,         /* 400 empty name or non-token character */
    HTTP_E_SPACE_BEFORE_COLON,  /* 400 "Name : value" */
    HTTP_E_OBS_FOLD,            /* 400 line starting with SP/HTAB */
    HTTP_E_HEADER_VALUE,        /* 400 control character (NUL, bare CR...) in a value */
    HTTP_E_LINE_ENDING,         /* 400 bare CR */
    HTTP_E_CL_AND_TE,           /* 400 Content-Length with Transfer-Encoding */
    HTTP_E_CL_INVALID,          /* 400 sign, hex, empty, overflow */
    HTTP_E_CL_MISMATCH,         /* 400 differing Content-Length values */
    HTTP_E_TE_NOT_CHUNKED,      /* 400 last transfer coding is not chunked */
    HTTP_E_TE_UNSUPPORTED,      /* 501 a coding before chunked we cannot decode */
    HTTP_E_TE_HTTP10,           /* 400 Transfer-Encoding in an HTTP/1.0 request */
    HTTP_E_HOST_MISSING,        /* 400 HTTP/1.1 without Host */
    HTTP_E_HOST_REPEATED,       /* 400 more than one Host */
    HTTP_E_HOST_INVALID,        /* 400 Host value not a valid authority */
    HTTP_E_EXPECTATION,         /* 417 an Expect other than 100-continue */
    HTTP_E_BODY_TOO_LARGE,      /* 413 */
    HTTP_E_CHUNK_SIZE,          /* 400 bad or overflowing chunk size */
    HTTP_E_CHUNK_SYNTAX,        /* 400 missing CRLF after chunk data, bad extension */
    HTTP_E_TRAILER,             /* 400 malformed or oversized trailer section */
    HTTP_ERROR_COUNT
} http_error;

int http_error_status(http_error e);         /* 400, 413, 414, 417, 431, 501, 505 */
const char *http_error_reason(http_error e); /* one human sentence, for problem+json */

/* Well-known methods get an id so the router and writer never compare strings. */
typedef enum http_method {
    HTTP_M_OTHER = 0,
    HTTP_M_GET,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_PUT,
    HTTP_M_DELETE,
    HTTP_M_PATCH,
    HTTP_M_OPTIONS,
    HTTP_M_TRACE,
    HTTP_M_CONNECT,
} http_method;

typedef struct http_header {
    const char *name;
    const char *value; /* leading and trailing OWS removed */
    uint32_t name_len;
    uint32_t value_len;
} http_header;

typedef struct http_request {
    const char *method;
    const char *target; /* the raw request-target as sent */
    const char *path;  /* origin-form path, or the path of an absolute-form target ("/" if empty) */
    const char *query; /* after '?', without it; NULL when there is no '?' */
    const char *host;  /* authority of an absolute-form target, else the Host value */
    uint32_t method_len, target_len, path_len, query_len, host_len;
    uint8_t method_id;     /* http_method */
    uint8_t version_minor; /* 0 or 1 */
    bool keep_alive;       /* from version and Connection tokens */
    bool chunked;          /* Transfer-Encoding: chunked */
    bool has_content_length;
    bool expect_continue; /* Expect: 100-continue */
    uint64_t content_length;
    http_header *headers; /* caller-provided array of limits->max_headers entries */
    uint32_t n_headers;
    uint32_t head_len; /* bytes of the head, leading empty line and final CRLF included */
} http_request;

/* Progress of the head parser across calls; zero it (http_head_init) for
 * each new request. */
typedef struct http_head_parser {
    uint32_t scanned;    /* bytes already searched for the end of the head */
    uint32_t line_start; /* internal: start of the line being searched */
    uint32_t fields;     /* internal: start of the first field line */
    uint8_t rl_start;    /* internal: 1 or 2 when an empty line was skipped */
    uint8_t phase;       /* internal: which part of the head is being searched */
} http_head_parser;

void http_head_init(http_head_parser *p);

/* Parse the head of a request from buf[0..len). buf always starts at the
 * beginning of the request and grows between calls (the caller appends).
 * Returns HTTP_OK with req filled in (req->headers must point to an array
 * of limits->max_headers entries), HTTP_AGAIN when the head is incomplete,
 * or an error. Limits that can be judged before the head is complete (a
 * request line or head already too long) are reported as soon as they are
 * exceeded. One empty line (CRLF or LF) before the request line is skipped. */
http_error http_parse_head(http_head_parser *p, const http_limits *limits, const char *buf,
                           size_t len, http_request *req);

/* Chunked body decoder state; zero it with http_chunked_init. */
typedef struct http_chunked {
    uint8_t state;
    uint8_t size_digits;
    uint64_t remaining; /* bytes left in the current chunk */
    uint64_t total;     /* decoded bytes so far */
    uint32_t aux;       /* bytes of the current extension / trailer section */
} http_chunked;

void http_chunked_init(http_chunked *d);

typedef void (*http_body_sink)(void *ud, const char *data, size_t len);

/* Decode chunked data from in[0..len). Each run of body bytes is passed to
 * sink as it is found (pointing into in). *consumed is set to the bytes of
 * input used. Returns HTTP_OK once the last chunk and the trailer section
 * are consumed (*consumed then stops right after them, so pipelined bytes
 * that follow are left alone), HTTP_AGAIN when all input was used and more
 * is needed, or an error. The body size is checked against
 * limits->max_body and the trailer section against limits->max_header_bytes. */
http_error http_chunked_decode(http_chunked *d, const http_limits *limits, const char *in,
                               size_t len, size_t *consumed, http_body_sink sink, void *ud);

/* Case-insensitive ASCII comparison of a header name with a NUL-terminated one. */
bool http_name_eq(const char *name, size_t len, const char *lower_literal);

#endif
