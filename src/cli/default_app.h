/* The app `vie serve` runs when no config is given. */
#ifndef VIE_CLI_DEFAULT_APP_H
#define VIE_CLI_DEFAULT_APP_H

#include "vie/vie.h"

/* GET /, /healthz, /metrics and POST /echo; with chaos, also the routes
 * that fail on purpose (/chaos/sleep, /chaos/panic, /chaos/crash). */
int default_app_register(vie_app *app, bool chaos);

#endif
