/* rate_limit's Redis backend against a real redis-server the test starts
 * on a free loopback port (skipped, saying so, only when the binary is
 * not installed):
 * - the Lua script decides exactly as gcra_decide and the local table on
 *   the same (key, time) sequences, field by field, over hundreds of
 *   steps with bursts and idle gaps, up to the largest values allowed;
 * - a redis layer and a local layer answer the same requests with the
 *   same statuses and RateLimit / Retry-After fields (clock: local, with
 *   injected times);
 * - NOSCRIPT (SCRIPT FLUSH) is survived: the script is loaded again and
 *   the decision made; keys, prefix, hashing of long values, db and
 *   expiry are as documented; limiters share connections per server;
 *   unix sockets and host names connect;
 * - errors: connection refused and a stopped server (timeout) are decided
 *   by on_backend_error (allow: 200 without fields; deny: 503 with
 *   Retry-After), counted by kind, logged once per incident, and the
 *   recovery is logged once when the server works again; a connection
 *   that answers nothing for long is made again;
 * - the YAML reader and vie_use_rate_limit refuse bad Redis options;
 *   registering and freezing never connect, a worker's start does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "config/cfg.h"
#include "core/app.h"
#include "mw/gcra.h"
#include "mw/mw.h"
#include "mw/rate_limit_redis.h"
#include "vie/vie_mw.h"
#include "vie/vie_test.h"

#include "log_capture.h"

#define US 1000ULL /* ns */

/* ------------------------------------------------------------------ */
/* The redis-server of this test                                       */

static pid_t redis_pid;
static int redis_port;
static char redis_addr[32];
static char redis_sock[64]; /* the same server on a unix socket */
static bool no_redis;       /* redis-server is not installed: every test skips */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static redisContext *sync_connect(void)
{
    struct timeval tv = {1, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (r && r->err) {
        redisFree(r);
        return NULL;
    }
    return r;
}

static int start_redis(void **state)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: redis-server is not installed (Debian package redis-server): "
                        "the Redis backend tests do not run\n");
        no_redis = true;
        return 0;
    }
    redis_port = free_port();
    if (redis_port <= 0) return -1;
    snprintf(redis_addr, sizeof redis_addr, "127.0.0.1:%d", redis_port);
    snprintf(redis_sock, sizeof redis_sock, "/tmp/vie-rl-test-%ld.sock", (long)getpid());
    char port[16];
    snprintf(port, sizeof port, "%d", redis_port);
    redis_pid = fork();
    if (redis_pid < 0) return -1;
    if (redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that crashes leaves no server behind */
        freopen("/dev/null", "w", stdout);
        execlp("redis-server", "redis-server", "--port", port, "--save", "", "--appendonly", "no",
               "--bind", "127.0.0.1", "--unixsocket", redis_sock, "--unixsocketperm", "700",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) { /* at most 10 s */
        redisContext *r = sync_connect();
        if (r) {
            redisReply *rep = redisCommand(r, "PING");
            bool up = rep && rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");
            freeReplyObject(rep);
            redisFree(r);
            if (up) return 0;
        }
        usleep(50000);
    }
    fprintf(stderr, "redis-server on port %d did not answer PING within 10 s\n", redis_port);
    return -1;
}

static int stop_redis(void **state)
{
    if (redis_pid <= 0) return 0;
    kill(redis_pid, SIGCONT);
    kill(redis_pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) return 0;
        usleep(50000);
    }
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    return 0;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (no_redis) skip();                                                                      \
    } while (0)

static redisReply *cmd(redisContext *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(r, fmt, ap);
    va_end(ap);
    if (!rep) fail_msg("redis command %s: %s", fmt, r->errstr);
    return rep;
}

static long long cmd_int(redisContext *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(r, fmt, ap);
    va_end(ap);
    if (!rep || rep->type != REDIS_REPLY_INTEGER)
        fail_msg("redis command %s: not an integer (%s)", fmt,
                 rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* ------------------------------------------------------------------ */
/* The script against gcra_decide and the local table                  */

static uint64_t xs_state;
static uint64_t xs(void)
{
    xs_state ^= xs_state << 13;
    xs_state ^= xs_state >> 7;
    xs_state ^= xs_state << 17;
    return xs_state;
}

static uint64_t table_now;
static uint64_t table_clock(void)
{
    return table_now;
}

static void script_matches_gcra_decide(void **state)
{
    NEED_REDIS();
    static const struct {
        uint64_t T; /* µs */
        uint32_t burst;
    } cases[] = {
        {1000, 1},                      /* 1000/s, no burst */
        {1000, 5},                      /* 1000/s */
        {333333, 3},                    /* 3/s: T does not divide a second */
        {7, 10},                        /* near the finest rate */
        {1, 1},                         /* the finest: 1000000/s */
        {1000000, 100},                 /* 1/s, a large burst */
        {3600000000ULL, 2},             /* 1/h */
        {123456789, 2000000},           /* a huge burst: remaining up to 2e6 */
        {RLR_MAX_WINDOW_US / 4, 4},     /* the largest window */
        {RLR_MAX_WINDOW_US / 3 - 1, 3}, /* the largest, T odd */
    };
    enum { KEYS = 3, STEPS = 300 };
    redisContext *r = sync_connect();
    assert_non_null(r);
    redisReply *rep = cmd(r, "SCRIPT LOAD %s", rlr_script);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    char sha[41];
    snprintf(sha, sizeof sha, "%s", rep->str);
    freeReplyObject(rep);

    size_t tsize = gcra_table_size(64);
    void *mem = aligned_alloc(64, (tsize + 63) & ~(size_t)63);
    assert_non_null(mem);
    unsigned long allowed_total = 0, limited_total = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const uint64_t T = cases[ci].T;
        const uint32_t burst = cases[ci].burst;
        memset(mem, 0, tsize);
        gcra_table *table = gcra_table_init(mem, 64);
        uint64_t tat[KEYS] = {0};
        /* a realistic epoch time in µs, leaving room for the idle gaps */
        uint64_t now = 1700000000000000ULL;
        xs_state = 0x9e3779b97f4a7c15ULL + ci;
        unsigned allowed = 0, limited = 0;
        for (int step = 0; step < STEPS; step++) {
            uint64_t kp = xs() % 100;
            int k = kp < 70 ? 0 : kp < 85 ? 1 : 2; /* one busy key, two others */
            uint64_t pick = xs() % 100, inc;
            uint64_t some = burst < 4 ? burst : 4;
            if (pick < 55)
                inc = 0; /* a burst: same instant */
            else if (pick < 75)
                inc = xs() % (T / 2 + 1); /* less than one interval */
            else if (pick < 87)
                inc = T; /* exactly one */
            else if (pick < 97)
                inc = xs() % (T * some + 1); /* part of a refill */
            else
                inc = T * burst + xs() % (T + 1); /* idle: full again */
            if (now + inc >= RLR_MAX_NOW_US) inc = 0;
            now += inc;

            gcra_result want, tab;
            uint64_t out;
            gcra_decide(T, burst, tat[k], now, &out, &want);
            tat[k] = out;
            table_now = now; /* the table is unit-free: here µs */
            gcra_table_decide(table, (uint64_t)k + 1, T, burst, table_clock, &tab);

            char key[64];
            snprintf(key, sizeof key, "eq:%zu:%d", ci, k);
            rep = cmd(r, "EVALSHA %s 1 %s %llu %u %llu", sha, key, (unsigned long long)T, burst,
                      (unsigned long long)now);
            if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4)
                fail_msg("case %zu step %d: reply type %d (%s)", ci, step, rep->type,
                         rep->type == REDIS_REPLY_ERROR ? rep->str : "");
            long long got[4];
            for (int i = 0; i < 4; i++)
                got[i] = rep->element[i]->integer;
            freeReplyObject(rep);
            if (got[0] != want.allowed || (uint64_t)got[1] != want.remaining ||
                (uint64_t)got[2] != want.retry_after_ns || (uint64_t)got[3] != want.reset_ns)
                fail_msg("case %zu (T %llu, burst %u) step %d key %d now %llu: script {%lld, %lld, "
                         "%lld, %lld}, gcra_decide {%d, %u, %llu, %llu}",
                         ci, (unsigned long long)T, burst, step, k, (unsigned long long)now, got[0],
                         got[1], got[2], got[3], want.allowed, want.remaining,
                         (unsigned long long)want.retry_after_ns,
                         (unsigned long long)want.reset_ns);
            if (tab.allowed != want.allowed || tab.remaining != want.remaining ||
                tab.retry_after_ns != want.retry_after_ns || tab.reset_ns != want.reset_ns)
                fail_msg("case %zu step %d: the local table differs from gcra_decide", ci, step);
            /* the stored TAT is gcra_decide's, as a decimal string */
            rep = cmd(r, "GET %s", key);
            if (want.allowed || rep->type == REDIS_REPLY_STRING) {
                char t[24];
                snprintf(t, sizeof t, "%llu", (unsigned long long)tat[k]);
                if (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, t))
                    fail_msg("case %zu step %d: stored TAT %s, want %s", ci, step,
                             rep->type == REDIS_REPLY_STRING ? rep->str : "(none)", t);
            }
            freeReplyObject(rep);
            if (want.allowed)
                allowed++;
            else
                limited++;
        }
        /* each sequence exercised both outcomes (large bursts hardly
         * run dry: those are there for the large values) */
        if (allowed < 20 || (burst <= 10 && limited < 20))
            fail_msg("case %zu: %u allowed, %u limited: not a useful sequence", ci, allowed,
                     limited);
        allowed_total += allowed;
        limited_total += limited;
    }
    print_message("compared %lu allowed and %lu limited decisions\n", allowed_total, limited_total);
    free(mem);
    redisFree(r);
}

/* The script reads Redis TIME when no time is given, and expires a key
 * a second after its bucket is full again. */
static void script_time_and_expiry(void **state)
{
    NEED_REDIS();
    redisContext *r = sync_connect();
    assert_non_null(r);
    cmd_int(r, "DEL %s", "exp:a");
    /* T = 2 s, burst 3: after one request the bucket is full in 2 s */
    redisReply *rep = cmd(r, "EVAL %s 1 %s %s %s %s", rlr_script, "exp:a", "2000000", "3", "");
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep->element[0]->integer, 1);
    assert_int_equal(rep->element[1]->integer, 2);
    assert_int_equal(rep->element[3]->integer, 2000000);
    freeReplyObject(rep);
    long long pttl = cmd_int(r, "PTTL %s", "exp:a");
    if (pttl <= 2000 || pttl > 2000 + RLR_EXPIRE_SLACK_MS)
        fail_msg("PTTL %lld, want (2000, 3000]", pttl);
    /* the stored TAT is Redis TIME + T */
    rep = cmd(r, "TIME");
    uint64_t now = strtoull(rep->element[0]->str, NULL, 10) * 1000000 +
                   strtoull(rep->element[1]->str, NULL, 10);
    freeReplyObject(rep);
    rep = cmd(r, "GET %s", "exp:a");
    uint64_t tat = strtoull(rep->str, NULL, 10);
    freeReplyObject(rep);
    if (tat < now + 2000000 - 5000000 || tat > now + 2000000)
        fail_msg("TAT %llu is not Redis TIME (%llu) + 2 s", (unsigned long long)tat,
                 (unsigned long long)now);
    redisFree(r);
}

/* ------------------------------------------------------------------ */
/* Layers                                                              */

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static vie_status ok(vie_ctx *c, void *a)
{
    return vie_send_text(c, 200, "ok");
}

static char prefix_buf[64];
static const char *prefix(const char *what)
{
    snprintf(prefix_buf, sizeof prefix_buf, "t%ld:%s:", (long)getpid(), what);
    return prefix_buf;
}

static vie_rate_limit_opts redis_opts(double rate, uint32_t burst, const char *address)
{
    vie_rate_limit_opts o;
    vie_rate_limit_opts_init(&o);
    o.rate = rate;
    o.burst = burst;
    o.key = VIE_RATE_KEY_HEADER;
    o.header = "X-Key";
    o.backend = VIE_RATE_BACKEND_REDIS;
    o.redis.address = address;
    o.redis.timeout_ms = 2000; /* generous: sanitizer builds on a busy machine */
    o.redis.local_clock = true;
    o.clock_ns = fake_clock;
    return o;
}

static vie_app *app_with(const vie_rate_limit_opts *o, const char *name)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
    vie_layer_opts lo = {.name = name};
    assert_int_equal(vie_use_rate_limit(app, &lo, o), VIE_OK);
    return app;
}

static vie_test_response *get(vie_app *app, const char *hdr)
{
    const char *h[] = {hdr, NULL};
    vie_test_response *r = vie_test_request(app, "GET", "/r", hdr ? h : NULL, NULL, 0);
    assert_non_null(r);
    return r;
}

static const char *hdr_or(const vie_test_response *r, const char *name)
{
    const char *v = vie_test_header(r, name);
    return v ? v : "-";
}

static bool metrics_has(vie_app *app, const char *line)
{
    char *m = vie_app_metrics(app);
    const char *p = strstr(m, line);
    bool found = p && (p == m || p[-1] == '\n');
    if (!found) fprintf(stderr, "not in /metrics: %s\n%s", line, m);
    free(m);
    return found;
}

static size_t lines_with(const char *log, const char *a, const char *b)
{
    size_t n = 0;
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, len);
        if (strstr(copy, a) && (!b || strstr(copy, b))) n++;
        free(copy);
        line = end ? end + 1 : NULL;
    }
    return n;
}

/* The same requests at the same (injected) times through a local and a
 * Redis limiter: the same answers, field for field. */
static void redis_layer_answers_as_local(void **state)
{
    NEED_REDIS();
    static const struct {
        double rate;
        uint32_t burst;
    } cases[] = {{10, 4}, {0.5, 3}, {1000, 1}, {1.0 / 60, 5}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        vie_rate_limit_opts lo = redis_opts(cases[ci].rate, cases[ci].burst, NULL);
        lo.backend = VIE_RATE_BACKEND_LOCAL;
        vie_rate_limit_opts ro = redis_opts(cases[ci].rate, cases[ci].burst, redis_addr);
        char pre[32];
        snprintf(pre, sizeof pre, "same%zu", ci);
        ro.redis.prefix = prefix(pre);
        vie_app *local = app_with(&lo, "rl");
        vie_app *redis = app_with(&ro, "rl");
        assert_int_equal(vie_test_begin(local), VIE_OK);
        assert_int_equal(vie_test_begin(redis), VIE_OK);
        uint64_t T_ns = (uint64_t)(1e9 / cases[ci].rate + 0.5);
        /* whole µs; below the local table's bound (GCRA_MAX_NOW_NS) */
        fake_now = 100000000ULL * 1000000000ULL;
        xs_state = 12345 + ci;
        unsigned n429 = 0;
        for (int step = 0; step < 120; step++) {
            /* bursts, steps under and at one interval, and idle gaps */
            uint64_t pick = xs() % 100;
            uint64_t inc = pick < 55   ? 0
                           : pick < 80 ? (xs() % (T_ns / US / 2)) * US
                           : pick < 95 ? T_ns
                                       : T_ns * cases[ci].burst + T_ns / 2;
            fake_now += inc / US * US;
            char hdr[32];
            snprintf(hdr, sizeof hdr, "X-Key: k%d", xs() % 100 < 75 ? 0 : 1);
            vie_test_response *a = get(local, hdr), *b = get(redis, hdr);
            static const char *const fields[] = {"RateLimit-Limit", "RateLimit-Remaining",
                                                 "RateLimit-Reset", "Retry-After"};
            if (a->status != b->status)
                fail_msg("case %zu step %d: local %d, redis %d\n%s\n%s", ci, step, a->status,
                         b->status, a->raw, b->raw);
            for (int f = 0; f < 4; f++)
                if (strcmp(hdr_or(a, fields[f]), hdr_or(b, fields[f])))
                    fail_msg("case %zu step %d: %s local %s, redis %s", ci, step, fields[f],
                             hdr_or(a, fields[f]), hdr_or(b, fields[f]));
            if (a->status == 429) {
                n429++;
                assert_string_equal(a->body, b->body);
            }
            vie_test_response_free(a);
            vie_test_response_free(b);
        }
        if (n429 < 20)
            fail_msg("case %zu: only %u of 120 refused: not a useful sequence", ci, n429);
        char line[128];
        snprintf(line, sizeof line,
                 "vie_ratelimit_backend_errors_total{limiter=\"rl\",kind=\"timeout\"} 0");
        assert_true(metrics_has(redis, line));
        assert_true(metrics_has(redis, "vie_ratelimit_backend_errors_total{limiter=\"rl\","
                                       "kind=\"connection\"} 0"));
        char *ml = vie_app_metrics(local), *mr = vie_app_metrics(redis);
        /* decisions_total identical */
        const char *dl = strstr(ml, "vie_ratelimit_decisions_total{"),
                   *dr = strstr(mr, "vie_ratelimit_decisions_total{");
        assert_non_null(dl);
        assert_non_null(dr);
        size_t len = (size_t)(strstr(dl, "# HELP") - dl);
        assert_memory_equal(dl, dr, len);
        free(ml);
        free(mr);
        vie_test_end(local);
        vie_test_end(redis);
        vie_app_free(local);
        vie_app_free(redis);
    }
}

/* Keys: the prefix, the kind and the value; long values hashed; the
 * default prefix names the layer; db selects the database; enforce:
 * false (shadow) passes with the same counters. */
static void keys_prefix_db_and_shadow(void **state)
{
    NEED_REDIS();
    redisContext *r = sync_connect();
    assert_non_null(r);
    vie_rate_limit_opts o = redis_opts(1, 2, redis_addr);
    o.redis.local_clock = false; /* Redis TIME */
    o.redis.db = 3;
    vie_app *app = app_with(&o, "keyed");
    assert_int_equal(vie_test_begin(app), VIE_OK);
    char longv[320] = "X-Key: ";
    memset(longv + 7, 'v', 300);
    longv[307] = '\0';
    vie_test_response *x = get(app, "X-Key: short");
    assert_int_equal(x->status, 200);
    assert_string_equal(vie_test_header(x, "RateLimit-Remaining"), "1");
    vie_test_response_free(x);
    x = get(app, longv);
    assert_int_equal(x->status, 200);
    vie_test_response_free(x);
    x = get(app, NULL);
    assert_int_equal(x->status, 200);
    vie_test_response_free(x);
    freeReplyObject(cmd(r, "SELECT 3"));
    assert_int_equal(cmd_int(r, "EXISTS %s", "vie:rl:keyed:header:short"), 1);
    assert_int_equal(cmd_int(r, "EXISTS %s", "vie:rl:keyed:-"), 1);
    redisReply *rep = cmd(r, "KEYS %s", "vie:rl:keyed:header#*");
    assert_int_equal(rep->elements, 1);
    assert_int_equal(rep->element[0]->len, strlen("vie:rl:keyed:header#") + 16);
    freeReplyObject(rep);
    long long pttl = cmd_int(r, "PTTL %s", "vie:rl:keyed:header:short");
    if (pttl <= 1000 || pttl > 1000 + RLR_EXPIRE_SLACK_MS) fail_msg("PTTL %lld", pttl);
    freeReplyObject(cmd(r, "SELECT 0"));
    assert_int_equal(cmd_int(r, "EXISTS %s", "vie:rl:keyed:header:short"), 0);
    vie_test_end(app);
    vie_app_free(app);

    /* shadow: everything passes, without fields, counted */
    o = redis_opts(1.0 / 3600, 2, redis_addr);
    o.enforce = false;
    o.redis.prefix = prefix("shadow");
    app = app_with(&o, "shadow");
    assert_int_equal(vie_test_begin(app), VIE_OK);
    fake_now = 5000ULL * 1000000000ULL;
    for (int i = 0; i < 5; i++) {
        x = get(app, "X-Key: s");
        assert_int_equal(x->status, 200);
        assert_null(vie_test_header(x, "RateLimit-Remaining"));
        assert_null(vie_test_header(x, "Retry-After"));
        vie_test_response_free(x);
    }
    assert_true(metrics_has(app, "vie_ratelimit_decisions_total{limiter=\"shadow\","
                                 "result=\"allowed\"} 2"));
    assert_true(metrics_has(app, "vie_ratelimit_decisions_total{limiter=\"shadow\","
                                 "result=\"shadow_limited\"} 3"));
    vie_test_end(app);
    vie_app_free(app);
    redisFree(r);
}

/* SCRIPT FLUSH: the next EVALSHA gets NOSCRIPT; the backend loads the
 * script again and sends the command once more. */
static void noscript_loads_again(void **state)
{
    NEED_REDIS();
    redisContext *r = sync_connect();
    assert_non_null(r);
    vie_rate_limit_opts o = redis_opts(1, 3, redis_addr);
    o.redis.prefix = prefix("noscript");
    vie_app *app = app_with(&o, "ns");
    assert_int_equal(vie_test_begin(app), VIE_OK);
    fake_now = 7000ULL * 1000000000ULL;
    vie_test_response *x = get(app, "X-Key: a");
    assert_int_equal(x->status, 200);
    assert_string_equal(vie_test_header(x, "RateLimit-Remaining"), "2");
    vie_test_response_free(x);
    for (int round = 0; round < 2; round++) { /* twice: a reload is not a one-off */
        freeReplyObject(cmd(r, "SCRIPT FLUSH"));
        x = get(app, "X-Key: a");
        assert_int_equal(x->status, 200);
        assert_string_equal(vie_test_header(x, "RateLimit-Remaining"), round ? "0" : "1");
        vie_test_response_free(x);
    }
    assert_true(metrics_has(app, "vie_ratelimit_backend_errors_total{limiter=\"ns\","
                                 "kind=\"reply\"} 0"));
    vie_test_end(app);
    vie_app_free(app);
    redisFree(r);
}

/* The vie.rl.<pid> clients Redis lists (closed ones may linger for a
 * moment: wait, bounded, for the count expected). */
static int vie_clients(redisContext *r, int want)
{
    char name[32];
    snprintf(name, sizeof name, "name=vie.rl.%ld ", (long)getpid());
    int n = -1;
    for (int i = 0; i < 100 && n != want; i++) {
        if (i) usleep(20000);
        redisReply *rep = cmd(r, "CLIENT LIST");
        n = 0;
        for (const char *p = rep->str; (p = strstr(p, name)); p++)
            n++;
        if (n != want && i == 99) fprintf(stderr, "CLIENT LIST:\n%s\n", rep->str);
        freeReplyObject(rep);
    }
    return n;
}

/* Limiters with the same address, password and db share one connection
 * per worker; another db is another connection; the end closes them. */
static void limiters_share_connections(void **state)
{
    NEED_REDIS();
    redisContext *r = sync_connect();
    assert_non_null(r);
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        vie_rate_limit_opts o = redis_opts(100, 10, redis_addr);
        o.redis.db = i == 2 ? 1 : 0;
        vie_layer_opts lo = {.name = names[i]};
        assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
    }
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *x = get(app, "X-Key: s");
    assert_int_equal(x->status, 200);
    vie_test_response_free(x);
    assert_int_equal(vie_clients(r, 2), 2);
    vie_test_end(app);
    assert_int_equal(vie_clients(r, 0), 0);
    vie_app_free(app);
    redisFree(r);
}

/* A unix socket, and a host name (resolved off the loop; "localhost"
 * to its IPv4 address, where the server listens). */
static void unix_socket_and_host_name(void **state)
{
    NEED_REDIS();
    char unix_addr[80], named[32];
    snprintf(unix_addr, sizeof unix_addr, "unix:%s", redis_sock);
    snprintf(named, sizeof named, "localhost:%d", redis_port);
    const char *addrs[] = {unix_addr, named};
    for (int i = 0; i < 2; i++) {
        vie_rate_limit_opts o = redis_opts(1, 3, addrs[i]);
        o.redis.prefix = prefix(i ? "named" : "unix");
        vie_app *app = app_with(&o, "rl");
        assert_int_equal(vie_test_begin(app), VIE_OK);
        for (int n = 0; n < 2; n++) {
            vie_test_response *x = get(app, "X-Key: u");
            if (x->status != 200) fail_msg("%s: %d\n%s", addrs[i], x->status, x->raw);
            assert_string_equal(vie_test_header(x, "RateLimit-Remaining"), n ? "1" : "2");
            vie_test_response_free(x);
        }
        vie_test_end(app);
        vie_app_free(app);
    }
}

/* Nothing listens on the port: every request is decided by
 * on_backend_error; one log line for the whole incident. */
static void connection_refused_allow_and_deny(void **state)
{
    NEED_REDIS();
    char dead[32];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", free_port());
    for (int deny = 0; deny < 2; deny++) {
        vie_rate_limit_opts o = redis_opts(1, 1, dead);
        o.deny_on_backend_error = deny;
        capture k;
        capture_begin(&k);
        vie_app *app = vie_app_new(NULL);
        assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
        vie_layer_opts lo = {.name = "down"};
        assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
        assert_int_equal(vie_test_begin(app), VIE_OK);
        for (int i = 0; i < 6; i++) {
            vie_test_response *x = get(app, "X-Key: a");
            if (deny) {
                if (x->status != 503) fail_msg("request %d: %d\n%s", i, x->status, x->raw);
                assert_string_equal(vie_test_header(x, "Retry-After"), "1");
                assert_non_null(strstr(x->body, "rate limit backend unavailable (connection); "
                                                "refused by on_backend_error: deny"));
            } else {
                assert_int_equal(x->status, 200);
                assert_null(vie_test_header(x, "Retry-After"));
            }
            assert_null(vie_test_header(x, "RateLimit-Remaining"));
            vie_test_response_free(x);
            vie_test_run_for(app, 30); /* across reconnect attempts */
        }
        bool counted = metrics_has(app, "vie_ratelimit_backend_errors_total{limiter=\"down\","
                                        "kind=\"connection\"} 6");
        bool no_decisions = metrics_has(app, "vie_ratelimit_decisions_total{limiter=\"down\","
                                             "result=\"allowed\"} 0");
        vie_test_end(app);
        vie_app_free(app);
        char *log = capture_end(&k);
        if (!counted || !no_decisions) fail_msg("metrics (see above); log:\n%s", log);
        size_t n = lines_with(log, "rate_limit \"down\": Redis backend", "failing (connection: ");
        if (n != 1 || lines_with(log, "WARN", "rate_limit \"down\"") != 1 ||
            !lines_with(log,
                        deny ? "refused with 503 (on_backend_error: deny)"
                             : "let through (on_backend_error: allow)",
                        "Connection refused"))
            fail_msg("want one incident line, log:\n%s", log);
        free(log);
    }
}

/* A stopped server (SIGSTOP): timeouts, one incident; after SIGCONT the
 * decisions come from Redis again and the recovery is logged once. */
static void stopped_server_times_out_then_recovers(void **state)
{
    NEED_REDIS();
    vie_rate_limit_opts o = redis_opts(1, 2, redis_addr);
    o.redis.timeout_ms = 150; /* 4 of them stay under the stall limit (1.5 s) */
    o.redis.prefix = prefix("stop");
    o.deny_on_backend_error = true;
    fake_now = 9000ULL * 1000000000ULL;
    capture k;
    capture_begin(&k);
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
    vie_layer_opts lo = {.name = "stop"};
    assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *x = get(app, "X-Key: a");
    int first = x->status;
    vie_test_response_free(x);

    kill(redis_pid, SIGSTOP);
    /* another key: Redis still runs these late commands after SIGCONT
     * (their answers are dropped, their effect is not) */
    int statuses[4];
    for (int i = 0; i < 4; i++) {
        x = get(app, "X-Key: s");
        statuses[i] = x->status;
        vie_test_response_free(x);
    }
    bool timeouts = metrics_has(app, "vie_ratelimit_backend_errors_total{limiter=\"stop\","
                                     "kind=\"timeout\"} 4");
    kill(redis_pid, SIGCONT);
    /* Redis answers again: the bucket still has the one token left */
    int after = 0;
    for (int i = 0; i < 100 && after != 200; i++) {
        x = get(app, "X-Key: b");
        after = x->status;
        vie_test_response_free(x);
        if (after != 200) vie_test_run_for(app, 100);
    }
    /* the incident ends at an answer a second after its last error */
    vie_test_run_for(app, 1100);
    x = get(app, "X-Key: a");
    int last = x->status;
    const char *rem = vie_test_header(x, "RateLimit-Remaining");
    bool last_ok = last == 200 && rem && !strcmp(rem, "0");
    vie_test_response_free(x);
    x = get(app, "X-Key: a");
    int refused = x->status;
    vie_test_response_free(x);
    vie_test_end(app);
    vie_app_free(app);
    char *log = capture_end(&k);
    if (first != 200 || !timeouts || after != 200 || !last_ok || refused != 429)
        fail_msg("first %d, stopped %d %d %d %d, after %d, last %d, refused %d; log:\n%s", first,
                 statuses[0], statuses[1], statuses[2], statuses[3], after, last, refused, log);
    for (int i = 0; i < 4; i++)
        assert_int_equal(statuses[i], 503);
    if (lines_with(log, "rate_limit \"stop\": Redis backend",
                   "failing (timeout: no answer within 150 ms)") != 1 ||
        lines_with(log, "WARN", "rate_limit \"stop\"") != 1 ||
        lines_with(log, "rate_limit \"stop\": Redis backend", "answers again;") != 1)
        fail_msg("want one incident line and one recovery line (%zu %zu %zu), log:\n%s",
                 lines_with(log, "rate_limit \"stop\": Redis backend",
                            "failing (timeout: no answer within 150 ms)"),
                 lines_with(log, "WARN", "rate_limit \"stop\""),
                 lines_with(log, "rate_limit \"stop\": Redis backend", "answers again;"), log);
    free(log);
}

/* A server that answers nothing for longer than max(1 s, 10 x timeout)
 * while decisions wait: the connection is dropped (its pending replies
 * end) and made again; once the server runs again, so do decisions. */
static void stalled_connection_is_made_again(void **state)
{
    NEED_REDIS();
    vie_rate_limit_opts o = redis_opts(1, 5, redis_addr);
    o.redis.timeout_ms = 100; /* the stall limit: max(1 s, 10 x 100 ms) */
    o.redis.prefix = prefix("stall");
    capture k;
    capture_begin(&k);
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
    vie_layer_opts lo = {.name = "stall"};
    assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *x = get(app, "X-Key: a");
    int first = x->status;
    vie_test_response_free(x);
    kill(redis_pid, SIGSTOP);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n = 0, passed = 0;
    do { /* 1.5 s of requests, each let through after its timeout */
        x = get(app, "X-Key: a");
        passed += x->status == 200 && !vie_test_header(x, "RateLimit-Remaining");
        vie_test_response_free(x);
        n++;
        vie_test_run_for(app, 20);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 1500 && n < 200);
    kill(redis_pid, SIGCONT);
    int after = 0;
    for (int i = 0; i < 100 && after != 200; i++) {
        vie_test_run_for(app, 50);
        x = get(app, "X-Key: b");
        after = x->status == 200 && vie_test_header(x, "RateLimit-Remaining") ? 200 : x->status;
        vie_test_response_free(x);
    }
    vie_test_end(app);
    vie_app_free(app);
    char *log = capture_end(&k);
    if (first != 200 || passed != n || after != 200 ||
        lines_with(log, "rate_limit: Redis at",
                   "no answer for more than 1000 ms: connecting "
                   "again") < 1 ||
        lines_with(log, "WARN", "rate_limit \"stall\"") != 1)
        fail_msg("first %d, %d of %d passed, after %d; log:\n%s", first, passed, n, after, log);
    free(log);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

static int from_yaml(vie_app *app, const char *name, const char *text, char **errs)
{
    cfg_ctx cx;
    int lrc = cfg_load_text(&cx, "t.yaml", text);
    assert_int_equal(lrc, 0);
    cfg_params p;
    cfg_params_init(&p, &cx, cx.root, "middleware \"rl\"");
    vie_layer_opts lo = {.name = name};
    int rc = mw_rate_limit_from_yaml(app, &lo, &p);
    size_t len = 1;
    for (size_t i = 0; i < cx.errs.n; i++)
        len += strlen(cx.errs.lines[i]) + 1;
    *errs = calloc(1, len);
    for (size_t i = 0; i < cx.errs.n; i++) {
        strcat(*errs, cx.errs.lines[i]);
        strcat(*errs, "\n");
    }
    cfg_free(&cx);
    return rc;
}

static void yaml_redis_options(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    vie_app *app = vie_app_new(NULL);
    char *e;
    assert_int_equal(from_yaml(app, "full",
                               "rate: 100/s\nburst: 10\nbackend: redis\n"
                               "redis: {address: \"[::1]:6380\", prefix: \"app:rl:\", timeout: "
                               "50ms, password: secret, db: 2}\n"
                               "clock: local\non_backend_error: deny\n",
                               &e),
                     VIE_OK);
    assert_string_equal(e, "");
    free(e);
    assert_int_equal(from_yaml(app, "unix",
                               "rate: 1\nbackend: redis\n"
                               "redis: {address: \"unix:/run/redis.sock\"}\n",
                               &e),
                     VIE_OK);
    free(e);
    assert_int_equal(from_yaml(app, "named",
                               "rate: 1\nbackend: redis\n"
                               "redis: {address: \"redis.internal:6379\"}\n",
                               &e),
                     VIE_OK);
    free(e);
    assert_int_equal(from_yaml(app, "defaults", "rate: 1\nbackend: redis\n", &e), VIE_OK);
    free(e);
    assert_int_equal(app->n_layers, 4);
    vie_app_free(app);

    static const struct {
        const char *text, *said;
    } bad[] = {
        {"rate: 1\nbackend: redis\nredis: {address: \"host\"}\n", "\"host\" has no port"},
        {"rate: 1\nbackend: redis\nredis: {address: \"1.2.3.999:80\"}\n",
         "\"1.2.3.999\" is neither an IPv4 address nor a host name"},
        {"rate: 1\nbackend: redis\nredis: {address: \"::1:80\"}\n",
         "IPv6 address goes in brackets"},
        {"rate: 1\nbackend: redis\nredis: {address: \"[::g]:80\"}\n", "is not an IPv6 address"},
        {"rate: 1\nbackend: redis\nredis: {address: \"h:0\"}\n", "port \"0\" is not a number"},
        {"rate: 1\nbackend: redis\nredis: {address: \"h:x\"}\n", "port \"x\" is not a number"},
        {"rate: 1\nbackend: redis\nredis: {address: \"unix:run/r.sock\"}\n", "absolute path"},
        {"rate: 1\nbackend: redis\nredis: {address: \"bad host:1\"}\n", "nor a host name"},
        {"rate: 1\nbackend: redis\nredis: {prefix: \"a b\"}\n", "key \"redis.prefix\""},
        {"rate: 1\nbackend: redis\nredis: {prefix: \"\"}\n", "key \"redis.prefix\""},
        {"rate: 1\nbackend: redis\nredis: {timeout: 0ms}\n", "key \"redis.timeout\""},
        {"rate: 1\nbackend: redis\nredis: {timeout: 11s}\n", "key \"redis.timeout\""},
        {"rate: 1\nbackend: redis\nredis: {db: 70000}\n", "key \"redis.db\""},
        {"rate: 1\nbackend: redis\nredis: {password: \"\"}\n", "key \"redis.password\""},
        {"rate: 1\nbackend: redis\nredis: {adress: \"h:1\"}\n", "did you mean \"redis.address\""},
        {"rate: 1\nbackend: redis\nredis: h:1\n", "key \"redis\": expected a map"},
        {"rate: 1\nbackend: redis\nclock: wall\n", "key \"clock\""},
        {"rate: 1\nbackend: redis\non_backend_error: retry\n", "key \"on_backend_error\""},
        {"rate: 1\nbackend: redis\nmax_keys: 10\n", "key \"max_keys\": only with backend: local"},
        {"rate: 2000000\nbackend: redis\n", "at most 1e+06 per second with backend redis"},
        {"rate: 1\nredis: {address: \"h:1\"}\n", "key \"redis\": only with backend: redis"},
        {"rate: 1\nclock: local\n", "key \"clock\": only with backend: redis"},
        {"rate: 1\non_backend_error: deny\n", "key \"on_backend_error\": only with backend: redis"},
        {"rate: 1\nbackend: memcached\n", "key \"backend\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        app = vie_app_new(NULL);
        int rc = from_yaml(app, "rl", bad[i].text, &e);
        if (rc == VIE_OK || !strstr(e, bad[i].said) || !strstr(e, "t.yaml:"))
            fail_msg("case %zu (%s): rc %d, errors:\n%s", i, bad[i].text, rc, e);
        free(e);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
}

static void refuses_bad_redis_options(void **state)
{
    static const struct {
        const char *address, *prefix, *password;
        uint32_t timeout, db;
        double rate;
        const char *said;
    } bad[] = {
        {"nohost", NULL, NULL, 20, 0, 1, "option redis.address: \"nohost\" has no port"},
        {"unix:", NULL, NULL, 20, 0, 1, "option redis.address: a unix socket address"},
        {NULL, "has space", NULL, 20, 0, 1, "option redis.prefix"},
        {NULL, NULL, "", 20, 0, 1, "option redis.password"},
        {NULL, NULL, NULL, 10001, 0, 1, "option redis.timeout"},
        {NULL, NULL, NULL, 20, 65536, 1, "option redis.db"},
        {NULL, NULL, NULL, 20, 0, 1e6 + 1, "option rate: rate must be at most 1e+06"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vie_app *app = vie_app_new(NULL);
        vie_rate_limit_opts o = redis_opts(bad[i].rate, 1, bad[i].address);
        o.redis.prefix = bad[i].prefix;
        o.redis.password = bad[i].password;
        o.redis.timeout_ms = bad[i].timeout;
        o.redis.db = bad[i].db;
        capture k;
        capture_begin(&k);
        vie_layer_opts lo = {.name = "rl"};
        int rc = vie_use_rate_limit(app, &lo, &o);
        char *log = capture_end(&k);
        if (rc != VIE_EINVAL ||
            !log_has_line(log, "ERROR", "rate_limit \"rl\" refused", bad[i].said, NULL))
            fail_msg("case %zu: rc %d, log:\n%s", i, rc, log);
        free(log);
        assert_int_equal(app->n_layers, 0);
        vie_app_free(app);
    }
    /* a layer name too long for the default prefix */
    char name[130];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    vie_app *app = vie_app_new(NULL);
    vie_rate_limit_opts o = redis_opts(1, 1, NULL);
    vie_layer_opts lo = {.name = name};
    capture k;
    capture_begin(&k);
    int rc = vie_use_rate_limit(app, &lo, &o);
    char *log = capture_end(&k);
    if (rc != VIE_EINVAL || !log_has_line(log, "ERROR",
                                          "option redis.prefix: the default key "
                                          "prefix",
                                          NULL))
        fail_msg("rc %d, log:\n%s", rc, log);
    free(log);
    o.redis.prefix = "short:";
    assert_int_equal(vie_use_rate_limit(app, &lo, &o), VIE_OK);
    vie_app_free(app);
}

/* Registration and freeze (all `vie check` does) never connect; a
 * worker's start does. */
static void connects_only_when_a_worker_starts(void **state)
{
    vie_log_set_level(VIE_LOG_OFF);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 8), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &len), 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/r", ok, NULL), VIE_OK);
    vie_rate_limit_opts o = redis_opts(1, 1, addr);
    assert_int_equal(vie_use_rate_limit(app, NULL, &o), VIE_OK);
    assert_int_equal(vie_app_freeze(app), VIE_OK);
    usleep(100000);
    assert_int_equal(accept(ls, NULL, NULL), -1); /* nobody connected */
    assert_int_equal(vie_test_begin(app), VIE_OK);
    int c = -1;
    for (int i = 0; i < 100 && c < 0; i++) {
        vie_test_run_for(app, 20);
        c = accept(ls, NULL, NULL);
    }
    assert_true(c >= 0);
    close(c);
    vie_test_end(app);
    vie_app_free(app);
    close(ls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(script_matches_gcra_decide),
        cmocka_unit_test(script_time_and_expiry),
        cmocka_unit_test(redis_layer_answers_as_local),
        cmocka_unit_test(keys_prefix_db_and_shadow),
        cmocka_unit_test(noscript_loads_again),
        cmocka_unit_test(limiters_share_connections),
        cmocka_unit_test(unix_socket_and_host_name),
        cmocka_unit_test(connection_refused_allow_and_deny),
        cmocka_unit_test(stopped_server_times_out_then_recovers),
        cmocka_unit_test(stalled_connection_is_made_again),
        cmocka_unit_test(yaml_redis_options),
        cmocka_unit_test(refuses_bad_redis_options),
        cmocka_unit_test(connects_only_when_a_worker_starts),
    };
    return cmocka_run_group_tests(tests, start_redis, stop_redis);
}
