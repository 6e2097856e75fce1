/* The embedded default app: enough to see Vie answer on a fresh machine. */
#include "cli/default_app.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* Echo the body back with the request's content type. */
static vie_status echo(vie_ctx *c, void *arg)
{
    (void)arg;
    vie_str body = vie_body(c);
    vie_str ct = vie_header(c, "Content-Type");
    char type[256] = "application/octet-stream";
    if (ct.ptr && ct.len < sizeof type) {
        memcpy(type, ct.ptr, ct.len);
        type[ct.len] = '\0';
    }
    return vie_send(c, 200, type, body.ptr, body.len);
}

/* ------------------------------------------------------------------ */
/* Chaos routes (--chaos only): failures on purpose, to test the
 * machinery that contains them. */

/* The ms query parameter, 0 when absent; false when it is not 0..60000. */
static bool query_ms(vie_ctx *c, unsigned long *ms)
{
    vie_str v = vie_query_param(c, "ms");
    char digits[16] = "0";
    if (v.ptr) {
        if (v.len == 0 || v.len >= sizeof digits) return false;
        memcpy(digits, v.ptr, v.len);
        digits[v.len] = '\0';
    }
    char *end;
    *ms = strtoul(digits, &end, 10);
    return *end == '\0' && digits[0] != '-' && *ms <= 60000;
}

typedef struct nap {
    uv_timer_t timer;
    vie_ref ref;
    unsigned ms;
} nap;

static void nap_free(uv_handle_t *h)
{
    free(h->data);
}

static void nap_done(uv_timer_t *t)
{
    nap *n = t->data;
    vie_ctx *c = vie_ref_get(n->ref);
    if (c) {
        char body[48];
        snprintf(body, sizeof body, "slept %u", n->ms);
        vie_send_text(c, 200, body);
        vie_resume(n->ref, VIE_DONE);
    }
    uv_close((uv_handle_t *)&n->timer, nap_free);
}

static void nap_cancel(void *arg)
{
    nap *n = arg;
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, nap_free);
}

/* GET /chaos/sleep?ms=N: answers after N ms without blocking the loop. */
static vie_status chaos_sleep(vie_ctx *c, void *arg)
{
    (void)arg;
    unsigned long ms;
    if (!query_ms(c, &ms)) return vie_send_problem(c, 400, "ms must be 0 to 60000");
    nap *n = malloc(sizeof *n);
    if (!n) return vie_send_problem(c, 503, "out of memory");
    n->ref = vie_ref_of(c);
    n->ms = (unsigned)ms;
    uv_timer_init(vie_loop(c), &n->timer);
    n->timer.data = n;
    uv_timer_start(&n->timer, nap_done, ms, 0);
    vie_on_cancel(c, nap_cancel, n);
    return VIE_PENDING;
}

/* GET /chaos/block?ms=N: a handler that blocks its thread for N ms (a
 * blocking route: it runs on the thread pool, the loop serves on). */
static vie_status chaos_block(vie_ctx *c, void *arg)
{
    (void)arg;
    unsigned long ms;
    if (!query_ms(c, &ms)) return vie_send_problem(c, 400, "ms must be 0 to 60000");
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    char body[48];
    snprintf(body, sizeof body, "blocked %lu", ms);
    return vie_send_text(c, 200, body);
}

static vie_status chaos_panic(vie_ctx *c, void *arg)
{
    (void)arg;
    vie_panic(c, "chaos: panic on purpose");
}

/* GET /chaos/crash?kind=segv|abort: a real crash of the worker. Exempt
 * from UBSan, which would stop the NULL write before it faults. */
__attribute__((no_sanitize("undefined"))) static vie_status chaos_crash(vie_ctx *c, void *arg)
{
    (void)arg;
    vie_str kind = vie_query_param(c, "kind");
    if (kind.ptr && kind.len == 5 && !memcmp(kind.ptr, "abort", 5)) abort();
    volatile int *volatile nowhere = NULL;
    *nowhere = 1; /* a NULL write: SIGSEGV */
    return vie_send_problem(c, 500, "the crash did not happen");
}

int default_app_register(vie_app *app, bool echo_route, bool chaos)
{
    int rc;
    if (echo_route && (rc = vie_route(app, "POST", "/echo", echo, NULL)) != VIE_OK) return rc;
    if (!chaos) return VIE_OK;
    if ((rc = vie_route(app, "GET", "/chaos/sleep", chaos_sleep, NULL)) != VIE_OK) return rc;
    if ((rc = vie_route(app, "GET", "/chaos/panic", chaos_panic, NULL)) != VIE_OK) return rc;
    vie_route_opts blocking = {.blocking = true};
    if ((rc = vie_route_with(app, "GET", "/chaos/block", chaos_block, NULL, &blocking)) != VIE_OK)
        return rc;
    return vie_route(app, "GET", "/chaos/crash", chaos_crash, NULL);
}
