/* The executor: chain breaks, continuing after answering, the response
 * state machine seen from layers, after hooks, the trail and its times,
 * defers, asynchronous layers (resume, stale refs, async deadlines,
 * request deadlines), and the in-process test kit itself. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/app.h"
#include "core/clock.h"
#include "vie/vie.h"
#include "vie/vie_test.h"

#define MS 1000000ull

/* ------------------------------------------------------------------ */
/* What happened, in order                                             */

/* Before hooks append their tag (upper case), after hooks the lower case
 * tag, handlers 'H', defers their own character. */
static char events[512];

static void ev(char ch)
{
    size_t n = strlen(events);
    if (n + 1 < sizeof events) {
        events[n] = ch;
        events[n + 1] = '\0';
    }
}

static void on_defer(void *arg)
{
    ev(*(const char *)arg);
}

/* Register one defer per character of s (each points into s, which must
 * be a string literal or outlive the request). */
static void defer_all(vie_ctx *c, const char *s)
{
    for (const char *p = s; p && *p; p++)
        assert_int_equal(vie_defer(c, on_defer, (void *)p), VIE_OK);
}

/* ------------------------------------------------------------------ */
/* A fake monotonic clock                                              */

static uint64_t fake_now;

static uint64_t fake_clock(void)
{
    return fake_now;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ------------------------------------------------------------------ */
/* Probe layers                                                        */

typedef enum action {
    GO_NEXT = 0,      /* return VIE_NEXT */
    ANSWER,           /* vie_send_text(status) and return what it returns */
    DONE_SILENT,      /* return VIE_DONE without answering: a chain break */
    ANSWER_THEN_NEXT, /* answer, then return VIE_NEXT anyway */
    BYPASS,           /* vie_bypass, then VIE_NEXT */
    SLEEP,            /* sleep sleep_ms, then VIE_NEXT */
    ADVANCE,          /* move the fake clock by advance_ns, then VIE_NEXT */
    BAD_STATUS,       /* return 42, which is not a vie_status */
} action;

typedef struct probe {
    char tag;
    action act;
    int status;               /* ANSWER, ANSWER_THEN_NEXT */
    uint32_t sleep_ms;        /* SLEEP */
    uint64_t advance_ns;      /* ADVANCE */
    uint64_t after_adv;       /* the after hook moves the fake clock by this */
    const char *defers;       /* registered by the before hook */
    const char *defers_after; /* registered by the after hook */
    /* what the probe saw */
    int befores, afters;
    int status_in_after;
    bool cancelled_in_after;
    bool responded_in_after;
    size_t trail_in_after;
    vie_trail_entry trail_copy[8]; /* the trail as the after hook saw it */
    bool trail_past_end;           /* vie_trail_at(count) returned true: a bug */
    const char *current_in_before, *current_in_after;
} probe;

static vie_status probe_before(vie_ctx *c, void *state)
{
    probe *p = state;
    p->befores++;
    p->current_in_before = vie_current_layer(c);
    ev(p->tag);
    defer_all(c, p->defers);
    switch (p->act) {
    case GO_NEXT: return VIE_NEXT;
    case ANSWER: return vie_send_text(c, p->status, "from a layer");
    case DONE_SILENT: return VIE_DONE;
    case ANSWER_THEN_NEXT: vie_send_text(c, p->status, "answered by a layer"); return VIE_NEXT;
    case BYPASS: vie_bypass(c); return VIE_NEXT;
    case SLEEP: sleep_ms(p->sleep_ms); return VIE_NEXT;
    case ADVANCE: fake_now += p->advance_ns; return VIE_NEXT;
    case BAD_STATUS: return (vie_status)42;
    }
    return VIE_NEXT;
}

static void probe_after(vie_ctx *c, void *state)
{
    probe *p = state;
    p->afters++;
    p->current_in_after = vie_current_layer(c);
    ev((char)(p->tag | 0x20));
    p->status_in_after = vie_response_status(c);
    p->cancelled_in_after = vie_cancelled(c);
    p->responded_in_after = vie_responded(c);
    p->trail_in_after = vie_trail_count(c);
    for (size_t i = 0; i < p->trail_in_after && i < 8; i++)
        assert_true(vie_trail_at(c, i, &p->trail_copy[i]));
    vie_trail_entry e;
    p->trail_past_end = vie_trail_at(c, p->trail_in_after, &e);
    defer_all(c, p->defers_after);
    fake_now += p->after_adv;
}

static vie_middleware probe_mw(const char *name, vie_phase phase)
{
    return (vie_middleware){
        .name = name, .phase = phase, .before = probe_before, .after = probe_after};
}

/* ------------------------------------------------------------------ */
/* Parking layers: continue later from a timer on vie_loop(c)          */

typedef struct parker {
    char tag;
    uint32_t delay_ms;      /* the timer fires after this */
    vie_status resume_with; /* what the timer resumes with */
    int answer_status;      /* > 0: the timer answers this first */
    bool invalid_first;     /* the timer tries an invalid status first */
    bool watch_cancel;      /* register vie_on_cancel */
    bool sync_resume;       /* resume inside the hook, before returning VIE_PENDING */
    bool no_timer;          /* park and never resume: only a cancel ends it */
    const char *defers;
    /* the timer and what it saw */
    uv_timer_t timer;
    bool timer_ready;
    vie_ref ref;
    int fired;
    int rc, rc_bad, rc_sync_bad;
    bool got_null; /* vie_ref_get returned NULL in the timer */
    int cancels;
    int befores, afters;
    int status_in_after;
    bool cancelled_in_after;
} parker;

static void parker_cancel(void *arg)
{
    parker *p = arg;
    p->cancels++;
    if (p->timer_ready) uv_timer_stop(&p->timer);
}

static void parker_fire(uv_timer_t *t)
{
    parker *p = t->data;
    p->fired++;
    if (p->invalid_first) p->rc_bad = vie_resume(p->ref, (vie_status)7);
    vie_ctx *c = vie_ref_get(p->ref);
    if (!c) p->got_null = true;
    if (c && p->answer_status) vie_send_text(c, p->answer_status, "answered later");
    p->rc = vie_resume(p->ref, p->resume_with);
}

static vie_status parker_before(vie_ctx *c, void *state)
{
    parker *p = state;
    p->befores++;
    ev(p->tag);
    defer_all(c, p->defers);
    p->ref = vie_ref_of(c);
    if (p->sync_resume) {
        p->rc_sync_bad = vie_resume(p->ref, VIE_PENDING);
        if (p->answer_status) vie_send_text(c, p->answer_status, "answered at once");
        p->rc = vie_resume(p->ref, p->resume_with);
        return VIE_PENDING;
    }
    if (p->no_timer) {
        if (p->watch_cancel) assert_int_equal(vie_on_cancel(c, parker_cancel, p), VIE_OK);
        return VIE_PENDING;
    }
    uv_loop_t *loop = vie_loop(c);
    assert_non_null(loop);
    if (!p->timer_ready) {
        uv_timer_init(loop, &p->timer);
        p->timer.data = p;
        p->timer_ready = true;
    }
    if (p->watch_cancel) assert_int_equal(vie_on_cancel(c, parker_cancel, p), VIE_OK);
    /* libuv counts from its cached time: refresh it so the delay is real. */
    uv_update_time(loop);
    uv_timer_start(&p->timer, parker_fire, p->delay_ms, 0);
    return VIE_PENDING;
}

static void parker_after(vie_ctx *c, void *state)
{
    parker *p = state;
    p->afters++;
    ev((char)(p->tag | 0x20));
    p->status_in_after = vie_response_status(c);
    p->cancelled_in_after = vie_cancelled(c);
}

static vie_middleware parker_mw(const char *name, vie_phase phase, uint32_t async_timeout_ms)
{
    return (vie_middleware){.name = name,
                            .phase = phase,
                            .before = parker_before,
                            .after = parker_after,
                            .async_timeout_ms = async_timeout_ms};
}

/* ------------------------------------------------------------------ */
/* Handlers                                                            */

static int handler_calls;

static vie_status ok_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    ev('H');
    defer_all(c, arg);
    return vie_send_text(c, 200, "ok");
}

static vie_status silent_next_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    return VIE_NEXT;
}

static vie_status silent_done_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    return VIE_DONE;
}

static vie_status echo_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_str b = vie_body(c);
    vie_header_add(c, "X-Method", vie_method(c).len == 4 ? "four" : "other");
    return vie_send(c, 200, "application/octet-stream", b.ptr, b.len);
}

static vie_status slow_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    sleep_ms(80);
    return vie_send_text(c, 200, "slow");
}

static const layer *layer_named(const vie_app *app, const char *name)
{
    for (size_t i = 0; i < app->n_layers; i++)
        if (!strcmp(app->layers[i]->mw.name, name)) return app->layers[i];
    fail_msg("no layer %s", name);
    return NULL;
}

static const route_entry *route_labelled(const vie_app *app, const char *label)
{
    for (size_t i = 0; i < app->n_routes; i++)
        if (!strcmp(app->routes[i]->label, label)) return app->routes[i];
    fail_msg("no route %s", label);
    return NULL;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Once a request has ended, every entry of its trail is settled: named,
 * with a final outcome (never -1, "running"), left after it was entered. */
static void assert_trail_settled(const vie_test_response *r)
{
    for (size_t i = 0; i < r->n_trail; i++) {
        const vie_trail_entry *e = &r->trail[i];
        if (e->outcome != VIE_NEXT && e->outcome != VIE_DONE && e->outcome != -2)
            fail_msg("trail[%zu] has outcome %d after the request ended", i, e->outcome);
        assert_non_null(e->layer);
        assert_true(e->leave_ns >= e->enter_ns);
    }
}

static vie_test_response *get(vie_app *app, const char *target)
{
    vie_test_response *r = vie_test_request(app, "GET", target, NULL, NULL, 0);
    assert_non_null(r);
    assert_trail_settled(r);
    return r;
}

static void assert_problem(const vie_test_response *r, int status)
{
    assert_int_equal(r->status, status);
    const char *ct = vie_test_header(r, "content-type");
    assert_non_null(ct);
    assert_string_equal(ct, "application/problem+json");
    char want[32];
    snprintf(want, sizeof want, "\"status\":%d", status);
    assert_non_null(strstr(r->body, want));
}

static int reset(void **state)
{
    (void)state;
    events[0] = '\0';
    handler_calls = 0;
    fake_now = 1000 * MS;
    clock_set_source(NULL);
    vie_log_set_level(VIE_LOG_OFF);
    return 0;
}

static int restore_clock(void **state)
{
    (void)state;
    clock_set_source(NULL);
    return 0;
}

/* ================================================================== */
/* 1. Chain breaks                                                     */

static void chain_break_in_layer_answers_500(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, b = {.tag = 'B', .act = DONE_SILENT}, c = {.tag = 'C'};
    vie_middleware ma = probe_mw("obs", VIE_OBSERVE), mb = probe_mw("breaker", VIE_GUARD),
                   mc = probe_mw("late", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    capture k;
    capture_begin(&k);
    vie_test_response *r = get(app, "/x");
    char *log = capture_end(&k);

    assert_problem(r, 500);
    assert_int_equal(handler_calls, 0);
    assert_int_equal(c.befores, 0);
    assert_int_equal(c.afters, 0);
    assert_string_equal(events, "ABba");
    assert_int_equal(b.status_in_after, 500);
    assert_int_equal(a.status_in_after, 500);
    assert_int_equal(app->stats->chain_breaks, 1);
    assert_int_equal(layer_named(app, "breaker")->n->chain_breaks, 1);
    assert_int_equal(layer_named(app, "obs")->n->chain_breaks, 0);
    assert_int_equal(layer_named(app, "late")->n->chain_breaks, 0);
    assert_true(log_has_line(log, "chain break", "breaker", NULL));
    assert_false(log_has_line(log, "chain break", "obs", NULL));
    free(log);
    vie_test_response_free(r);

    /* Counted per request, and the app goes on serving. */
    r = get(app, "/x");
    assert_problem(r, 500);
    assert_int_equal(app->stats->chain_breaks, 2);
    assert_int_equal(layer_named(app, "breaker")->n->chain_breaks, 2);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void unanswered_handler_answers_500(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'};
    vie_middleware ma = probe_mw("obs", VIE_OBSERVE);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/silent-next", silent_next_handler, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/silent-done", silent_done_handler, NULL), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/fine", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    capture k;
    capture_begin(&k);
    vie_test_response *r = get(app, "/silent-next");
    char *log = capture_end(&k);
    assert_problem(r, 500);
    assert_int_equal(handler_calls, 1);
    assert_int_equal(a.status_in_after, 500); /* the after hook sees the final status */
    assert_int_equal(route_labelled(app, "GET /silent-next")->n->unanswered, 1);
    assert_int_equal(app->stats->chain_breaks, 1);
    assert_true(log_has_line(log, "GET /silent-next", NULL));
    free(log);
    vie_test_response_free(r);

    capture_begin(&k);
    r = get(app, "/silent-done");
    log = capture_end(&k);
    assert_problem(r, 500);
    assert_int_equal(route_labelled(app, "GET /silent-done")->n->unanswered, 1);
    assert_int_equal(route_labelled(app, "GET /silent-next")->n->unanswered, 1);
    assert_int_equal(app->stats->chain_breaks, 2);
    assert_true(log_has_line(log, "GET /silent-done", NULL));
    free(log);
    vie_test_response_free(r);

    /* A handler that answers is not counted. */
    r = get(app, "/fine");
    assert_int_equal(r->status, 200);
    assert_int_equal(route_labelled(app, "GET /fine")->n->unanswered, 0);
    assert_int_equal(app->stats->chain_breaks, 2);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void invalid_status_from_a_layer_answers_500(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, b = {.tag = 'B', .act = BAD_STATUS}, c = {.tag = 'C'};
    vie_middleware ma = probe_mw("obs", VIE_OBSERVE), mb = probe_mw("confused", VIE_GUARD),
                   mc = probe_mw("late", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    capture k;
    capture_begin(&k);
    vie_test_response *r = vie_test_request(app, "GET", "/x", NULL, NULL, 0);
    char *log = capture_end(&k);
    assert_non_null(r);
    assert_problem(r, 500);
    assert_int_equal(handler_calls, 0);
    assert_string_equal(events, "ABba");
    assert_int_equal(b.status_in_after, 500);
    assert_int_equal(layer_named(app, "confused")->n->invalid_status, 1);
    assert_int_equal(app->stats->chain_breaks, 1);
    assert_true(log_has_line(log, "confused", "42", NULL));
    free(log);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* ================================================================== */
/* 2. Continuing after answering, the response state machine           */

static void next_after_answer_stops_the_chain(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .act = ANSWER_THEN_NEXT, .status = 403}, b = {.tag = 'B'};
    vie_middleware ma = probe_mw("eager", VIE_GUARD), mb = probe_mw("after-eager", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    capture k;
    capture_begin(&k);
    vie_test_response *r = get(app, "/x");
    char *log = capture_end(&k);

    assert_int_equal(r->status, 403);
    assert_string_equal(r->body, "answered by a layer");
    assert_int_equal(handler_calls, 0);
    assert_int_equal(b.befores, 0);
    assert_int_equal(b.afters, 0);
    assert_int_equal(a.afters, 1);
    assert_int_equal(a.status_in_after, 403);
    assert_string_equal(events, "Aa");
    assert_int_equal(count_str(r->raw, "HTTP/1.1 "), 1);
    assert_int_equal(app->stats->next_after_done, 1);
    assert_int_equal(layer_named(app, "eager")->n->next_after_done, 1);
    assert_int_equal(layer_named(app, "after-eager")->n->next_after_done, 0);
    assert_int_equal(app->stats->chain_breaks, 0);
    assert_true(log_has_line(log, "eager", "VIE_NEXT", NULL));
    free(log);
    vie_test_response_free(r);
    vie_app_free(app);
}

static int writer_rc[8];

static vie_status twice_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_send_text(c, 200, "first");
    writer_rc[0] = vie_set_status(c, 500);
    writer_rc[1] = vie_send_text(c, 404, "second");
    writer_rc[2] = vie_response_status(c);
    return VIE_DONE;
}

static void second_status_is_refused(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/twice", twice_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t before = app->stats->writer_refusals;
    vie_test_response *r = get(app, "/twice");
    assert_int_equal(writer_rc[0], VIE_ESTATE);
    assert_int_equal(writer_rc[1], VIE_DONE);
    assert_int_equal(writer_rc[2], 200); /* the status did not change */
    assert_int_equal(app->stats->writer_refusals - before, 2);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "first");
    assert_int_equal(count_str(r->raw, "HTTP/1.1 "), 1);
    assert_null(strstr(r->raw, "second"));
    vie_test_response_free(r);
    vie_app_free(app);
}

static vie_status late_header_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    writer_rc[0] = vie_header_add(c, "X-Early", "yes");
    writer_rc[1] = vie_write(c, "abc", 3);
    writer_rc[2] = vie_header_add(c, "X-Late", "no");
    writer_rc[3] = vie_set_status(c, 201);
    writer_rc[4] = vie_write(c, "def", 3);
    writer_rc[5] = vie_end(c);
    writer_rc[6] = vie_write(c, "ghi", 3);
    writer_rc[7] = vie_end(c);
    return VIE_DONE;
}

static void header_after_head_is_refused(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/late", late_header_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/late");
    assert_int_equal(writer_rc[0], VIE_OK);
    assert_int_equal(writer_rc[1], VIE_OK);
    assert_int_equal(writer_rc[2], VIE_ESTATE);
    assert_int_equal(writer_rc[3], VIE_ESTATE);
    assert_int_equal(writer_rc[4], VIE_OK);
    assert_int_equal(writer_rc[5], VIE_OK);
    assert_int_equal(writer_rc[6], VIE_ESTATE);
    assert_int_equal(writer_rc[7], VIE_ESTATE);
    assert_int_equal(app->stats->writer_refusals, 4);
    assert_int_equal(r->status, 200);
    assert_string_equal(vie_test_header(r, "x-early"), "yes");
    assert_null(vie_test_header(r, "x-late"));
    assert_null(strstr(r->raw, "X-Late"));
    assert_string_equal(r->body, "abcdef");
    assert_null(strstr(r->raw, "ghi"));
    vie_test_response_free(r);
    vie_app_free(app);
}

/* ================================================================== */
/* 6. After hooks, the trail and its times                             */

static void after_hooks_run_in_reverse(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, b = {.tag = 'B'}, c = {.tag = 'C'};
    vie_middleware ma = probe_mw("a-observe", VIE_OBSERVE), mb = probe_mw("b-guard", VIE_GUARD),
                   mc = probe_mw("c-app", VIE_APP);
    /* Registered against the phase order: the sort puts them right. */
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_string_equal(events, "ABCHcba");
    assert_int_equal(a.status_in_after, 200);
    assert_int_equal(b.status_in_after, 200);
    assert_int_equal(c.status_in_after, 200);
    assert_false(a.cancelled_in_after);
    /* The trail: every layer, then the handler, labelled by its route. */
    assert_int_equal(r->n_trail, 4);
    assert_string_equal(r->trail[0].layer, "a-observe");
    assert_string_equal(r->trail[1].layer, "b-guard");
    assert_string_equal(r->trail[2].layer, "c-app");
    assert_string_equal(r->trail[3].layer, "GET /x");
    assert_int_equal(r->trail[0].phase, VIE_OBSERVE);
    assert_int_equal(r->trail[1].phase, VIE_GUARD);
    assert_int_equal(r->trail[2].phase, VIE_APP);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r->trail[i].outcome, VIE_NEXT);
        assert_true(r->trail[i].after_ns > 0); /* each after hook ran */
    }
    assert_int_equal(r->trail[3].outcome, VIE_DONE);
    assert_int_equal(r->trail[3].after_ns, 0);
    /* Each hook knows who runs. */
    assert_string_equal(b.current_in_before, "b-guard");
    assert_string_equal(b.current_in_after, "b-guard");
    vie_test_response_free(r);

    /* Again: each request runs each hook once. */
    events[0] = '\0';
    r = get(app, "/x");
    assert_string_equal(events, "ABCHcba");
    assert_int_equal(a.befores, 2);
    assert_int_equal(a.afters, 2);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void after_hooks_on_short_circuit(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, b = {.tag = 'B', .act = ANSWER, .status = 401}, c = {.tag = 'C'},
          d = {.tag = 'D'};
    vie_middleware ma = probe_mw("log", VIE_OBSERVE), mb = probe_mw("auth", VIE_GUARD),
                   mc = probe_mw("validate", VIE_APP);
    /* A layer with an after hook only: it still counts as entered only
     * once the chain reached it. */
    vie_middleware md = {.name = "after-only", .phase = VIE_APP, .after = probe_after};
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_use(app, &md, &d), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 401);
    assert_string_equal(r->body, "from a layer");
    assert_string_equal(events, "ABba");
    assert_int_equal(handler_calls, 0);
    assert_int_equal(c.befores + c.afters + d.afters, 0);
    assert_int_equal(a.status_in_after, 401);
    assert_int_equal(b.status_in_after, 401);
    assert_true(a.responded_in_after);
    assert_int_equal(r->n_trail, 2);
    assert_string_equal(r->trail[1].layer, "auth");
    assert_int_equal(r->trail[0].outcome, VIE_NEXT);
    assert_int_equal(r->trail[1].outcome, VIE_DONE);
    assert_int_equal(app->stats->chain_breaks, 0);
    vie_test_response_free(r);

    /* With the guard letting it through, the after-only layer runs. */
    b.act = GO_NEXT;
    events[0] = '\0';
    r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_string_equal(events, "ABCHdcba");
    assert_int_equal(d.status_in_after, 200);
    assert_int_equal(r->n_trail, 5);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void trail_times_follow_the_clock(void **state)
{
    clock_set_source(fake_clock);
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .act = ADVANCE, .advance_ns = 7 * MS, .after_adv = 2 * MS};
    probe b = {.tag = 'B', .act = ADVANCE, .advance_ns = 3 * MS};
    vie_middleware ma = probe_mw("seven", VIE_OBSERVE), mb = probe_mw("three", VIE_GUARD);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t t0 = fake_now;
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_int_equal(r->n_trail, 3);
    /* Each enter and leave is the clock at that moment. */
    assert_int_equal(r->trail[0].enter_ns, t0);
    assert_int_equal(r->trail[0].leave_ns, t0 + 7 * MS);
    assert_int_equal(r->trail[1].enter_ns, t0 + 7 * MS);
    assert_int_equal(r->trail[1].leave_ns, t0 + 10 * MS);
    assert_int_equal(r->trail[2].enter_ns, t0 + 10 * MS);
    assert_int_equal(r->trail[2].leave_ns, t0 + 10 * MS);
    /* The after hook's duration (the kit adds 1 ns so "ran" is never 0). */
    assert_true(r->trail[0].after_ns >= 2 * MS && r->trail[0].after_ns <= 2 * MS + 1000);
    assert_true(r->trail[1].after_ns > 0 && r->trail[1].after_ns < 1000);
    vie_test_response_free(r);

    /* A second request starts from the clock's new value, not the old. */
    fake_now += 100 * MS;
    uint64_t t1 = fake_now;
    r = get(app, "/x");
    assert_int_equal(r->trail[0].enter_ns, t1);
    assert_int_equal(r->trail[1].leave_ns, t1 + 10 * MS);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void assert_trail_monotonic(const vie_test_response *r)
{
    for (size_t i = 0; i < r->n_trail; i++) {
        assert_true(r->trail[i].enter_ns > 0);
        assert_true(r->trail[i].leave_ns >= r->trail[i].enter_ns);
        if (i + 1 < r->n_trail) assert_true(r->trail[i + 1].enter_ns >= r->trail[i].leave_ns);
    }
}

static void trail_times_of_a_sleeping_layer(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, b = {.tag = 'B', .act = SLEEP, .sleep_ms = 50}, c = {.tag = 'C'};
    vie_middleware ma = probe_mw("first", VIE_OBSERVE), mb = probe_mw("sleepy", VIE_GUARD),
                   mc = probe_mw("last", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_int_equal(r->n_trail, 4);
    assert_trail_monotonic(r);
    /* libuv's timers count whole milliseconds of its own clock: a 50 ms
     * timer may fire up to 1 ms early by the executor's nanosecond clock. */
    assert_true(r->trail[1].leave_ns - r->trail[1].enter_ns >= 49 * MS);
    /* Only the sleeper took that long. */
    assert_true(r->trail[0].leave_ns - r->trail[0].enter_ns < 40 * MS);
    assert_true(r->trail[2].leave_ns - r->trail[2].enter_ns < 40 * MS);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void trail_times_of_a_parked_layer(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, c = {.tag = 'C'};
    parker p = {.tag = 'P', .delay_ms = 50, .resume_with = VIE_NEXT};
    vie_middleware ma = probe_mw("first", VIE_OBSERVE), mp = parker_mw("parks", VIE_GUARD, 0),
                   mc = probe_mw("last", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_int_equal(r->n_trail, 4);
    assert_trail_monotonic(r);
    /* libuv's timers count whole milliseconds of its own clock: a 50 ms
     * timer may fire up to 1 ms early by the executor's nanosecond clock. */
    assert_true(r->trail[1].leave_ns - r->trail[1].enter_ns >= 49 * MS);
    assert_true(r->trail[2].leave_ns - r->trail[2].enter_ns < 40 * MS);
    assert_int_equal(r->trail[1].outcome, VIE_NEXT);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void trail_is_visible_to_after_hooks(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, b = {.tag = 'B'};
    vie_middleware ma = probe_mw("outer", VIE_OBSERVE), mb = probe_mw("inner", VIE_GUARD);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/t", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/t");
    assert_int_equal(r->status, 200);
    /* The outer after hook runs last and sees the whole trail. */
    assert_int_equal(a.trail_in_after, 3);
    assert_false(a.trail_past_end);
    assert_string_equal(a.trail_copy[0].layer, "outer");
    assert_string_equal(a.trail_copy[1].layer, "inner");
    assert_string_equal(a.trail_copy[2].layer, "GET /t");
    assert_int_equal(a.trail_copy[2].outcome, VIE_DONE);
    assert_true(a.trail_copy[1].after_ns > 0);     /* inner's after hook already ran */
    assert_int_equal(a.trail_copy[0].after_ns, 0); /* outer's is running */
    assert_true(a.trail_copy[0].leave_ns >= a.trail_copy[0].enter_ns);
    assert_int_equal(b.trail_in_after, 3);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* A route whose required layer bypassed its work: the handler is refused.
 * The trail the after hooks and the kit see must not show it as running
 * (or unnamed): its entry, if any, is the route's and marked refused. */
static void trail_after_a_requires_refusal(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .act = BYPASS};
    vie_middleware ma = probe_mw("auth", VIE_GUARD);
    static const char *const needs_auth[] = {"auth", NULL};
    vie_route_opts o = {.requires = needs_auth};
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/secret", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    /* The first request of a fresh context: no earlier trail to hide behind. */
    vie_test_response *r = vie_test_request(app, "GET", "/secret", NULL, NULL, 0);
    assert_non_null(r);
    assert_problem(r, 500);
    assert_int_equal(handler_calls, 0);
    assert_string_equal(events, "Aa");
    assert_int_equal(a.status_in_after, 500);
    assert_true(r->n_trail == 1 || r->n_trail == 2);
    assert_int_equal(a.trail_in_after, r->n_trail);
    assert_string_equal(r->trail[0].layer, "auth");
    assert_int_equal(r->trail[0].outcome, VIE_NEXT);
    if (r->n_trail == 2) {
        assert_int_equal(r->trail[1].outcome, -2); /* checked first: the name may be garbage */
        assert_int_equal(a.trail_copy[1].outcome, -2);
        assert_string_equal(r->trail[1].layer, "GET /secret");
    }
    vie_test_response_free(r);
    vie_app_free(app);
}

/* ================================================================== */
/* 8. Defers                                                           */

static void defers_run_lifo_once_on_normal_end(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .defers = "12", .defers_after = "5"}, b = {.tag = 'B', .defers = "3"};
    vie_middleware ma = probe_mw("a", VIE_OBSERVE), mb = probe_mw("b", VIE_GUARD);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, "4"), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    /* After hooks first, then the defers LIFO, the one an after hook
     * registered included. */
    assert_string_equal(events, "ABHba54321");
    vie_test_response_free(r);
    events[0] = '\0';
    r = get(app, "/x");
    assert_string_equal(events, "ABHba54321");
    vie_test_response_free(r);
    vie_app_free(app);
}

static void defers_run_on_short_circuit(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .defers = "1"},
          b = {.tag = 'B', .defers = "2", .act = ANSWER, .status = 401};
    probe c = {.tag = 'C', .defers = "3"};
    vie_middleware ma = probe_mw("a", VIE_OBSERVE), mb = probe_mw("b", VIE_GUARD),
                   mc = probe_mw("c", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, "4"), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 401);
    assert_string_equal(events, "ABba21");
    vie_test_response_free(r);
    vie_app_free(app);
}

static void defers_run_on_chain_break(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .defers = "1"}, b = {.tag = 'B', .defers = "2", .act = DONE_SILENT};
    vie_middleware ma = probe_mw("a", VIE_OBSERVE), mb = probe_mw("b", VIE_GUARD);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, "4"), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/silent", silent_next_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 500);
    assert_string_equal(events, "ABba21");
    vie_test_response_free(r);
    /* An unanswering handler: the defers of the layers still run. */
    b.act = GO_NEXT;
    events[0] = '\0';
    r = get(app, "/silent");
    assert_int_equal(r->status, 500);
    assert_string_equal(events, "ABba21");
    vie_test_response_free(r);
    vie_app_free(app);
}

static void defers_run_on_deadline_while_parked(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .defers = "1"};
    parker p = {
        .tag = 'P', .delay_ms = 5000, .resume_with = VIE_NEXT, .watch_cancel = true, .defers = "2"};
    vie_middleware ma = probe_mw("a", VIE_OBSERVE), mp = parker_mw("parks", VIE_GUARD, 0);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    vie_route_opts o = {.timeout_ms = 80};
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, "4", &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 504);
    assert_string_equal(events, "APpa21");
    assert_int_equal(p.cancels, 1);
    assert_int_equal(p.fired, 0);
    vie_test_response_free(r);
    /* Nothing runs twice later on. */
    vie_test_run_for(app, 50);
    assert_string_equal(events, "APpa21");
    vie_app_free(app);
}

static void defers_run_on_async_timeout(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .defers = "1"};
    parker p = {.tag = 'P',
                .delay_ms = 5000,
                .resume_with = VIE_NEXT,
                .watch_cancel = true,
                .defers = "23"};
    vie_middleware ma = probe_mw("a", VIE_OBSERVE), mp = parker_mw("parks", VIE_GUARD, 40);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, "4"), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 504);
    assert_string_equal(events, "APpa321");
    vie_test_response_free(r);
    vie_test_run_for(app, 30);
    assert_string_equal(events, "APpa321");
    vie_app_free(app);
}

/* ================================================================== */
/* 9. Asynchronous layers                                              */

static void resume_next_continues_the_chain(void **state)
{
    vie_app *app = vie_app_new(NULL);
    parker p = {.tag = 'P', .delay_ms = 10, .resume_with = VIE_NEXT};
    parker q = {.tag = 'Q', .delay_ms = 10, .resume_with = VIE_NEXT};
    probe c = {.tag = 'C'};
    vie_middleware mp = parker_mw("p", VIE_OBSERVE, 0), mq = parker_mw("q", VIE_GUARD, 0),
                   mc = probe_mw("c", VIE_APP);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_use(app, &mq, &q), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "ok");
    assert_string_equal(events, "PQCHcqp");
    assert_int_equal(p.rc, VIE_OK);
    assert_int_equal(q.rc, VIE_OK);
    assert_false(p.got_null);
    assert_int_equal(r->n_trail, 4);
    assert_int_equal(r->trail[0].outcome, VIE_NEXT);
    assert_int_equal(r->trail[1].outcome, VIE_NEXT);
    assert_int_equal(p.status_in_after, 200);
    assert_int_equal(app->stats->async_timeouts, 0);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void resume_done_after_answer_stops_there(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, c = {.tag = 'C'};
    parker p = {.tag = 'P', .delay_ms = 10, .resume_with = VIE_DONE, .answer_status = 202};
    vie_middleware ma = probe_mw("a", VIE_OBSERVE), mp = parker_mw("p", VIE_GUARD, 0),
                   mc = probe_mw("c", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 202);
    assert_string_equal(r->body, "answered later");
    assert_int_equal(p.rc, VIE_OK);
    assert_int_equal(handler_calls, 0);
    assert_int_equal(c.befores + c.afters, 0);
    assert_string_equal(events, "APpa");
    assert_int_equal(a.status_in_after, 202);
    assert_int_equal(r->n_trail, 2);
    assert_int_equal(r->trail[1].outcome, VIE_DONE);
    assert_int_equal(app->stats->chain_breaks, 0);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void resume_through_stale_ref_is_refused(void **state)
{
    vie_app *app = vie_app_new(NULL);
    /* Times out after 20 ms; its timer fires later, on a request gone. */
    parker p = {.tag = 'P', .delay_ms = 120, .resume_with = VIE_NEXT};
    vie_middleware mp = parker_mw("slowpoke", VIE_GUARD, 20);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(r->status, 504);
    assert_int_equal(p.fired, 0);
    vie_test_response_free(r);

    capture k;
    capture_begin(&k);
    vie_test_run_for(app, 300);
    char *log = capture_end(&k);
    assert_int_equal(p.fired, 1);
    assert_true(p.got_null);
    assert_int_equal(p.rc, VIE_ESTALE);
    assert_int_equal(app->stats->stale_refs, 2); /* vie_ref_get, then vie_resume */
    assert_true(log_has_line(log, "vie_resume", "stale", NULL));
    free(log);
    assert_null(vie_ref_get(p.ref));
    assert_int_equal(vie_resume(p.ref, VIE_NEXT), VIE_ESTALE);
    assert_int_equal(app->stats->stale_refs, 4);
    assert_int_equal(handler_calls, 0);

    /* The app goes on serving; its answer is not disturbed. */
    p.delay_ms = 5;
    r = get(app, "/x");
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* A stale ref fires while another request (likely in the same pooled
 * context) is parked: the other request must not be resumed by it. */
static void stale_ref_does_not_touch_the_next_request(void **state)
{
    vie_app *app = vie_app_new(NULL);
    parker p = {.tag = 'P', .delay_ms = 60, .resume_with = VIE_NEXT};
    parker q = {.tag = 'Q', .delay_ms = 200, .resume_with = VIE_NEXT};
    vie_group *g1, *g2;
    assert_int_equal(vie_group_new(app, NULL, "/one", &g1), VIE_OK);
    assert_int_equal(vie_group_new(app, NULL, "/two", &g2), VIE_OK);
    vie_middleware mp = parker_mw("gone", VIE_GUARD, 20), mq = parker_mw("waits", VIE_GUARD, 0);
    assert_int_equal(vie_group_use(g1, &mp, &p), VIE_OK);
    assert_int_equal(vie_group_use(g2, &mq, &q), VIE_OK);
    vie_route_opts o1 = {.group = g1}, o2 = {.group = g2};
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &o1), VIE_OK);
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &o2), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    vie_test_response *r = get(app, "/one/x");
    assert_int_equal(r->status, 504);
    vie_test_response_free(r);
    assert_int_equal(p.fired, 0);

    uint64_t t0 = wall_ns();
    r = get(app, "/two/x");
    uint64_t took = wall_ns() - t0;
    assert_int_equal(p.fired, 1); /* fired while /two/x was parked */
    assert_int_equal(p.rc, VIE_ESTALE);
    assert_int_equal(q.rc, VIE_OK);
    assert_int_equal(r->status, 200);
    assert_true(took >= 190 * MS); /* it waited for its own resume */
    assert_true(r->trail[0].leave_ns - r->trail[0].enter_ns >= 190 * MS);
    assert_int_equal(handler_calls, 1);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void resume_inside_the_hook_works(void **state)
{
    vie_app *app = vie_app_new(NULL);
    parker p = {.tag = 'P', .sync_resume = true, .resume_with = VIE_NEXT};
    probe c = {.tag = 'C'};
    vie_middleware mp = parker_mw("quick", VIE_GUARD, 0), mc = probe_mw("c", VIE_APP);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t t0 = wall_ns();
    vie_test_response *r = get(app, "/x");
    assert_true(wall_ns() - t0 < 1000 * MS); /* never parked for the async deadline */
    assert_int_equal(r->status, 200);
    assert_int_equal(p.rc_sync_bad, VIE_EINVAL);
    assert_int_equal(p.rc, VIE_OK);
    assert_string_equal(events, "PCHcp");
    assert_int_equal(r->trail[0].outcome, VIE_NEXT);
    assert_int_equal(app->stats->async_timeouts, 0);
    vie_test_response_free(r);

    /* Resuming with VIE_DONE after answering stops the chain. */
    p.resume_with = VIE_DONE;
    p.answer_status = 201;
    events[0] = '\0';
    r = get(app, "/x");
    assert_int_equal(r->status, 201);
    assert_string_equal(r->body, "answered at once");
    assert_int_equal(p.rc, VIE_OK);
    assert_string_equal(events, "Pp");
    assert_int_equal(handler_calls, 1);
    assert_int_equal(r->trail[0].outcome, VIE_DONE);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void resume_with_invalid_status_is_refused(void **state)
{
    vie_app *app = vie_app_new(NULL);
    parker p = {.tag = 'P', .delay_ms = 5, .resume_with = VIE_NEXT, .invalid_first = true};
    vie_middleware mp = parker_mw("p", VIE_GUARD, 0);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_int_equal(p.rc_bad, VIE_EINVAL);
    assert_int_equal(p.rc, VIE_OK); /* the request was still parked after the refusal */
    assert_int_equal(r->status, 200);
    assert_int_equal(handler_calls, 1);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void parked_past_async_deadline_gets_504(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'}, c = {.tag = 'C'};
    parker p = {.tag = 'P', .delay_ms = 10000, .resume_with = VIE_NEXT, .watch_cancel = true};
    vie_middleware ma = probe_mw("outer", VIE_OBSERVE), mp = parker_mw("sleeper", VIE_GUARD, 50),
                   mc = probe_mw("inner", VIE_APP);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_use(app, &mc, &c), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);

    capture k;
    capture_begin(&k);
    uint64_t t0 = wall_ns();
    vie_test_response *r = get(app, "/x");
    uint64_t took = wall_ns() - t0;
    char *log = capture_end(&k);

    assert_problem(r, 504);
    assert_true(took >= 50 * MS);
    assert_true(took < 5000 * MS);
    assert_int_equal(handler_calls, 0);
    assert_int_equal(c.befores + c.afters, 0);
    assert_string_equal(events, "APpa");
    assert_int_equal(p.cancels, 1);
    assert_int_equal(p.fired, 0);
    assert_true(p.cancelled_in_after);
    assert_true(a.cancelled_in_after);
    assert_int_equal(p.status_in_after, 504);
    assert_int_equal(a.status_in_after, 504);
    assert_int_equal(app->stats->async_timeouts, 1);
    assert_int_equal(layer_named(app, "sleeper")->n->async_timeouts, 1);
    assert_int_equal(layer_named(app, "outer")->n->async_timeouts, 0);
    assert_int_equal(app->stats->deadline_exceeded, 0);
    assert_int_equal(r->n_trail, 2);
    assert_string_equal(r->trail[1].layer, "sleeper");
    assert_int_equal(r->trail[1].outcome, -2);
    /* libuv's timers count whole milliseconds of its own clock: a 50 ms
     * timer may fire up to 1 ms early by the executor's nanosecond clock. */
    assert_true(r->trail[1].leave_ns - r->trail[1].enter_ns >= 49 * MS);
    assert_true(log_has_line(log, "sleeper", "504", NULL));
    free(log);
    vie_test_response_free(r);

    /* The resume that comes after the cancel is refused. */
    assert_int_equal(vie_resume(p.ref, VIE_NEXT), VIE_ESTALE);
    vie_app_free(app);
}

/* The loop's cached time is stale after a long synchronous request: the
 * async deadline must still be measured from the moment the layer parked. */
static void async_deadline_holds_after_a_slow_request(void **state)
{
    vie_app *app = vie_app_new(NULL);
    /* It touches no libuv timer itself: nothing refreshes the loop's time. */
    parker p = {.tag = 'P', .no_timer = true, .watch_cancel = true};
    vie_group *g;
    assert_int_equal(vie_group_new(app, NULL, "/parked", &g), VIE_OK);
    vie_middleware mp = parker_mw("sleeper", VIE_GUARD, 50);
    assert_int_equal(vie_group_use(g, &mp, &p), VIE_OK);
    vie_route_opts o = {.group = g};
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/slow", slow_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/slow");
    assert_int_equal(r->status, 200);
    vie_test_response_free(r);

    uint64_t t0 = wall_ns();
    r = get(app, "/parked/x");
    uint64_t took = wall_ns() - t0;
    assert_int_equal(r->status, 504);
    assert_true(took >= 50 * MS);
    assert_true(r->trail[0].leave_ns - r->trail[0].enter_ns >= 50 * MS);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void request_deadline_of_a_route(void **state)
{
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A'};
    parker p = {.tag = 'P', .no_timer = true, .watch_cancel = true};
    vie_middleware ma = probe_mw("outer", VIE_OBSERVE), mp = parker_mw("waits", VIE_GUARD, 0);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    vie_route_opts o = {.timeout_ms = 60};
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t t0 = wall_ns();
    vie_test_response *r = get(app, "/x");
    uint64_t took = wall_ns() - t0;
    assert_problem(r, 504);
    assert_true(took >= 60 * MS);
    assert_true(took < 5000 * MS);
    assert_int_equal(app->stats->deadline_exceeded, 1);
    assert_int_equal(app->stats->async_timeouts, 0); /* the request's deadline, not the layer's */
    assert_int_equal(layer_named(app, "waits")->n->async_timeouts, 0);
    assert_int_equal(p.cancels, 1);
    assert_true(p.cancelled_in_after);
    assert_int_equal(a.status_in_after, 504);
    assert_int_equal(handler_calls, 0);
    assert_int_equal(r->trail[1].outcome, -2);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void request_deadline_of_the_app(void **state)
{
    vie_options opt;
    vie_options_init(&opt);
    opt.request_timeout_ms = 60;
    vie_app *app = vie_app_new(&opt);
    parker p = {.tag = 'P', .no_timer = true, .watch_cancel = true};
    vie_middleware mp = parker_mw("waits", VIE_GUARD, 0);
    assert_int_equal(vie_use(app, &mp, &p), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/x", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    uint64_t t0 = wall_ns();
    vie_test_response *r = get(app, "/x");
    uint64_t took = wall_ns() - t0;
    assert_problem(r, 504);
    assert_true(took >= 60 * MS);
    assert_int_equal(app->stats->deadline_exceeded, 1);
    assert_int_equal(app->stats->async_timeouts, 0);
    assert_int_equal(p.cancels, 1);
    assert_int_equal(handler_calls, 0);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* A synchronous layer that overruns the deadline: the next layer is not
 * entered (checked with the fake clock, no sleeping). */
static void request_deadline_between_layers(void **state)
{
    clock_set_source(fake_clock);
    vie_app *app = vie_app_new(NULL);
    probe a = {.tag = 'A', .act = ADVANCE, .advance_ns = 61 * MS, .defers = "1"};
    probe b = {.tag = 'B'};
    vie_middleware ma = probe_mw("hog", VIE_OBSERVE), mb = probe_mw("next", VIE_GUARD);
    assert_int_equal(vie_use(app, &ma, &a), VIE_OK);
    assert_int_equal(vie_use(app, &mb, &b), VIE_OK);
    vie_route_opts o = {.timeout_ms = 60};
    assert_int_equal(vie_route_with(app, "GET", "/x", ok_handler, NULL, &o), VIE_OK);
    assert_int_equal(vie_route(app, "GET", "/y", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/x");
    assert_problem(r, 504);
    assert_string_equal(events, "Aa1");
    assert_int_equal(handler_calls, 0);
    assert_int_equal(app->stats->deadline_exceeded, 1);
    assert_true(a.cancelled_in_after);
    assert_int_equal(a.status_in_after, 504);
    vie_test_response_free(r);

    /* Under the deadline: served (61 ms is far below the app's 60 s). */
    events[0] = '\0';
    r = get(app, "/y");
    assert_int_equal(r->status, 200);
    assert_string_equal(events, "ABHba1");
    assert_false(a.cancelled_in_after);
    vie_test_response_free(r);
    vie_app_free(app);
}

/* ================================================================== */
/* 11. The test kit                                                    */

static vie_status header_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_header_add(c, "X-Custom", "Value 1");
    return vie_send_text(c, 201, "hello");
}

static void kit_reads_status_headers_body(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/h", header_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/h");
    assert_int_equal(r->status, 201);
    assert_string_equal(vie_test_header(r, "x-custom"), "Value 1");
    assert_string_equal(vie_test_header(r, "X-CUSTOM"), "Value 1");
    assert_string_equal(vie_test_header(r, "Content-Type"), "text/plain; charset=utf-8");
    assert_string_equal(vie_test_header(r, "content-length"), "5");
    assert_null(vie_test_header(r, "x-absent"));
    assert_string_equal(r->body, "hello");
    assert_int_equal(r->body_len, 5);
    assert_true(r->keep_alive);
    assert_int_equal(r->n_trail, 1);
    assert_string_equal(r->trail[0].layer, "GET /h");
    assert_int_equal(strncmp(r->raw, "HTTP/1.1 201 ", 13), 0);
    assert_int_equal(r->raw_len, strlen(r->raw));
    vie_test_response_free(r);

    const char *const close_hdr[] = {"Connection: close", NULL};
    r = vie_test_request(app, "GET", "/h", close_hdr, NULL, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 201);
    assert_false(r->keep_alive);
    vie_test_response_free(r);

    r = get(app, "/nowhere");
    assert_problem(r, 404);
    assert_int_equal(r->n_trail, 0);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void kit_head_has_no_body(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/h", header_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = vie_test_request(app, "HEAD", "/h", NULL, NULL, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 201);
    assert_int_equal(handler_calls, 1);
    assert_int_equal(r->body_len, 0);
    assert_string_equal(r->body, "");
    assert_string_equal(vie_test_header(r, "content-length"), "5");
    assert_null(strstr(r->raw, "hello"));
    assert_int_equal(r->raw_len, strlen(r->raw));
    assert_string_equal(r->raw + r->raw_len - 4, "\r\n\r\n");
    assert_true(r->keep_alive);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void kit_post_body_reaches_the_handler(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "POST", "/echo", echo_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    const char body[] = "name=vie&x=1";
    const char *const hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    vie_test_response *r = vie_test_request(app, "POST", "/echo", hdrs, body, strlen(body));
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, strlen(body));
    assert_string_equal(r->body, body);
    assert_string_equal(vie_test_header(r, "x-method"), "four");
    vie_test_response_free(r);

    /* Binary bytes, a NUL included, round-trip. */
    const char bin[] = {'a', 0, 'b', '\r', '\n', 'c'};
    r = vie_test_request(app, "POST", "/echo", NULL, bin, sizeof bin);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, sizeof bin);
    assert_memory_equal(r->body, bin, sizeof bin);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void kit_raw_chunked_body(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "POST", "/echo", echo_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    const char req[] = "POST /echo HTTP/1.1\r\n"
                       "Host: vie.test\r\n"
                       "Transfer-Encoding: chunked\r\n"
                       "\r\n"
                       "5\r\nhello\r\n"
                       "6;ext=1\r\n world\r\n"
                       "0\r\n\r\n";
    vie_test_response *r = vie_test_raw(app, req, sizeof req - 1);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "hello world");
    assert_int_equal(r->body_len, 11);
    assert_int_equal(handler_calls, 1);
    vie_test_response_free(r);
    vie_app_free(app);
}

static vie_status streaming_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_write(c, "abc", 3);
    vie_write(c, "", 0);
    vie_write(c, "defg", 4);
    vie_end(c);
    return VIE_DONE;
}

static void kit_decodes_a_chunked_response(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/s", streaming_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/s");
    assert_int_equal(r->status, 200);
    assert_string_equal(vie_test_header(r, "transfer-encoding"), "chunked");
    assert_string_equal(r->body, "abcdefg");
    assert_int_equal(r->body_len, 7);
    assert_true(r->keep_alive);
    vie_test_response_free(r);
    vie_app_free(app);
}

static vie_status truncated_handler(vie_ctx *c, void *arg)
{
    handler_calls++;
    vie_set_content_length(c, 10);
    vie_write(c, "abc", 3);
    return VIE_DONE; /* 7 bytes short of the length it declared */
}

static void kit_keep_alive_false_after_a_truncated_response(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/t", truncated_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    vie_test_response *r = get(app, "/t");
    assert_int_equal(r->status, 200);
    assert_string_equal(vie_test_header(r, "content-length"), "10");
    assert_string_equal(r->body, "abc");
    /* The head promised keep-alive, but the connection must close. */
    assert_null(vie_test_header(r, "connection"));
    assert_false(r->keep_alive);
    vie_test_response_free(r);
    vie_app_free(app);
}

static void kit_malformed_request_gets_400(void **state)
{
    vie_app *app = vie_app_new(NULL);
    assert_int_equal(vie_route(app, "GET", "/", ok_handler, NULL), VIE_OK);
    assert_int_equal(vie_test_begin(app), VIE_OK);
    static const char *const bad[] = {
        "G@T / HTTP/1.1\r\nHost: x\r\n\r\n",                /* method not a token */
        "GET / HTTP/1.1\r\n\r\n",                           /* HTTP/1.1 without Host */
        "GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", /* header name */
        "GET /\r\n\r\n",                                    /* no version */
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", /* chunk */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        vie_test_response *r = vie_test_raw(app, bad[i], strlen(bad[i]));
        assert_non_null(r);
        assert_problem(r, 400);
        assert_false(r->keep_alive);
        vie_test_response_free(r);
    }
    assert_int_equal(handler_calls, 0);
    vie_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, reset, restore_clock)
        T(chain_break_in_layer_answers_500),
        T(unanswered_handler_answers_500),
        T(invalid_status_from_a_layer_answers_500),
        T(next_after_answer_stops_the_chain),
        T(second_status_is_refused),
        T(header_after_head_is_refused),
        T(after_hooks_run_in_reverse),
        T(after_hooks_on_short_circuit),
        T(trail_times_follow_the_clock),
        T(trail_times_of_a_sleeping_layer),
        T(trail_times_of_a_parked_layer),
        T(trail_is_visible_to_after_hooks),
        T(trail_after_a_requires_refusal),
        T(defers_run_lifo_once_on_normal_end),
        T(defers_run_on_short_circuit),
        T(defers_run_on_chain_break),
        T(defers_run_on_deadline_while_parked),
        T(defers_run_on_async_timeout),
        T(resume_next_continues_the_chain),
        T(resume_done_after_answer_stops_there),
        T(resume_through_stale_ref_is_refused),
        T(stale_ref_does_not_touch_the_next_request),
        T(resume_inside_the_hook_works),
        T(resume_with_invalid_status_is_refused),
        T(parked_past_async_deadline_gets_504),
        T(async_deadline_holds_after_a_slow_request),
        T(request_deadline_of_a_route),
        T(request_deadline_of_the_app),
        T(request_deadline_between_layers),
        T(kit_reads_status_headers_body),
        T(kit_head_has_no_body),
        T(kit_post_body_reaches_the_handler),
        T(kit_raw_chunked_body),
        T(kit_decodes_a_chunked_response),
        T(kit_keep_alive_false_after_a_truncated_response),
        T(kit_malformed_request_gets_400),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
