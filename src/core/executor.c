/* The executor: a loop over the route's sorted chain, then the handler.
 *
 * No recursion and no next(): each before hook returns what happened and
 * the loop decides. Every way a layer can break a request is answered
 * here with a defined response, one log line naming the layer, and a
 * counter. Whatever happened, the after hooks of the layers that were
 * entered run in reverse, then the defers (LIFO), exactly once.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/dispatch.h"
#include "core/executor_current.h"
#include "core/inflight.h"
#include "core/log.h"
#include "http/writer.h"

enum { OUTCOME_RUNNING = -1, OUTCOME_REFUSED = -2 };

static void finish(vie_ctx *c);
static void run(vie_ctx *c, uint64_t now);
static void run_loop(vie_ctx *c, uint64_t now);
static void start_blocking(vie_ctx *c);
static void on_panic(vie_ctx *c);

/* "%.*s %.*s" arguments naming the request in a log line. */
#define REQ_FMT "%.*s %.*s"
#define REQ_ARGS(c)                                                                                \
    (int)(c)->req.method_len, (c)->req.method ? (c)->req.method : "", (int)(c)->path.len,          \
        (c)->path.ptr ? (c)->path.ptr : ""

/* Answer with a problem unless a response already began; if it began, the
 * only honest end is closing the connection after what was sent. */
static void fail(vie_ctx *c, int status, const char *detail)
{
    if (!vie_responded(c)) {
        const char *actor = c->actor;
        c->actor = "vie";
        vie_send_problem(c, status, detail);
        c->actor = actor;
    } else if (c->res.state != RESP_ENDED) {
        c->keep_alive = false;
        c->truncated = true; /* never finish a body that went wrong */
    }
}

static bool is_handler(const vie_ctx *c)
{
    return c->pos == c->route->chain.n;
}

static const char *who(const vie_ctx *c)
{
    return is_handler(c) ? c->route->label : c->route->chain.layers[c->pos]->mw.name;
}

/* What the layer at c->pos returned. True: go on to the next one. */
static bool judge(vie_ctx *c, vie_status st)
{
    vie_app *app = c->app;
    if (is_handler(c)) {
        if (vie_responded(c)) return false;
        route_entry *r = (route_entry *)c->route;
        r->n->unanswered++;
        app->stats->chain_breaks++;
        LOG_ERROR("chain break: route %s returned %s without answering (" REQ_FMT "): 500 sent",
                  r->label,
                  st == VIE_DONE   ? "VIE_DONE"
                  : st == VIE_NEXT ? "VIE_NEXT"
                                   : "?",
                  REQ_ARGS(c));
        fail(c, 500, "the handler did not answer");
        return false;
    }
    layer *l = c->route->chain.layers[c->pos];
    switch (st) {
    case VIE_NEXT:
        if (!vie_responded(c)) return true;
        l->n->next_after_done++;
        app->stats->next_after_done++;
        LOG_ERROR("layer %s returned VIE_NEXT after answering (route %s): the chain stops here",
                  l->mw.name, c->route->label);
        return false;
    case VIE_DONE:
        if (vie_responded(c)) return false;
        l->n->chain_breaks++;
        app->stats->chain_breaks++;
        LOG_ERROR("chain break: layer %s returned VIE_DONE without answering (route %s): 500 sent",
                  l->mw.name, c->route->label);
        fail(c, 500, "a layer stopped the request without answering");
        return false;
    default:
        l->n->invalid_status++;
        app->stats->chain_breaks++;
        LOG_ERROR("layer %s returned %d, which is not a vie_status (route %s): 500 sent",
                  l->mw.name, (int)st, c->route->label);
        fail(c, 500, "a layer returned an invalid status");
        return false;
    }
}

static bool requirements_met(vie_ctx *c)
{
    const route_entry *r = c->route;
    for (uint32_t k = 0; k < r->n_reqs; k++) {
        const route_requirement *q = &r->reqs[k];
        bool any = false;
        for (int w = 0; w < VIE_LAYER_WORDS && !any; w++)
            any = (c->ran[w] & q->mask[w]) != 0;
        if (any) continue;
        ((route_entry *)r)->n->requires_refused++;
        c->app->stats->requires_refused++;
        LOG_ERROR("route %s requires %s, which did not run for this request (" REQ_FMT "): the "
                  "handler is not called, 500 sent",
                  r->label, q->name, REQ_ARGS(c));
        fail(c, 500, "a layer this route requires did not run");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Parking                                                             */

static void cancel_parked(vie_ctx *c)
{
    c->cancelled = true;
    void (*fn)(void *) = c->cancel_fn;
    c->cancel_fn = NULL;
    if (fn) fn(c->cancel_arg);
}

static void on_park_timeout(uv_timer_t *t)
{
    vie_ctx *c = t->data;
    if (c->exec != EXEC_PARKED) return;
    uint64_t now = clock_now_ns();
    vie_trail_entry *e = &c->trail[c->pos];
    e->leave_ns = now;
    e->outcome = OUTCOME_REFUSED;
    c->exec = EXEC_RUNNING;
    if (c->parked_for_deadline) {
        c->app->stats->deadline_exceeded++;
        LOG_WARN("request deadline exceeded while %s was pending (route %s, " REQ_FMT "): 504 sent",
                 who(c), c->route->label, REQ_ARGS(c));
        cancel_parked(c);
        fail(c, 504, "the request deadline passed");
    } else {
        if (!is_handler(c)) c->route->chain.layers[c->pos]->n->async_timeouts++;
        c->app->stats->async_timeouts++;
        LOG_WARN("%s parked the request and did not resume it in time (route %s, " REQ_FMT "): 504 "
                 "sent",
                 who(c), c->route->label, REQ_ARGS(c));
        cancel_parked(c);
        fail(c, 504, "a layer did not finish its asynchronous work in time");
    }
    finish(c);
}

static void park(vie_ctx *c, uint64_t now)
{
    uint32_t ms = c->app->opt.async_timeout_ms;
    if (!is_handler(c)) {
        uint32_t own = c->route->chain.layers[c->pos]->mw.async_timeout_ms;
        if (own) ms = own;
    }
    uint64_t until = now + (uint64_t)ms * 1000000u;
    /* Remember which limit the timer stands for: the one that fires is the
     * one to blame, whatever the two clocks say when it does. */
    c->parked_for_deadline = until >= c->deadline_ns;
    if (until > c->deadline_ns) until = c->deadline_ns;
    if (!c->loop) {
        LOG_ERROR("%s returned VIE_PENDING outside an event loop: 500 sent", who(c));
        c->trail[c->pos].outcome = OUTCOME_REFUSED;
        fail(c, 500, "asynchronous work is not possible here");
        finish(c);
        return;
    }
    c->exec = EXEC_PARKED;
    c->was_parked = true;
    c->panic_armed = false; /* its jump point is about to be gone */
    uint64_t wait_ms = until > now ? (until - now + 999999) / 1000000 : 0;
    /* libuv counts timers from the loop's cached time, which is stale after
     * slow synchronous work in this iteration: the timer would fire early. */
    uv_update_time(c->loop);
    uv_timer_start(&c->timer, on_park_timeout, wait_ms, 0);
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

static inline void stamp(vie_ctx *c, uint32_t id)
{
    c->ran[id >> 6] |= 1ull << (id & 63);
}

/* ------------------------------------------------------------------ */
/* Blocking handlers: on libuv's thread pool                           */

/* On a pool thread. Panics and crash signals unwind to here (the jump
 * point and executor_current are per thread). */
static void blocking_work(uv_work_t *w)
{
    vie_ctx *c = w->data;
    executor_current = c;
    if (sigsetjmp(c->panic_jmp, 0) == 0) {
        c->panic_armed = true;
        c->in_hook = true;
        c->blocking_status = c->route->fn(c, c->route->arg);
        c->panic_armed = false;
    } else {
        c->blocking_failed = true;
    }
    c->in_hook = false;
    executor_current = NULL;
}

/* Back on the loop: join the answer, then finish as any handler would. */
static void blocking_done(uv_work_t *w, int status)
{
    vie_ctx *c = w->data;
    (void)status;
    c->blocking_running = false;
    vie_buf *own = c->out; /* &c->blocking_out */
    c->trail[c->pos].leave_ns = clock_now_ns();
    if (c->exec == EXEC_DONE) {
        /* The client left while the thread ran (executor_cancel): the answer
         * goes nowhere, but the after hooks and defers still run, once. */
        own->len = 0;
        c->exec = EXEC_RUNNING;
        c->cancelled = true;
        c->trail[c->pos].outcome = OUTCOME_REFUSED;
        if (!vie_responded(c)) {
            c->res.status = 499;
            c->res.state = RESP_ENDED;
        }
        finish(c);
        buf_free(own);
        if (c->orphan_pool) ctx_release(c->orphan_pool, c); /* else its owner will */
        return;
    }
    c->out = c->blocking_saved_out;
    if (own->len) buf_append(c->out, own->data, own->len);
    buf_free(own);
    c->exec = EXEC_RUNNING;
    if (c->blocking_failed) {
        on_panic(c);
        return;
    }
    c->trail[c->pos].outcome = c->blocking_status;
    judge(c, c->blocking_status);
    finish(c);
}

static void start_blocking(vie_ctx *c)
{
    /* The thread writes into a buffer of its own: the connection may be
     * flushing its output meanwhile. */
    c->blocking_saved_out = c->out;
    c->blocking_out = (vie_buf){0};
    c->out = &c->blocking_out;
    c->blocking_failed = false;
    c->blocking_running = true;
    c->exec = EXEC_PARKED;
    c->was_parked = true;
    c->panic_armed = false;
    c->work.data = c;
    int rc = uv_queue_work(c->loop, &c->work, blocking_work, blocking_done);
    if (rc != 0) {
        c->blocking_running = false;
        c->out = c->blocking_saved_out;
        c->exec = EXEC_RUNNING;
        LOG_ERROR("route %s: cannot queue its blocking handler: %s", c->route->label,
                  uv_strerror(rc));
        fail(c, 503, "the server cannot run this request now");
        finish(c);
    }
}

static void run_loop(vie_ctx *c, uint64_t now)
{
    /* Locals, not c->...: the hooks get c, so the compiler would reload
     * every field after each call. */
    const route_entry *r = c->route;
    const uint32_t n = r->chain.n;
    layer *const *layers = r->chain.layers;
    vie_trail_entry *trail = c->trail;
    uint32_t pos = c->pos;
    for (;;) {
        c->pos = pos;
        if (now >= c->deadline_ns) {
            c->app->stats->deadline_exceeded++;
            LOG_WARN("request deadline exceeded before %s (route %s, " REQ_FMT "): 504 sent",
                     who(c), r->label, REQ_ARGS(c));
            c->cancelled = true;
            fail(c, 504, "the request deadline passed");
            break;
        }
        vie_trail_entry *e = &trail[pos];
        c->n_trail = pos + 1;
        if (c->slot) { /* for /debug/requests and the watchdog */
            atomic_store_explicit(&c->slot->pos, (int32_t)pos, memory_order_relaxed);
            atomic_store_explicit(&c->slot->layer_enter_ns, now, memory_order_relaxed);
        }
        e->enter_ns = now;
        e->leave_ns = 0;
        e->after_ns = 0;
        e->outcome = OUTCOME_RUNNING;
        vie_status st;
        if (pos == n) {
            e->layer = r->label;
            e->phase = VIE_APP;
            if (!requirements_met(c)) {
                e->leave_ns = now;
                e->outcome = OUTCOME_REFUSED;
                break;
            }
            c->cur = NULL;
            c->actor = r->label;
            if (c->auto_status) { /* no handler: dispatch.c said what to answer */
                if (c->auto_allow) vie_header_add(c, "Allow", c->auto_allow);
                st = c->auto_status == 204 ? vie_send(c, 204, NULL, NULL, 0)
                                           : vie_send_problem(c, c->auto_status, c->auto_detail);
            } else {
                if (r->blocking && c->loop) {
                    start_blocking(c);
                    return;
                }
                c->in_hook = true;
                st = r->fn(c, r->arg);
            }
        } else {
            layer *l = layers[pos];
            e->layer = l->mw.name;
            e->phase = l->mw.phase;
            c->cur = l;
            c->actor = l->mw.name;
            c->entered = pos + 1;
            stamp(c, l->id);
            c->in_hook = true;
            st = l->mw.before ? l->mw.before(c, l->state) : VIE_NEXT;
        }
        c->in_hook = false;
        now = clock_now_ns();
        e->leave_ns = now;
        if (__builtin_expect(st == VIE_PENDING || c->early_resume >= 0, 0)) {
            int early = c->early_resume;
            c->early_resume = -1;
            if (st == VIE_PENDING) {
                if (early < 0) {
                    park(c, now);
                    return;
                }
                st = (vie_status)early; /* resumed before its hook even returned */
            } else {
                LOG_WARN("%s called vie_resume but returned %d, not VIE_PENDING: the resume is "
                         "ignored",
                         who(c), (int)st);
            }
        }
        e->outcome = st;
        /* The common case, decided here without a call. */
        if (__builtin_expect(st == VIE_NEXT && pos < n && c->res.state == RESP_NONE, 1)) {
            pos++;
            continue;
        }
        if (!judge(c, st)) break;
        pos++;
    }
    finish(c);
}

/* A crash signal in the hook or handler at c->pos was unwound here. The
 * process may be damaged: answer, count, and taint it. */
static void on_crash(vie_ctx *c)
{
    executor_crash_count(c);
    c->app->tainted = true;
    LOG_ERROR("crash: signal %d in %s %s (route %s, " REQ_FMT "): %s; this process is tainted",
              c->crash_signal, is_handler(c) ? "the handler of" : "layer", who(c), c->route->label,
              REQ_ARGS(c),
              vie_responded(c) ? "the response had begun: closing the connection" : "500 sent");
    c->keep_alive = false;
    fail(c, 500, "the request failed inside the server");
    finish(c);
}

/* A before hook or the handler at c->pos called vie_panic. */
static void on_panic(vie_ctx *c)
{
    c->trail[c->pos].leave_ns = clock_now_ns();
    c->trail[c->pos].outcome = OUTCOME_REFUSED;
    c->in_hook = false;
    if (c->crash_signal) {
        on_crash(c);
        return;
    }
    c->app->stats->panics++;
    if (is_handler(c))
        c->route->n->panics++;
    else
        c->route->chain.layers[c->pos]->n->panics++;
    if (is_handler(c))
        LOG_ERROR("panic in the handler of route %s (" REQ_FMT "): %s: %s", c->route->label,
                  REQ_ARGS(c), c->panic_msg,
                  vie_responded(c) ? "the response had begun: closing the connection" : "500 sent");
    else
        LOG_ERROR("panic in layer %s (route %s, " REQ_FMT "): %s: %s", who(c), c->route->label,
                  REQ_ARGS(c), c->panic_msg,
                  vie_responded(c) ? "the response had begun: closing the connection" : "500 sent");
    fail(c, 500, "the request failed inside the server");
    finish(c);
}

/* The jump point for panics, once per entry into the executor (not per
 * layer). Only parameters live here, so nothing can be clobbered by the
 * jump; the loop's state is in run_loop and c. */
static void run(vie_ctx *c, uint64_t now)
{
    vie_ctx *outer = executor_current; /* a resume can run inside another request's hook */
    executor_current = c;
    if (sigsetjmp(c->panic_jmp, 0) != 0) {
        on_panic(c);
    } else {
        c->panic_armed = true;
        run_loop(c, now);
    }
    executor_current = outer;
}

/* One after hook, under its own jump point: a panic in it skips the rest
 * of that hook only. Parameters only, so nothing here can be clobbered. */
static void call_after(vie_ctx *c, layer *l, uint32_t i)
{
    c->cur = l;
    c->actor = l->mw.name;
    uint64_t t0 = clock_now_ns();
    vie_ctx *outer = executor_current;
    executor_current = c;
    if (sigsetjmp(c->panic_jmp, 0) == 0) {
        c->panic_armed = true;
        l->mw.after(c, l->state);
        c->panic_armed = false;
    } else if (c->crash_signal) {
        l->n->crashes++;
        c->app->stats->crashes++;
        c->app->tainted = true;
        LOG_ERROR("crash: signal %d in the after hook of layer %s (route %s, " REQ_FMT
                  "); this process is tainted",
                  c->crash_signal, l->mw.name, c->route->label, REQ_ARGS(c));
        c->crash_signal = 0;
    } else {
        l->n->panics++;
        c->app->stats->panics++;
        LOG_ERROR("panic in the after hook of layer %s (route %s, " REQ_FMT "): %s", l->mw.name,
                  c->route->label, REQ_ARGS(c), c->panic_msg);
    }
    executor_current = outer;
    c->trail[i].after_ns = clock_now_ns() - t0 + 1; /* never 0 once it ran */
}

static void run_after_hooks(vie_ctx *c)
{
    const chain *ch = &c->route->chain;
    for (uint32_t i = c->entered; i-- > 0;)
        if (ch->layers[i]->mw.after) call_after(c, ch->layers[i], i);
    c->cur = NULL;
    c->actor = "vie";
}

static void run_defers(vie_ctx *c)
{
    /* Pop before calling: a defer that defers again runs too, once. */
    while (c->defers) {
        defer_node *d = c->defers;
        c->defers = d->next;
        d->fn(d->arg);
    }
}

/* The time each layer of the request took, into its histogram. */
static void time_layers(vie_ctx *c)
{
    const chain *ch = &c->route->chain;
    for (uint32_t i = 0; i < c->entered && i < ch->n; i++) {
        const vie_trail_entry *e = &c->trail[i];
        uint64_t ns = (e->leave_ns > e->enter_ns ? e->leave_ns - e->enter_ns : 0) + e->after_ns;
        layer_counters *n = ch->layers[i]->n;
        double s = (double)ns / 1e9;
        int b = 0;
        while (b < METRIC_BUCKETS && s > layer_bucket_bounds[b])
            b++;
        n->buckets[b]++;
        n->duration_ns += ns;
    }
}

static void finish(vie_ctx *c)
{
    c->exec = EXEC_RUNNING;
    c->cancel_fn = NULL;
    c->panic_armed = false;
    if (!vie_responded(c)) fail(c, 500, "no response was produced");
    if (!c->cancelled && !c->truncated)
        writer_finish(c);
    else if (c->res.state != RESP_ENDED)
        c->keep_alive = false; /* a truncated response must not be reused */
    run_after_hooks(c);
    if (c->app->layer_histograms) time_layers(c);
    run_defers(c);
    keys_destroy_values(c);
    inflight_give(c);
    c->exec = EXEC_DONE;
    if (c->was_parked && c->on_complete) c->on_complete(c);
}

/* ------------------------------------------------------------------ */
/* Entry points                                                        */

void executor_start(vie_ctx *c)
{
    const route_entry *r = c->route;
    uint32_t n = r->chain.n;
    c->trail = arena_alloc(&c->arena, (n + 1) * sizeof *c->trail);
    if (!c->trail) {
        LOG_ERROR("out of memory for the trail of %s", r->label);
        fail(c, 500, "out of memory");
        c->exec = EXEC_DONE;
        return;
    }
    c->slot = inflight_take(c);
    uint32_t ms = r->timeout_ms ? r->timeout_ms : c->app->opt.request_timeout_ms;
    c->deadline_ns = ms ? c->start_ns + (uint64_t)ms * 1000000u : UINT64_MAX;
    c->exec = EXEC_RUNNING;
    c->pos = 0;
    run(c, clock_now_ns());
}

int vie_deadline_set(vie_ctx *c, uint32_t ms)
{
    if (!c || c->exec == EXEC_IDLE || c->exec == EXEC_DONE) {
        LOG_ERROR("vie_deadline_set refused: %s",
                  !c ? "the request is NULL" : "the request is not running");
        return VIE_EINVAL;
    }
    c->deadline_ns = ms ? c->start_ns + (uint64_t)ms * 1000000u : UINT64_MAX;
    return VIE_OK;
}

void executor_cancel(vie_ctx *c, const char *why)
{
    if (c->exec != EXEC_PARKED) return;
    uv_timer_stop(&c->timer);
    c->on_complete = NULL; /* the owner is going away */
    c->app->stats->client_gone++;
    LOG_INFO("%s: request cancelled while %s was pending (route %s)", why, who(c), c->route->label);
    vie_trail_entry *e = &c->trail[c->pos];
    e->leave_ns = clock_now_ns();
    e->outcome = OUTCOME_REFUSED;
    cancel_parked(c);
    if (c->blocking_running) {
        /* A thread is inside the handler: it cannot be stopped, and the
         * context must outlive it. blocking_done releases it (orphan_pool). */
        c->res.status = 499;
        c->exec = EXEC_DONE;
        return;
    }
    if (!vie_responded(c)) {
        c->res.status = 499; /* nginx's "client closed request", for logs; never sent */
        c->res.state = RESP_ENDED;
    }
    finish(c);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

vie_ref vie_ref_of(vie_ctx *c)
{
    return (vie_ref){c, c ? c->gen : 0};
}

static bool ref_live(vie_ref ref, const char *call)
{
    vie_ctx *c = ref.ctx;
    if (c && c->gen == ref.gen && c->exec != EXEC_IDLE && c->exec != EXEC_DONE) return true;
    if (c) c->app->stats->stale_refs++;
    LOG_WARN("%s refused: the request this ref points to has ended (stale vie_ref)", call);
    return false;
}

vie_ctx *vie_ref_get(vie_ref ref)
{
    return ref_live(ref, "vie_ref_get") ? ref.ctx : NULL;
}

int vie_resume(vie_ref ref, vie_status st)
{
    if (!ref_live(ref, "vie_resume")) return VIE_ESTALE;
    vie_ctx *c = ref.ctx;
    if (st != VIE_NEXT && st != VIE_DONE) {
        LOG_ERROR("vie_resume(%s) refused: status %d is neither VIE_NEXT nor VIE_DONE", who(c),
                  (int)st);
        return VIE_EINVAL;
    }
    if (c->exec == EXEC_RUNNING && c->in_hook && c->early_resume < 0 &&
        c->trail[c->pos].outcome == OUTCOME_RUNNING) {
        c->early_resume = (int8_t)st; /* its before hook has not returned yet */
        return VIE_OK;
    }
    if (c->blocking_running) {
        LOG_ERROR("vie_resume refused: route %s runs a blocking handler, which answers by "
                  "returning",
                  c->route->label);
        return VIE_ESTATE;
    }
    if (c->exec != EXEC_PARKED) {
        LOG_ERROR("vie_resume refused: the request is not parked (route %s, in %s)",
                  c->route ? c->route->label : "?", c->actor);
        return VIE_ESTATE;
    }
    uv_timer_stop(&c->timer);
    c->exec = EXEC_RUNNING;
    c->cancel_fn = NULL;
    uint64_t now = clock_now_ns();
    c->trail[c->pos].leave_ns = now;
    c->trail[c->pos].outcome = st;
    if (judge(c, st)) {
        c->pos++;
        run(c, now);
    } else {
        finish(c);
    }
    return VIE_OK;
}

_Thread_local vie_ctx *executor_current;

const char *executor_current_layer(const vie_ctx *c)
{
    return c->actor ? c->actor : "vie";
}

const char *executor_current_route(const vie_ctx *c)
{
    return c->route ? c->route->label : "-";
}

void executor_crash_count(vie_ctx *c)
{
    c->app->stats->crashes++;
    if (!c->route) return;
    if (c->pos >= c->route->chain.n)
        c->route->n->crashes++;
    else
        c->route->chain.layers[c->pos]->n->crashes++;
}

bool executor_can_unwind(const vie_ctx *c)
{
    return c->panic_armed;
}

void executor_crash_answer_raw(vie_ctx *c)
{
    static const char answer[] =
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/problem+json\r\n"
        "Content-Length: 111\r\nConnection: close\r\n\r\n"
        "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\",\"status\":500,"
        "\"detail\":\"the request failed inside the server\"}";
    if (c->raw_fd < 0 || c->res.state != RESP_NONE) return; /* a begun answer: the close says it */
    /* Earlier pipelined answers still waiting in the buffer go first. */
    if (c->out && c->out->len) {
        ssize_t w = write(c->raw_fd, c->out->data, c->out->len);
        (void)w;
    }
    ssize_t w = write(c->raw_fd, answer, sizeof answer - 1);
    (void)w;
}

void executor_unwind_crash(vie_ctx *c, int sig)
{
    c->crash_signal = sig;
    c->panic_armed = false;
    siglongjmp(c->panic_jmp, 2);
}

void vie_panic(vie_ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "(no message)", ap);
    va_end(ap);
    if (!c || !c->panic_armed) {
        /* No jump point: not inside a hook or handler run by the executor
         * (a libuv callback, a defer). There is no safe place to go. */
        LOG_ERROR("vie_panic outside a layer or handler (in %s): %s; aborting",
                  c && c->actor ? c->actor : "?", msg);
        abort();
    }
    c->panic_armed = false;
    c->panic_msg = arena_strndup(&c->arena, msg, strlen(msg));
    if (!c->panic_msg) c->panic_msg = "(out of memory for the message)";
    siglongjmp(c->panic_jmp, 1);
}

void vie_panic_at_(vie_ctx *c, const char *file, int line, const char *what)
{
    vie_panic(c, "%s:%d: assertion failed: %s", file, line, what);
}

void vie_bypass(vie_ctx *c)
{
    if (!c || !c->cur) {
        LOG_ERROR("vie_bypass refused: it is for a layer's before hook (in %s)",
                  c ? c->actor : "?");
        return;
    }
    c->ran[c->cur->id >> 6] &= ~(1ull << (c->cur->id & 63));
}

int vie_on_cancel(vie_ctx *c, void (*fn)(void *arg), void *arg)
{
    if (!c || c->exec == EXEC_DONE || c->exec == EXEC_IDLE) return VIE_ESTATE;
    c->cancel_fn = fn;
    c->cancel_arg = arg;
    return VIE_OK;
}

bool vie_cancelled(const vie_ctx *c)
{
    return c->cancelled;
}

int vie_defer(vie_ctx *c, void (*fn)(void *arg), void *arg)
{
    if (!c || !fn) return VIE_EINVAL;
    if (c->exec == EXEC_DONE) {
        LOG_ERROR("vie_defer refused: the request has ended (in %s)", c->actor);
        return VIE_ESTATE;
    }
    defer_node *d = arena_alloc(&c->arena, sizeof *d);
    if (!d) return VIE_ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = c->defers;
    c->defers = d;
    return VIE_OK;
}

void *vie_loop(const vie_ctx *c)
{
    return c->loop;
}

size_t vie_trail_count(const vie_ctx *c)
{
    return c->n_trail;
}

bool vie_trail_at(const vie_ctx *c, size_t i, vie_trail_entry *e)
{
    if (i >= c->n_trail) return false;
    *e = c->trail[i];
    return true;
}

const char *vie_current_layer(const vie_ctx *c)
{
    return c->actor;
}

const char *vie_route_label(const vie_ctx *c)
{
    return c->route ? c->route->label : NULL;
}
