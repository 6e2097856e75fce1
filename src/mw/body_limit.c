/* body_limit: 413 for a request whose body is larger than a route
 * allows, tighter than the server's max_body.
 *
 * The server reads a whole body (up to max_body) before the pipeline
 * runs, so this layer decides on the declared Content-Length and on the
 * bytes received (a chunked body has no length until it has arrived): it
 * keeps a large body away from the handler, not off the wire. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"
#include "core/app.h"
#include "core/ctx.h"
#include "core/log.h"
#include "mw/mw.h"

#define BODY_LIMIT_MAX (1ull << 40) /* 1 TiB */

typedef struct body_limit_state {
    uint64_t max;
} body_limit_state;

static vie_status body_limit_before(vie_ctx *c, void *arg)
{
    const body_limit_state *st = arg;
    uint64_t got = vie_body(c).len;
    uint64_t declared = c->req.has_content_length ? c->req.content_length : 0;
    uint64_t size = declared > got ? declared : got;
    if (size <= st->max) return VIE_NEXT;
    char detail[160];
    snprintf(detail, sizeof detail,
             "the request body is %llu bytes; this route accepts at most %llu",
             (unsigned long long)size, (unsigned long long)st->max);
    return vie_send_problem(c, 413, detail);
}

void vie_body_limit_opts_init(vie_body_limit_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
}

/* Register, or put why not in msg. */
static int body_limit_use(vie_app *app, const vie_layer_opts *lo, const vie_body_limit_opts *o,
                          char *msg, size_t cap)
{
    const char *name = mw_name(lo, "body_limit");
    if (app->frozen) return app_refuse_frozen(app, "vie_use_body_limit", name);
    if (o->max_bytes < 1 || o->max_bytes > BODY_LIMIT_MAX) {
        snprintf(msg, cap, "max_bytes %llu is out of range: required, 1 byte .. 1 TiB",
                 (unsigned long long)o->max_bytes);
        return VIE_EINVAL;
    }
    if (o->max_bytes >= app->opt.max_body)
        LOG_WARN("body_limit %s: max_bytes %llu is not below the server's max_body %llu: the "
                 "server answers 413 first, this layer never does",
                 name, (unsigned long long)o->max_bytes, (unsigned long long)app->opt.max_body);
    body_limit_state *st = malloc(sizeof *st);
    if (!st) {
        snprintf(msg, cap, "out of memory");
        return VIE_ENOMEM;
    }
    st->max = o->max_bytes;
    static const vie_middleware base = {
        .name = "body_limit",
        .phase = VIE_GUARD,
        .before = body_limit_before,
        .free_state = free,
    };
    int rc = mw_register(app, lo, &base, st);
    if (rc != VIE_OK)
        snprintf(msg, cap, "layer %s cannot be registered: %s", name, vie_strerror(rc));
    return rc;
}

int vie_use_body_limit(vie_app *app, const vie_layer_opts *lo, const vie_body_limit_opts *o)
{
    if (!app || !o) {
        LOG_ERROR("body_limit: vie_use_body_limit refused: %s is NULL",
                  !app ? "the app" : "the options");
        return VIE_EINVAL;
    }
    char msg[256] = "";
    int rc = body_limit_use(app, lo, o, msg, sizeof msg);
    if (rc != VIE_OK && msg[0]) LOG_ERROR("body_limit %s: %s", mw_name(lo, "body_limit"), msg);
    return rc;
}

int mw_body_limit_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_body_limit_opts o;
    vie_body_limit_opts_init(&o);
    cfg_require(p, "max_bytes");
    cfg_get_bytes(p, "max_bytes", &o.max_bytes, 1, BODY_LIMIT_MAX, 0);
    if (cfg_params_finish(p)) return VIE_EINVAL;
    char msg[256] = "";
    int rc = body_limit_use(app, lo, &o, msg, sizeof msg);
    if (rc != VIE_OK) cfg_error(p, NULL, "%s", msg[0] ? msg : vie_strerror(rc));
    return rc;
}
