/* An HTTP/1.1 connection: reads into a pooled buffer, parses requests in
 * place, answers them in order, writes with back-pressure, and closes
 * gracefully. */
#ifndef VIE_HTTP_CONN_H
#define VIE_HTTP_CONN_H

#include <uv.h>

#include "core/buf.h"
#include "core/ctx.h"
#include "core/list.h"
#include "http/parser.h"

struct server;

typedef enum conn_phase {
    CONN_IDLE = 0,     /* between requests */
    CONN_HEAD,         /* some bytes of a head */
    CONN_BODY_INBUF,   /* Content-Length body arriving into the read buffer */
    CONN_BODY_DIRECT,  /* Content-Length body read straight into its own buffer */
    CONN_BODY_CHUNKED, /* chunked body being decoded */
    CONN_BUSY,         /* the request is being served */
    CONN_CLOSING,      /* no more requests: flushing, then lingering */
} conn_phase;

typedef struct vie_conn {
    uv_tcp_t tcp;
    struct server *srv;
    dlink all; /* in server.conns */
    dlink tl;  /* in one timeout list, or none */
    uint64_t deadline;
    char *rbuf;     /* pooled, srv->rbufs.size bytes; NULL while idle */
    uint32_t rlen;  /* valid bytes in rbuf */
    uint32_t rpos;  /* start of the current request */
    uint32_t bpos;  /* chunked: where undecoded body bytes start */
    uint32_t rnext; /* where the next request starts, once the body is complete */
    vie_buf out;    /* response bytes not yet handed to the kernel */
    vie_buf body;   /* a body that does not sit in rbuf */
    uint64_t body_need;
    size_t write_mark; /* libuv write queue size when the write deadline was set */
    vie_ctx *ctx;      /* the request being read or served */
    http_head_parser hp;
    http_chunked chunked;
    uint32_t requests;
    /* A response's file body being sent (after the head in out, before
     * any later answer): valid while sending_file. */
    int file_fd;
    uint64_t file_off;  /* the next byte of the file to send */
    uint64_t file_left; /* bytes still to send */
    uint16_t writes_pending;
    uint8_t phase;  /* conn_phase */
    uint8_t tkind;  /* timeout_kind it is listed under */
    bool reading;   /* uv_read_start is active */
    bool eof;       /* the client shut down its side */
    bool closing;   /* uv_close was called */
    bool shut_down; /* our side is shut down (lingering) */
    bool sending_file;
} vie_conn;

/* A file body a request sent (vie_send_file), waiting for its request to
 * end: in the request arena. */
typedef struct conn_file_body {
    vie_ctx *ctx;
    int fd; /* owned */
    uint64_t offset, len;
} conn_file_body;

/* A vie_defer (it runs once, on the loop, on every path): hands the file
 * to the connection, which sends it after the response's head, or closes
 * it when the response will not go out (the client is gone). */
void conn_file_handoff(void *arg);

/* For tests: send file bodies with pread and write only, as on a file
 * system without sendfile. */
void conn_test_no_sendfile(bool on);

/* Take over an accepted connection (already initialized on the loop). */
void conn_start(vie_conn *c);
/* Close now, whatever is pending. */
void conn_abort(vie_conn *c, const char *why);
/* A graceful stop began: close now if idle, else after the request in
 * flight (whose answer then says Connection: close). */
void conn_begin_stop(vie_conn *c);
/* The timeout of kind k expired. */
void conn_on_timeout(vie_conn *c);

#endif
