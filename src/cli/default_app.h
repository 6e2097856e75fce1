/* The app `vie serve` runs when no config is given. */
#ifndef VIE_CLI_DEFAULT_APP_H
#define VIE_CLI_DEFAULT_APP_H

#include "vie/vie.h"

int default_app_register(vie_app *app);

#endif
