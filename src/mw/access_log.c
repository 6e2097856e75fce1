/* access_log: one JSON line per request, written off the loop.
 *
 *   {"time":"2026-11-22T09:53:21.123Z","request_id":"...","trace_id":"...",
 *    "span_id":"...","method":"GET","path":"/x","route":"GET /x",
 *    "status":200,"bytes":12,"duration_ms":0.250,"client":"127.0.0.1",
 *    "layers":[{"name":"rid","us":12},...,{"name":"GET /x","us":250}]}
 *
 * An after hook only, so it sees the final status and body size. time is
 * when the line is made (the response has ended); duration_ms runs from
 * the complete request head; path is the normalized path without the
 * query (which may hold secrets); request_id, trace_id and span_id appear
 * when those layers set their keys; layers (opts.trail) lists each layer
 * entered and the handler with (leave - enter) + after hook, in us.
 *
 * Writing: each process appends lines to one of two buffers of
 * buffer_size bytes. A full buffer, or the flush_ms timer, hands the
 * buffer to libuv's thread pool (uv_fs_write) and the other one fills
 * meanwhile; one write is in flight at a time. When the filling buffer
 * is full too, the line is dropped and counted
 * (vie_access_log_dropped_total): the loop never waits for the disk.
 * WORKER_STOP writes what is left synchronously (the loop is done).
 * SIGUSR1 (VIE_EV_REOPEN) writes the lines buffered so far to the old
 * file, then reopens the path (on the pool too) and logs one line; if
 * that fails, the old file stays in use. Workers append to the same file
 * with O_APPEND, each write holding whole lines. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/app.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/log.h"
#include "core/metrics.h"
#include "mw/ids.h"
#include "mw/mw.h"
#include "server/shm.h"

#define AL_MIN_BUFFER (256u)
#define AL_MAX_BUFFER (64u << 20)
#define AL_MAX_FLUSH  (60u * 1000u)
#define AL_OPEN_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)

/* In the app's shared memory: totals across workers. */
typedef struct al_counters {
    _Atomic uint64_t lines;   /* written out */
    _Atomic uint64_t dropped; /* not written: buffers full, or the write failed */
} al_counters;

typedef struct al_state {
    vie_app *app;
    char *name; /* the layer's name, the metrics label */
    char *path; /* NULL: standard output */
    uint32_t buffer_size, flush_ms;
    bool trail;
    al_counters *n;
    struct al_state *next_all; /* every instance of the process, for /metrics */

    /* Per process, from WORKER_START to WORKER_STOP. */
    bool started, stopping;
    uv_loop_t *loop;
    int fd;
    bool own_fd;       /* opened here (not standard output): close it */
    vie_buf buf[2];    /* buf[fill] takes lines; the other may be in flight */
    uint32_t lines[2]; /* lines in each */
    int fill;
    bool busy;   /* a write or a reopen is on the thread pool */
    size_t woff; /* bytes of the buffer in flight written so far */
    uv_fs_t req;
    uv_timer_t timer;
    bool timer_open;
    bool flush_due;      /* the timer fired while busy: write when done */
    bool reopen_pending; /* SIGUSR1 came */
    int reopen_wait;     /* writes to the old file before reopening */
    log_ratelimit drop_log;
    uint64_t time_sec; /* time_text is for this second */
    char time_text[24];
} al_state;

static al_state *al_all; /* configuration time only: one thread */

static void after_op(al_state *s);

/* ------------------------------------------------------------------ */
/* Counting and logging losses                                         */

static void dropped(al_state *s, uint32_t n, const char *why)
{
    if (!n) return;
    s->n->dropped += n;
    uint64_t suppressed = 0;
    if (log_ratelimit_allow(&s->drop_log, ids_wall_ms(), &suppressed))
        LOG_WARN("access_log %s: %u line%s dropped: %s (%llu more not logged since the last "
                 "such line; see vie_access_log_dropped_total)",
                 s->name, n, n == 1 ? "" : "s", why, (unsigned long long)suppressed);
}

/* ------------------------------------------------------------------ */
/* Writing on the thread pool                                          */

static void on_write(uv_fs_t *req);
static void write_result(al_state *s, ssize_t r);

static void issue_write(al_state *s)
{
    vie_buf *b = &s->buf[s->fill ^ 1];
    uv_buf_t ub = uv_buf_init(b->data + s->woff, (unsigned)(b->len - s->woff));
    s->req.data = s;
    int rc = uv_fs_write(s->loop, &s->req, s->fd, &ub, 1, -1, on_write);
    if (rc < 0) write_result(s, rc);
}

/* Hand the filling buffer to the pool; the other one fills meanwhile. */
static void start_write(al_state *s)
{
    s->flush_due = false;
    s->fill ^= 1;
    s->busy = true;
    s->woff = 0;
    issue_write(s);
}

static void write_result(al_state *s, ssize_t r)
{
    int w = s->fill ^ 1;
    vie_buf *b = &s->buf[w];
    if (r > 0 && s->woff + (size_t)r < b->len) { /* a short write: go on */
        s->woff += (size_t)r;
        issue_write(s);
        return;
    }
    if (r <= 0) {
        char why[160];
        snprintf(why, sizeof why, "writing to %s failed: %s", s->path ? s->path : "stdout",
                 r < 0 ? uv_strerror((int)r) : "no progress");
        dropped(s, s->lines[w], why);
    } else {
        s->n->lines += s->lines[w];
    }
    b->len = 0;
    s->lines[w] = 0;
    s->busy = false;
    after_op(s);
}

static void on_write(uv_fs_t *req)
{
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    write_result(req->data, r);
}

/* ------------------------------------------------------------------ */
/* Reopening (SIGUSR1)                                                 */

static void open_result(al_state *s, ssize_t r)
{
    s->busy = false;
    s->reopen_pending = false;
    if (r >= 0) {
        if (s->own_fd && s->fd >= 0) close(s->fd);
        s->fd = (int)r;
        s->own_fd = true;
        LOG_INFO("access_log %s: reopened %s", s->name, s->path);
    } else {
        LOG_ERROR("access_log %s: cannot reopen %s: %s; still writing to the file open before",
                  s->name, s->path, uv_strerror((int)r));
    }
    after_op(s);
}

static void on_open(uv_fs_t *req)
{
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    open_result(req->data, r);
}

static void start_open(al_state *s)
{
    s->busy = true;
    s->req.data = s;
    int rc = uv_fs_open(s->loop, &s->req, s->path, AL_OPEN_FLAGS, 0644, on_open);
    if (rc < 0) open_result(s, rc);
}

/* A write or a reopen finished: what next. */
static void after_op(al_state *s)
{
    vie_buf *f = &s->buf[s->fill];
    if (s->reopen_pending) {
        if (s->reopen_wait > 0) s->reopen_wait--;
        /* The lines buffered when the signal came go to the old file. */
        if (s->reopen_wait > 0 && f->len) {
            start_write(s);
            return;
        }
        start_open(s);
        return;
    }
    if (s->stopping) return; /* WORKER_STOP writes the rest itself */
    if (f->len && (s->flush_due || f->len >= s->buffer_size)) start_write(s);
}

static void on_timer(uv_timer_t *t)
{
    al_state *s = t->data;
    if (!s->buf[s->fill].len) return;
    s->flush_due = true;
    if (!s->busy) start_write(s);
}

/* ------------------------------------------------------------------ */
/* Buffering a line                                                    */

static void append(al_state *s, const char *line, size_t n)
{
    vie_buf *f = &s->buf[s->fill];
    if (f->len && f->len + n > s->buffer_size) {
        if (s->busy) {
            dropped(s, 1, "both buffers are full (the writes fall behind)");
            return;
        }
        start_write(s);
        f = &s->buf[s->fill];
    }
    bool was_empty = f->len == 0;
    /* Reserved at WORKER_START; only a line longer than a whole buffer
     * makes it grow. */
    if (buf_append(f, line, n) != 0) {
        dropped(s, 1, "out of memory");
        return;
    }
    s->lines[s->fill]++;
    if (f->len >= s->buffer_size) {
        if (!s->busy) start_write(s);
    } else if (was_empty && !uv_is_active((uv_handle_t *)&s->timer)) {
        uv_timer_start(&s->timer, on_timer, s->flush_ms, 0);
    }
}

/* ------------------------------------------------------------------ */
/* The line                                                            */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT_LIT(p, s) put((p), (s), sizeof(s) - 1)

static char *put_cstr(char *p, const char *s)
{
    return s ? json_str(p, s, strlen(s)) : PUT_LIT(p, "null");
}

/* "2026-11-22T09:53:21.123Z": the seconds are formatted once per second. */
static char *put_time(al_state *s, char *p)
{
    uint64_t ms = ids_wall_ms();
    uint64_t sec = ms / 1000;
    if (sec != s->time_sec || !s->time_text[0]) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s->time_text, sizeof s->time_text, "%Y-%m-%dT%H:%M:%S", &tm);
        s->time_sec = sec;
    }
    p = PUT_LIT(p, "\"");
    p = put(p, s->time_text, strlen(s->time_text));
    p += snprintf(p, 8, ".%03uZ\"", (unsigned)(ms % 1000));
    return p;
}

static void al_after(vie_ctx *c, void *arg)
{
    al_state *s = arg;
    if (!s->started || s->stopping) {
        s->n->dropped++;
        return;
    }
    const char *rid = vie_request_id_get(c);
    const vie_trace_context *tc = vie_trace_get(c);
    vie_str method = vie_method(c), path = vie_path(c), client = vie_client_ip(c);
    const char *route = vie_route_label(c);
    size_t n_trail = s->trail ? vie_trail_count(c) : 0;

    /* An upper bound of the line: every string escaped at worst. */
    size_t bound = 256 + JSON_STR_MAX(method.len) + JSON_STR_MAX(path.len) +
                   JSON_STR_MAX(client.len) + (route ? JSON_STR_MAX(strlen(route)) : 4) +
                   (rid ? 16 + JSON_STR_MAX(strlen(rid)) : 0) + (tc ? 40 + 2 * 6 * 33 : 0);
    vie_trail_entry e;
    for (size_t i = 0; i < n_trail && vie_trail_at(c, i, &e); i++)
        bound += 48 + JSON_STR_MAX(e.layer ? strlen(e.layer) : 0);
    char *line = vie_alloc(c, bound);
    if (!line) {
        dropped(s, 1, "out of request memory");
        return;
    }

    char *p = PUT_LIT(line, "{\"time\":");
    p = put_time(s, p);
    if (rid) {
        p = PUT_LIT(p, ",\"request_id\":");
        p = put_cstr(p, rid);
    }
    if (tc) {
        p = PUT_LIT(p, ",\"trace_id\":");
        p = put_cstr(p, tc->trace_id);
        p = PUT_LIT(p, ",\"span_id\":");
        p = put_cstr(p, tc->span_id);
    }
    p = PUT_LIT(p, ",\"method\":");
    p = json_str(p, method.ptr ? method.ptr : "", method.len);
    p = PUT_LIT(p, ",\"path\":");
    p = json_str(p, path.ptr ? path.ptr : "", path.len);
    p = PUT_LIT(p, ",\"route\":");
    p = put_cstr(p, route);
    /* Microseconds as "ms.uuu", by hand: printf's %f follows the locale. */
    uint64_t start = c->start_ns, now = clock_now_ns();
    uint64_t us = start && now > start ? (now - start) / 1000 : 0;
    p += snprintf(p, 96, ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%llu.%03u",
                  vie_response_status(c), (unsigned long long)vie_response_bytes(c),
                  (unsigned long long)(us / 1000), (unsigned)(us % 1000));
    p = PUT_LIT(p, ",\"client\":");
    p = json_str(p, client.ptr ? client.ptr : "", client.len);
    if (s->trail) {
        p = PUT_LIT(p, ",\"layers\":[");
        for (size_t i = 0; i < n_trail && vie_trail_at(c, i, &e); i++) {
            uint64_t ns = (e.leave_ns > e.enter_ns ? e.leave_ns - e.enter_ns : 0) + e.after_ns;
            if (i) *p++ = ',';
            p = PUT_LIT(p, "{\"name\":");
            p = put_cstr(p, e.layer);
            p += snprintf(p, 32, ",\"us\":%llu}", (unsigned long long)(ns / 1000));
        }
        p = PUT_LIT(p, "]");
    }
    p = PUT_LIT(p, "}\n");
    append(s, line, (size_t)(p - line));
}

/* ------------------------------------------------------------------ */
/* Per-process life: WORKER_START, WORKER_STOP, REOPEN                 */

static int open_path(const char *path)
{
    int fd;
    do
        fd = open(path, AL_OPEN_FLAGS, 0644);
    while (fd < 0 && errno == EINTR);
    return fd;
}

static void al_start(vie_app *app, void *loop, void *arg)
{
    (void)app;
    al_state *s = arg;
    if (s->started) return;
    s->loop = loop;
    s->stopping = s->busy = s->flush_due = s->reopen_pending = false;
    s->reopen_wait = 0;
    s->fill = 0;
    s->lines[0] = s->lines[1] = 0;
    s->buf[0].len = s->buf[1].len = 0;
    s->drop_log = (log_ratelimit){.interval_ms = 10000};
    s->fd = STDOUT_FILENO;
    s->own_fd = false;
    if (s->path) {
        s->fd = open_path(s->path);
        s->own_fd = s->fd >= 0;
        if (s->fd < 0)
            LOG_ERROR("access_log %s: cannot open %s: %s; its lines are dropped until a "
                      "reopen (SIGUSR1) succeeds",
                      s->name, s->path, strerror(errno));
    }
    for (int i = 0; i < 2; i++)
        if (buf_reserve(&s->buf[i], s->buffer_size) != 0)
            LOG_WARN("access_log %s: cannot reserve its %u-byte buffer now", s->name,
                     s->buffer_size);
    uv_timer_init(s->loop, &s->timer);
    s->timer.data = s;
    uv_unref((uv_handle_t *)&s->timer); /* the server's own handles decide when the loop ends */
    s->timer_open = true;
    s->started = true;
}

/* Write all of b synchronously (the loop has finished). */
static void write_all(al_state *s, vie_buf *b, uint32_t lines)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t r = write(s->fd, b->data + off, b->len - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            char why[160];
            snprintf(why, sizeof why, "writing to %s failed: %s", s->path ? s->path : "stdout",
                     r < 0 ? strerror(errno) : "no progress");
            dropped(s, lines, why);
            b->len = 0;
            return;
        }
        off += (size_t)r;
    }
    if (b->len) s->n->lines += lines;
    b->len = 0;
}

static void al_stop(vie_app *app, void *loop, void *arg)
{
    (void)app;
    (void)loop;
    al_state *s = arg;
    if (!s->started) return;
    s->stopping = true;
    if (s->timer_open) {
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, NULL);
        s->timer_open = false;
    }
    /* Let the write (or reopen) on the pool finish: each turn of the loop
     * waits for it, and the bound only guards against a libuv surprise. */
    for (int i = 0; s->busy && i < 100000; i++)
        uv_run(s->loop, UV_RUN_ONCE);
    if (s->busy) {
        LOG_ERROR("access_log %s: a write never completed; its lines are lost", s->name);
    } else {
        write_all(s, &s->buf[s->fill ^ 1], s->lines[s->fill ^ 1]);
        write_all(s, &s->buf[s->fill], s->lines[s->fill]);
    }
    s->lines[0] = s->lines[1] = 0;
    if (s->own_fd && s->fd >= 0 && !s->busy) close(s->fd);
    s->fd = -1;
    s->own_fd = false;
    if (!s->busy) {
        buf_free(&s->buf[0]);
        buf_free(&s->buf[1]);
    }
    s->started = false;
}

static void al_reopen(vie_app *app, void *loop, void *arg)
{
    (void)app;
    (void)loop;
    al_state *s = arg;
    if (!s->started || s->stopping || !s->path || s->reopen_pending) return;
    s->reopen_pending = true;
    bool buffered = s->buf[s->fill].len > 0;
    if (s->busy) {
        /* The write in flight, then the lines buffered now, go to the old file. */
        s->reopen_wait = buffered ? 2 : 1;
    } else if (buffered) {
        s->reopen_wait = 1;
        start_write(s);
    } else {
        s->reopen_wait = 0;
        start_open(s);
    }
}

/* ------------------------------------------------------------------ */
/* Metrics                                                             */

static void al_metrics(vie_buf *b, void *arg)
{
    vie_app *app = arg;
    metrics_help(b, "vie_access_log_lines_total", "counter", "Access log lines written, by layer.");
    for (al_state *s = al_all; s; s = s->next_all) {
        if (s->app != app) continue;
        buf_append_lit(b, "vie_access_log_lines_total{layer=\"");
        metrics_label(b, s->name);
        buf_printf(b, "\"} %llu\n", (unsigned long long)s->n->lines);
    }
    metrics_help(b, "vie_access_log_dropped_total", "counter",
                 "Access log lines dropped (the writes fell behind or failed), by layer.");
    for (al_state *s = al_all; s; s = s->next_all) {
        if (s->app != app) continue;
        buf_append_lit(b, "vie_access_log_dropped_total{layer=\"");
        metrics_label(b, s->name);
        buf_printf(b, "\"} %llu\n", (unsigned long long)s->n->dropped);
    }
}

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

static void al_free(void *arg)
{
    al_state *s = arg;
    if (!s) return;
    for (al_state **pp = &al_all; *pp; pp = &(*pp)->next_all)
        if (*pp == s) {
            *pp = s->next_all;
            break;
        }
    if (s->own_fd && s->fd >= 0) close(s->fd);
    buf_free(&s->buf[0]);
    buf_free(&s->buf[1]);
    free(s->name);
    free(s->path);
    free(s);
}

void vie_access_log_opts_init(vie_access_log_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->path = NULL;
    o->buffer_size = 65536;
    o->flush_ms = 1000;
    o->trail = true;
}

/* Can path be opened for appending? 0, or an errno. Creates the file
 * (as each worker would); the descriptor is closed again. */
static int probe_path(const char *path)
{
    int fd = open_path(path);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

static bool is_stdout(const char *path)
{
    return !path || !strcmp(path, "-");
}

int vie_use_access_log(vie_app *app, const vie_layer_opts *lo, const vie_access_log_opts *o)
{
    vie_access_log_opts def;
    if (!o) {
        vie_access_log_opts_init(&def);
        o = &def;
    }
    const char *name = mw_name(lo, "access_log");
    if (!app) {
        LOG_ERROR("access_log %s: refused: the app is NULL", name);
        return VIE_EINVAL;
    }
    if (o->buffer_size < AL_MIN_BUFFER || o->buffer_size > AL_MAX_BUFFER) {
        LOG_ERROR("access_log %s: option buffer_size %u refused: expected %u bytes to 64 MiB", name,
                  o->buffer_size, AL_MIN_BUFFER);
        return VIE_EINVAL;
    }
    if (o->flush_ms < 1 || o->flush_ms > AL_MAX_FLUSH) {
        LOG_ERROR("access_log %s: option flush_ms %u refused: expected 1 ms to 60 s", name,
                  o->flush_ms);
        return VIE_EINVAL;
    }
    if (o->path && !*o->path) {
        LOG_ERROR("access_log %s: option path refused: it is empty (use NULL or \"-\" for "
                  "standard output)",
                  name);
        return VIE_EINVAL;
    }
    if (!is_stdout(o->path)) {
        int err = probe_path(o->path);
        if (err) {
            LOG_ERROR("access_log %s: option path \"%s\" refused: cannot open it for appending: %s",
                      name, o->path, strerror(err));
            return VIE_EINVAL;
        }
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_use_access_log", name);
    al_counters *n = shm_alloc(app->shm, sizeof *n);
    al_state *s = calloc(1, sizeof *s);
    if (s) {
        s->name = strdup(name);
        s->path = is_stdout(o->path) ? NULL : strdup(o->path);
    }
    if (!n || !s || !s->name || (!is_stdout(o->path) && !s->path)) {
        LOG_ERROR("access_log %s: out of %s memory", name, n ? "" : "shared");
        if (s) {
            free(s->name);
            free(s->path);
            free(s);
        }
        return VIE_ENOMEM;
    }
    s->app = app;
    s->n = n;
    s->fd = -1;
    s->buffer_size = o->buffer_size;
    s->flush_ms = o->flush_ms;
    s->trail = o->trail;
    /* The request_id and trace keys are read only; reading a key the app
     * never registered is allowed (it is simply absent), while
     * registering an OWNER key without its owner would fail the freeze:
     * they are not registered here. */
    const vie_middleware base = {
        .name = "access_log",
        .phase = VIE_OBSERVE,
        .after = al_after,
        .free_state = al_free,
    };
    bool first = true;
    for (al_state *t = al_all; t; t = t->next_all)
        first &= t->app != app;
    int rc = mw_register(app, lo, &base, s);
    if (rc != VIE_OK) return rc;
    s->next_all = al_all;
    al_all = s;
    if (first && (rc = metrics_add_source(app, al_metrics, app)) != VIE_OK) return rc;
    if ((rc = vie_app_hook_add(app, VIE_EV_WORKER_START, al_start, s)) != VIE_OK) return rc;
    if ((rc = vie_app_hook_add(app, VIE_EV_WORKER_STOP, al_stop, s)) != VIE_OK) return rc;
    return vie_app_hook_add(app, VIE_EV_REOPEN, al_reopen, s);
}

int mw_access_log_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_access_log_opts o;
    vie_access_log_opts_init(&o);
    uint64_t size = o.buffer_size;
    cfg_get_str(p, "path", &o.path, NULL);
    cfg_get_bytes(p, "buffer_size", &size, AL_MIN_BUFFER, AL_MAX_BUFFER, o.buffer_size);
    cfg_get_ms(p, "flush", &o.flush_ms, 1, AL_MAX_FLUSH, o.flush_ms);
    cfg_get_bool(p, "trail", &o.trail, true);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    o.buffer_size = (uint32_t)size;
    if (o.path && !*o.path) {
        cfg_error(p, "path", "expected a file path or \"-\" (standard output), got \"\"");
        return VIE_EINVAL;
    }
    if (!is_stdout(o.path)) {
        int err = probe_path(o.path);
        if (err) {
            cfg_error(p, "path", "cannot open \"%s\" for appending: %s", o.path, strerror(err));
            return VIE_EINVAL;
        }
    }
    int rc = vie_use_access_log(app, lo, &o);
    if (rc != VIE_OK) cfg_error(p, NULL, "cannot add access_log: %s", vie_strerror(rc));
    return rc;
}
