/* timeout: a request deadline for the routes the layer covers; the
 * executor answers 504 once it passes.
 *
 * The deadline counts from the end of the request head, like the
 * server's request timeout, and replaces it; a route's own timeout
 * (vie_route_opts.timeout_ms, YAML `timeout:` on the route) is more
 * specific and wins. The executor checks the deadline before each later
 * layer and while a layer is parked (VIE_PENDING): a handler or layer
 * running synchronously is not interrupted, its answer simply stands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"
#include "core/app.h"
#include "core/ctx.h"
#include "core/log.h"
#include "mw/mw.h"

#define TIMEOUT_MAX_MS 3600000u /* 1 h */

typedef struct timeout_state {
    uint32_t ms;
} timeout_state;

static vie_status timeout_before(vie_ctx *c, void *arg)
{
    const timeout_state *st = arg;
    if (!c->route->timeout_ms) vie_deadline_set(c, st->ms);
    return VIE_NEXT;
}

void vie_timeout_opts_init(vie_timeout_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
}

static int timeout_use(vie_app *app, const vie_layer_opts *lo, const vie_timeout_opts *o, char *msg,
                       size_t cap)
{
    const char *name = mw_name(lo, "timeout");
    if (app->frozen) return app_refuse_frozen(app, "vie_use_timeout", name);
    if (o->timeout_ms < 1 || o->timeout_ms > TIMEOUT_MAX_MS) {
        snprintf(msg, cap, "timeout_ms %u is out of range: required, 1 ms .. 1 h (3600000)",
                 o->timeout_ms);
        return VIE_EINVAL;
    }
    timeout_state *st = malloc(sizeof *st);
    if (!st) {
        snprintf(msg, cap, "out of memory");
        return VIE_ENOMEM;
    }
    st->ms = o->timeout_ms;
    static const vie_middleware base = {
        .name = "timeout",
        .phase = VIE_GUARD,
        .before = timeout_before,
        .free_state = free,
    };
    int rc = mw_register(app, lo, &base, st);
    if (rc != VIE_OK)
        snprintf(msg, cap, "layer %s cannot be registered: %s", name, vie_strerror(rc));
    return rc;
}

int vie_use_timeout(vie_app *app, const vie_layer_opts *lo, const vie_timeout_opts *o)
{
    if (!app || !o) {
        LOG_ERROR("timeout: vie_use_timeout refused: %s is NULL", !app ? "the app" : "the options");
        return VIE_EINVAL;
    }
    char msg[256] = "";
    int rc = timeout_use(app, lo, o, msg, sizeof msg);
    if (rc != VIE_OK && msg[0]) LOG_ERROR("timeout %s: %s", mw_name(lo, "timeout"), msg);
    return rc;
}

int mw_timeout_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_timeout_opts o;
    vie_timeout_opts_init(&o);
    cfg_require(p, "timeout");
    cfg_get_ms(p, "timeout", &o.timeout_ms, 1, TIMEOUT_MAX_MS, 0);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    char msg[256] = "";
    int rc = timeout_use(app, lo, &o, msg, sizeof msg);
    if (rc != VIE_OK) cfg_error(p, NULL, "%s", msg[0] ? msg : vie_strerror(rc));
    return rc;
}
