/* What every built-in middleware shares: registration from its options
 * and layer placement, and the table that maps a YAML "type:" to the
 * function reading that type's parameters. */
#ifndef VIE_MW_MW_H
#define VIE_MW_MW_H

#include "config/cfg.h"
#include "vie/vie_mw.h"

/* Register base (a built-in's description: name = its type, phase, hooks,
 * owns, free_state) with state, placed and named by lo (NULL: defaults).
 * On failure state is freed with base->free_state and the error is
 * returned (the core has logged why). */
int mw_register(vie_app *app, const vie_layer_opts *lo, const vie_middleware *base, void *state);

/* Why a built-in refused its options: the message, and the YAML key at
 * fault, so the C API logs the message and the YAML reader points at the
 * key (cfg_error(p, why.key, "%s", why.msg)). */
typedef struct mw_why {
    const char *key;
    char msg[512];
} mw_why;

/* Fill w and return VIE_EINVAL. */
int mw_refuse(mw_why *w, const char *key, const char *fmt, ...) VIE_PRINTF(3, 4);

/* The layer name lo gives, or def. */
const char *mw_name(const vie_layer_opts *lo, const char *def);

/* Read a built-in's parameters from YAML (p: the instance's "params"
 * map; errors go through p with file:line:column) and register it with
 * lo. Returns VIE_OK, or an error after recording why in p. */
typedef int (*mw_from_yaml_fn)(vie_app *app, const vie_layer_opts *lo, cfg_params *p);

typedef struct mw_type {
    const char *name; /* the YAML type: "request_id" */
    vie_phase phase;  /* its default phase */
    bool is_layer;    /* false: an app feature (metrics), not in a chain */
    mw_from_yaml_fn from_yaml;
    const char *summary; /* one line for `vie check` and errors */
} mw_type;

/* The type called name, or NULL. */
const mw_type *mw_type_find(const char *name);
/* Every type, for did-you-mean and documentation. */
const mw_type *mw_types(size_t *n);

/* One from_yaml per built-in, each in its own file. */
int mw_request_id_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_trace_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_access_log_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_metrics_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_timeout_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_auth_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_cors_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_body_limit_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_security_headers_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_validate_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_rate_limit_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_fault_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_circuit_breaker_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);
int mw_slo_from_yaml(vie_app *app, const vie_layer_opts *lo, cfg_params *p);

/* Tighten the rate_limit layer called layer_name: its rate is multiplied
 * by factor (0 < factor <= 1; 1 restores the configured rate), for every
 * worker at once (kept in the limiter's shared state) and from the next
 * decision on; burst is unchanged. Idempotent and cheap (the slo built-in
 * calls it on every start and stop of its actions and again when a
 * worker starts). VIE_OK, or VIE_EINVAL (logged) when no rate_limit layer
 * has that name or factor is out of range. Implemented in rate_limit.c. */
int mw_rate_limit_set_factor(vie_app *app, const char *layer_name, double factor);
/* Is there a rate_limit layer called layer_name? (Checked at freeze.) */
bool mw_rate_limit_exists(const vie_app *app, const char *layer_name);

#endif
