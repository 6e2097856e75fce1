/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_request_id_opts_init(vie_request_id_opts *o)
{
    (void)o;
}

int vie_use_request_id(vie_app *app, const vie_layer_opts *lo, const vie_request_id_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("request_id: not built yet");
    return VIE_EINVAL;
}

int mw_request_id_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "request_id: not built yet");
    return VIE_EINVAL;
}

VIE_API VIE_KEY_DEFINE(vie_request_id, VIE_KEY_OWNER);
