/* PLACEHOLDER: replaced by the real implementation (issue 5). */
#include "core/log.h"
#include "mw/mw.h"

void vie_security_headers_opts_init(vie_security_headers_opts *o)
{
    (void)o;
}

int vie_use_security_headers(vie_app *app, const vie_layer_opts *lo, const vie_security_headers_opts *o)
{
    (void)app;
    (void)lo;
    (void)o;
    LOG_ERROR("security_headers: not built yet");
    return VIE_EINVAL;
}

int mw_security_headers_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p)
{
    (void)app;
    (void)lo;
    cfg_error(p, NULL, "security_headers: not built yet");
    return VIE_EINVAL;
}
