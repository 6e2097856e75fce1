/* From a parsed request to a response: normalize the path, route, run
 * the route's chain, and make sure an answer exists. */
#ifndef VIE_CORE_DISPATCH_H
#define VIE_CORE_DISPATCH_H

#include "core/ctx.h"

/* Serve c (its head and body are complete). When it returns, the
 * response is complete in c->out, or (with the pipeline) the request is
 * parked and will complete later. */
void dispatch_request(vie_ctx *c);

/* Run the route's chain and handler (executor.c). When it returns the
 * request is done (c->exec == EXEC_DONE) or parked (EXEC_PARKED): then
 * c->on_complete is called when it completes. */
void executor_start(vie_ctx *c);
/* The owner of a parked request is going away (client gone, server
 * stopping): cancel it, run its after hooks and defers, no answer. */
void executor_cancel(vie_ctx *c, const char *why);

#endif
