/* access_log: the exact JSON line (every field, the trail in order, the
 * clocks replaced), string escaping, buffering (nothing written before a
 * flush; size, timer and stop flushes), dropping when both buffers are
 * full (counted in /metrics), standard output, reopening (SIGUSR1) in
 * its three cases, and the refusals. Through the test kit, with the log
 * in a fresh mkdtemp directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/app.h"
#include "core/clock.h"
#include "mw/ids.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

/* ------------------------------------------------------------------ */
/* Clocks the test moves by hand                                       */

static uint64_t fake_ns;
static uint64_t fake_wall_ms;

static uint64_t mono(void)
{
    return fake_ns;
}
static uint64_t wall(void)
{
    return fake_wall_ms;
}

static void fake_clocks(void)
{
    fake_ns = 1000000000000ull;
    fake_wall_ms = 1795341201123ull; /* 2026-11-22T09:53:21.123Z */
    clock_set_source(mono);
    ids_set_wall_clock(wall);
}

static void real_clocks(void)
{
    clock_set_source(NULL);
    ids_set_wall_clock(NULL);
}

/* ------------------------------------------------------------------ */
/* Files                                                               */

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vie-al-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/access.log", f->dir);
    *state = f;
    vie_log_set_level(VIE_LOG_OFF);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    real_clocks();
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* The whole file (malloc'd, NUL-terminated); "" when missing. */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return strdup("");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *s = calloc(1, (size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, fp);
    s[got] = '\0';
    fclose(fp);
    return s;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Line i (0-based) of text, malloc'd, without its newline. */
static char *line_at(const char *text, int i)
{
    for (; i > 0 && text; i--) {
        text = strchr(text, '\n');
        if (text) text++;
    }
    if (!text || !*text) return NULL;
    const char *end = strchr(text, '\n');
    return strndup(text, end ? (size_t)(end - text) : strlen(text));
}

/* Descriptors of this process open on path. */
static int fds_on(const char *path)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[300], target[300];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0) continue;
        target[len] = '\0';
        n += strcmp(target, path) == 0;
    }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ */
/* The app                                                             */

/* Guard layer: takes 12 us of the fake clock. */
static vie_status slow_before(vie_ctx *c, void *arg)
{
    (void)c;
    (void)arg;
    fake_ns += 12000;
    return VIE_NEXT;
}
/* Its after hook takes 3 us. */
static void slow_after(vie_ctx *c, void *arg)
{
    (void)c;
    (void)arg;
    fake_ns += 3000;
}

/* The handler takes 250 us and answers 201 "hello". */
static vie_status hello(vie_ctx *c, void *arg)
{
    (void)arg;
    fake_ns += 250000;
    return vie_send(c, 201, "text/plain", "hello", 5);
}

static vie_status ok(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_text(c, 200, "ok");
}

static vie_app *app_with_log(const vie_access_log_opts *o, bool ids)
{
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    if (ids) {
        vie_layer_opts rid = {.name = "rid"};
        assert_int_equal(vie_use_request_id(app, &rid, NULL), VIE_OK);
        assert_int_equal(vie_use_trace(app, NULL, NULL), VIE_OK);
    }
    vie_layer_opts log = {.name = "log"};
    assert_int_equal(vie_use_access_log(app, &log, o), VIE_OK);
    vie_middleware slow = {
        .name = "slow", .phase = VIE_GUARD, .before = slow_before, .after = slow_after};
    assert_int_equal(vie_use(app, &slow, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", hello, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/q/:v", ok, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "POST", "/ok", ok, NULL), VIE_OK);
    return app;
}

static void file_opts(vie_access_log_opts *o, const fixture *f)
{
    vie_access_log_opts_init(o);
    o->path = f->path;
    o->flush_ms = 60000; /* no timer flush during a test unless asked */
}

static void hit(vie_app *app, const char *method, const char *target, const char *const *h,
                int status)
{
    vie_test_response *r = vie_test_request(app, method, target, h, NULL, 0);
    assert_non_null(r);
    assert_int_equal(r->status, status);
    vie_test_response_free(r);
}

/* ------------------------------------------------------------------ */
/* The line                                                            */

static void exact_line_with_ids_and_trail(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    vie_app *app = app_with_log(&o, true);
    fake_clocks();
    assert_int_equal(vie_test_begin(app), VIE_OK);
    assert_int_equal(fds_on(f->path), 1); /* opened at WORKER_START */
    const char *h[] = {"X-Request-Id: req-1", "traceparent: 00-" TID "-" PID "-01", NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/x", h, NULL, 0);
    assert_int_equal(r->status, 201);
    const char *tp = vie_test_header(r, "traceparent");
    assert_non_null(tp);
    char span[17] = {0};
    memcpy(span, tp + 36, 16);
    vie_test_response_free(r);

    /* Buffered: nothing is written before a flush. */
    char *text = slurp(f->path);
    assert_string_equal(text, "");
    free(text);
    vie_test_end(app);

    text = slurp(f->path);
    char want[1024];
    snprintf(want, sizeof want,
             "{\"time\":\"2026-11-22T09:53:21.123Z\",\"request_id\":\"req-1\","
             "\"trace_id\":\"" TID "\",\"span_id\":\"%s\",\"method\":\"GET\",\"path\":\"/x\","
             "\"route\":\"GET /x\",\"status\":201,\"bytes\":5,\"duration_ms\":0.265,"
             "\"client\":\"\",\"layers\":[{\"name\":\"rid\",\"us\":0},"
             "{\"name\":\"trace\",\"us\":0},{\"name\":\"log\",\"us\":0},"
             "{\"name\":\"slow\",\"us\":15},{\"name\":\"GET /x\",\"us\":250}]}\n",
             span);
    assert_string_equal(text, want);
    free(text);
    /* The stop closed the file. */
    assert_int_equal(fds_on(f->path), 0);
    char *m = vie_app_metrics(app);
    assert_non_null(strstr(m, "# TYPE vie_access_log_lines_total counter\n"));
    assert_non_null(strstr(m, "\nvie_access_log_lines_total{layer=\"log\"} 1\n"));
    assert_non_null(strstr(m, "\nvie_access_log_dropped_total{layer=\"log\"} 0\n"));
    free(m);
    vie_app_free(app);
}

/* Without the id layers: no id fields, and the app still starts (the
 * keys are read, never registered, by access_log). No trail when off. */
static void no_ids_no_trail(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    o.trail = false;
    vie_app *app = app_with_log(&o, false);
    fake_clocks();
    assert_int_equal(vie_test_begin(app), VIE_OK);
    fake_wall_ms = 1795341201007ull;
    hit(app, "GET", "/x", NULL, 201);
    fake_wall_ms += 1000;
    hit(app, "HEAD", "/x", NULL, 201);
    vie_test_end(app);
    char *text = slurp(f->path);
    assert_string_equal(
        text, "{\"time\":\"2026-11-22T09:53:21.007Z\",\"method\":\"GET\",\"path\":\"/x\","
              "\"route\":\"GET /x\",\"status\":201,\"bytes\":5,\"duration_ms\":0.265,"
              "\"client\":\"\"}\n"
              "{\"time\":\"2026-11-22T09:53:22.007Z\",\"method\":\"HEAD\",\"path\":\"/x\","
              "\"route\":\"GET /x\",\"status\":201,\"bytes\":5,\"duration_ms\":0.265,"
              "\"client\":\"\"}\n");
    free(text);
    vie_app_free(app);
}

/* A path with a quote and a backslash (the parser lets them through). */
static void path_escaped(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    o.trail = false;
    vie_app *app = app_with_log(&o, false);
    fake_clocks();
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "GET", "/q/a\"b\\c%0A", NULL, 200);
    vie_test_end(app);
    char *text = slurp(f->path);
    assert_non_null(strstr(text, ",\"path\":\"/q/a\\\"b\\\\c%0A\",\"route\":\"GET /q/:v\","));
    assert_int_equal(count_lines(text), 1);
    free(text);
    vie_app_free(app);
}

/* The escaper itself, on what a request cannot carry. */
static void json_escaping_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"", 0, "\"\""},
        {"a\"b\\c", 5, "\"a\\\"b\\\\c\""},
        {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""},
        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\""},
        {"a\0b", 3, "\"a\\u0000b\""},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
         "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},           /* valid UTF-8 kept */
        {"\xff", 1, "\"\\ufffd\""},                                  /* never valid */
        {"\x80x", 2, "\"\\ufffdx\""},                                /* stray continuation */
        {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},                       /* overlong '/' */
        {"\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\""},            /* overlong, 3 bytes */
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},            /* a surrogate */
        {"\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* past U+10FFFF */
        {"\xe2\x82", 2, "\"\\ufffd\\ufffd\""},                       /* truncated */
        {"\xe2\x82\"", 3, "\"\\ufffd\\ufffd\\\"\""},                 /* truncated before a quote */
        {"\xf4\x8f\xbf\xbf", 4, "\"\xf4\x8f\xbf\xbf\""},             /* U+10FFFF itself */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        memset(out, '#', sizeof out);
        char *end = json_str(out, cases[i].in, cases[i].len);
        size_t n = (size_t)(end - out);
        assert_true(n <= JSON_STR_MAX(cases[i].len));
        if (n != strlen(cases[i].out) || memcmp(out, cases[i].out, n))
            fail_msg("case %zu: got %.*s, want %s", i, (int)n, out, cases[i].out);
    }
    /* The worst case meets the bound exactly. */
    char in[10], out[JSON_STR_MAX(10)];
    memset(in, 1, sizeof in);
    assert_int_equal(json_str(out, in, sizeof in) - out, JSON_STR_MAX(10));
}

/* ------------------------------------------------------------------ */
/* Buffering and dropping                                              */

/* Lines of about 250 bytes into 256-byte buffers: the first goes out at
 * once, the second fills the other buffer, every later one finds both
 * full (the test kit runs no loop between requests, so the first write's
 * completion waits) and is dropped and counted. */
static void drops_when_both_buffers_full(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    o.buffer_size = 256;
    vie_app *app = app_with_log(&o, true);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    capture k;
    capture_begin(&k);
    for (int i = 0; i < 10; i++)
        hit(app, "GET", "/x", NULL, 201);
    char *log = capture_end(&k);
    /* One warning, not ten: the rest are counted, not logged. */
    assert_true(
        log_has_line(log, "access_log log", "1 line dropped", "both buffers are full", NULL));
    int warnings = 0;
    for (const char *p = log; (p = strstr(p, "access_log log: ")) != NULL; p++)
        warnings += strncmp(p + 16, "1 line dropped", 14) == 0;
    assert_int_equal(warnings, 1);
    free(log);
    vie_test_end(app);
    char *text = slurp(f->path);
    assert_int_equal(count_lines(text), 2);
    free(text);
    char *m = vie_app_metrics(app);
    assert_non_null(strstr(m, "\nvie_access_log_lines_total{layer=\"log\"} 2\n"));
    assert_non_null(strstr(m, "\nvie_access_log_dropped_total{layer=\"log\"} 8\n"));
    free(m);
    vie_app_free(app);
}

/* A full buffer is written while serving, not only at stop. */
static void size_flush_while_running(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    o.buffer_size = 256;
    vie_app *app = app_with_log(&o, true);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "GET", "/x", NULL, 201);
    /* The write is on the pool: one turn of the loop completes it. */
    uv_loop_t *loop = vie_test_loop(app);
    char *text = NULL;
    for (int i = 0; i < 100; i++) {
        uv_run(loop, UV_RUN_ONCE);
        free(text);
        text = slurp(f->path);
        if (count_lines(text) == 1) break;
    }
    assert_int_equal(count_lines(text), 1);
    free(text);
    vie_test_end(app);
    vie_app_free(app);
}

/* A line waits at most flush_ms. */
static void timer_flush(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    o.flush_ms = 1;
    vie_app *app = app_with_log(&o, true);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "GET", "/x", NULL, 201);
    char *text = NULL;
    for (int i = 0; i < 200; i++) { /* at most ~2 s */
        vie_test_run_for(app, 10);
        free(text);
        text = slurp(f->path);
        if (count_lines(text) == 1) break;
    }
    assert_int_equal(count_lines(text), 1);
    free(text);
    vie_test_end(app);
    vie_app_free(app);
}

/* Standard output: fd 1 gets the lines and stays open. */
static void to_stdout(void **state)
{
    fixture *f = *state;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    vie_access_log_opts o;
    vie_access_log_opts_init(&o);
    o.path = "-";
    o.trail = false;
    vie_app *app = app_with_log(&o, false);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "POST", "/ok", NULL, 200);
    vie_test_end(app);
    bool still_open = fcntl(STDOUT_FILENO, F_GETFD) != -1;
    dup2(saved, STDOUT_FILENO);
    close(saved);
    assert_true(still_open);
    char *text = slurp(f->path);
    assert_int_equal(count_lines(text), 1);
    assert_non_null(strstr(text, "\"method\":\"POST\",\"path\":\"/ok\",\"route\":\"POST /ok\","
                                 "\"status\":200,\"bytes\":2,"));
    free(text);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Reopening (SIGUSR1)                                                 */

static void reopen(vie_app *app)
{
    app_run_hooks(app, VIE_EV_REOPEN, vie_test_loop(app));
}

/* Lines before the signal stay with the old (renamed) file, lines after
 * go to the new one, and one line says so. */
static void reopen_after_rotation(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    vie_app *app = app_with_log(&o, true);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "GET", "/q/before-1", NULL, 200);
    hit(app, "GET", "/q/before-2", NULL, 200);
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", f->path);
    assert_int_equal(rename(f->path, rotated), 0);
    capture k;
    capture_begin(&k);
    reopen(app);
    hit(app, "GET", "/q/after-1", NULL, 200);
    hit(app, "GET", "/q/after-2", NULL, 200);
    vie_test_end(app);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "INFO", "access_log log: reopened ", f->path, NULL));
    free(log);
    char *old = slurp(rotated), *now = slurp(f->path);
    assert_int_equal(count_lines(old), 2);
    assert_int_equal(count_lines(now), 2);
    assert_non_null(strstr(old, "/q/before-1"));
    assert_non_null(strstr(old, "/q/before-2"));
    assert_non_null(strstr(now, "/q/after-1"));
    assert_non_null(strstr(now, "/q/after-2"));
    free(old);
    free(now);
    vie_app_free(app);
}

/* A signal while a write is in flight: the reopen waits for it and for
 * the lines buffered meanwhile; nothing is lost and order is kept. */
static void reopen_during_write(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    file_opts(&o, f);
    o.buffer_size = 256; /* each line goes out on its own */
    vie_app *app = app_with_log(&o, false);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "GET", "/q/l1", NULL, 200); /* in flight */
    hit(app, "GET", "/q/l2", NULL, 200); /* buffered */
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", f->path);
    assert_int_equal(rename(f->path, rotated), 0);
    reopen(app);
    /* Let it all finish, then serve again. */
    uv_loop_t *loop = vie_test_loop(app);
    struct stat st;
    for (int i = 0; i < 100 && stat(f->path, &st) != 0; i++)
        uv_run(loop, UV_RUN_ONCE);
    uv_run(loop, UV_RUN_NOWAIT);
    hit(app, "GET", "/q/l3", NULL, 200);
    vie_test_end(app);
    char *old = slurp(rotated), *now = slurp(f->path);
    assert_int_equal(count_lines(old), 2);
    char *a = line_at(old, 0), *b = line_at(old, 1);
    assert_non_null(strstr(a, "/q/l1"));
    assert_non_null(strstr(b, "/q/l2"));
    assert_int_equal(count_lines(now), 1);
    assert_non_null(strstr(now, "/q/l3"));
    free(a);
    free(b);
    free(old);
    free(now);
    vie_app_free(app);
}

/* The path cannot be opened again: the old file stays in use. */
static void reopen_failure_keeps_old_file(void **state)
{
    fixture *f = *state;
    char sub[128], file[160], moved[128];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    snprintf(moved, sizeof moved, "%s/moved", f->dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(file, sizeof file, "%s/access.log", sub);
    vie_access_log_opts o;
    vie_access_log_opts_init(&o);
    o.path = file;
    o.flush_ms = 60000;
    vie_app *app = app_with_log(&o, false);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "GET", "/q/one", NULL, 200);
    assert_int_equal(rename(sub, moved), 0); /* the path's directory is gone */
    capture k;
    capture_begin(&k);
    reopen(app);
    hit(app, "GET", "/q/two", NULL, 200);
    vie_test_end(app);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "ERROR", "access_log log: cannot reopen", file,
                             "still writing to the file open before", NULL));
    free(log);
    char kept[200];
    snprintf(kept, sizeof kept, "%s/access.log", moved);
    char *text = slurp(kept);
    assert_int_equal(count_lines(text), 2);
    assert_non_null(strstr(text, "/q/one"));
    assert_non_null(strstr(text, "/q/two"));
    free(text);
    unlink(kept);
    rmdir(moved);
    vie_app_free(app);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

static void refuse(const vie_access_log_opts *o, const char *needle)
{
    vie_app *app = vie_app_new(NULL);
    capture k;
    capture_begin(&k);
    vie_layer_opts lo = {.name = "log.bad"};
    int rc = vie_use_access_log(app, &lo, o);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    if (!log_has_line(log, "access_log log.bad", needle, NULL))
        fail_msg("no log line naming the layer and \"%s\" in:\n%s", needle, log);
    free(log);
    assert_int_equal(vie_app_freeze(app), VIE_OK); /* nothing half-registered */
    vie_app_free(app);
}

static void bad_options_refused(void **state)
{
    fixture *f = *state;
    vie_access_log_opts o;
    vie_access_log_opts_init(&o);
    o.buffer_size = 255;
    refuse(&o, "option buffer_size 255");
    o.buffer_size = (64u << 20) + 1;
    refuse(&o, "option buffer_size");
    vie_access_log_opts_init(&o);
    o.flush_ms = 0;
    refuse(&o, "option flush_ms 0");
    o.flush_ms = 60001;
    refuse(&o, "option flush_ms 60001");
    vie_access_log_opts_init(&o);
    o.path = "";
    refuse(&o, "option path");
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no/such/dir/access.log", f->dir);
    o.path = missing;
    refuse(&o, "No such file or directory");
    o.path = f->dir; /* a directory */
    refuse(&o, "Is a directory");
    capture k;
    capture_begin(&k);
    int rc = vie_use_access_log(NULL, NULL, NULL);
    char *log = capture_end(&k);
    assert_int_equal(rc, VIE_EINVAL);
    assert_true(log_has_line(log, "access_log", "app is NULL", NULL));
    free(log);
}

/* Two instances: one metrics block, a series each. */
static void two_instances(void **state)
{
    fixture *f = *state;
    char other[160];
    snprintf(other, sizeof other, "%s/b.log", f->dir);
    vie_app *app = vie_app_new(NULL);
    vie_access_log_opts o;
    vie_access_log_opts_init(&o);
    o.path = f->path;
    vie_layer_opts a = {.name = "log.a"}, b = {.name = "log.b"};
    assert_int_equal(vie_use_access_log(app, &a, &o), VIE_OK);
    o.path = other;
    assert_int_equal(vie_use_access_log(app, &b, &o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/ok", ok, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    hit(app, "GET", "/ok", NULL, 200);
    vie_test_end(app);
    char *m = vie_app_metrics(app);
    char *first = strstr(m, "# TYPE vie_access_log_lines_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE vie_access_log_lines_total"));
    assert_non_null(strstr(m, "\nvie_access_log_lines_total{layer=\"log.a\"} 1\n"));
    assert_non_null(strstr(m, "\nvie_access_log_lines_total{layer=\"log.b\"} 1\n"));
    free(m);
    char *ta = slurp(f->path), *tb = slurp(other);
    assert_int_equal(count_lines(ta), 1);
    assert_int_equal(count_lines(tb), 1);
    free(ta);
    free(tb);
    vie_app_free(app);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(exact_line_with_ids_and_trail),
        T(no_ids_no_trail),
        T(path_escaped),
        cmocka_unit_test(json_escaping_table),
        T(drops_when_both_buffers_full),
        T(size_flush_while_running),
        T(timer_flush),
        T(to_stdout),
        T(reopen_after_rotation),
        T(reopen_during_write),
        T(reopen_failure_keeps_old_file),
        T(bad_options_refused),
        T(two_instances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
