/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_fault_opts_init(vie_fault_opts *o)
{
    (void)o;
}

int vie_use_fault(vie_app *app, const vie_layer_opts *lo, const vie_fault_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("fault: not built yet");
    return VIE_EINVAL;
}

int mw_fault_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "fault: not built yet");
    return VIE_EINVAL;
}
