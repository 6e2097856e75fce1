/* Crash signals in layers and handlers (crash.c). */
#ifndef VIE_SERVER_CRASH_H
#define VIE_SERVER_CRASH_H

#include "vie/vie.h"

/* Install the handlers (and an alternate stack) in this process. */
int crash_install(vie_on_crash mode);

#endif
