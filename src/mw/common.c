/* Placing a built-in layer: its name, group, phase and order constraints
 * come from vie_layer_opts, the rest from the built-in. */
#include <stdarg.h>
#include <stdio.h>

#include "core/log.h"
#include "mw/mw.h"

int mw_refuse(mw_why *w, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
    w->key = key;
    return VIE_EINVAL;
}

const char *mw_name(const vie_layer_opts *lo, const char *def)
{
    return lo && lo->name && *lo->name ? lo->name : def;
}

int mw_register(vie_app *app, const vie_layer_opts *lo, const vie_middleware *base, void *state)
{
    vie_middleware mw = *base;
    if (lo) {
        mw.name = mw_name(lo, base->name);
        if (lo->phase_set) mw.phase = lo->phase;
        if (lo->requires) mw.requires = lo->requires;
        if (lo->runs_before) mw.runs_before = lo->runs_before;
        if (lo->runs_after) mw.runs_after = lo->runs_after;
    }
    int rc = lo && lo->group ? vie_group_use(lo->group, &mw, state) : vie_use(app, &mw, state);
    if (rc != VIE_OK && base->free_state && state) base->free_state(state);
    return rc;
}
