/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_body_limit_opts_init(vie_body_limit_opts *o)
{
    (void)o;
}

int vie_use_body_limit(vie_app *app, const vie_layer_opts *lo, const vie_body_limit_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("body_limit: not built yet");
    return VIE_EINVAL;
}

int mw_body_limit_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "body_limit: not built yet");
    return VIE_EINVAL;
}
