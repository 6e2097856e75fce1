/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_validate_opts_init(vie_validate_opts *o)
{
    (void)o;
}

int vie_use_validate(vie_app *app, const vie_layer_opts *lo, const vie_validate_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("validate: not built yet");
    return VIE_EINVAL;
}

int mw_validate_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "validate: not built yet");
    return VIE_EINVAL;
}
