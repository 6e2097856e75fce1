/* The app: options, routes, and the CONFIGURING -> FROZEN lifecycle. */
#ifndef VIE_CORE_APP_H
#define VIE_CORE_APP_H

#include <stdatomic.h>

#include "http/parser.h"
#include "router/router.h"
#include "vie/vie.h"

typedef struct route_entry {
    char *method;
    char *pattern;
    char *label; /* "GET /users/:id": how logs name the route */
    vie_handler_fn fn;
    void *arg;
} route_entry;

/* Counters of events that must never pass silently. The metrics issue
 * turns them into Prometheus series; tests read them directly. */
typedef struct vie_stats {
    uint64_t requests;
    uint64_t writer_refusals;    /* response calls out of order */
    uint64_t unanswered;         /* handler returned without a response */
    uint64_t bad_requests;       /* parse errors answered 4xx/5xx */
    uint64_t conn_refused_limit; /* max_connections reached */
    uint64_t timeouts;           /* header/body/write/idle timeouts that closed a connection */
} vie_stats;

struct server;

struct vie_app {
    vie_options opt;
    char *listen; /* owned copy of opt.listen */
    http_limits limits;
    vie_router *router;
    route_entry **routes;
    size_t n_routes, cap_routes;
    bool frozen;
    _Atomic(struct server *) srv; /* set while running; vie_app_stop reads it */
    atomic_bool stop_requested;
    vie_stats stats;
};

/* Refuse a registration call on a frozen app: logs and returns VIE_EFROZEN. */
int app_refuse_frozen(const vie_app *app, const char *call, const char *what);

/* Freeze: from here on the app's routes and options are read-only. */
int app_freeze(vie_app *app);

#endif
