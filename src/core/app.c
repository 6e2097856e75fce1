/* App lifecycle: options, route registration while CONFIGURING, freeze. */
#include "core/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

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
    if (!app->listen || !app->router) {
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

void vie_app_free(vie_app *app)
{
    if (!app) return;
    if (atomic_load(&app->srv)) {
        LOG_ERROR("vie_app_free: the app is running; stop it first (leaking it instead)");
        return;
    }
    for (size_t i = 0; i < app->n_routes; i++) {
        route_entry *r = app->routes[i];
        free(r->method);
        free(r->pattern);
        free(r->label);
        free(r);
    }
    free(app->routes);
    router_free(app->router);
    free(app->listen);
    free(app);
}

int app_refuse_frozen(const vie_app *app, const char *call, const char *what)
{
    (void)app;
    LOG_ERROR("%s(%s) refused: the app is frozen (it has started); register everything before "
              "vie_app_run",
              call, what);
    return VIE_EFROZEN;
}

int vie_route(vie_app *app, const char *method, const char *pattern, vie_handler_fn fn, void *arg)
{
    if (!app || !method || !pattern || !fn) {
        LOG_ERROR("vie_route refused: %s is NULL", !app       ? "app"
                                                   : !method  ? "method"
                                                   : !pattern ? "pattern"
                                                              : "handler");
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_route", pattern);

    route_entry *r = calloc(1, sizeof *r);
    if (!r) return VIE_ENOMEM;
    r->method = strdup(method);
    r->pattern = strdup(pattern);
    size_t label_len = strlen(method) + strlen(pattern) + 2;
    r->label = malloc(label_len);
    r->fn = fn;
    r->arg = arg;
    if (r->label) snprintf(r->label, label_len, "%s %s", method, pattern);
    if (app->n_routes == app->cap_routes) {
        size_t cap = app->cap_routes ? app->cap_routes * 2 : 16;
        route_entry **v = realloc(app->routes, cap * sizeof *v);
        if (v) {
            app->routes = v;
            app->cap_routes = cap;
        }
    }
    if (!r->method || !r->pattern || !r->label || app->n_routes == app->cap_routes) {
        free(r->method);
        free(r->pattern);
        free(r->label);
        free(r);
        return VIE_ENOMEM;
    }

    char err[512];
    router_error rc = router_add(app->router, method, pattern, r, err, sizeof err);
    if (rc != ROUTER_OK) {
        LOG_ERROR("vie_route(%s %s) refused: %s", method, pattern, err);
        free(r->method);
        free(r->pattern);
        free(r->label);
        free(r);
        return rc == ROUTER_ECONFLICT ? VIE_ECONFLICT
               : rc == ROUTER_ENOMEM  ? VIE_ENOMEM
                                      : VIE_EINVAL;
    }
    app->routes[app->n_routes++] = r;
    return VIE_OK;
}

int app_freeze(vie_app *app)
{
    /* The pipeline issue sorts and validates the chains here. */
    app->frozen = true;
    return VIE_OK;
}
