/* The app: options, layers, groups, routes, keys, and the
 * CONFIGURING -> FROZEN lifecycle. */
#ifndef VIE_CORE_APP_H
#define VIE_CORE_APP_H

#include <stdatomic.h>

#include "http/parser.h"
#include "router/router.h"
#include "vie/vie.h"
#include "vie/vie_mw.h"

/* Layer instances per app: each gets one bit of the per-request mask of
 * layers that ran. */
#define VIE_MAX_LAYERS  256
#define VIE_LAYER_WORDS (VIE_MAX_LAYERS / 64)

/* Upper bounds (seconds) of the request duration histogram. */
#define METRIC_BUCKETS 14
extern const double metric_bucket_bounds[METRIC_BUCKETS];

typedef struct layer_counters {
    _Atomic uint64_t chain_breaks;    /* VIE_DONE without a response */
    _Atomic uint64_t next_after_done; /* VIE_NEXT after answering */
    _Atomic uint64_t async_timeouts;  /* parked past its async deadline */
    _Atomic uint64_t invalid_status;  /* returned something not a vie_status */
    _Atomic uint64_t panics;          /* vie_panic / VIE_ASSERT in its hooks */
    _Atomic uint64_t crashes;         /* crash signals in its hooks */
    /* Time in the layer (before hook, parked, after hook), when the
     * metrics built-in turned the histograms on. */
    _Atomic uint64_t buckets[METRIC_BUCKETS + 1]; /* layer_bucket_bounds; the last is +Inf */
    _Atomic uint64_t duration_ns;
} layer_counters;

/* Upper bounds (seconds) of the per-layer histogram: a layer takes
 * microseconds, a request milliseconds. */
extern const double layer_bucket_bounds[METRIC_BUCKETS];

/* A route's counters (and those of the requests no route matched). */
typedef struct route_counters {
    _Atomic uint64_t unanswered;                  /* handler returned without answering */
    _Atomic uint64_t requires_refused;            /* reached without a required layer */
    _Atomic uint64_t panics;                      /* vie_panic in the handler */
    _Atomic uint64_t crashes;                     /* crash signals in the handler */
    _Atomic uint64_t by_status[500];              /* responses, [status - 100] */
    _Atomic uint64_t buckets[METRIC_BUCKETS + 1]; /* durations, per bucket; the last is +Inf */
    _Atomic uint64_t duration_us;                 /* sum of durations, microseconds */
} route_counters;

/* One registered layer: the description (deep-copied), its state, where
 * it was registered. */
typedef struct layer {
    vie_middleware mw;
    void *state;
    uint32_t id;       /* registration order, app-wide; its bit in the ran-mask */
    vie_group *group;  /* NULL: app-wide */
    layer_counters *n; /* in shared memory: totals across workers */
} layer;

struct vie_group {
    vie_app *app;
    vie_group *parent;
    char *prefix; /* full prefix, parents' included */
    layer **layers;
    size_t n_layers, cap_layers;
    uint32_t id;
};

/* A route's effective chain, computed once at freeze. */
typedef struct chain {
    layer **layers; /* sorted */
    char **reasons; /* why layers[i] follows layers[i-1] (or is first) */
    uint32_t n;
} chain;

/* A route requirement resolved at freeze: any layer of the mask must run. */
typedef struct route_requirement {
    char *name;
    uint64_t mask[VIE_LAYER_WORDS];
} route_requirement;

typedef struct route_entry {
    char *method;
    char *pattern; /* full: group prefix + pattern */
    char *label;   /* "GET /users/:id": how logs name the route */
    vie_handler_fn fn;
    void *arg;
    vie_group *group;
    char **requires; /* NULL-terminated copy */
    route_requirement *reqs;
    uint32_t n_reqs;
    uint32_t timeout_ms;
    bool blocking; /* the handler runs on the thread pool */
    chain chain;
    route_counters *n; /* in shared memory: totals across workers */
    uint32_t index;    /* in app->routes: the same in every worker */
} route_entry;

/* Counters of events that must never pass silently. The metrics issue
 * turns them into Prometheus series; tests read them directly. */
typedef struct vie_stats {
    _Atomic int64_t in_flight;           /* requests dispatched and not yet answered */
    _Atomic uint64_t crashes;            /* crash signals in layers and handlers */
    _Atomic uint64_t worker_restarts;    /* workers the supervisor replaced */
    _Atomic uint64_t writer_refusals;    /* response calls out of order */
    _Atomic uint64_t chain_breaks;       /* layers + handlers that did not answer */
    _Atomic uint64_t next_after_done;    /* VIE_NEXT after answering */
    _Atomic uint64_t requires_refused;   /* route reached without a required layer */
    _Atomic uint64_t key_conflicts;      /* refused key writes */
    _Atomic uint64_t async_timeouts;     /* VIE_PENDING past its deadline */
    _Atomic uint64_t deadline_exceeded;  /* request deadline */
    _Atomic uint64_t stale_refs;         /* vie_ref used after its request ended */
    _Atomic uint64_t panics;             /* vie_panic and VIE_ASSERT, contained */
    _Atomic uint64_t frozen_refusals;    /* registration after start */
    _Atomic uint64_t client_gone;        /* client closed during a request */
    _Atomic uint64_t bad_requests;       /* parse errors answered 4xx/5xx */
    _Atomic uint64_t conn_refused_limit; /* max_connections reached */
    _Atomic uint64_t timeouts;           /* header/body/write timeouts that closed a connection */
} vie_stats;

struct server;
struct shm_region;
struct vie_buf;

/* A vie_app_hook_add registration. */
typedef struct app_hook {
    vie_app_event ev;
    vie_app_hook fn;
    void *arg;
} app_hook;

/* A built-in's check of what exists only at freeze (routes). */
typedef struct freeze_check {
    int (*fn)(vie_app *app, void *arg);
    void *arg;
} freeze_check;

/* More series for /metrics, from a built-in (metrics_add_source). */
typedef struct metrics_source {
    void (*fn)(struct vie_buf *b, void *arg);
    void *arg;
} metrics_source;

struct vie_app {
    vie_options opt;
    char *listen; /* owned copy of opt.listen */
    http_limits limits;
    vie_router *router;
    route_entry **routes;
    size_t n_routes, cap_routes;
    layer **layers; /* every layer, in registration order */
    size_t n_layers, cap_layers;
    vie_group **groups;
    size_t n_groups, cap_groups;
    vie_key **keys;
    size_t n_keys, cap_keys;
    bool frozen;
    bool freeze_failed;
    _Atomic(struct server *) srv; /* set while running; vie_app_stop reads it */
    atomic_bool stop_requested;
    atomic_bool supervising;         /* this process is the supervisor (supervisor.c) */
    struct testkit *testkit;         /* vie_test_begin */
    volatile bool tainted;           /* a crash signal was contained: this process must go */
    struct shm_region *shm;          /* counters shared by every worker */
    vie_stats *stats;                /* in shm */
    _Atomic uint64_t *key_conflicts; /* in shm, per key slot */
    const struct layer **key_owners; /* per key slot, resolved at freeze */
    route_counters *unmatched;       /* in shm, per http_method id: requests no route took */
    struct route_entry *fallback;    /* the app-wide layers alone: 404 and 405 run through them */
    struct inflight_slot *inflight;  /* in shm: every worker\'s requests in flight */
    app_hook *hooks;                 /* vie_app_hook_add, in registration order */
    size_t n_hooks, cap_hooks;
    metrics_source *msources;
    size_t n_msources, cap_msources;
    freeze_check *checks; /* app_add_freeze_check */
    size_t n_checks, cap_checks;
    bool layer_histograms;            /* time every layer into layer_counters.buckets */
    vie_app *(*reload_fn)(void *arg); /* SIGHUP under a supervisor: the next app */
    unsigned long state_scope;        /* app_shared_state: the same across reloads */
    void *reload_arg;
};

/* Shared memory for state that survives a config reload (breakers,
 * rate-limit tables): the same (name, size) in an app that inherited this
 * app's scope (vie_app_inherit) gives the same memory. *fresh: new and
 * zeroed. NULL when out of shared memory (logged). */
void *app_shared_state(vie_app *app, const char *name, size_t size, bool *fresh);

/* At freeze, after the pipeline validated, fn(app, arg) checks what only
 * exists then (a built-in naming routes by label): it logs each problem,
 * naming the layer, and returns how many. Any problem fails the freeze
 * (VIE_ECONFIG): a typo in a route name must not pass. */
int app_add_freeze_check(vie_app *app, int (*fn)(vie_app *app, void *arg), void *arg);

/* Run the hooks registered for ev (WORKER_STOP: in reverse). */
void app_run_hooks(vie_app *app, vie_app_event ev, void *loop);

/* Refuse a registration call on a frozen app: logs, counts, VIE_EFROZEN. */
int app_refuse_frozen(vie_app *app, const char *call, const char *what);

/* Append p to a growable pointer array; -1 when out of memory. */
int ptr_array_push(void ***items, size_t *n, size_t *cap, void *p);

/* Sort and validate every chain (pipeline.c); VIE_OK or VIE_ECONFIG. */
int pipeline_build(vie_app *app);
void pipeline_free(vie_app *app);

/* Keys (keys.c). */
void keys_free(vie_app *app);

#endif
