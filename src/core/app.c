/* App lifecycle: options, route registration while CONFIGURING, freeze. */
#include "core/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/describe.h"
#include "core/log.h"
#include "core/inflight.h"
#include "core/metrics.h"
#include "server/shm.h"
#include "vie/vie_test.h"

void vie_options_init(vie_options *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:8080";
    o->backlog = 511;
    o->max_connections = 10000;
    o->max_request_line = HTTP_DEFAULT_MAX_REQUEST_LINE;
    o->max_header_bytes = HTTP_DEFAULT_MAX_HEADER_BYTES;
    o->max_headers = HTTP_DEFAULT_MAX_HEADERS;
    o->max_body = HTTP_DEFAULT_MAX_BODY;
    o->keepalive_timeout_ms = 60000;
    o->header_timeout_ms = 10000;
    o->body_timeout_ms = 30000;
    o->write_timeout_ms = 30000;
    o->max_keepalive_requests = 0;
    o->drain_timeout_ms = 10000;
    o->handle_signals = true;
    o->request_timeout_ms = 60000;
    o->async_timeout_ms = 30000;
    o->watchdog_ms = 10000;
    o->restart_backoff_max_ms = 30000;
}

/* Zero means "default" for every option that has no meaningful zero. */
static void options_fill_defaults(vie_options *o)
{
    vie_options d;
    vie_options_init(&d);
    if (!o->listen) o->listen = d.listen;
    if (o->backlog <= 0) o->backlog = d.backlog;
    if (!o->max_connections) o->max_connections = d.max_connections;
    if (!o->max_request_line) o->max_request_line = d.max_request_line;
    if (!o->max_header_bytes) o->max_header_bytes = d.max_header_bytes;
    if (!o->max_headers) o->max_headers = d.max_headers;
    if (!o->max_body) o->max_body = d.max_body;
    if (!o->keepalive_timeout_ms) o->keepalive_timeout_ms = d.keepalive_timeout_ms;
    if (!o->header_timeout_ms) o->header_timeout_ms = d.header_timeout_ms;
    if (!o->body_timeout_ms) o->body_timeout_ms = d.body_timeout_ms;
    if (!o->write_timeout_ms) o->write_timeout_ms = d.write_timeout_ms;
    if (!o->drain_timeout_ms) o->drain_timeout_ms = d.drain_timeout_ms;
    if (!o->async_timeout_ms) o->async_timeout_ms = d.async_timeout_ms;
    if (!o->watchdog_ms) o->watchdog_ms = d.watchdog_ms;
    if (!o->restart_backoff_max_ms) o->restart_backoff_max_ms = d.restart_backoff_max_ms;
    /* The request line is part of the head: a larger limit could never bite. */
    if (o->max_request_line > o->max_header_bytes) o->max_request_line = o->max_header_bytes;
}

vie_app *vie_app_new(const vie_options *opt)
{
    vie_app *app = calloc(1, sizeof *app);
    if (!app) return NULL;
    if (opt)
        app->opt = *opt;
    else
        vie_options_init(&app->opt);
    options_fill_defaults(&app->opt);
    app->listen = strdup(app->opt.listen);
    app->opt.listen = app->listen;
    app->router = router_new();
    /* Counters live in memory the workers will share: made now, before
     * any fork. 64 MiB of address space; only touched pages cost. */
    app->shm = shm_create((size_t)64 << 20);
    static atomic_ulong scopes;
    app->state_scope = atomic_fetch_add(&scopes, 1) + 1; /* its own until it inherits */
    if (app->shm) {
        app->stats = shm_alloc(app->shm, sizeof *app->stats);
        app->unmatched = shm_alloc(app->shm, sizeof *app->unmatched * (HTTP_M_CONNECT + 1));
        app->key_conflicts = shm_alloc(app->shm, sizeof *app->key_conflicts * VIE_MAX_KEYS);
        app->inflight =
            shm_alloc(app->shm, sizeof(inflight_slot) * INFLIGHT_REGIONS * INFLIGHT_SLOTS);
    }
    if (!app->listen || !app->router || !app->stats || !app->unmatched || !app->key_conflicts ||
        !app->inflight) {
        vie_app_free(app);
        return NULL;
    }
    app->limits = (http_limits){
        .max_request_line = app->opt.max_request_line,
        .max_header_bytes = app->opt.max_header_bytes,
        .max_headers = app->opt.max_headers,
        .max_body = app->opt.max_body,
    };
    return app;
}

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

/* A NULL-terminated copy of a NULL-terminated string list. */
static char **strv_dup(const char *const *v, bool *oom)
{
    if (!v) return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = strdup(v[i]);
        if (!out[i]) *oom = true;
    }
    return out;
}

static void route_free(route_entry *r)
{
    free(r->method);
    free(r->pattern);
    free(r->label);
    strv_free(r->requires);
    free(r);
}

static void layer_free(layer *l)
{
    if (l->mw.free_state) l->mw.free_state(l->state);
    free((char *)l->mw.name);
    strv_free((char **)l->mw.requires);
    strv_free((char **)l->mw.runs_before);
    strv_free((char **)l->mw.runs_after);
    free((void *)l->mw.owns);
    free(l);
}

void vie_app_free(vie_app *app)
{
    if (!app) return;
    if (atomic_load(&app->srv)) {
        LOG_ERROR("vie_app_free: the app is running; stop it first (leaking it instead)");
        return;
    }
    vie_test_end(app);
    pipeline_free(app);
    for (size_t i = 0; i < app->n_routes; i++)
        route_free(app->routes[i]);
    if (app->fallback) route_free(app->fallback);
    free(app->routes);
    for (size_t i = 0; i < app->n_layers; i++)
        layer_free(app->layers[i]);
    free(app->layers);
    for (size_t i = 0; i < app->n_groups; i++) {
        free(app->groups[i]->prefix);
        free(app->groups[i]->layers);
        free(app->groups[i]);
    }
    free(app->groups);
    keys_free(app);
    app_run_hooks(app, VIE_EV_APP_FREE, NULL);
    free(app->hooks);
    free(app->msources);
    free(app->checks);
    router_free(app->router);
    shm_destroy(app->shm);
    free(app->listen);
    free(app);
}

int vie_app_hook_add(vie_app *app, vie_app_event ev, vie_app_hook fn, void *arg)
{
    if (!app || !fn || (unsigned)ev > VIE_EV_APP_FREE) {
        LOG_ERROR("vie_app_hook_add refused: %s", !app  ? "the app is NULL"
                                                  : !fn ? "the hook is NULL"
                                                        : "unknown event");
        return VIE_EINVAL;
    }
    /* A worker hook added after the start would silently never run. */
    if (app->frozen && ev != VIE_EV_APP_FREE)
        return app_refuse_frozen(app, "vie_app_hook_add", "hook");
    if (app->n_hooks == app->cap_hooks) {
        size_t cap = app->cap_hooks ? app->cap_hooks * 2 : 8;
        app_hook *h = realloc(app->hooks, cap * sizeof *h);
        if (!h) return VIE_ENOMEM;
        app->hooks = h;
        app->cap_hooks = cap;
    }
    app->hooks[app->n_hooks++] = (app_hook){ev, fn, arg};
    return VIE_OK;
}

int vie_app_inherit(vie_app *app, const vie_app *from)
{
    if (!app || !from) {
        LOG_ERROR("vie_app_inherit refused: %s is NULL", !app ? "the app" : "from");
        return VIE_EINVAL;
    }
    if (app->frozen || app->n_layers) {
        LOG_ERROR("vie_app_inherit refused: call it before registering anything");
        return VIE_ESTATE;
    }
    app->state_scope = from->state_scope;
    return VIE_OK;
}

void *app_shared_state(vie_app *app, const char *name, size_t size, bool *fresh)
{
    void *p = shm_named(app->state_scope, name, size, fresh);
    if (!p) LOG_ERROR("no shared memory left for the state of %s (%zu bytes)", name, size);
    return p;
}

int app_add_freeze_check(vie_app *app, int (*fn)(vie_app *app, void *arg), void *arg)
{
    if (!app || !fn) return VIE_EINVAL;
    if (app->frozen) return app_refuse_frozen(app, "app_add_freeze_check", "check");
    if (app->n_checks == app->cap_checks) {
        size_t cap = app->cap_checks ? app->cap_checks * 2 : 8;
        freeze_check *v = realloc(app->checks, cap * sizeof *v);
        if (!v) return VIE_ENOMEM;
        app->checks = v;
        app->cap_checks = cap;
    }
    app->checks[app->n_checks++] = (freeze_check){fn, arg};
    return VIE_OK;
}

int vie_app_on_reload(vie_app *app, vie_app *(*fn)(void *arg), void *arg)
{
    if (!app) {
        LOG_ERROR("vie_app_on_reload refused: the app is NULL");
        return VIE_EINVAL;
    }
    app->reload_fn = fn;
    app->reload_arg = arg;
    return VIE_OK;
}

void app_run_hooks(vie_app *app, vie_app_event ev, void *loop)
{
    /* Stop runs in reverse, so what started last is torn down first. */
    if (ev == VIE_EV_WORKER_STOP) {
        for (size_t i = app->n_hooks; i-- > 0;)
            if (app->hooks[i].ev == ev) app->hooks[i].fn(app, loop, app->hooks[i].arg);
        return;
    }
    for (size_t i = 0; i < app->n_hooks; i++)
        if (app->hooks[i].ev == ev) app->hooks[i].fn(app, loop, app->hooks[i].arg);
}

int ptr_array_push(void ***items, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        void **v = realloc(*items, c * sizeof *v);
        if (!v) return -1;
        *items = v;
        *cap = c;
    }
    (*items)[(*n)++] = p;
    return 0;
}

int app_refuse_frozen(vie_app *app, const char *call, const char *what)
{
    app->stats->frozen_refusals++;
    LOG_ERROR("%s(%s) refused: the app is frozen (it has started); register everything before "
              "vie_app_run",
              call, what);
    return VIE_EFROZEN;
}

/* ------------------------------------------------------------------ */
/* Layers and groups                                                   */

static int add_layer(vie_app *app, vie_group *g, const vie_middleware *mw, void *state,
                     const char *call)
{
    if (!app || !mw) {
        LOG_ERROR("%s refused: %s is NULL", call, !app ? "the app or group" : "the middleware");
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, call, mw->name ? mw->name : "(unnamed)");
    if (!mw->name) {
        LOG_ERROR("%s refused: the middleware has no name", call);
        return VIE_EINVAL;
    }
    if (!mw->before && !mw->after) {
        LOG_ERROR("%s(%s) refused: a layer needs a before or an after hook", call, mw->name);
        return VIE_EINVAL;
    }
    if (app->n_layers >= VIE_MAX_LAYERS) {
        LOG_ERROR("%s(%s) refused: an app holds at most %d layers", call, mw->name, VIE_MAX_LAYERS);
        return VIE_EINVAL;
    }
    layer *l = calloc(1, sizeof *l);
    if (!l) return VIE_ENOMEM;
    bool oom = false;
    l->mw = *mw;
    l->mw.name = strdup(mw->name);
    l->mw.requires = (const char *const *)strv_dup(mw->requires, &oom);
    l->mw.runs_before = (const char *const *)strv_dup(mw->runs_before, &oom);
    l->mw.runs_after = (const char *const *)strv_dup(mw->runs_after, &oom);
    l->mw.owns = NULL;
    l->mw.free_state = NULL; /* only once registered: the caller frees on failure */
    size_t n_owns = 0;
    while (mw->owns && mw->owns[n_owns])
        n_owns++;
    /* Keys a layer owns are registered with it, first: a refused key
     * leaves nothing half-registered (the caller keeps its state). */
    for (size_t i = 0; i < n_owns; i++) {
        int rc = vie_key_register(app, mw->owns[i]);
        if (rc != VIE_OK) {
            layer_free(l); /* its free_state is not set yet: the state stays the caller's */
            return rc;
        }
    }
    if (n_owns) {
        vie_key **owns = calloc(n_owns + 1, sizeof *owns);
        if (owns) memcpy(owns, mw->owns, n_owns * sizeof *owns);
        l->mw.owns = (vie_key *const *)owns;
        oom |= !owns;
    }
    l->state = state;
    l->group = g;
    l->id = (uint32_t)app->n_layers;
    l->n = shm_alloc(app->shm, sizeof *l->n);
    if (oom || !l->mw.name || !l->n ||
        ptr_array_push((void ***)&app->layers, &app->n_layers, &app->cap_layers, l) != 0) {
        layer_free(l);
        return VIE_ENOMEM;
    }
    if (g && ptr_array_push((void ***)&g->layers, &g->n_layers, &g->cap_layers, l) != 0) {
        app->n_layers--;
        layer_free(l);
        return VIE_ENOMEM;
    }
    l->mw.free_state = mw->free_state;
    return VIE_OK;
}

int vie_use(vie_app *app, const vie_middleware *mw, void *state)
{
    return add_layer(app, NULL, mw, state, "vie_use");
}

int vie_group_use(vie_group *g, const vie_middleware *mw, void *state)
{
    if (!g) {
        LOG_ERROR("vie_group_use refused: the group is NULL");
        return VIE_EINVAL;
    }
    return add_layer(g->app, g, mw, state, "vie_group_use");
}

int vie_group_new(vie_app *app, vie_group *parent, const char *prefix, vie_group **out)
{
    if (out) *out = NULL;
    if (!app || !out) {
        LOG_ERROR("vie_group_new refused: %s is NULL", !app ? "app" : "out");
        return VIE_EINVAL;
    }
    if (!prefix) prefix = "";
    if (app->frozen) return app_refuse_frozen(app, "vie_group_new", prefix);
    if (parent && parent->app != app) {
        LOG_ERROR("vie_group_new(%s) refused: the parent group belongs to another app", prefix);
        return VIE_EINVAL;
    }
    size_t pl = strlen(prefix);
    if ((pl && prefix[0] != '/') || (pl && prefix[pl - 1] == '/')) {
        LOG_ERROR("vie_group_new(\"%s\") refused: a prefix is empty or starts with '/' and does "
                  "not end with one (\"/api\")",
                  prefix);
        return VIE_EINVAL;
    }
    vie_group *g = calloc(1, sizeof *g);
    if (!g) return VIE_ENOMEM;
    const char *base = parent ? parent->prefix : "";
    g->prefix = malloc(strlen(base) + pl + 1);
    if (!g->prefix) {
        free(g);
        return VIE_ENOMEM;
    }
    strcpy(g->prefix, base);
    strcat(g->prefix, prefix);
    g->app = app;
    g->parent = parent;
    g->id = (uint32_t)app->n_groups;
    if (ptr_array_push((void ***)&app->groups, &app->n_groups, &app->cap_groups, g) != 0) {
        free(g->prefix);
        free(g);
        return VIE_ENOMEM;
    }
    *out = g;
    return VIE_OK;
}

/* ------------------------------------------------------------------ */
/* Routes                                                              */

int vie_route_with(vie_app *app, const char *method, const char *pattern, vie_handler_fn fn,
                   void *arg, const vie_route_opts *opts)
{
    if (!app || !method || !pattern || !fn) {
        LOG_ERROR("vie_route refused: %s is NULL", !app       ? "app"
                                                   : !method  ? "method"
                                                   : !pattern ? "pattern"
                                                              : "handler");
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_route", pattern);
    vie_group *g = opts ? opts->group : NULL;
    if (g && g->app != app) {
        LOG_ERROR("vie_route(%s %s) refused: the group belongs to another app", method, pattern);
        return VIE_EINVAL;
    }
    const char *prefix = g ? g->prefix : "";

    route_entry *r = calloc(1, sizeof *r);
    if (!r) return VIE_ENOMEM;
    bool oom = false;
    r->method = strdup(method);
    r->pattern = malloc(strlen(prefix) + strlen(pattern) + 1);
    if (r->pattern) {
        strcpy(r->pattern, prefix);
        strcat(r->pattern, pattern);
    }
    size_t label_len = strlen(method) + strlen(prefix) + strlen(pattern) + 2;
    r->label = malloc(label_len);
    if (r->label) snprintf(r->label, label_len, "%s %s", method, r->pattern);
    r->fn = fn;
    r->arg = arg;
    r->group = g;
    r->timeout_ms = opts ? opts->timeout_ms : 0;
    r->blocking = opts && opts->blocking;
    r->requires = strv_dup(opts ? opts->requires : NULL, &oom);
    r->n = shm_alloc(app->shm, sizeof *r->n);
    if (oom || !r->method || !r->pattern || !r->label || !r->n) {
        route_free(r);
        return VIE_ENOMEM;
    }
    char err[512];
    router_error rc = router_add(app->router, method, r->pattern, r, err, sizeof err);
    if (rc != ROUTER_OK) {
        LOG_ERROR("vie_route(%s %s) refused: %s", method, r->pattern, err);
        route_free(r);
        return rc == ROUTER_ECONFLICT ? VIE_ECONFLICT
               : rc == ROUTER_ENOMEM  ? VIE_ENOMEM
                                      : VIE_EINVAL;
    }
    r->index = (uint32_t)app->n_routes;
    if (ptr_array_push((void ***)&app->routes, &app->n_routes, &app->cap_routes, r) != 0) {
        /* The router holds it now: keep it reachable for vie_app_free. */
        LOG_ERROR("vie_route(%s %s): out of memory", method, r->pattern);
        return VIE_ENOMEM;
    }
    return VIE_OK;
}

int vie_route(vie_app *app, const char *method, const char *pattern, vie_handler_fn fn, void *arg)
{
    return vie_route_with(app, method, pattern, fn, arg, NULL);
}

/* ------------------------------------------------------------------ */
/* Freeze                                                              */

int vie_app_freeze(vie_app *app)
{
    if (!app) return VIE_EINVAL;
    if (app->frozen) return VIE_OK;
    if (app->freeze_failed) return VIE_ECONFIG;
    clock_now_ns(); /* calibrate the clock before any request or thread */
    if (app->opt.debug_endpoints) {
        int rc = vie_route(app, "GET", "/debug/pipeline", describe_debug_handler, NULL);
        if (rc == VIE_OK)
            rc = vie_route(app, "GET", "/debug/requests", inflight_debug_handler, NULL);
        if (rc != VIE_OK) return rc;
    }
    if (!app->fallback) {
        route_entry *fb = calloc(1, sizeof *fb);
        if (!fb) return VIE_ENOMEM;
        fb->method = strdup("");
        fb->pattern = strdup("");
        fb->label = strdup("(no route)");
        fb->index = UINT32_MAX; /* not in app->routes */
        fb->n = &app->unmatched[0];
        app->fallback = fb;
        if (!fb->method || !fb->pattern || !fb->label) return VIE_ENOMEM;
    }
    int rc = pipeline_build(app);
    int problems = 0;
    for (size_t i = 0; rc == VIE_OK && i < app->n_checks; i++)
        problems += app->checks[i].fn(app, app->checks[i].arg);
    if (problems) {
        LOG_ERROR("%d problem%s in the layers' settings: the app refuses to start", problems,
                  problems > 1 ? "s" : "");
        rc = VIE_ECONFIG;
    }
    if (rc != VIE_OK) {
        app->freeze_failed = true;
        pipeline_free(app);
        return rc;
    }
    app->frozen = true;
    if (app->opt.debug) {
        char *text = vie_app_describe(app, VIE_FORMAT_TEXT);
        if (text) {
            LOG_INFO("debug: the pipeline of every route follows");
            fputs(text, stderr);
        }
        free(text);
    }
    return VIE_OK;
}
