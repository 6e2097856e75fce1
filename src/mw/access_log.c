/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_access_log_opts_init(vie_access_log_opts *o)
{
    (void)o;
}

int vie_use_access_log(vie_app *app, const vie_layer_opts *lo, const vie_access_log_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("access_log: not built yet");
    return VIE_EINVAL;
}

int mw_access_log_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "access_log: not built yet");
    return VIE_EINVAL;
}
