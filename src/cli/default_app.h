/* The C routes of `vie serve`: an echo and the chaos routes. */
#ifndef VIE_CLI_DEFAULT_APP_H
#define VIE_CLI_DEFAULT_APP_H

#include "vie/vie.h"

/* The routes of `vie serve` that YAML cannot express: POST /echo (with
 * the default config) and, with chaos, the routes that fail on purpose
 * (/chaos/sleep, /chaos/block, /chaos/panic, /chaos/crash). */
int default_app_register(vie_app *app, bool echo_route, bool chaos);

#endif
