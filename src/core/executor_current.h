/* What the crash handler (server/crash.c) may ask the executor from a
 * signal handler: which request is running, and how to unwind it. */
#ifndef VIE_CORE_EXECUTOR_CURRENT_H
#define VIE_CORE_EXECUTOR_CURRENT_H

#include <stdbool.h>

#include "vie/vie.h"

/* The request whose hook or handler this thread is running, or NULL. */
extern _Thread_local vie_ctx *executor_current;

const char *executor_current_layer(const vie_ctx *c);
const char *executor_current_route(const vie_ctx *c);
/* The executor's jump point is armed: a crash can unwind to it. */
bool executor_can_unwind(const vie_ctx *c);
/* Count a crash of c in shared memory (async-signal-safe atomics). */
void executor_crash_count(vie_ctx *c);
/* on_crash: exit: write what is pending and a prebuilt 500 straight to the
 * socket (async-signal-safe). */
void executor_crash_answer_raw(vie_ctx *c);
/* Unwind to the executor after crash signal sig (does not return). */
VIE_NORETURN void executor_unwind_crash(vie_ctx *c, int sig);

#endif
