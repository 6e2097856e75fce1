/* From a loaded config (cfg.h) to a running app: the server section
 * becomes vie_options, the middleware instances become layers placed on
 * the app (pipeline), on groups and on routes, and each route gets its
 * action (respond or static). Every problem is recorded in cx with the
 * file, line and column of the value at fault. */
#ifndef VIE_CONFIG_BUILD_H
#define VIE_CONFIG_BUILD_H

#include "config/cfg.h"
#include "vie/vie_mw.h"

/* What the built app holds on to besides the layers: free it after the
 * app (config_resources_free). */
typedef struct config_resources {
    vie_static **statics;
    size_t n_statics, cap_statics;
} config_resources;

/* Read the server section into o, over the values o already has, and
 * its log_level into *log_level (a vie_log_level; unchanged when absent)
 * for the caller to apply once the config is accepted. Returns the
 * number of errors recorded. */
int config_read_server(cfg_ctx *cx, vie_options *o, int *log_level);

/* Register the middleware, groups and routes of the config on app (which
 * must have been made from the options config_read_server gave).
 * Returns the number of errors recorded in cx; the app must not be run
 * when it is not 0. */
int config_build(cfg_ctx *cx, vie_app *app, config_resources *res);

void config_resources_free(config_resources *res);

#endif
