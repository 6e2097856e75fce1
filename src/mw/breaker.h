/* The circuit breaker's state machine and sliding window, pure: no I/O,
 * no locks, no clock of its own. Every call takes the time (now_ns, any
 * monotonic origin) from its caller, so tests drive it without sleeping.
 * The layer (circuit_breaker.c) keeps cb_core and the window in shared
 * memory, holds a process-shared mutex around each call and logs the
 * events these calls report.
 *
 * Everything here is position-independent (no pointers inside cb_core or
 * the window): the memory is mapped in every worker and survives a config
 * reload.
 *
 * Semantics (resilience4j's, with its traps fixed):
 *
 * - States, integer order fixed (metrics show these codes):
 *   CLOSED=0 OPEN=1 HALF_OPEN=2 DISABLED=3 FORCED_OPEN=4 METRICS_ONLY=5.
 *   The last three are modes: DISABLED permits everything and records
 *   nothing; FORCED_OPEN refuses everything (counted not_permitted);
 *   METRICS_ONLY runs the machine (window, transitions, events) as NORMAL
 *   would, but every call is permitted (shadow mode). A call the shadow
 *   machine would have refused is counted not_permitted, let through, and
 *   its result ignored, exactly as if it had been refused.
 *
 * - Window: COUNT (the last window_size calls, a ring) or TIME (the last
 *   window_size seconds in one-second buckets; the current second is one
 *   of them, so the window holds between size-1 and size seconds of
 *   calls). Seconds are now_ns / 1e9 of the caller's clock.
 *
 * - A recorded call is a failure (the caller decides: 5xx, a listed
 *   status...) or a success, and independently slow when its duration is
 *   >= slow_ns. So a call can be both failed and slow: it counts in both
 *   rates. Counters: success + failure = recorded calls; slow counts the
 *   slow ones among them (a subset, not a third kind); not_permitted the
 *   refused calls.
 *
 * - No rate before min_calls calls are in the window (the caller clamps
 *   min_calls to a COUNT window's size and says so). Then, in CLOSED:
 *   failure rate >= failure_rate, or slow rate >= slow_rate -> OPEN.
 *   Both compare with >= (50% of 16 calls is 8 failures and opens),
 *   computed as count * 100 >= threshold * calls.
 *
 * - Combined rule (p99_ns > 0): OPEN also when the window's p99 latency
 *   > p99_ns AND its failure rate > p99_error_rate (both strict: "exceeds").
 *   p99 is the nearest-rank 99th percentile: the ceil(0.99 n)-th smallest
 *   latency. The window keeps a latency histogram (per call in COUNT, per
 *   second in TIME) of CB_HIST buckets whose bounds are p99_ns * 2^(j-7):
 *   bucket 7 ends exactly at p99_ns, so "p99 > p99_ns" is decided exactly;
 *   the reported p99 is its bucket's range.
 *
 * - OPEN lasts open_wait_ns * multiplier^k, capped at open_wait_max_ns,
 *   where k counts the consecutive re-opens from HALF_OPEN (0 for an open
 *   from CLOSED; back to 0 once CLOSED). The first call after it moves the
 *   breaker to HALF_OPEN (transitions happen on calls, never on a timer:
 *   the state a scrape shows is the one the last call left).
 *
 * - HALF_OPEN lets half_open_calls probes through (counted under the
 *   caller's lock: never more in flight), refuses the others, and judges
 *   when every probe has completed: failure or slow rate of the probes >=
 *   its threshold -> OPEN (k + 1), else CLOSED with an empty window. The
 *   p99 rule does not judge probes (a few calls have no p99). If the probes
 *   have not all completed half_open_max_wait_ns after entering HALF_OPEN
 *   (a hung request, a worker that died with a probe), the breaker goes
 *   back to OPEN (k + 1): it can never stick half-open.
 *
 * - Every permit carries the epoch of the state that gave it; each
 *   transition bumps the epoch. A result whose epoch is stale (a CLOSED
 *   call finishing after the breaker opened, a probe of a half-open period
 *   that expired) is counted in the counters but judges nothing.
 *
 * - A permit whose call produced no result (the client went away) is
 *   given back with cb_release: a probe slot is freed for another call.
 *
 * - Entering OPEN or CLOSED empties the window. Leaving DISABLED or
 *   FORCED_OPEN for NORMAL or METRICS_ONLY starts CLOSED with an empty
 *   window; METRICS_ONLY -> NORMAL keeps the shadow machine's state (it
 *   is what enforcing would have had).
 */
#ifndef VIE_MW_BREAKER_H
#define VIE_MW_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_HIST      16 /* latency buckets per window bucket */
#define CB_HIST_AT   7  /* the bucket whose upper bound is p99_ns */
#define CB_NS_PER_S  1000000000ull
#define CB_MAX_COUNT 100000u /* a COUNT window's most calls */
#define CB_MAX_TIME  3600u   /* a TIME window's most seconds */

typedef enum cb_state {
    CB_CLOSED = 0,
    CB_OPEN = 1,
    CB_HALF_OPEN = 2,
    CB_DISABLED = 3,
    CB_FORCED_OPEN = 4,
    CB_METRICS_ONLY = 5,
    CB_N_STATES = 6,
} cb_state;

typedef enum cb_mode {
    CB_MODE_NORMAL = 0,
    CB_MODE_DISABLED,
    CB_MODE_FORCED_OPEN,
    CB_MODE_METRICS_ONLY,
} cb_mode;

typedef enum cb_window_kind {
    CB_WINDOW_COUNT = 0,
    CB_WINDOW_TIME,
} cb_window_kind;

/* The counters of cb_core.kinds. */
typedef enum cb_kind {
    CB_K_SUCCESS = 0,
    CB_K_FAILURE,
    CB_K_SLOW,
    CB_K_NOT_PERMITTED,
    CB_N_KINDS,
} cb_kind;

/* The effective settings (already validated and clamped). */
typedef struct cb_config {
    cb_mode mode;
    cb_window_kind window;
    uint32_t window_size; /* calls (COUNT) or seconds (TIME), >= 1 */
    uint32_t min_calls;   /* >= 1; <= window_size for COUNT */
    double failure_rate;  /* percent, (0, 100] */
    double slow_rate;     /* percent, (0, 100] */
    uint64_t slow_ns;     /* > 0 */
    uint64_t open_wait_ns, open_wait_max_ns;
    double open_wait_multiplier; /* >= 1 */
    uint32_t half_open_calls;    /* >= 1 */
    uint64_t half_open_max_wait_ns;
    uint64_t p99_ns;       /* 0: the combined rule is off */
    double p99_error_rate; /* percent, [0, 100) */
} cb_config;

/* The shared state. The window's memory is separate (cb_window_bytes),
 * laid out for (window_kind, window_size, hist_unit_ns). */
typedef struct cb_core {
    uint32_t window_kind, window_size;
    uint64_t hist_unit_ns; /* the p99_ns the histograms were made for */
    uint32_t state;        /* CB_CLOSED, CB_OPEN or CB_HALF_OPEN: the machine */
    uint32_t mode;         /* cb_mode of the latest configuration */
    uint64_t epoch;        /* bumped at every transition */
    uint64_t since_ns;     /* when the machine entered its state */
    uint64_t open_until_ns;
    uint64_t open_wait_ns; /* the current OPEN's length (for messages) */
    uint64_t half_open_until_ns;
    uint32_t reopens; /* k: consecutive re-opens from HALF_OPEN */
    uint32_t probes_permitted, probes_done, probe_failures, probe_slows;
    /* The window's totals. */
    uint64_t calls, failures, slows;
    uint64_t hist[CB_HIST];
    uint32_t pos, filled; /* COUNT: next slot, slots in use */
    int64_t head_sec;     /* TIME: the latest second seen; -1: none */
    /* Counters, kept across configurations (monotonic). */
    uint64_t kinds[CB_N_KINDS];
    uint64_t transitions[CB_N_STATES][CB_N_STATES]; /* [from][to] */
} cb_core;

/* One call of a COUNT window. */
typedef struct cb_slot {
    uint8_t flags; /* CB_F_* */
    uint8_t hist;  /* its latency bucket */
} cb_slot;

/* One second of a TIME window. */
typedef struct cb_second {
    int64_t sec; /* which second it holds; -1: none */
    uint32_t calls, failures, slows;
    uint32_t hist[CB_HIST];
} cb_second;

#define CB_F_FAILURE 1u
#define CB_F_SLOW    2u

/* The machine: a configuration over a state and its window. */
typedef struct cb {
    const cb_config *cfg;
    cb_core *core;
    void *win; /* cb_window_bytes(cfg) bytes */
} cb;

typedef enum cb_permit_kind {
    CB_REFUSED = 0, /* answer the fallback */
    CB_CALL,        /* CLOSED: record its result */
    CB_PROBE,       /* HALF_OPEN: record its result */
    CB_UNTRACKED,   /* let through, result ignored (disabled, shadow refusal) */
} cb_permit_kind;

typedef struct cb_permit {
    cb_permit_kind kind;
    uint64_t epoch;
    /* CB_REFUSED: what refused it (CB_OPEN, CB_HALF_OPEN: every probe slot
     * is taken, CB_FORCED_OPEN) and, for CB_OPEN, the time until the next
     * half-open. */
    cb_state refused_by;
    uint64_t retry_after_ns;
} cb_permit;

typedef enum cb_trigger {
    CB_T_FAILURE_RATE = 0, /* CLOSED -> OPEN */
    CB_T_SLOW_RATE,        /* CLOSED -> OPEN */
    CB_T_P99,              /* CLOSED -> OPEN */
    CB_T_OPEN_WAIT,        /* OPEN -> HALF_OPEN */
    CB_T_PROBES_FAILED,    /* HALF_OPEN -> OPEN */
    CB_T_PROBES_OK,        /* HALF_OPEN -> CLOSED */
    CB_T_HALF_OPEN_EXPIRED,
    CB_T_MODE, /* a configuration changed the mode */
} cb_trigger;

/* A transition, with what it is logged with. */
typedef struct cb_event {
    cb_state from, to;
    cb_trigger trigger;
    bool shadow;      /* the machine of a METRICS_ONLY breaker: not enforced */
    uint64_t calls;   /* the calls judged (window or probes) */
    double fail_pct;  /* their failure rate */
    double slow_pct;  /* their slow rate */
    int p99_bucket;   /* CB_T_P99: the bucket holding the p99 */
    bool by_slow;     /* CB_T_PROBES_FAILED: the slow rate opened it, not the failure rate */
    uint64_t wait_ns; /* -> OPEN: how long; -> HALF_OPEN: the wait that elapsed */
    uint32_t reopens; /* -> OPEN: k after the transition */
    uint32_t probes_done, probes; /* HALF_OPEN expiry: completed of allowed */
    cb_mode mode_from, mode_to;   /* CB_T_MODE */
} cb_event;

/* At most two transitions per call (a time-driven one, then one the call
 * itself causes). */
typedef struct cb_events {
    int n;
    cb_event ev[2];
} cb_events;

/* Bytes of the window for cfg's kind and size. */
size_t cb_window_bytes(const cb_config *cfg);
/* Whether core's window was laid out for cfg (kind, size, histogram). */
bool cb_layout_matches(const cb_core *core, const cb_config *cfg);
/* A new state: zeroed counters, CLOSED, an empty window laid out for
 * b->cfg, the mode of b->cfg. */
void cb_init(cb *b, uint64_t now_ns);
/* A window of another layout: CLOSED with an empty window laid out for
 * b->cfg; the counters are kept. */
void cb_relayout(cb *b, uint64_t now_ns);
/* Apply b->cfg->mode to a state made under another mode (a reload): one
 * CB_T_MODE event when the effective state changes. */
void cb_apply_mode(cb *b, uint64_t now_ns, cb_events *ev);
/* Recompute the window's totals from its calls: after a worker died
 * holding the lock mid-update. */
void cb_recount(cb *b);

/* May a call go through now? Refusals count as not_permitted. */
cb_permit cb_acquire(cb *b, uint64_t now_ns, cb_events *ev);
/* The result of a permitted call: failure as the caller judged it,
 * duration_ns as measured. Counted (success or failure, and slow), then,
 * if its permit is current, judged. */
void cb_record(cb *b, const cb_permit *p, bool failure, uint64_t duration_ns, uint64_t now_ns,
               cb_events *ev);
/* A permitted call that produced no result: give its probe slot back. */
void cb_release(cb *b, const cb_permit *p);

/* The state metrics show: the mode when it is not NORMAL, else the
 * machine's. */
cb_state cb_effective_state(const cb_core *core);
/* How long the k-th consecutive re-open lasts. */
uint64_t cb_open_wait(const cb_config *cfg, uint32_t k);
/* The latency bucket of a call under a histogram unit (p99_ns), and a
 * bucket's upper bound (UINT64_MAX for the last). */
int cb_hist_bucket(uint64_t unit_ns, uint64_t duration_ns);
uint64_t cb_hist_bound(uint64_t unit_ns, int bucket);
/* The window's rates now (after expiring old seconds of a TIME window).
 * Returns the number of calls in it. */
uint64_t cb_window_rates(cb *b, uint64_t now_ns, double *fail_pct, double *slow_pct);

/* "closed", "open", "half_open", "disabled", "forced_open", "metrics_only"
 * and "CLOSED", "OPEN"...; "normal"... for modes. */
const char *cb_state_name(cb_state s);
const char *cb_state_upper(cb_state s);
const char *cb_mode_name(cb_mode m);
/* A duration for messages: "500ms", "2s", "1.5s", "3m", "1h". */
void cb_format_duration(uint64_t ns, char *out, size_t n);
/* An event's message after "circuit_breaker NAME: ", e.g. "CLOSED -> OPEN:
 * failure rate 62.5% >= 50% over 16 calls (slow 0.0%); open for 500ms". */
void cb_format_event(const cb_event *e, const cb_config *cfg, char *out, size_t n);

#endif
