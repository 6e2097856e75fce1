/* From a parsed request to a response: normalize the path, route, run
 * the route's chain, and make sure an answer exists. */
#ifndef VIE_CORE_DISPATCH_H
#define VIE_CORE_DISPATCH_H

#include "core/ctx.h"

/* Serve c (its head and body are complete). When it returns, the
 * response is complete in c->out, or (with the pipeline) the request is
 * parked and will complete later. */
void dispatch_request(vie_ctx *c);

/* Run the route's chain. The seam for the pipeline executor: today the
 * chain is the route handler alone. */
void executor_run(vie_ctx *c);

#endif
