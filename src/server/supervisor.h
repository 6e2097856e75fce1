/* The supervisor process and its workers (supervisor.c). */
#ifndef VIE_SERVER_SUPERVISOR_H
#define VIE_SERVER_SUPERVISOR_H

#include "core/app.h"

/* Bind the app's address, fork app->opt.workers workers serving it, and
 * supervise them until SIGTERM/SIGINT (drain, then VIE_OK). The app must
 * be frozen. */
int supervisor_run(vie_app *app);

#endif
