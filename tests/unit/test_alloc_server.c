/* No malloc per request on the hot path: a hello-world route behind 8
 * middleware, served by the real server over keep-alive connections.
 *
 * The binary is linked with --wrap=malloc,free,calloc,realloc, so every
 * allocation of the library (and of this file) goes through the wrappers
 * below; libuv's go through uv_replace_allocator. Only the server thread's
 * allocations are counted (a _Thread_local flag set when it starts): the
 * client runs on the test thread and allocates as it likes.
 *
 * After a warm-up that fills the pools, 2,000 sequential requests and
 * 2,000 pipelined ones (16 per write) must not allocate at all. On the
 * first unexpected allocation the wrapper prints a backtrace, so a failure
 * names its call site.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <execinfo.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "vie/vie.h"

/* ------------------------------------------------------------------ */
/* Counting allocators                                                 */

void *__real_malloc(size_t n);
void __real_free(void *p);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void __wrap_free(void *p);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static _Thread_local bool on_server_thread;
static atomic_ulong vie_allocs, vie_frees; /* the library, on the server thread */
static atomic_ulong uv_allocs, uv_frees;   /* libuv, on the server thread */
/* Set when the steady state begins: the first allocation after it prints
 * its backtrace (once). */
static atomic_bool trace_next;

static void note_alloc(atomic_ulong *counter, const char *what, size_t n)
{
    if (!on_server_thread) return;
    atomic_fetch_add(counter, 1);
    if (atomic_exchange(&trace_next, false)) {
        /* backtrace() may allocate once (it loads libgcc): do not count it. */
        on_server_thread = false;
        void *frames[32];
        int k = backtrace(frames, 32);
        fprintf(stderr, "unexpected %s(%zu) on the server thread in the steady state:\n", what, n);
        backtrace_symbols_fd(frames, k, 2);
        fprintf(stderr, "(resolve the +0x offsets with: addr2line -f -e <this binary> OFFSET)\n");
        on_server_thread = true;
    }
}

void *__wrap_malloc(size_t n)
{
    note_alloc(&vie_allocs, "malloc", n);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    note_alloc(&vie_allocs, "calloc", n * size);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    note_alloc(&vie_allocs, "realloc", n);
    return __real_realloc(p, n);
}

void __wrap_free(void *p)
{
    if (on_server_thread && p) atomic_fetch_add(&vie_frees, 1);
    __real_free(p);
}

static void *uv_count_malloc(size_t n)
{
    note_alloc(&uv_allocs, "uv malloc", n);
    return __real_malloc(n);
}

static void *uv_count_realloc(void *p, size_t n)
{
    note_alloc(&uv_allocs, "uv realloc", n);
    return __real_realloc(p, n);
}

static void *uv_count_calloc(size_t n, size_t size)
{
    note_alloc(&uv_allocs, "uv calloc", n * size);
    return __real_calloc(n, size);
}

static void uv_count_free(void *p)
{
    if (on_server_thread && p) atomic_fetch_add(&uv_frees, 1);
    __real_free(p);
}

static unsigned long server_allocs(void)
{
    return atomic_load(&vie_allocs) + atomic_load(&uv_allocs);
}

/* ------------------------------------------------------------------ */
/* Time                                                                */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_1ms(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* The server on its own thread                                        */

static vie_app *app;
static pthread_t server_th;
static bool server_running;
static atomic_bool server_returned;
static int server_rc = -100;

static void *server_main(void *arg)
{
    (void)arg;
    on_server_thread = true;
    server_rc = vie_app_run(app);
    on_server_thread = false;
    atomic_store(&server_returned, true);
    return NULL;
}

static int server_start(void)
{
    if (pthread_create(&server_th, NULL, server_main, NULL) != 0) return 0;
    server_running = true;
    uint64_t deadline = now_ms() + 5000;
    while (now_ms() < deadline && !atomic_load(&server_returned)) {
        int port = vie_app_port(app);
        if (port) return port;
        pause_1ms();
    }
    return 0;
}

static bool server_stop(void)
{
    if (!app) return true;
    if (server_running) {
        vie_app_stop(app);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 15;
        if (pthread_timedjoin_np(server_th, NULL, &ts) != 0) {
            fprintf(stderr, "server thread did not end within 15 s\n");
            app = NULL; /* leaked on purpose: freeing it under a live loop would crash */
            return false;
        }
        server_running = false;
    }
    vie_app_free(app);
    app = NULL;
    return true;
}

/* ------------------------------------------------------------------ */
/* Client                                                              */

#define N_CONNS 2

typedef struct client {
    int fd;
    size_t len;
    char buf[65536];
} client;

static client conns[N_CONNS];

static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

static bool client_open(client *cl, int port)
{
    cl->len = 0;
    cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cl->fd < 0) return false;
    struct timeval tv = {5, 0};
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(cl->fd, (struct sockaddr *)&sa, sizeof sa) == 0;
}

static void client_close(client *cl)
{
    if (cl->fd >= 0) close(cl->fd);
    cl->fd = -1;
}

static bool send_all(int fd, const char *p, size_t n)
{
    for (int tries = 0; n > 0 && tries < 1000; tries++) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return n == 0;
}

static const char *find_crlfcrlf(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') return p + i;
    return NULL;
}

/* Read one response; true when it is "200 ... Hello, World!" kept alive. */
static bool client_read_hello(client *cl)
{
    uint64_t deadline = now_ms() + 6000;
    for (;;) {
        const char *end = find_crlfcrlf(cl->buf, cl->len);
        if (end) {
            size_t head = (size_t)(end - cl->buf) + 4;
            const char *cl_hdr = NULL;
            for (const char *p = cl->buf; p + 16 < end; p++)
                if (p[0] == '\n' && strncasecmp(p + 1, "content-length: ", 16) == 0) {
                    cl_hdr = p + 17;
                    break;
                }
            if (!cl_hdr) return false;
            size_t clen = strtoul(cl_hdr, NULL, 10);
            if (cl->len >= head + clen) {
                bool ok = strncmp(cl->buf, "HTTP/1.1 200 ", 13) == 0 && clen == 13 &&
                          memcmp(cl->buf + head, "Hello, World!", 13) == 0 &&
                          !memmem(cl->buf, head, "Connection: close", 17);
                memmove(cl->buf, cl->buf + head + clen, cl->len - head - clen);
                cl->len -= head + clen;
                return ok;
            }
        }
        if (cl->len == sizeof cl->buf || now_ms() > deadline) return false;
        ssize_t k = recv(cl->fd, cl->buf + cl->len, sizeof cl->buf - cl->len, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        cl->len += (size_t)k;
    }
}

/* n requests, one at a time, alternating over the connections. */
static int run_sequential(int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        client *cl = &conns[i % N_CONNS];
        if (!send_all(cl->fd, request, sizeof request - 1)) break;
        if (!client_read_hello(cl)) break;
        ok++;
    }
    return ok;
}

/* batches of depth requests in one write each, alternating connections. */
static int run_pipelined(int batches, int depth)
{
    char burst[64 * (sizeof request - 1)];
    if ((size_t)depth > sizeof burst / (sizeof request - 1)) return 0;
    for (int i = 0; i < depth; i++)
        memcpy(burst + (size_t)i * (sizeof request - 1), request, sizeof request - 1);
    int ok = 0;
    for (int b = 0; b < batches; b++) {
        client *cl = &conns[b % N_CONNS];
        if (!send_all(cl->fd, burst, (size_t)depth * (sizeof request - 1))) break;
        for (int i = 0; i < depth; i++) {
            if (!client_read_hello(cl)) return ok;
            ok++;
        }
    }
    return ok;
}

/* ------------------------------------------------------------------ */
/* The app                                                             */

static atomic_ulong befores, afters;

static vie_status noop_before(vie_ctx *c, void *state)
{
    (void)c;
    (void)state;
    atomic_fetch_add_explicit(&befores, 1, memory_order_relaxed);
    return VIE_NEXT;
}

static void noop_after(vie_ctx *c, void *state)
{
    (void)c;
    (void)state;
    atomic_fetch_add_explicit(&afters, 1, memory_order_relaxed);
}

static vie_status hello(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_text(c, 200, "Hello, World!");
}

static const vie_middleware layers[8] = {
    {.name = "obs1", .phase = VIE_OBSERVE, .before = noop_before, .after = noop_after},
    {.name = "obs2", .phase = VIE_OBSERVE, .before = noop_before},
    {.name = "obs3", .phase = VIE_OBSERVE, .before = noop_before, .after = noop_after},
    {.name = "guard1", .phase = VIE_GUARD, .before = noop_before},
    {.name = "guard2", .phase = VIE_GUARD, .before = noop_before, .after = noop_after},
    {.name = "guard3", .phase = VIE_GUARD, .before = noop_before},
    {.name = "app1", .phase = VIE_APP, .before = noop_before, .after = noop_after},
    {.name = "app2", .phase = VIE_APP, .before = noop_before},
};

/* ------------------------------------------------------------------ */
/* The test                                                            */

#define WARMUP_PER_CONN 200
#define STEADY_SEQ      2000
#define PIPE_DEPTH      16
#define PIPE_BATCHES    125 /* 2,000 requests */

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_CONNS; i++)
        client_close(&conns[i]);
    return server_stop() ? 0 : -1;
}

static void hello_world_behind_8_layers_does_not_allocate(void **state)
{
    (void)state;
    for (int i = 0; i < N_CONNS; i++)
        conns[i].fd = -1;
    vie_options o;
    vie_options_init(&o);
    o.listen = "127.0.0.1:0";
    o.handle_signals = false;
    o.drain_timeout_ms = 5000;
    app = vie_app_new(&o);
    assert_non_null(app);
    for (int i = 0; i < 8; i++)
        assert_int_equal(vie_use(app, &layers[i], NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/", hello, NULL), VIE_OK);

    int port = server_start();
    assert_int_not_equal(port, 0);
    /* Bound and listening: what starting the server cost. */
    unsigned long start_vie = atomic_load(&vie_allocs), start_uv = atomic_load(&uv_allocs);
    for (int i = 0; i < N_CONNS; i++)
        assert_true(client_open(&conns[i], port));

    /* Warm-up: the pools fill. */
    assert_int_equal(run_sequential(N_CONNS * WARMUP_PER_CONN), N_CONNS * WARMUP_PER_CONN);
    unsigned long warm_vie = atomic_load(&vie_allocs), warm_uv = atomic_load(&uv_allocs);
    assert_int_equal(atomic_load(&befores), 8ul * N_CONNS * WARMUP_PER_CONN);
    assert_int_equal(atomic_load(&afters), 4ul * N_CONNS * WARMUP_PER_CONN);

    /* Steady state, one request at a time. */
    atomic_store(&trace_next, true);
    unsigned long a0 = server_allocs();
    assert_int_equal(run_sequential(STEADY_SEQ), STEADY_SEQ);
    unsigned long seq_delta = server_allocs() - a0;

    /* Steady state, pipelined. */
    unsigned long a1 = server_allocs();
    assert_int_equal(run_pipelined(PIPE_BATCHES, PIPE_DEPTH), PIPE_BATCHES * PIPE_DEPTH);
    unsigned long pipe_delta = server_allocs() - a1;
    atomic_store(&trace_next, false);

    fprintf(stderr,
            "  server start (freeze, loop, listener): %lu vie + %lu libuv allocations\n"
            "  warm-up (%d requests on %d connections): %lu vie + %lu libuv allocations\n"
            "  steady state: %lu allocations for %d sequential requests (%.4f per request), "
            "%lu for %d pipelined (%d per write: %.4f per request)\n",
            start_vie, start_uv, N_CONNS * WARMUP_PER_CONN, N_CONNS, warm_vie - start_vie,
            warm_uv - start_uv, seq_delta, STEADY_SEQ, (double)seq_delta / STEADY_SEQ, pipe_delta,
            PIPE_BATCHES * PIPE_DEPTH, PIPE_DEPTH,
            (double)pipe_delta / (PIPE_BATCHES * PIPE_DEPTH));
    assert_int_equal(seq_delta, 0);
    assert_int_equal(pipe_delta, 0);
    assert_int_equal(atomic_load(&befores),
                     8ul * (N_CONNS * WARMUP_PER_CONN + STEADY_SEQ + PIPE_BATCHES * PIPE_DEPTH));

    /* The run ends cleanly, and every allocation of the server thread was
     * given back (the pools and the loop are freed at stop). */
    for (int i = 0; i < N_CONNS; i++)
        client_close(&conns[i]);
    vie_app_stop(app);
    uint64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline && !atomic_load(&server_returned))
        pause_1ms();
    assert_true(atomic_load(&server_returned));
    pthread_join(server_th, NULL);
    server_running = false;
    assert_int_equal(server_rc, VIE_OK);
    fprintf(stderr,
            "  server thread total: %lu vie allocs / %lu frees, %lu libuv allocs / %lu "
            "frees\n",
            atomic_load(&vie_allocs), atomic_load(&vie_frees), atomic_load(&uv_allocs),
            atomic_load(&uv_frees));
}

int main(void)
{
    /* Before any other libuv call, so every libuv allocation is seen. */
    if (uv_replace_allocator(uv_count_malloc, uv_count_realloc, uv_count_calloc, uv_count_free) !=
        0) {
        fprintf(stderr, "uv_replace_allocator failed\n");
        return 1;
    }
    vie_log_set_level(VIE_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(hello_world_behind_8_layers_does_not_allocate, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
