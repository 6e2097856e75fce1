/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_auth_opts_init(vie_auth_opts *o)
{
    (void)o;
}

int vie_use_auth(vie_app *app, const vie_layer_opts *lo, const vie_auth_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("auth: not built yet");
    return VIE_EINVAL;
}

int mw_auth_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "auth: not built yet");
    return VIE_EINVAL;
}

VIE_API VIE_KEY_DEFINE(vie_principal, VIE_KEY_OWNER);
