/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_trace_opts_init(vie_trace_opts *o)
{
    (void)o;
}

int vie_use_trace(vie_app *app, const vie_layer_opts *lo, const vie_trace_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("trace: not built yet");
    return VIE_EINVAL;
}

int mw_trace_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "trace: not built yet");
    return VIE_EINVAL;
}

VIE_API VIE_KEY_DEFINE(vie_trace, VIE_KEY_OWNER);
