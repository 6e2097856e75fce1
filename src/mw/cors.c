/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_cors_opts_init(vie_cors_opts *o)
{
    (void)o;
}

int vie_use_cors(vie_app *app, const vie_layer_opts *lo, const vie_cors_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("cors: not built yet");
    return VIE_EINVAL;
}

int mw_cors_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "cors: not built yet");
    return VIE_EINVAL;
}
