/* Static files: vie_static_handler and vie_send_file.
 *
 * Through the test kit (no socket: the file is read into the body):
 * content types, the Range table, ETag / Last-Modified and every
 * conditional header, traversal refusals (encoded dot segments, symlinks
 * in and out of root, NUL, empty components) with both ways of opening
 * beneath root (openat2 and openat per component), index files and the
 * slash redirect, option validation, vie_send_file's own contract, and no
 * descriptor left open.
 *
 * Through a real server on a thread (sendfile on a socket): a large file
 * intact through a slow reader, pipelined answers in order around file
 * bodies, a blocking handler's file, HEAD and HTTP/1.0, a client leaving
 * mid-file, a file truncated while it is sent, and the write timeout.
 * Every socket has a timeout and every wait a deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/ctx.h"
#include "http/conn.h"
#include "log_capture.h"
#include "mw/mime.h"
#include "vie/vie.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

/* Internal hooks of src/mw/static.c, for these tests. */
void static_test_force_walk(bool on);
bool static_parse_http_date(const char *v, size_t n, int64_t *out);
int static_parse_range(const char *v, size_t n, uint64_t size, uint64_t *off, uint64_t *len);

#define BIG_SIZE   (3u << 20)
#define TRUNC_SIZE (8u << 20)
/* Larger than any socket buffers can hold (tcp_wmem's maximum is 4 MiB by
 * default): sparse, so it costs no disk. */
#define HUGE_SIZE  (32u << 20)
#define LARGE_SIZE (12u << 20)

static struct {
    char dir[64];   /* the temporary tree */
    char root[96];  /* dir/root: what is served */
    char other[96]; /* dir/outside: what must never be served */
    vie_app *app;
    vie_static *st, *st_noindex, *st_noetag, *st_bad;
    unsigned char *big; /* BIG_SIZE bytes of big.bin */
    unsigned char r1000[1000];
    time_t hello_mtime;
} T;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 24);
    }
}

static void put_file(const char *rel, const void *data, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", T.dir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

static void put_dir(const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", T.dir, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void put_link(const char *target, const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", T.dir, rel);
    assert_int_equal(symlink(target, path), 0);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ */
/* Handlers around vie_send_file                                       */

/* /send/<name>?o=<offset>&n=<len>: vie_send_file of root/<name>; the
 * handler's own fd must stay open after the call (vie dups it). */
static atomic_int caller_fd_ok;

static vie_status send_range(vie_ctx *c, void *arg)
{
    (void)arg;
    vie_str name = vie_param(c, "name");
    vie_str o = vie_query_param(c, "o"), n = vie_query_param(c, "n");
    char path[256];
    snprintf(path, sizeof path, "%s/%.*s", T.root, (int)name.len, name.ptr);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vie_send_problem(c, 404, "test: no such file");
    struct stat st;
    fstat(fd, &st);
    uint64_t off = o.ptr ? strtoull(o.ptr, NULL, 10) : 0;
    uint64_t len = n.ptr ? strtoull(n.ptr, NULL, 10) : (uint64_t)st.st_size - off;
    vie_status rs = vie_send_file(c, 200, "application/octet-stream", fd, off, len);
    atomic_store(&caller_fd_ok, fcntl(fd, F_GETFD) >= 0);
    close(fd);
    return rs;
}

static vie_status send_badfd(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_file(c, 200, "text/plain", -1, 0, 1);
}

static vie_status send_twice(vie_ctx *c, void *arg)
{
    (void)arg;
    vie_send_text(c, 200, "first");
    int fd = open(T.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    vie_send_file(c, 200, "text/plain", fd, 0, 1); /* refused: already answered */
    close(fd);
    return VIE_DONE;
}

static vie_status send_dir(vie_ctx *c, void *arg)
{
    (void)arg;
    int fd = open(T.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    vie_status rs = vie_send_file(c, 200, "text/plain", fd, 0, 1); /* not a regular file */
    close(fd);
    return rs;
}

/* A sysfs file says 4096 bytes and holds a few: shorter than its size,
 * like a file truncated between fstat and read. */
static const char *const sysfs_files[] = {"/sys/kernel/uevent_seqnum",
                                          "/sys/devices/system/cpu/online", NULL};

static vie_status send_short(vie_ctx *c, void *arg)
{
    (void)arg;
    for (const char *const *f = sysfs_files; *f; f++) {
        int fd = open(*f, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st;
        fstat(fd, &st);
        vie_status rs = vie_send_file(c, 200, "text/plain", fd, 0, (uint64_t)st.st_size);
        close(fd);
        return rs;
    }
    return vie_send_problem(c, 404, "test: no sysfs file");
}

static vie_status text(vie_ctx *c, void *arg)
{
    (void)arg;
    return vie_send_text(c, 200, "plain text");
}

/* ------------------------------------------------------------------ */
/* The tree and the kit's app                                          */

static vie_static *make_static(const char *index, const char *cache, bool etag, const char *param)
{
    vie_static_opts o;
    vie_static_opts_init(&o);
    o.root = T.root;
    o.index = index;
    o.cache_control = cache;
    o.etag = etag;
    if (param) o.param = param;
    vie_static *s = NULL;
    assert_int_equal(vie_static_new(&o, &s), VIE_OK);
    assert_non_null(s);
    return s;
}

static int group_setup(void **state)
{
    (void)state;
    vie_log_set_level(VIE_LOG_OFF);
    strcpy(T.dir, "/tmp/vie-static-XXXXXX");
    assert_non_null(mkdtemp(T.dir));
    snprintf(T.root, sizeof T.root, "%s/root", T.dir);
    snprintf(T.other, sizeof T.other, "%s/outside", T.dir);
    put_dir("root");
    put_dir("outside");
    put_file("outside/secret.txt", "SECRET\n", 7);
    put_file("root/hello.txt", "Hello, static!\n", 15);
    put_file("root/index.html", "<h1>home</h1>\n", 14);
    put_file("root/UPPER.HTML", "<p>up</p>\n", 10);
    put_file("root/empty.txt", "", 0);
    put_file("root/noext", "raw", 3);
    put_dir("root/sub");
    put_file("root/sub/index.html", "<h1>sub</h1>\n", 13);
    put_file("root/sub/page.css", "body{}\n", 7);
    put_dir("root/emptydir");
    for (int i = 0; i < 1000; i++)
        T.r1000[i] = (unsigned char)(i * 7 % 256);
    put_file("root/r1000.bin", T.r1000, sizeof T.r1000);
    T.big = malloc(BIG_SIZE);
    assert_non_null(T.big);
    fill_random(T.big, BIG_SIZE, 42);
    put_file("root/big.bin", T.big, BIG_SIZE);
    char huge[256];
    snprintf(huge, sizeof huge, "%s/huge.bin", T.root);
    int hfd = open(huge, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(hfd >= 0);
    assert_int_equal(ftruncate(hfd, HUGE_SIZE), 0);
    close(hfd);
    put_link("hello.txt", "root/link_in");
    put_link("../outside/secret.txt", "root/link_out");
    put_link("../outside", "root/linkdir_out");
    put_link("sub", "root/linkdir_in");
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", T.root);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    struct stat st;
    char hello[256];
    snprintf(hello, sizeof hello, "%s/hello.txt", T.root);
    assert_int_equal(stat(hello, &st), 0);
    T.hello_mtime = st.st_mtim.tv_sec;

    T.app = vie_app_new(NULL);
    T.st = make_static("index.html", "public, max-age=60", true, NULL);
    T.st_noindex = make_static("", NULL, true, NULL);
    T.st_noetag = make_static("index.html", NULL, false, NULL);
    T.st_bad = make_static("index.html", NULL, true, "rest");
    assert_int_equal(vie_route(T.app, "GET", "/assets/*path", vie_static_handler, T.st), VIE_OK);
    assert_int_equal(vie_route(T.app, "POST", "/assets/*path", vie_static_handler, T.st), VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/noindex/*path", vie_static_handler, T.st_noindex),
                     VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/noetag/*path", vie_static_handler, T.st_noetag),
                     VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/bad/*path", vie_static_handler, T.st_bad), VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/send/:name", send_range, NULL), VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/badfd", send_badfd, NULL), VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/twice", send_twice, NULL), VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/senddir", send_dir, NULL), VIE_OK);
    assert_int_equal(vie_route(T.app, "GET", "/short", send_short, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(T.app), VIE_OK);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    static_test_force_walk(false);
    vie_test_end(T.app);
    vie_app_free(T.app);
    vie_static_free(T.st);
    vie_static_free(T.st_noindex);
    vie_static_free(T.st_noetag);
    vie_static_free(T.st_bad);
    free(T.big);
    nftw(T.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* GET (or method) target with NULL-terminated headers. */
static vie_test_response *req(const char *method, const char *target, ...)
{
    const char *h[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, target);
    for (const char *s; n < 15 && (s = va_arg(ap, const char *)) != NULL;)
        h[n++] = s;
    va_end(ap);
    h[n] = NULL;
    vie_test_response *r = vie_test_request(T.app, method, target, h, NULL, 0);
    assert_non_null(r);
    return r;
}

#define GET(...) req("GET", __VA_ARGS__, NULL)

static void assert_header(const vie_test_response *r, const char *name, const char *want)
{
    const char *v = vie_test_header(r, name);
    if (!want) {
        if (v) fail_msg("header %s: expected none, got \"%s\"", name, v);
        return;
    }
    if (!v) fail_msg("header %s: missing (expected \"%s\")", name, want);
    assert_string_equal(v, want);
}

/* The file's ETag as the handler makes it. */
static void etag_of(const char *rel, char *out, size_t cap)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", T.root, rel);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    snprintf(out, cap, "\"%llx-%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec,
             (unsigned long long)st.st_ino);
}

static void http_date(time_t t, char out[30])
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday % 100,
             mons[tm.tm_mon], (tm.tm_year + 1900) % 10000, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100);
}

/* ------------------------------------------------------------------ */
/* Content types                                                       */

static void mime_table_sorted_and_complete(void **state)
{
    (void)state;
    assert_true(mime_count() >= 40);
    for (size_t i = 1; i < mime_count(); i++) {
        if (strcmp(mime_ext_at(i - 1), mime_ext_at(i)) >= 0)
            fail_msg("mime table out of order at %zu: %s, %s", i, mime_ext_at(i - 1),
                     mime_ext_at(i));
    }
    assert_null(mime_ext_at(mime_count()));
    /* Every entry is found by the search (the order is the search's). */
    for (size_t i = 0; i < mime_count(); i++) {
        char name[32];
        snprintf(name, sizeof name, "f.%s", mime_ext_at(i));
        assert_string_not_equal(mime_type(name, strlen(name)), "");
    }
    static const struct {
        const char *name, *type;
    } cases[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"a/b/INDEX.HTM", "text/html; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"mod.mjs", "text/javascript; charset=utf-8"},
        {"style.css", "text/css; charset=utf-8"},
        {"notes.txt", "text/plain; charset=utf-8"},
        {"data.json", "application/json"},
        {"logo.svg", "image/svg+xml"},
        {"photo.JPG", "image/jpeg"},
        {"photo.jpeg", "image/jpeg"},
        {"icon.png", "image/png"},
        {"anim.gif", "image/gif"},
        {"pic.webp", "image/webp"},
        {"font.woff2", "font/woff2"},
        {"doc.pdf", "application/pdf"},
        {"app.wasm", "application/wasm"},
        {"clip.mp4", "video/mp4"},
        {"song.mp3", "audio/mpeg"},
        {"archive.tar.gz", "application/gzip"},
        {"archive.zip", "application/zip"},
        {"site.webmanifest", "application/manifest+json"},
        {"noext", "application/octet-stream"},
        {".profile", "application/octet-stream"},
        {"dir/.hidden", "application/octet-stream"},
        {"a.d/file", "application/octet-stream"},
        {"trailing.", "application/octet-stream"},
        {"x.unknownext", "application/octet-stream"},
        {"x.averyveryverylongextension", "application/octet-stream"},
        {"", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = mime_type(cases[i].name, strlen(cases[i].name));
        if (strcmp(got, cases[i].type) != 0)
            fail_msg("mime_type(%s) = %s, expected %s", cases[i].name, got, cases[i].type);
    }
}

/* ------------------------------------------------------------------ */
/* Plain answers                                                       */

static void serves_a_file_with_validators(void **state)
{
    (void)state;
    vie_test_response *r = GET("/assets/hello.txt");
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 15);
    assert_memory_equal(r->body, "Hello, static!\n", 15);
    assert_header(r, "Content-Type", "text/plain; charset=utf-8");
    assert_header(r, "Content-Length", "15");
    assert_header(r, "Accept-Ranges", "bytes");
    assert_header(r, "Cache-Control", "public, max-age=60");
    char etag[96], lm[30];
    etag_of("hello.txt", etag, sizeof etag);
    assert_header(r, "ETag", etag);
    http_date(T.hello_mtime, lm);
    assert_header(r, "Last-Modified", lm);
    assert_null(vie_test_header(r, "Content-Range"));
    vie_test_response_free(r);

    r = GET("/assets/UPPER.HTML");
    assert_int_equal(r->status, 200);
    assert_header(r, "Content-Type", "text/html; charset=utf-8");
    vie_test_response_free(r);
    r = GET("/assets/noext");
    assert_header(r, "Content-Type", "application/octet-stream");
    vie_test_response_free(r);
    r = GET("/assets/sub/page.css");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "body{}\n");
    assert_header(r, "Content-Type", "text/css; charset=utf-8");
    vie_test_response_free(r);

    r = GET("/assets/empty.txt");
    assert_int_equal(r->status, 200);
    assert_header(r, "Content-Length", "0");
    assert_int_equal(r->body_len, 0);
    vie_test_response_free(r);

    /* Larger than the inline size: still every byte (the kit reads it). */
    r = GET("/assets/big.bin");
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, BIG_SIZE);
    assert_memory_equal(r->body, T.big, BIG_SIZE);
    vie_test_response_free(r);
}

static void head_has_the_length_and_no_body(void **state)
{
    (void)state;
    vie_test_response *r = req("HEAD", "/assets/big.bin", NULL);
    assert_int_equal(r->status, 200);
    char want[32];
    snprintf(want, sizeof want, "%u", BIG_SIZE);
    assert_header(r, "Content-Length", want);
    assert_header(r, "Content-Type", "application/octet-stream");
    /* Nothing after the head on the wire. */
    const char *eoh = strstr(r->raw, "\r\n\r\n");
    assert_non_null(eoh);
    assert_int_equal((size_t)(eoh + 4 - r->raw), r->raw_len);
    vie_test_response_free(r);

    /* Range is defined for GET only: HEAD ignores it. */
    r = req("HEAD", "/assets/r1000.bin", "Range: bytes=0-9", NULL);
    assert_int_equal(r->status, 200);
    assert_header(r, "Content-Length", "1000");
    assert_null(vie_test_header(r, "Content-Range"));
    vie_test_response_free(r);
}

/* ------------------------------------------------------------------ */
/* Range                                                               */

static void range_table(void **state)
{
    (void)state;
    static const struct {
        const char *range;
        int status;
        const char *content_range; /* NULL: none */
        uint64_t off, len;         /* the body, for 200 and 206 */
    } cases[] = {
        {"bytes=0-9", 206, "bytes 0-9/1000", 0, 10},
        {"bytes=0-0", 206, "bytes 0-0/1000", 0, 1},
        {"bytes=990-", 206, "bytes 990-999/1000", 990, 10},
        {"bytes=-10", 206, "bytes 990-999/1000", 990, 10},
        {"bytes=-1", 206, "bytes 999-999/1000", 999, 1},
        {"bytes=-2000", 206, "bytes 0-999/1000", 0, 1000},
        {"bytes=995-2000", 206, "bytes 995-999/1000", 995, 5},
        {"bytes=0-", 206, "bytes 0-999/1000", 0, 1000},
        {"bytes=999-999", 206, "bytes 999-999/1000", 999, 1},
        {"BYTES=1-2", 206, "bytes 1-2/1000", 1, 2},
        {"bytes= 3-4", 206, "bytes 3-4/1000", 3, 2},
        {"bytes=3-4 ", 206, "bytes 3-4/1000", 3, 2},
        {"bytes=0-18446744073709551616", 206, "bytes 0-999/1000", 0, 1000},
        /* unsatisfiable */
        {"bytes=1000-", 416, "bytes */1000", 0, 0},
        {"bytes=1000-1001", 416, "bytes */1000", 0, 0},
        {"bytes=-0", 416, "bytes */1000", 0, 0},
        {"bytes=18446744073709551616-", 416, "bytes */1000", 0, 0},
        /* invalid or several: ignored, the whole file */
        {"bytes=5-4", 200, NULL, 0, 1000},
        {"bytes=abc", 200, NULL, 0, 1000},
        {"bytes=", 200, NULL, 0, 1000},
        {"bytes=-", 200, NULL, 0, 1000},
        {"bytes=1-2-3", 200, NULL, 0, 1000},
        {"bytes=1", 200, NULL, 0, 1000},
        {"bytes=--1", 200, NULL, 0, 1000},
        {"bytes=+1-2", 200, NULL, 0, 1000},
        {"items=0-1", 200, NULL, 0, 1000},
        {"bytes0-1", 200, NULL, 0, 1000},
        {"bytes=0-1,5-6", 200, NULL, 0, 1000},
        {"bytes=0-1, 2000-", 200, NULL, 0, 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "Range: %s", cases[i].range);
        vie_test_response *r = GET("/assets/r1000.bin", h);
        if (r->status != cases[i].status)
            fail_msg("Range \"%s\": status %d, expected %d", cases[i].range, r->status,
                     cases[i].status);
        const char *cr = vie_test_header(r, "Content-Range");
        if (cases[i].content_range ? !cr || strcmp(cr, cases[i].content_range) : cr != NULL)
            fail_msg("Range \"%s\": Content-Range \"%s\", expected \"%s\"", cases[i].range,
                     cr ? cr : "(none)",
                     cases[i].content_range ? cases[i].content_range : "(none)");
        if (r->status == 416) {
            assert_header(r, "Content-Type", "application/problem+json");
            assert_non_null(strstr(r->body, "\"status\":416"));
        } else {
            assert_int_equal(r->body_len, cases[i].len);
            assert_memory_equal(r->body, T.r1000 + cases[i].off, cases[i].len);
            char cl[24];
            snprintf(cl, sizeof cl, "%llu", (unsigned long long)cases[i].len);
            assert_header(r, "Content-Length", cl);
            assert_header(r, "Content-Type", "application/octet-stream");
            assert_header(r, "Accept-Ranges", "bytes");
        }
        vie_test_response_free(r);
    }

    /* An empty file satisfies no range. */
    vie_test_response *r = GET("/assets/empty.txt", "Range: bytes=0-");
    assert_int_equal(r->status, 416);
    assert_header(r, "Content-Range", "bytes */0");
    vie_test_response_free(r);
    r = GET("/assets/empty.txt", "Range: bytes=-5");
    assert_int_equal(r->status, 416);
    vie_test_response_free(r);

    /* The parser alone, at the edges of size. */
    uint64_t off = 7, len = 7;
    assert_int_equal(static_parse_range("bytes=0-0", 9, 1, &off, &len), 1);
    assert_true(off == 0 && len == 1);
    assert_int_equal(static_parse_range("bytes=-5", 8, 3, &off, &len), 1);
    assert_true(off == 0 && len == 3);
    assert_int_equal(static_parse_range("bytes=1-", 8, 1, &off, &len), 2);
    assert_int_equal(static_parse_range("bytes=0-1", 5, 100, &off, &len), 0); /* cut short */
}

/* ------------------------------------------------------------------ */
/* Conditional requests                                                */

static void if_none_match(void **state)
{
    (void)state;
    char etag[96], h[160], lm[30];
    etag_of("hello.txt", etag, sizeof etag);
    http_date(T.hello_mtime, lm);
    const char *matching[] = {"%s", "W/%s", "\"nope\", %s", "\"a\",%s ,\"b\"", "*", " %s "};
    for (size_t i = 0; i < sizeof matching / sizeof matching[0]; i++) {
        char v[128];
        snprintf(v, sizeof v, matching[i], etag);
        snprintf(h, sizeof h, "If-None-Match: %s", v);
        vie_test_response *r = GET("/assets/hello.txt", h);
        if (r->status != 304) fail_msg("%s: status %d, expected 304", h, r->status);
        assert_int_equal(r->body_len, 0);
        assert_header(r, "ETag", etag);
        assert_header(r, "Last-Modified", lm);
        assert_header(r, "Cache-Control", "public, max-age=60");
        /* A 304 says no length of its own (a 0 would poison caches). */
        assert_null(vie_test_header(r, "Content-Length"));
        assert_null(vie_test_header(r, "Content-Type"));
        const char *eoh = strstr(r->raw, "\r\n\r\n");
        assert_int_equal((size_t)(eoh + 4 - r->raw), r->raw_len);
        vie_test_response_free(r);
    }
    const char *other[] = {"\"nope\"", "W/\"nope\"", "\"nope\", W/\"x\"", "garbage",
                           "\"unterminated"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        snprintf(h, sizeof h, "If-None-Match: %s", other[i]);
        vie_test_response *r = GET("/assets/hello.txt", h);
        if (r->status != 200) fail_msg("%s: status %d, expected 200", h, r->status);
        assert_string_equal(r->body, "Hello, static!\n");
        vie_test_response_free(r);
    }
    /* The list may be split over two field lines. */
    snprintf(h, sizeof h, "If-None-Match: %s", etag);
    vie_test_response *r = GET("/assets/hello.txt", "If-None-Match: \"nope\"", h);
    assert_int_equal(r->status, 304);
    vie_test_response_free(r);
    /* HEAD is conditional too. */
    r = req("HEAD", "/assets/hello.txt", h, NULL);
    assert_int_equal(r->status, 304);
    vie_test_response_free(r);
}

static void if_modified_since(void **state)
{
    (void)state;
    char lm[30], h[96];
    http_date(T.hello_mtime, lm);
    snprintf(h, sizeof h, "If-Modified-Since: %s", lm);
    vie_test_response *r = GET("/assets/hello.txt", h);
    assert_int_equal(r->status, 304);
    assert_null(vie_test_header(r, "Content-Length"));
    vie_test_response_free(r);

    char later[30], earlier[30];
    http_date(T.hello_mtime + 3600, later);
    http_date(T.hello_mtime - 1, earlier);
    snprintf(h, sizeof h, "If-Modified-Since: %s", later);
    r = GET("/assets/hello.txt", h);
    assert_int_equal(r->status, 304);
    vie_test_response_free(r);
    snprintf(h, sizeof h, "If-Modified-Since: %s", earlier);
    r = GET("/assets/hello.txt", h);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    /* Not a date: ignored. */
    r = GET("/assets/hello.txt", "If-Modified-Since: yesterday");
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    /* If-None-Match wins over If-Modified-Since, either way. */
    snprintf(h, sizeof h, "If-Modified-Since: %s", later);
    r = GET("/assets/hello.txt", "If-None-Match: \"nope\"", h);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    char etag[96], h2[160];
    etag_of("hello.txt", etag, sizeof etag);
    snprintf(h2, sizeof h2, "If-None-Match: %s", etag);
    snprintf(h, sizeof h, "If-Modified-Since: %s", earlier);
    r = GET("/assets/hello.txt", h2, h);
    assert_int_equal(r->status, 304);
    vie_test_response_free(r);
}

static void http_date_forms(void **state)
{
    (void)state;
    int64_t t = 0;
    static const char *const ok[] = {
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        " Sun, 06 Nov 1994 08:49:37 GMT ",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (!static_parse_http_date(ok[i], strlen(ok[i]), &t)) fail_msg("refused: %s", ok[i]);
        assert_int_equal(t, 784111777);
    }
    assert_true(static_parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", 29, &t));
    assert_int_equal(t, 0);
    assert_true(static_parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT", 29, &t));
    assert_int_equal(t, 1835481599);
    assert_true(static_parse_http_date("Sunday, 06-Nov-05 08:49:37 GMT", 30, &t));
    assert_int_equal(t, 1131266977);
    static const char *const bad[] = {
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTx",
        "1994-11-06T08:49:37Z",
        "",
        "Sun Nov  6 08:49:37 94",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (static_parse_http_date(bad[i], strlen(bad[i]), &t)) fail_msg("accepted: %s", bad[i]);
}

static void if_match_and_unmodified_since(void **state)
{
    (void)state;
    char etag[96], h[160];
    etag_of("hello.txt", etag, sizeof etag);
    snprintf(h, sizeof h, "If-Match: %s", etag);
    vie_test_response *r = GET("/assets/hello.txt", h);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    r = GET("/assets/hello.txt", "If-Match: *");
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    r = GET("/assets/hello.txt", "If-Match: \"nope\"");
    assert_int_equal(r->status, 412);
    assert_header(r, "Content-Type", "application/problem+json");
    vie_test_response_free(r);
    /* If-Match compares strongly: a weak tag never matches. */
    snprintf(h, sizeof h, "If-Match: W/%s", etag);
    r = GET("/assets/hello.txt", h);
    assert_int_equal(r->status, 412);
    vie_test_response_free(r);
    char earlier[30], later[30];
    http_date(T.hello_mtime - 10, earlier);
    http_date(T.hello_mtime, later);
    snprintf(h, sizeof h, "If-Unmodified-Since: %s", earlier);
    r = GET("/assets/hello.txt", h);
    assert_int_equal(r->status, 412);
    vie_test_response_free(r);
    snprintf(h, sizeof h, "If-Unmodified-Since: %s", later);
    r = GET("/assets/hello.txt", h);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
}

static void if_range(void **state)
{
    (void)state;
    char etag[96], h[160], lm[30];
    etag_of("r1000.bin", etag, sizeof etag);
    struct stat st;
    char path[256];
    snprintf(path, sizeof path, "%s/r1000.bin", T.root);
    stat(path, &st);
    http_date(st.st_mtim.tv_sec, lm);

    snprintf(h, sizeof h, "If-Range: %s", etag);
    vie_test_response *r = GET("/assets/r1000.bin", "Range: bytes=0-9", h);
    assert_int_equal(r->status, 206);
    assert_header(r, "Content-Range", "bytes 0-9/1000");
    vie_test_response_free(r);
    /* A weak or different tag: the whole file. */
    snprintf(h, sizeof h, "If-Range: W/%s", etag);
    r = GET("/assets/r1000.bin", "Range: bytes=0-9", h);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 1000);
    vie_test_response_free(r);
    r = GET("/assets/r1000.bin", "Range: bytes=0-9", "If-Range: \"other\"");
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    /* A date: only the exact Last-Modified. */
    snprintf(h, sizeof h, "If-Range: %s", lm);
    r = GET("/assets/r1000.bin", "Range: bytes=0-9", h);
    assert_int_equal(r->status, 206);
    vie_test_response_free(r);
    char other[30];
    http_date(st.st_mtim.tv_sec + 1, other);
    snprintf(h, sizeof h, "If-Range: %s", other);
    r = GET("/assets/r1000.bin", "Range: bytes=0-9", h);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    /* If-Range without Range: plain 200. */
    snprintf(h, sizeof h, "If-Range: %s", etag);
    r = GET("/assets/r1000.bin", h);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    /* An unsatisfiable range behind a failing If-Range: the whole file. */
    r = GET("/assets/r1000.bin", "Range: bytes=5000-", "If-Range: \"other\"");
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
}

static void etag_can_be_off(void **state)
{
    (void)state;
    vie_test_response *r = GET("/noetag/hello.txt");
    assert_int_equal(r->status, 200);
    assert_null(vie_test_header(r, "ETag"));
    assert_non_null(vie_test_header(r, "Last-Modified"));
    assert_null(vie_test_header(r, "Cache-Control"));
    vie_test_response_free(r);
    char etag[96], h[160];
    etag_of("hello.txt", etag, sizeof etag);
    snprintf(h, sizeof h, "If-None-Match: %s", etag);
    r = GET("/noetag/hello.txt", h);
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    r = GET("/noetag/hello.txt", "If-None-Match: *");
    assert_int_equal(r->status, 304);
    vie_test_response_free(r);
}

/* ------------------------------------------------------------------ */
/* Refusals                                                            */

static void expect_status(const char *target, int status)
{
    vie_test_response *r = GET(target);
    if (r->status != status) fail_msg("GET %s: status %d, expected %d", target, r->status, status);
    if (status >= 400) {
        assert_header(r, "Content-Type", "application/problem+json");
        assert_null(strstr(r->body, "SECRET"));
    }
    vie_test_response_free(r);
}

static void traversal_refused_both_ways(void **state)
{
    (void)state;
    for (int walk = 0; walk < 2; walk++) {
        static_test_force_walk(walk == 1);
        /* Dot segments: resolved before routing, or refused there (400). */
        expect_status("/assets/../outside/secret.txt", 404);    /* "/outside/..." no route */
        expect_status("/assets/../../outside/secret.txt", 400); /* above the root */
        expect_status("/assets/%2e%2e/%2E%2E/outside/secret.txt", 400);
        expect_status("/assets/..%2f..%2foutside%2fsecret.txt", 400); /* decoded in the param */
        expect_status("/assets/sub%2f..%2f..%2foutside%2fsecret.txt", 400);
        expect_status("/assets/%2e%2e%5csecret.txt", 404); /* a backslash is a name byte */
        expect_status("/assets/%00", 400);
        expect_status("/assets/hello.txt%00.png", 400);
        /* What reaches the handler. */
        expect_status("/assets//etc/passwd", 404); /* a leading '/' in the param */
        expect_status("/assets/%2Fetc%2Fpasswd", 404);
        expect_status("/assets/sub//index.html", 404); /* an empty component */
        expect_status("/assets/missing.txt", 404);
        expect_status("/assets/sub/missing/", 404);
        expect_status("/assets/hello.txt/", 404); /* a file is no directory */
        expect_status("/assets/hello.txt/x", 404);
        /* Symlinks: none is followed, in root or out of it. */
        expect_status("/assets/link_out", 404);
        expect_status("/assets/linkdir_out/secret.txt", 404);
        expect_status("/assets/link_in", 404);
        expect_status("/assets/linkdir_in/page.css", 404);
        expect_status("/assets/linkdir_in/", 404);
        /* Not a regular file: refused without blocking on the FIFO. */
        uint64_t t0 = now_ms();
        expect_status("/assets/fifo", 404);
        assert_true(now_ms() - t0 < 2000);
        /* Still serving the real thing. */
        expect_status("/assets/sub/page.css", 200);
    }
    static_test_force_walk(false);
}

/* Where openat2 is refused (an old kernel: ENOSYS; a seccomp filter that
 * does not know it: EPERM), files are still served, and still never
 * through a symlink. In a child process, under a real seccomp filter. */
static int child_under_filter(int err)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 10;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return 11;
    static const struct {
        const char *target;
        int status;
    } want[] = {
        {"/assets/hello.txt", 200}, {"/assets/sub/page.css", 200},
        {"/assets/link_out", 404},  {"/assets/linkdir_in/page.css", 404},
        {"/assets/missing", 404},   {"/assets/hello.txt", 200},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        vie_test_response *r = vie_test_request(T.app, "GET", want[i].target, NULL, NULL, 0);
        int st = r ? r->status : 0;
        vie_test_response_free(r);
        if (st != want[i].status) return 20 + (int)i;
    }
    return 0;
}

static void served_where_openat2_is_refused(void **state)
{
    (void)state;
    const int errs[] = {ENOSYS, EPERM};
    for (size_t i = 0; i < 2; i++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) _exit(child_under_filter(errs[i]));
        int ws = 0;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFEXITED(ws));
        if (WEXITSTATUS(ws) != 0)
            fail_msg("openat2 refused with %s: child exit %d", strerror(errs[i]), WEXITSTATUS(ws));
    }
}

static void permission_denied_is_404(void **state)
{
    (void)state;
    if (geteuid() == 0) skip(); /* root reads every file */
    put_file("root/secret.txt", "x", 1);
    char path[256];
    snprintf(path, sizeof path, "%s/secret.txt", T.root);
    chmod(path, 0);
    expect_status("/assets/secret.txt", 404);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Directories                                                         */

static void index_and_redirect(void **state)
{
    (void)state;
    vie_test_response *r = GET("/assets/");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "<h1>home</h1>\n");
    assert_header(r, "Content-Type", "text/html; charset=utf-8");
    assert_non_null(vie_test_header(r, "ETag"));
    vie_test_response_free(r);

    r = GET("/assets/sub/");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "<h1>sub</h1>\n");
    vie_test_response_free(r);

    r = GET("/assets/sub");
    assert_int_equal(r->status, 301);
    assert_header(r, "Location", "/assets/sub/");
    assert_int_equal(r->body_len, 0);
    vie_test_response_free(r);
    r = GET("/assets/sub?v=1&x=%20");
    assert_int_equal(r->status, 301);
    assert_header(r, "Location", "/assets/sub/?v=1&x=%20");
    vie_test_response_free(r);
    r = GET("/assets/emptydir");
    assert_int_equal(r->status, 301);
    vie_test_response_free(r);
    expect_status("/assets/emptydir/", 404); /* no index, no listing */

    expect_status("/noindex/", 404);
    expect_status("/noindex/sub/", 404);
    expect_status("/noindex/hello.txt", 200);
    r = GET("/noindex/sub");
    assert_int_equal(r->status, 301);
    vie_test_response_free(r);

    /* The index has validators of its own. */
    char etag[96], h[160];
    etag_of("sub/index.html", etag, sizeof etag);
    snprintf(h, sizeof h, "If-None-Match: %s", etag);
    r = GET("/assets/sub/", h);
    assert_int_equal(r->status, 304);
    vie_test_response_free(r);
}

/* The handler on its own, with catch-all values routing would have
 * refused already (dispatch answers 400 to dot segments and bad escapes):
 * it refuses them itself. */
static void handler_refuses_on_its_own(void **state)
{
    (void)state;
    static const struct {
        const char *raw;
        size_t len;
    } cases[] = {
        {"../outside/secret.txt", 21},
        {"sub/../../outside/secret.txt", 28},
        {"..", 2},
        {".", 1},
        {"./hello.txt", 11},
        {"hello.txt\0.png", 14},
        {"/etc/passwd", 11},
        {"sub//page.css", 13},
        {"%00", 3},
        {"%2e%2e/outside/secret.txt", 25},
    };
    ctx_pool pool;
    ctx_pool_init(&pool, T.app, NULL);
    for (int walk = 0; walk < 2; walk++) {
        static_test_force_walk(walk == 1);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0] + 1; i++) {
            vie_buf out = {0};
            vie_ctx *c = ctx_acquire(&pool, &out);
            assert_non_null(c);
            c->req.version_minor = 1;
            c->req.method_id = HTTP_M_GET;
            c->req.method = "GET";
            c->req.method_len = 3;
            c->match.n_params = 1;
            c->match.has_catchall = true;
            c->match.params[0].name = "path";
            bool control = i == sizeof cases / sizeof cases[0]; /* a good one, last */
            c->match.params[0].raw = control ? "sub/page.css" : cases[i].raw;
            c->match.params[0].raw_len = control ? 12 : (uint32_t)cases[i].len;
            assert_int_equal(vie_static_handler(c, T.st), VIE_DONE);
            assert_non_null(out.data);
            int status = atoi(out.data + 9);
            if (status != (control ? 200 : 404))
                fail_msg("raw \"%s\": status %d", control ? "sub/page.css" : cases[i].raw, status);
            ctx_release(&pool, c);
            buf_free(&out);
        }
    }
    static_test_force_walk(false);
    ctx_pool_destroy(&pool);
}

static void only_get_and_head(void **state)
{
    (void)state;
    vie_test_response *r = req("POST", "/assets/hello.txt", NULL);
    assert_int_equal(r->status, 405);
    assert_header(r, "Allow", "GET, HEAD");
    assert_header(r, "Content-Type", "application/problem+json");
    vie_test_response_free(r);
}

static void misconfigured_routes_answer_500_and_say_why(void **state)
{
    (void)state;
    capture k;
    capture_begin(&k);
    vie_test_response *r = GET("/bad/hello.txt");
    vie_test_response *r2 = GET("/bad/hello.txt");
    char *log = capture_end(&k);
    assert_int_equal(r->status, 500);
    assert_int_equal(r2->status, 500);
    assert_true(
        log_has_line(log, "static: route GET /bad/*path", "no catch-all named \"rest\"", NULL));
    /* Once, not per request. */
    assert_null(strstr(strstr(log, "no catch-all") + 1, "no catch-all"));
    free(log);
    vie_test_response_free(r);
    vie_test_response_free(r2);
}

static void static_new_validates(void **state)
{
    (void)state;
    vie_static_opts o;
    vie_static *s = (vie_static *)1;
    capture k;
    capture_begin(&k);
    vie_static_opts_init(&o);
    assert_string_equal(o.index, "index.html");
    assert_string_equal(o.param, "path");
    assert_true(o.etag);
    assert_null(o.cache_control);
    assert_int_equal(vie_static_new(&o, &s), VIE_EINVAL); /* no root */
    assert_null(s);
    assert_int_equal(vie_static_new(NULL, &s), VIE_EINVAL);
    o.root = "/nonexistent/vie-static-root";
    assert_int_equal(vie_static_new(&o, &s), VIE_EINVAL);
    char file[256];
    snprintf(file, sizeof file, "%s/hello.txt", T.root);
    o.root = file;
    assert_int_equal(vie_static_new(&o, &s), VIE_EINVAL);
    o.root = T.root;
    o.index = "../x";
    assert_int_equal(vie_static_new(&o, &s), VIE_EINVAL);
    o.index = "..";
    assert_int_equal(vie_static_new(&o, &s), VIE_EINVAL);
    o.index = "index.html";
    o.cache_control = "max-age=1\r\nX-Evil: 1";
    assert_int_equal(vie_static_new(&o, &s), VIE_EINVAL);
    char *log = capture_end(&k);
    assert_true(log_has_line(log, "static: option root is required", NULL));
    assert_true(log_has_line(log, "static: option root \"/nonexistent/vie-static-root\"",
                             "No such file or directory", NULL));
    assert_true(log_has_line(log, "static: option root", "hello.txt", "not a directory", NULL));
    assert_true(log_has_line(log, "static: option index \"../x\"", NULL));
    assert_true(log_has_line(log, "static: option cache_control", NULL));
    free(log);
    /* A root that is a symlink is fine: it is resolved once. */
    char link[256];
    snprintf(link, sizeof link, "%s/rootlink", T.dir);
    assert_int_equal(symlink("root", link), 0);
    o.root = link;
    o.cache_control = NULL;
    assert_int_equal(vie_static_new(&o, &s), VIE_OK);
    vie_static_free(s);
    unlink(link);
    vie_static_free(NULL);
}

/* ------------------------------------------------------------------ */
/* vie_send_file itself                                                */

static void send_file_contract(void **state)
{
    (void)state;
    atomic_store(&caller_fd_ok, false);
    vie_test_response *r = GET("/send/r1000.bin?o=100&n=50");
    assert_int_equal(r->status, 200);
    assert_header(r, "Content-Length", "50");
    assert_int_equal(r->body_len, 50);
    assert_memory_equal(r->body, T.r1000 + 100, 50);
    assert_true(atomic_load(&caller_fd_ok)); /* the handler's fd was not closed */
    vie_test_response_free(r);

    r = GET("/send/r1000.bin?o=1000&n=0");
    assert_int_equal(r->status, 200);
    assert_header(r, "Content-Length", "0");
    vie_test_response_free(r);

    capture k;
    capture_begin(&k);
    r = GET("/send/r1000.bin?o=990&n=11"); /* past the end: refused before the head */
    vie_test_response *r2 = GET("/badfd");
    vie_test_response *r3 = GET("/twice");
    vie_test_response *r4 = GET("/senddir");
    char *log = capture_end(&k);
    assert_int_equal(r->status, 500);
    assert_header(r, "Content-Type", "application/problem+json");
    assert_int_equal(r2->status, 500);
    assert_int_equal(r3->status, 200);
    assert_string_equal(r3->body, "first");
    assert_int_equal(r4->status, 500);
    assert_true(log_has_line(log, "vie_send_file refused", "past the end of the file", NULL));
    assert_true(log_has_line(log, "vie_send_file refused", "fd is negative", NULL));
    assert_true(log_has_line(log, "vie_send_file refused", "already sent", NULL));
    assert_true(log_has_line(log, "vie_send_file refused", "not a regular file", NULL));
    free(log);
    vie_test_response_free(r);
    vie_test_response_free(r2);
    vie_test_response_free(r3);
    vie_test_response_free(r4);
}

static void send_file_shorter_than_its_size_is_500(void **state)
{
    (void)state;
    capture k;
    capture_begin(&k);
    vie_test_response *r = GET("/short");
    char *log = capture_end(&k);
    if (r->status == 404) {
        free(log);
        vie_test_response_free(r);
        skip(); /* no sysfs here */
    }
    /* Nothing of the promised 4096 bytes went out: a clean 500. */
    assert_int_equal(r->status, 500);
    assert_header(r, "Content-Type", "application/problem+json");
    assert_null(strstr(r->raw, "Content-Length: 4096"));
    assert_true(log_has_line(log, "vie_send_file: the file ended early after", "of 4096 bytes",
                             "500 sent", NULL));
    free(log);
    vie_test_response_free(r);
}

static void no_descriptor_left_open(void **state)
{
    (void)state;
    int before = count_fds();
    const char *targets[] = {
        "/assets/hello.txt", "/assets/",      "/assets/sub",     "/assets/missing",
        "/assets/link_out",  "/assets/fifo",  "/assets/big.bin", "/send/r1000.bin?o=990&n=11",
        "/senddir",          "/noindex/sub/", "/short"};
    vie_log_set_level(VIE_LOG_OFF);
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
            vie_test_response_free(GET(targets[i]));
            vie_test_response_free(GET(targets[i], "Range: bytes=1-2"));
            vie_test_response_free(GET(targets[i], "If-None-Match: *"));
            vie_test_response_free(req("HEAD", targets[i], NULL));
        }
    assert_int_equal(count_fds(), before);
}

/* ------------------------------------------------------------------ */
/* On a real socket                                                    */

static struct {
    vie_app *app;
    pthread_t th;
    bool running;
    atomic_bool returned;
    int port;
} S;

static void *server_main(void *arg)
{
    (void)arg;
    vie_app_run(S.app);
    atomic_store(&S.returned, true);
    return NULL;
}

/* Blocking handlers that take their time before or after sending a
 * file: their client can leave while the thread runs. */
static vie_status slow_file(vie_ctx *c, void *arg)
{
    pause_ms(300);
    return vie_static_handler(c, arg);
}

static vie_status file_then_slow(vie_ctx *c, void *arg)
{
    vie_status rs = vie_static_handler(c, arg);
    pause_ms(300);
    return rs;
}

static vie_status truncating(vie_ctx *c, void *arg)
{
    (void)arg;
    char path[256];
    snprintf(path, sizeof path, "%s/trunc.bin", T.root);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vie_send_problem(c, 404, "test: no trunc.bin");
    vie_status rs = vie_send_file(c, 200, "application/octet-stream", fd, 0, TRUNC_SIZE);
    close(fd);
    return rs;
}

static int server_setup(void **state)
{
    (void)state;
    vie_options o;
    vie_options_init(&o);
    o.listen = "127.0.0.1:0";
    o.handle_signals = false;
    o.workers = 0;
    o.write_timeout_ms = 400;
    o.drain_timeout_ms = 10000;
    S.app = vie_app_new(&o);
    assert_non_null(S.app);
    assert_int_equal(vie_route(S.app, "GET", "/assets/*path", vie_static_handler, T.st), VIE_OK);
    vie_route_opts ro = {.blocking = true};
    assert_int_equal(vie_route_with(S.app, "GET", "/blocking/*path", vie_static_handler, T.st, &ro),
                     VIE_OK);
    assert_int_equal(vie_route_with(S.app, "GET", "/slow/*path", slow_file, T.st, &ro), VIE_OK);
    assert_int_equal(vie_route_with(S.app, "GET", "/slowafter/*path", file_then_slow, T.st, &ro),
                     VIE_OK);
    assert_int_equal(vie_route(S.app, "GET", "/text", text, NULL), VIE_OK);
    assert_int_equal(vie_route(S.app, "GET", "/trunc", truncating, NULL), VIE_OK);
    atomic_store(&S.returned, false);
    assert_int_equal(pthread_create(&S.th, NULL, server_main, NULL), 0);
    S.running = true;
    uint64_t deadline = now_ms() + 5000;
    while (now_ms() < deadline && !(S.port = vie_app_port(S.app)))
        pause_ms(1);
    assert_true(S.port > 0);
    return 0;
}

static int server_teardown(void **state)
{
    (void)state;
    if (S.running) {
        vie_app_stop(S.app);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 15;
        if (pthread_timedjoin_np(S.th, NULL, &ts) != 0) return -1; /* leak rather than crash */
        S.running = false;
    }
    vie_app_free(S.app);
    return 0;
}

typedef struct conn {
    int fd;
    unsigned char *buf;
    size_t len, cap;
} conn;

typedef struct resp {
    int status;
    char head[4096];
    long long clen; /* -1: none */
    bool close;
    bool eof;            /* the server closed before the response was complete */
    unsigned char *body; /* malloc'd */
    size_t body_len;
} resp;

static bool conn_open(conn *k, int rcvbuf)
{
    memset(k, 0, sizeof *k);
    k->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (k->fd < 0) return false;
    struct timeval tv = {5, 0};
    setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (rcvbuf) setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(k->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(k->fd);
        return false;
    }
    k->cap = 1 << 16;
    k->buf = malloc(k->cap);
    return k->buf != NULL;
}

static void conn_close(conn *k)
{
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
    free(k->buf);
    k->buf = NULL;
}

static bool conn_send(conn *k, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = send(k->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

/* Read more: 1 some, 0 EOF, -1 error or timeout (a reset counts as EOF
 * for a server that closes with unread data). */
static int conn_fill(conn *k)
{
    if (k->len == k->cap) {
        k->cap *= 2;
        k->buf = realloc(k->buf, k->cap);
        assert_non_null(k->buf);
    }
    ssize_t n = recv(k->fd, k->buf + k->len, k->cap - k->len, 0);
    if (n > 0) {
        k->len += (size_t)n;
        return 1;
    }
    if (n == 0 || errno == ECONNRESET) return 0;
    return -1;
}

static void conn_consume(conn *k, size_t n)
{
    memmove(k->buf, k->buf + n, k->len - n);
    k->len -= n;
}

/* One response; for HEAD (head_only) no body is read. False on EOF or a
 * timeout before it was complete (r->body_len says how much came). */
static bool conn_read(conn *k, resp *r, bool head_only)
{
    memset(r, 0, sizeof *r);
    r->clen = -1;
    unsigned char *eoh;
    uint64_t deadline = now_ms() + 10000;
    while (!(eoh = memmem(k->buf, k->len, "\r\n\r\n", 4))) {
        int f = now_ms() > deadline ? -1 : conn_fill(k);
        if (f <= 0) {
            r->eof = f == 0;
            return false;
        }
    }
    size_t hl = (size_t)(eoh - k->buf) + 4;
    if (hl >= sizeof r->head) return false;
    memcpy(r->head, k->buf, hl);
    r->head[hl] = '\0';
    conn_consume(k, hl);
    sscanf(r->head, "HTTP/1.1 %d", &r->status);
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    if (cl) r->clen = atoll(cl + 18);
    r->close = strcasestr(r->head, "\r\nConnection: close\r\n") != NULL;
    size_t want = head_only || r->clen < 0 ? 0 : (size_t)r->clen;
    r->body = malloc(want + 1);
    assert_non_null(r->body);
    while (r->body_len < want) {
        if (k->len == 0) {
            int f = now_ms() > deadline ? -1 : conn_fill(k);
            if (f <= 0) {
                r->eof = f == 0;
                return false;
            }
        }
        size_t n = k->len < want - r->body_len ? k->len : want - r->body_len;
        memcpy(r->body + r->body_len, k->buf, n);
        r->body_len += n;
        conn_consume(k, n);
    }
    return true;
}

/* The server closes this connection (EOF or reset) within ms. */
static bool conn_sees_close(conn *k, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        k->len = 0;
        int f = conn_fill(k);
        if (f == 0) return true;
        if (f < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return true;
    }
    return false;
}

static bool fds_back_to(int baseline, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        if (count_fds() <= baseline) return true;
        pause_ms(5);
    }
    return false;
}

static void socket_large_file_intact_through_a_slow_reader(void **state)
{
    (void)state;
    /* More than the socket buffers hold, to a small receive buffer read in
     * small steps: sendfile meets EAGAIN again and again, and the
     * chunk-and-wait path carries the file on each time. */
    unsigned char *data = malloc(LARGE_SIZE);
    assert_non_null(data);
    fill_random(data, LARGE_SIZE, 99);
    put_file("root/large.bin", data, LARGE_SIZE);
    conn k;
    assert_true(conn_open(&k, 32 * 1024));
    assert_true(conn_send(&k, "GET /assets/large.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
    pause_ms(50); /* let the server fill what it can first */
    resp r;
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.clen, LARGE_SIZE);
    assert_int_equal(r.body_len, LARGE_SIZE);
    assert_memory_equal(r.body, data, LARGE_SIZE);
    free(r.body);
    /* A range in the middle, the same way: not a byte past its end (the
     * next answer on the connection would be corrupt). */
    assert_true(conn_send(&k, "GET /assets/large.bin HTTP/1.1\r\nHost: t\r\n"
                              "Range: bytes=1000-10000999\r\n\r\n"
                              "GET /text HTTP/1.1\r\nHost: t\r\n\r\n"));
    pause_ms(50);
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body_len, 10000000);
    assert_memory_equal(r.body, data + 1000, 10000000);
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "plain text", 10);
    free(r.body);
    free(data);
    char path[256];
    snprintf(path, sizeof path, "%s/large.bin", T.root);
    unlink(path);
    /* The connection is reusable: the body ended exactly where it should. */
    assert_true(conn_send(&k, "GET /text HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "plain text", 10);
    free(r.body);
    conn_close(&k);
}

static void socket_pipelined_answers_stay_in_order(void **state)
{
    (void)state;
    conn k;
    assert_true(conn_open(&k, 0));
    /* One write: two file bodies (sendfile and inline), a plain answer, a
     * HEAD of the large file, a range, and the large file again. */
    assert_true(conn_send(&k, "GET /assets/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /assets/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /text HTTP/1.1\r\nHost: t\r\n\r\n"
                              "HEAD /assets/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /assets/big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-"
                              "2000099\r\n\r\n"
                              "GET /blocking/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /text HTTP/1.1\r\nHost: t\r\n\r\n"));
    resp r;
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_SIZE);
    assert_memory_equal(r.body, T.big, BIG_SIZE);
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "Hello, static!\n", 15);
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_memory_equal(r.body, "plain text", 10);
    free(r.body);
    assert_true(conn_read(&k, &r, true));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.clen, BIG_SIZE);
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 206);
    assert_non_null(strstr(r.head, "Content-Range: bytes 100-2000099/3145728\r\n"));
    assert_int_equal(r.body_len, 2000000);
    assert_memory_equal(r.body, T.big + 100, 2000000);
    free(r.body);
    /* A blocking handler's file: handed over on the loop after its thread. */
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_SIZE);
    assert_memory_equal(r.body, T.big, BIG_SIZE);
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_memory_equal(r.body, "plain text", 10);
    free(r.body);
    conn_close(&k);
}

/* Where sendfile is not available (some file systems), pread and write
 * carry every byte: a range ending mid-file, then the next answer. */
static void socket_without_sendfile(void **state)
{
    (void)state;
    conn_test_no_sendfile(true);
    conn k;
    assert_true(conn_open(&k, 0));
    assert_true(conn_send(&k, "GET /assets/big.bin HTTP/1.1\r\nHost: t\r\n"
                              "Range: bytes=1000-1049999\r\n\r\n"
                              "GET /assets/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /text HTTP/1.1\r\nHost: t\r\n\r\n"));
    resp r;
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body_len, 1049000);
    assert_memory_equal(r.body, T.big + 1000, 1049000);
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_SIZE);
    assert_memory_equal(r.body, T.big, BIG_SIZE);
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_memory_equal(r.body, "plain text", 10);
    free(r.body);
    conn_close(&k);
    conn_test_no_sendfile(false);
}

static void socket_http10(void **state)
{
    (void)state;
    conn k;
    assert_true(conn_open(&k, 0));
    assert_true(conn_send(&k, "GET /assets/big.bin HTTP/1.0\r\n\r\n"));
    resp r;
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_SIZE);
    assert_memory_equal(r.body, T.big, BIG_SIZE);
    assert_true(r.close);
    free(r.body);
    assert_true(conn_sees_close(&k, 5000));
    conn_close(&k);
    /* Keep-alive asked for: kept, and the next answer follows the body. */
    assert_true(conn_open(&k, 0));
    assert_true(conn_send(&k, "GET /assets/big.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                              "GET /text HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.body_len, BIG_SIZE);
    assert_non_null(strstr(r.head, "Connection: keep-alive\r\n"));
    free(r.body);
    assert_true(conn_read(&k, &r, false));
    assert_memory_equal(r.body, "plain text", 10);
    free(r.body);
    conn_close(&k);
}

static void socket_client_leaving_mid_file(void **state)
{
    (void)state;
    int baseline = count_fds();
    for (int i = 0; i < 5; i++) {
        conn k;
        assert_true(conn_open(&k, 16 * 1024));
        assert_true(conn_send(&k, i % 2 ? "GET /blocking/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                                        : "GET /assets/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
        /* Some of the body, then away (with unread data: a reset). */
        uint64_t deadline = now_ms() + 5000;
        while (k.len < 100000 && now_ms() < deadline)
            if (conn_fill(&k) <= 0) break;
        assert_true(k.len >= 100000);
        conn_close(&k);
    }
    /* Every connection and its file closed in the server. */
    if (!fds_back_to(baseline, 5000)) fail_msg("fds: %d, baseline %d", count_fds(), baseline);
    /* Leaving while a blocking handler is still on its thread, before or
     * after it sent its file: the file is closed when the thread's answer
     * comes back to a gone client. */
    for (int i = 0; i < 4; i++) {
        conn k;
        assert_true(conn_open(&k, 16 * 1024));
        assert_true(conn_send(&k, i % 2 ? "GET /slowafter/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                                        : "GET /slow/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
        pause_ms(50);
        conn_close(&k);
    }
    pause_ms(400);
    if (!fds_back_to(baseline, 5000))
        fail_msg("fds after blocking handlers: %d, baseline %d", count_fds(), baseline);
    conn k;
    assert_true(conn_open(&k, 0));
    assert_true(conn_send(&k, "GET /assets/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
    resp r;
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.status, 200);
    free(r.body);
    conn_close(&k);
}

static void socket_file_truncated_while_sending_closes(void **state)
{
    (void)state;
    unsigned char *data = malloc(TRUNC_SIZE);
    assert_non_null(data);
    fill_random(data, TRUNC_SIZE, 7);
    put_file("root/trunc.bin", data, TRUNC_SIZE);
    int baseline = count_fds();
    conn k;
    assert_true(conn_open(&k, 16 * 1024));
    capture cap;
    capture_begin(&cap);
    vie_log_set_level(VIE_LOG_WARN);
    assert_true(conn_send(&k, "GET /trunc HTTP/1.1\r\nHost: t\r\n\r\n"));
    uint64_t deadline = now_ms() + 5000;
    while (!memmem(k.buf, k.len, "\r\n\r\n", 4) && now_ms() < deadline)
        if (conn_fill(&k) <= 0) break;
    char path[256];
    snprintf(path, sizeof path, "%s/trunc.bin", T.root);
    assert_int_equal(truncate(path, 1 << 20), 0);
    /* Read what comes until the server closes: fewer bytes than promised.
     * The bytes before the cut are the file's; those after it that were
     * already queued may read as zeros: sendfile queues page references,
     * and the truncation cleared those pages (sendfile's zero-copy
     * nature: a file changed while being sent is sent changed). */
    resp r;
    bool whole = conn_read(&k, &r, false);
    char *log = capture_end(&cap);
    assert_false(whole);
    assert_true(r.eof); /* closed, not stalled */
    assert_int_equal(r.status, 200);
    assert_int_equal(r.clen, TRUNC_SIZE);
    assert_true(r.body_len > 0);
    assert_true(r.body_len < TRUNC_SIZE);
    assert_memory_equal(r.body, data, r.body_len < (1u << 20) ? r.body_len : (1u << 20));
    assert_true(log_has_line(log, "file body ended", "bytes early", "closing", NULL));
    free(log);
    free(r.body);
    free(data);
    conn_close(&k);
    unlink(path);
    if (!fds_back_to(baseline, 5000)) fail_msg("fds: %d, baseline %d", count_fds(), baseline);
}

/* A graceful stop while a file is on its way: the file ends whole, then
 * the connection gets the short grace of an idle one (500 ms), not a
 * keep-alive timeout, so the stop does not wait for the drain timeout
 * (10 s here). */
static void socket_stop_during_a_file(void **state)
{
    (void)state;
    conn k;
    assert_true(conn_open(&k, 0));
    assert_true(conn_send(&k, "GET /assets/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
    uint64_t deadline = now_ms() + 5000;
    while (k.len < 4096 && now_ms() < deadline)
        if (conn_fill(&k) <= 0) break;
    vie_app_stop(S.app);
    resp r;
    assert_true(conn_read(&k, &r, false));
    assert_int_equal(r.body_len, HUGE_SIZE);
    static const unsigned char zeros[4096];
    for (size_t off = 0; off < HUGE_SIZE; off += sizeof zeros)
        assert_memory_equal(r.body + off, zeros, sizeof zeros); /* a sparse file */
    free(r.body);
    uint64_t t0 = now_ms();
    assert_true(conn_sees_close(&k, 4000));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 15;
    assert_int_equal(pthread_timedjoin_np(S.th, NULL, &ts), 0);
    S.running = false;
    if (now_ms() - t0 >= 6000)
        fail_msg("the stop took %llu ms after the body", (unsigned long long)(now_ms() - t0));
    conn_close(&k);
}

static void socket_write_timeout_closes_a_reader_that_stops(void **state)
{
    (void)state;
    int baseline = count_fds();
    conn k;
    assert_true(conn_open(&k, 16 * 1024));
    assert_true(conn_send(&k, "GET /assets/huge.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
    /* Read nothing: the server gives up after write_timeout_ms (400). */
    uint64_t t0 = now_ms();
    pause_ms(1200);
    /* Drain: the stream ends early (closed or reset). */
    size_t total = 0;
    uint64_t deadline = now_ms() + 5000;
    int f;
    while ((f = conn_fill(&k)) > 0 && now_ms() < deadline) {
        total += k.len;
        k.len = 0;
    }
    assert_int_equal(f, 0);
    assert_true(total < HUGE_SIZE);
    assert_true(now_ms() - t0 < 6000);
    conn_close(&k);
    if (!fds_back_to(baseline, 5000)) fail_msg("fds: %d, baseline %d", count_fds(), baseline);
}

int main(void)
{
    const struct CMUnitTest kit[] = {
        cmocka_unit_test(mime_table_sorted_and_complete),
        cmocka_unit_test(serves_a_file_with_validators),
        cmocka_unit_test(head_has_the_length_and_no_body),
        cmocka_unit_test(range_table),
        cmocka_unit_test(if_none_match),
        cmocka_unit_test(if_modified_since),
        cmocka_unit_test(http_date_forms),
        cmocka_unit_test(if_match_and_unmodified_since),
        cmocka_unit_test(if_range),
        cmocka_unit_test(etag_can_be_off),
        cmocka_unit_test(traversal_refused_both_ways),
        cmocka_unit_test(permission_denied_is_404),
        cmocka_unit_test(served_where_openat2_is_refused),
        cmocka_unit_test(index_and_redirect),
        cmocka_unit_test(handler_refuses_on_its_own),
        cmocka_unit_test(only_get_and_head),
        cmocka_unit_test(misconfigured_routes_answer_500_and_say_why),
        cmocka_unit_test(static_new_validates),
        cmocka_unit_test(send_file_contract),
        cmocka_unit_test(send_file_shorter_than_its_size_is_500),
        cmocka_unit_test(no_descriptor_left_open),
        cmocka_unit_test_setup_teardown(socket_large_file_intact_through_a_slow_reader,
                                        server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(socket_pipelined_answers_stay_in_order, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(socket_without_sendfile, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(socket_http10, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(socket_client_leaving_mid_file, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(socket_file_truncated_while_sending_closes, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(socket_stop_during_a_file, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(socket_write_timeout_closes_a_reader_that_stops,
                                        server_setup, server_teardown),
    };
    return cmocka_run_group_tests(kit, group_setup, group_teardown);
}
