#include "core/inflight.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/ctx.h"
#include "core/log.h"
#include "http/writer.h"

static int g_region;   /* this process's region */
static int g_next = 0; /* where to start looking for a free slot */

void inflight_set_region(vie_app *app, int region)
{
    (void)app;
    /* Out of range (more workers than regions): this worker is not tracked,
     * rather than sharing another worker's rows. */
    g_region = region >= 0 && region < INFLIGHT_REGIONS ? region : -1;
}

static inflight_slot *region_slots(vie_app *app, int region)
{
    return app->inflight + (size_t)region * INFLIGHT_SLOTS;
}

inflight_slot *inflight_take(vie_ctx *c)
{
    if (!c->app->inflight || !c->route || c->route == c->app->fallback || g_region < 0) return NULL;
    inflight_slot *r = region_slots(c->app, g_region);
    /* Single-threaded per process: a rotating scan finds a free slot in a
     * step or two while fewer than INFLIGHT_SLOTS requests are in flight. */
    for (int k = 0; k < INFLIGHT_SLOTS; k++) {
        int i = (g_next + k) % INFLIGHT_SLOTS;
        inflight_slot *s = &r[i];
        if (atomic_load_explicit(&s->pid, memory_order_relaxed)) continue;
        g_next = (i + 1) % INFLIGHT_SLOTS;
        s->route = c->route->index;
        size_t ml =
            c->req.method_len < sizeof s->method - 1 ? c->req.method_len : sizeof s->method - 1;
        memcpy(s->method, c->req.method, ml);
        s->method[ml] = '\0';
        size_t pl = c->path.len < sizeof s->path - 1 ? c->path.len : sizeof s->path - 1;
        memcpy(s->path, c->path.ptr, pl);
        s->path[pl] = '\0';
        s->start_ns = c->start_ns;
        s->reported = false;
        s->owner = c;
        atomic_store_explicit(&s->pos, 0, memory_order_relaxed);
        atomic_store_explicit(&s->layer_enter_ns, c->start_ns, memory_order_relaxed);
        atomic_store_explicit(&s->pid, (int32_t)getpid(), memory_order_release);
        return s;
    }
    return NULL;
}

void inflight_give(vie_ctx *c)
{
    if (!c->slot) return;
    c->slot->owner = NULL;
    atomic_store_explicit(&c->slot->pid, 0, memory_order_release);
    c->slot = NULL;
}

static const char *layer_at(const route_entry *r, int32_t pos)
{
    if (pos < 0) return "vie";
    return (uint32_t)pos < r->chain.n ? r->chain.layers[pos]->mw.name : "handler";
}

void inflight_watchdog(vie_app *app, uint32_t threshold_ms)
{
    if (!app->inflight || g_region < 0) return;
    uint64_t now = clock_now_ns(), limit = (uint64_t)threshold_ms * 1000000u;
    int32_t self = (int32_t)getpid();
    inflight_slot *r = region_slots(app, g_region);
    for (int i = 0; i < INFLIGHT_SLOTS; i++) {
        inflight_slot *s = &r[i];
        /* owner is a pointer of the process that took the slot: only ours. */
        if (atomic_load_explicit(&s->pid, memory_order_acquire) != self || s->reported || !s->owner)
            continue;
        uint64_t since = atomic_load_explicit(&s->layer_enter_ns, memory_order_relaxed);
        if (now < since || now - since < limit) continue;
        s->reported = true;
        const vie_ctx *c = s->owner;
        const route_entry *rt = app->routes[s->route];
        char trail[512];
        size_t len = 0;
        for (uint32_t k = 0; k < c->n_trail && len < sizeof trail - 64; k++) {
            const vie_trail_entry *e = &c->trail[k];
            bool pending = k == c->pos && c->exec == EXEC_PARKED;
            uint64_t end = pending || !e->leave_ns ? now : e->leave_ns;
            len += (size_t)snprintf(
                trail + len, sizeof trail - len, "%s%s %lluus%s", k ? " > " : "", e->layer,
                (unsigned long long)((end - e->enter_ns) / 1000), pending ? " (pending)" : "");
            if (len >= sizeof trail) { /* snprintf says what it would have written */
                len = sizeof trail - 1;
                break;
            }
        }
        trail[len] = '\0';
        LOG_WARN("watchdog: %s %s (route %s) has been in %s for %llu ms; trail: %s", s->method,
                 s->path, rt->label, layer_at(rt, atomic_load(&s->pos)),
                 (unsigned long long)((now - since) / 1000000), trail);
    }
}

vie_status inflight_debug_handler(vie_ctx *c, void *arg)
{
    (void)arg;
    vie_app *app = c->app;
    vie_buf b = {0};
    uint64_t now = clock_now_ns();
    buf_append_lit(&b, "{\"requests\":[");
    bool first = true;
    for (int reg = 0; app->inflight && reg < INFLIGHT_REGIONS; reg++) {
        inflight_slot *r = region_slots(app, reg);
        for (int i = 0; i < INFLIGHT_SLOTS; i++) {
            inflight_slot *s = &r[i];
            int32_t pid = atomic_load_explicit(&s->pid, memory_order_acquire);
            if (!pid || s->route >= app->n_routes) continue;
            const route_entry *rt = app->routes[s->route];
            uint64_t since = atomic_load_explicit(&s->layer_enter_ns, memory_order_relaxed);
            char esc[2 * sizeof s->path * 3], line[1024];
            size_t el = json_escape(esc, sizeof esc, s->path, strnlen(s->path, sizeof s->path));
            esc[el] = '\0';
            int n = snprintf(
                line, sizeof line,
                "%s{\"worker_pid\":%d,\"method\":\"%.11s\",\"path\":%s,\"route\":\"%s\","
                "\"layer\":\"%s\",\"in_layer_ms\":%.3f,\"total_ms\":%.3f}",
                first ? "" : ",", (int)pid, s->method, esc, rt->label,
                layer_at(rt, atomic_load(&s->pos)), now > since ? (double)(now - since) / 1e6 : 0.0,
                now > s->start_ns ? (double)(now - s->start_ns) / 1e6 : 0.0);
            if (n > 0) buf_append(&b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
            first = false;
        }
    }
    buf_append_lit(&b, "]}");
    vie_status st = b.data ? vie_send(c, 200, "application/json", b.data, b.len)
                           : vie_send_problem(c, 500, "out of memory");
    buf_free(&b);
    return st;
}
