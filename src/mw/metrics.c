/* metrics: GET /metrics and per-layer duration histograms. Not a layer:
 * the executor times every layer itself, which no layer could do for
 * the layers before it. */
#include <string.h>

#include "core/app.h"
#include "core/log.h"
#include "mw/mw.h"

void vie_metrics_opts_init(vie_metrics_opts *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->path = "/metrics";
    o->layer_histograms = true;
}

int vie_use_metrics(vie_app *app, const vie_metrics_opts *o)
{
    vie_metrics_opts def;
    if (!o) {
        vie_metrics_opts_init(&def);
        o = &def;
    }
    if (!app) {
        LOG_ERROR("vie_use_metrics refused: the app is NULL");
        return VIE_EINVAL;
    }
    const char *path = o->path && *o->path ? o->path : "/metrics";
    if (path[0] != '/') {
        LOG_ERROR("metrics: path \"%s\" must start with '/'", path);
        return VIE_EINVAL;
    }
    if (app->frozen) return app_refuse_frozen(app, "vie_use_metrics", path);
    int rc = vie_route(app, "GET", path, vie_metrics_handler, NULL);
    if (rc == VIE_OK && o->layer_histograms) app->layer_histograms = true;
    return rc;
}

int mw_metrics_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    vie_metrics_opts o;
    vie_metrics_opts_init(&o);
    cfg_get_str(p, "path", &o.path, o.path);
    cfg_get_bool(p, "layer_histograms", &o.layer_histograms, true);
    if (lo && (lo->phase_set || lo->requires || lo->runs_before || lo->runs_after || lo->group))
        cfg_error(p, NULL,
                  "metrics is not a layer (the executor times every layer): it takes no phase, "
                  "requires, runs_before, runs_after or group placement");
    if (cfg_params_finish(p)) return VIE_EINVAL;
    if (o.path[0] != '/') {
        cfg_error(p, "path", "expected a path starting with '/', got \"%s\"", o.path);
        return VIE_EINVAL;
    }
    int rc = vie_use_metrics(app, &o);
    if (rc != VIE_OK)
        cfg_error(p, "path", "cannot serve metrics on %s: %s", o.path, vie_strerror(rc));
    return rc;
}
