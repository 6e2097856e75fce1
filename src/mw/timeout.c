/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_timeout_opts_init(vie_timeout_opts *o)
{
    (void)o;
}

int vie_use_timeout(vie_app *app, const vie_layer_opts *lo, const vie_timeout_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("timeout: not built yet");
    return VIE_EINVAL;
}

int mw_timeout_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "timeout: not built yet");
    return VIE_EINVAL;
}
