/* static: serve the files under a root directory (vie_static_handler).
 *
 * Containment: the path comes from the route's catch-all, percent-decoded,
 * and is opened beneath root's directory fd, never as a path string from
 * "/". A path with an empty, "." or ".." component, a leading '/' or a NUL
 * byte is refused (404) before any system call, and the kernel enforces
 * the rest: openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or, where
 * the kernel lacks openat2 (or a seccomp filter refuses it), one openat
 * with O_NOFOLLOW per component. So
 * no symlink under root is followed, whether it points out of root or
 * not (nginx's "disable_symlinks on"): a link is answered 404. Root itself
 * may be a symlink; it is resolved once, by vie_static_new.
 *
 * Files are opened per request on the loop. open and fstat are blocking
 * disk I/O, accepted as nginx accepts them (without its thread pools): for
 * a served tree they hit the kernel's caches. The body goes out with
 * sendfile(2) from the connection (vie_send_file).
 *
 * Conditional requests follow RFC 9110 13.2.2: If-Match, else
 * If-Unmodified-Since (412); If-None-Match, else If-Modified-Since (304);
 * then If-Range and Range. A single byte range is served 206; several
 * ranges get the whole file 200 (no multipart/byteranges); an invalid
 * Range header is ignored (200), an unsatisfiable one is 416.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#endif

#include "core/ctx.h"
#include "core/log.h"
#include "http/writer.h"
#include "mw/mime.h"
#include "mw/mw.h"

struct vie_static {
    int rootfd;          /* O_PATH | O_DIRECTORY */
    char *root;          /* as given, for logs */
    char *index;         /* NULL: no index file */
    char *cache_control; /* NULL: not sent */
    char *param;
    bool etag;
    atomic_bool warned_param; /* the route has no such catch-all: logged once */
};

/* Cleared when openat2 turns out unusable (ENOSYS, or EPERM from a
 * filter while openat works). */
static atomic_bool have_openat2 = true;

/* For tests (declared there): take the openat-per-component path, as on
 * kernels without openat2. */
void static_test_force_walk(bool on);
void static_test_force_walk(bool on)
{
    atomic_store(&have_openat2, !on);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

void vie_static_opts_init(vie_static_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->index = "index.html";
    o->param = "path";
    o->etag = true;
}

static bool valid_field_value(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
    }
    return true;
}

void vie_static_free(vie_static *s)
{
    if (!s) return;
    if (s->rootfd >= 0) close(s->rootfd);
    free(s->root);
    free(s->index);
    free(s->cache_control);
    free(s->param);
    free(s);
}

int vie_static_new(const vie_static_opts *o, vie_static **out)
{
    if (out) *out = NULL;
    if (!o || !out) {
        LOG_ERROR("static: vie_static_new refused: %s is NULL", !o ? "the options" : "out");
        return VIE_EINVAL;
    }
    if (!o->root || !*o->root) {
        LOG_ERROR("static: option root is required (the directory to serve)");
        return VIE_EINVAL;
    }
    const char *index = o->index ? o->index : "";
    if (strchr(index, '/') || !strcmp(index, ".") || !strcmp(index, "..") ||
        strlen(index) > NAME_MAX) {
        LOG_ERROR("static: option index \"%s\" must be a file name (no '/', not \".\" or \"..\")",
                  index);
        return VIE_EINVAL;
    }
    if (o->cache_control && !valid_field_value(o->cache_control)) {
        LOG_ERROR("static: option cache_control holds a control character");
        return VIE_EINVAL;
    }
    const char *param = o->param && *o->param ? o->param : "path";
    /* O_PATH: a handle to resolve names beneath, not to read; a root that
     * is a symlink is followed here, once. */
    int fd = open(o->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        LOG_ERROR("static: option root \"%s\": %s", o->root,
                  e == ENOTDIR ? "not a directory" : strerror(e));
        return VIE_EINVAL;
    }
    vie_static *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return VIE_ENOMEM;
    }
    s->rootfd = fd;
    s->root = strdup(o->root);
    s->index = *index ? strdup(index) : NULL;
    s->cache_control = o->cache_control && *o->cache_control ? strdup(o->cache_control) : NULL;
    s->param = strdup(param);
    s->etag = o->etag;
    if (!s->root || (*index && !s->index) ||
        (o->cache_control && *o->cache_control && !s->cache_control) || !s->param) {
        vie_static_free(s);
        return VIE_ENOMEM;
    }
    *out = s;
    return VIE_OK;
}

/* ------------------------------------------------------------------ */
/* Dates (RFC 9110 5.6.7)                                              */

static const char day_names[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil): no timegm, so no dependence on TZ. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void put_digits(char *p, int v, int n)
{
    while (n--) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* IMF-fixdate of t into out (30 bytes, NUL-terminated), by hand: no
 * locale. False when the year does not fit in four digits. */
static bool format_http_date(time_t t, char out[30])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) return false;
    memcpy(out, "Sun, 00 Jan 0000 00:00:00 GMT", 30);
    memcpy(out, day_names[tm.tm_wday], 3);
    put_digits(out + 5, tm.tm_mday, 2);
    memcpy(out + 8, month_names[tm.tm_mon], 3);
    put_digits(out + 12, tm.tm_year + 1900, 4);
    put_digits(out + 17, tm.tm_hour, 2);
    put_digits(out + 20, tm.tm_min, 2);
    put_digits(out + 23, tm.tm_sec, 2);
    return true;
}

static bool digits(const char *p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return true;
}

static int month_of(const char *p)
{
    for (int m = 0; m < 12; m++)
        if (!memcmp(p, month_names[m], 3)) return m + 1;
    return 0;
}

/* "HH:MM:SS" */
static bool parse_time(const char *p, int *h, int *mi, int *s)
{
    return digits(p, 2, h) && p[2] == ':' && digits(p + 3, 2, mi) && p[5] == ':' &&
           digits(p + 6, 2, s) && *h < 24 && *mi < 60 && *s <= 60;
}

/* An HTTP-date in any of its three forms (IMF-fixdate, RFC 850, asctime),
 * as seconds since the epoch. */
bool static_parse_http_date(const char *v, size_t n, int64_t *out);
bool static_parse_http_date(const char *v, size_t n, int64_t *out)
{
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    char b[40];
    if (n < 20 || n >= sizeof b) return false;
    memcpy(b, v, n);
    b[n] = '\0';
    const char *p = b;
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    size_t day_len = (size_t)(p - b);
    int d, m, y, hh, mi, ss;
    const char *rest;
    if (*p == ',' && day_len == 3 && (size_t)(b + n - p) == 26) {
        /* IMF-fixdate: ", 06 Nov 1994 08:49:37 GMT" */
        p += 2;
        if (p[-1] != ' ' || !digits(p, 2, &d) || p[2] != ' ' || !(m = month_of(p + 3)) ||
            p[6] != ' ' || !digits(p + 7, 4, &y) || p[11] != ' ' ||
            !parse_time(p + 12, &hh, &mi, &ss))
            return false;
        rest = p + 20;
    } else if (*p == ',' && day_len >= 6 && (size_t)(b + n - p) == 24) {
        /* RFC 850: ", 06-Nov-94 08:49:37 GMT" (two-digit years: 70-99 are
         * the 1900s, the rest the 2000s) */
        p += 2;
        if (p[-1] != ' ' || !digits(p, 2, &d) || p[2] != '-' || !(m = month_of(p + 3)) ||
            p[6] != '-' || !digits(p + 7, 2, &y) || p[9] != ' ' ||
            !parse_time(p + 10, &hh, &mi, &ss))
            return false;
        y += y >= 70 ? 1900 : 2000;
        rest = p + 18;
    } else if (*p == ' ' && day_len == 3 && (size_t)(b + n - p) == 21) {
        /* asctime: " Nov  6 08:49:37 1994" */
        p++;
        if (!(m = month_of(p)) || p[3] != ' ') return false;
        if (p[4] == ' ') {
            if (!digits(p + 5, 1, &d)) return false;
        } else if (!digits(p + 4, 2, &d)) {
            return false;
        }
        if (p[6] != ' ' || !parse_time(p + 7, &hh, &mi, &ss) || p[15] != ' ' ||
            !digits(p + 16, 4, &y))
            return false;
        rest = " GMT";
    } else {
        return false;
    }
    if (strcmp(rest, " GMT") != 0 || d < 1 || d > 31) return false;
    if (ss == 60) ss = 59; /* a leap second compares as its minute's last */
    *out = days_from_civil(y, m, d) * 86400 + hh * 3600 + mi * 60 + ss;
    return true;
}

/* ------------------------------------------------------------------ */
/* Entity tags (RFC 9110 8.8.3, 13.1.1)                                */

/* Whether the list v (If-Match, If-None-Match: "*" or entity-tags
 * separated by commas) holds etag. weak: weak comparison (W/ ignored);
 * else strong (a weak tag never matches). etag NULL: no tag matches, "*"
 * still does. A malformed list matches nothing. */
static bool etag_list_match(const char *v, size_t n, const char *etag, bool weak)
{
    const char *p = v, *end = v + n;
    size_t elen = etag ? strlen(etag) : 0;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end) return false;
        if (*p == '*') return true;
        bool is_weak = false;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            is_weak = true;
            p += 2;
        }
        if (p == end || *p != '"') return false;
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q) return false;
        size_t tlen = (size_t)(q - p + 1); /* with its quotes */
        if (etag && (weak || !is_weak) && tlen == elen && !memcmp(p, etag, elen)) return true;
        p = q + 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end && *p != ',') return false;
    }
}

/* Every field line called name, as one list: a list header may be split
 * over several lines (RFC 9110 5.3). */
static bool header_list_match(const vie_ctx *c, const char *name, const char *etag, bool weak,
                              bool *present)
{
    size_t nl = strlen(name);
    vie_str hn, hv;
    *present = false;
    for (size_t i = 0; vie_header_at(c, i, &hn, &hv); i++) {
        if (hn.len != nl || strncasecmp(hn.ptr, name, nl) != 0) continue;
        *present = true;
        if (etag_list_match(hv.ptr, hv.len, etag, weak)) return true;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Range (RFC 9110 14.2)                                               */

typedef enum range_kind {
    RANGE_IGNORE = 0,    /* no usable Range: the whole file, 200 */
    RANGE_OK,            /* one satisfiable range: 206 */
    RANGE_UNSATISFIABLE, /* 416 */
} range_kind;

/* Decimal digits at *p, saturating at UINT64_MAX; false if none. */
static bool range_num(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    while (*p < end && **p >= '0' && **p <= '9') {
        unsigned d = (unsigned)(**p - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
        (*p)++;
    }
    *v = x;
    return *p > s;
}

/* The Range value v against a file of size bytes. */
int static_parse_range(const char *v, size_t n, uint64_t size, uint64_t *off, uint64_t *len);
int static_parse_range(const char *v, size_t n, uint64_t size, uint64_t *off, uint64_t *len)
{
    const char *p = v, *end = v + n;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end - p < 6 || strncasecmp(p, "bytes=", 6) != 0) return RANGE_IGNORE;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    /* Several ranges: the whole file (documented; no multipart). */
    for (const char *q = p; q < end; q++) /* a loop: GCC -O2 misjudges memchr's bound here */
        if (*q == ',') return RANGE_IGNORE;
    uint64_t a, b;
    if (range_num(&p, end, &a)) {
        if (p == end || *p != '-') return RANGE_IGNORE;
        p++;
        if (p == end) {
            b = UINT64_MAX;
        } else if (!range_num(&p, end, &b) || p != end || b < a) {
            return RANGE_IGNORE;
        }
        if (a >= size) return RANGE_UNSATISFIABLE;
        if (b >= size) b = size - 1;
        *off = a;
        *len = b - a + 1;
        return RANGE_OK;
    }
    if (p == end || *p != '-') return RANGE_IGNORE;
    p++;
    if (!range_num(&p, end, &b) || p != end) return RANGE_IGNORE;
    if (b == 0 || size == 0) return RANGE_UNSATISFIABLE;
    if (b > size) b = size;
    *off = size - b;
    *len = b;
    return RANGE_OK;
}

/* ------------------------------------------------------------------ */
/* Opening beneath root                                                */

#define OPEN_FILE_FLAGS (O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC)

/* Open rel (no leading '/', no empty, "." or ".." component) beneath
 * dirfd without following any symlink. O_NONBLOCK: a FIFO must not block
 * the loop in open (it is refused after fstat). Returns the fd or
 * -errno. */
static int open_walk(int dirfd, const char *rel);

static int open_beneath(int dirfd, const char *rel)
{
#if defined(SYS_openat2) && defined(RESOLVE_BENEATH)
    if (atomic_load_explicit(&have_openat2, memory_order_relaxed)) {
        struct open_how how = {
            .flags = OPEN_FILE_FLAGS,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
        if (fd >= 0) return (int)fd;
        if (errno != ENOSYS && errno != EPERM) return -errno;
        /* ENOSYS: an old kernel. EPERM: most likely a seccomp filter that
         * does not know openat2 (older container runtimes); if openat
         * gets past it, openat2 is filtered, not the file refused. */
        int e = errno;
        int walked = open_walk(dirfd, rel);
        if (e == ENOSYS || walked != -EPERM) {
            if (atomic_exchange(&have_openat2, false) == true)
                LOG_INFO("static: openat2 is %s; opening files one path component at a time",
                         e == ENOSYS ? "not available" : "refused (a seccomp filter?)");
        }
        return walked;
    }
#endif
    return open_walk(dirfd, rel);
}

/* One component at a time: intermediate ones as O_PATH directories (a
 * symlink there is not a directory: ENOTDIR), the last with O_NOFOLLOW (a
 * symlink: ELOOP). */
static int open_walk(int dirfd, const char *rel)
{
    int dfd = dirfd;
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash) break;
        char comp[NAME_MAX + 1];
        size_t n = (size_t)(slash - p);
        if (n == 0 || n > NAME_MAX) {
            if (dfd != dirfd) close(dfd);
            return n ? -ENAMETOOLONG : -ENOENT;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int nfd = openat(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (dfd != dirfd) close(dfd);
        if (nfd < 0) return -e;
        dfd = nfd;
        p = slash + 1;
    }
    int fd = openat(dfd, p, OPEN_FILE_FLAGS);
    int e = errno;
    if (dfd != dirfd) close(dfd);
    return fd >= 0 ? fd : -e;
}

/* A request path (decoded catch-all) that may be opened: no NUL, no
 * leading '/', no empty, "." or ".." component but a final empty one (a
 * trailing slash, which *slash reports). */
static bool path_acceptable(const char *p, size_t n, bool *slash)
{
    *slash = n == 0 || p[n - 1] == '/';
    if (n == 0) return true;
    if (n >= PATH_MAX || memchr(p, '\0', n) || p[0] == '/') return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/') continue;
        size_t len = i - start;
        if (len == 0 && i < n) return false; /* "a//b" */
        if (len > NAME_MAX) return false;
        if (len == 1 && p[start] == '.') return false;
        if (len == 2 && p[start] == '.' && p[start + 1] == '.') return false;
        start = i + 1;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* The handler                                                         */

static vie_status not_found(vie_ctx *c)
{
    return vie_send_problem(c, 404, "no such file");
}

static vie_status open_failed(vie_ctx *c, const vie_static *s, const char *rel, int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ELOOP: /* a symlink */
    case EXDEV: /* would leave root */
    case EACCES:
    case EPERM:
    case ENAMETOOLONG:
    case ENXIO:
    case ENODEV:
    case EISDIR: return not_found(c);
    default:
        LOG_ERROR("static: opening \"%s\" under %s: %s", rel, s->root, strerror(err));
        return vie_send_problem(c, 500, "the file could not be opened");
    }
}

static bool route_has_param(const vie_ctx *c, const char *name)
{
    for (uint32_t i = 0; i < c->match.n_params; i++)
        if (!strcmp(c->match.params[i].name, name)) return true;
    return false;
}

/* 301 to the directory's slash form, keeping the query. */
static vie_status redirect_to_slash(vie_ctx *c)
{
    vie_str path = vie_path(c), q = vie_query(c);
    /* "//host" or "/\host" would be read as another site by browsers. */
    if (path.len < 1 || path.ptr[0] != '/' ||
        (path.len > 1 && (path.ptr[1] == '/' || path.ptr[1] == '\\')))
        return not_found(c);
    size_t n = path.len + 1 + (q.ptr ? q.len + 1 : 0);
    char *loc = vie_alloc(c, n + 1);
    if (!loc) return vie_send_problem(c, 500, "out of memory");
    memcpy(loc, path.ptr, path.len);
    loc[path.len] = '/';
    if (q.ptr) {
        loc[path.len + 1] = '?';
        memcpy(loc + path.len + 2, q.ptr, q.len);
    }
    loc[n] = '\0';
    if (vie_header_add(c, "Location", loc) != VIE_OK)
        return vie_send_problem(c, 500, "the redirect cannot be made");
    return vie_send(c, 301, NULL, NULL, 0);
}

/* The validators every answer about the file carries (200, 206, 304). */
static void add_validators(vie_ctx *c, const vie_static *s, const char *etag, const char *lastmod)
{
    if (etag) vie_header_add(c, "ETag", etag);
    if (lastmod) vie_header_add(c, "Last-Modified", lastmod);
    if (s->cache_control) vie_header_add(c, "Cache-Control", s->cache_control);
}

vie_status vie_static_handler(vie_ctx *c, void *arg)
{
    vie_static *s = arg;
    if (!s) {
        LOG_ERROR("static: route %s has no vie_static (pass one as the handler's arg)",
                  vie_route_label(c) ? vie_route_label(c) : "?");
        return vie_send_problem(c, 500, "static files are not configured for this route");
    }
    int method = c->req.method_id;
    if (method != HTTP_M_GET && method != HTTP_M_HEAD) {
        vie_header_add(c, "Allow", "GET, HEAD");
        return vie_send_problem(c, 405, "static files are read with GET and HEAD");
    }
    vie_str p = vie_param(c, s->param);
    if (!p.ptr) {
        if (route_has_param(c, s->param)) return not_found(c); /* an escape that does not decode */
        if (!atomic_exchange(&s->warned_param, true))
            LOG_ERROR("static: route %s has no catch-all named \"%s\" (the pattern must end with "
                      "\"*%s\"); answering 500",
                      vie_route_label(c) ? vie_route_label(c) : "?", s->param, s->param);
        return vie_send_problem(c, 500, "static files are misconfigured for this route");
    }
    bool slash;
    if (!path_acceptable(p.ptr, p.len, &slash)) return not_found(c);
    /* vie_param's copy is ours: drop the trailing slash in place. */
    char *rel = (char *)p.ptr;
    size_t rel_len = p.len;
    if (rel_len && rel[rel_len - 1] == '/') rel[--rel_len] = '\0';

    int fd = rel_len ? open_beneath(s->rootfd, rel) : -EISDIR;
    struct stat st;
    const char *name = rel; /* the file whose extension gives the type */
    size_t name_len = rel_len;
    if (fd == -EISDIR || (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))) {
        /* A directory: its index, through its slash form. */
        if (!slash) {
            close(fd);
            return redirect_to_slash(c);
        }
        int dirfd = fd >= 0 ? fd : s->rootfd;
        int ifd = s->index ? openat(dirfd, s->index, OPEN_FILE_FLAGS) : -1;
        int e = errno;
        if (fd >= 0) close(fd);
        if (!s->index) return not_found(c);
        if (ifd < 0) return open_failed(c, s, s->index, e);
        fd = ifd;
        name = s->index;
        name_len = strlen(s->index);
    } else if (fd < 0) {
        return open_failed(c, s, rel, -fd);
    } else if (slash) {
        close(fd);
        return not_found(c); /* "file.txt/" */
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return open_failed(c, s, rel, e);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return not_found(c);
    }

    uint64_t size = (uint64_t)st.st_size;
    int64_t mtime = (int64_t)st.st_mtim.tv_sec;
    uint64_t mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    /* Strong: the same size, modification time (ns) and inode stand for
     * the same bytes (as nginx and Apache assume). */
    char etag_buf[80], date_buf[30];
    const char *etag = NULL, *lastmod = NULL;
    if (s->etag) {
        snprintf(etag_buf, sizeof etag_buf, "\"%llx-%llx-%llx\"", (unsigned long long)size,
                 (unsigned long long)mtime_ns, (unsigned long long)st.st_ino);
        etag = etag_buf;
    }
    if (format_http_date((time_t)mtime, date_buf)) lastmod = date_buf;

    /* Preconditions, in RFC 9110 13.2.2's order. */
    bool present;
    int64_t when;
    bool match = header_list_match(c, "If-Match", etag, false, &present);
    if (present) {
        if (!match) {
            close(fd);
            return vie_send_problem(c, 412, "If-Match does not match the file's ETag");
        }
    } else {
        vie_str ius = vie_header(c, "If-Unmodified-Since");
        if (ius.ptr && static_parse_http_date(ius.ptr, ius.len, &when) && mtime > when) {
            close(fd);
            return vie_send_problem(c, 412, "the file was modified since If-Unmodified-Since");
        }
    }
    bool not_modified = header_list_match(c, "If-None-Match", etag, true, &present);
    if (!present) {
        vie_str ims = vie_header(c, "If-Modified-Since");
        not_modified = ims.ptr && static_parse_http_date(ims.ptr, ims.len, &when) && mtime <= when;
    }
    if (not_modified) {
        close(fd);
        add_validators(c, s, etag, lastmod);
        return vie_send(c, 304, NULL, NULL, 0);
    }

    uint64_t off = 0, len = size;
    int status = 200;
    vie_str range = vie_header(c, "Range");
    if (range.ptr && method == HTTP_M_GET) { /* range handling is defined for GET only */
        bool use = true;
        vie_str ifr = vie_header(c, "If-Range");
        if (ifr.ptr) {
            /* An entity-tag compares strongly; a date must be the exact
             * Last-Modified. Otherwise the whole file. */
            size_t k = 0;
            while (k < ifr.len && (ifr.ptr[k] == ' ' || ifr.ptr[k] == '\t'))
                k++;
            if (k < ifr.len && (ifr.ptr[k] == '"' || ifr.ptr[k] == 'W'))
                use = etag_list_match(ifr.ptr + k, ifr.len - k, etag, false) && ifr.ptr[k] == '"';
            else
                use = static_parse_http_date(ifr.ptr, ifr.len, &when) && when == mtime;
        }
        int rk = use ? static_parse_range(range.ptr, range.len, size, &off, &len) : RANGE_IGNORE;
        char cr[80];
        if (rk == RANGE_UNSATISFIABLE) {
            close(fd);
            snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
            vie_header_add(c, "Content-Range", cr);
            vie_header_add(c, "Accept-Ranges", "bytes");
            return vie_send_problem(c, 416, "the range is outside the file");
        }
        if (rk == RANGE_OK) {
            status = 206;
            snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)off,
                     (unsigned long long)(off + len - 1), (unsigned long long)size);
            vie_header_add(c, "Content-Range", cr);
        } else {
            off = 0;
            len = size;
        }
    }
    add_validators(c, s, etag, lastmod);
    vie_header_add(c, "Accept-Ranges", "bytes");
    return writer_send_file_owned(c, status, mime_type(name, name_len), fd, off, len);
}
