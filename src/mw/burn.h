/* The burn-rate state machine of the slo built-in: rolling windows of
 * good and bad counts kept in time buckets, multi-window burn-rate
 * alerts (Google SRE workbook, ch. 5) and the hold counting that turns
 * alerts into actions. Pure: no I/O, no clock of its own (every call
 * takes now_ns), no allocation (the caller gives the memory: the slo
 * layer puts it in shared memory, so every worker counts into the same
 * buckets with atomics and a config reload keeps them).
 *
 * Buckets: a ring of n buckets of width_ns each. Bucket i holds the
 * requests of epoch e = now_ns / width_ns with i = e % n, tagged with its
 * epoch; the first writer of a new epoch claims the bucket (CAS on the
 * tag, marked "preparing" while it zeroes the counts) so old counts never
 * leak into a new epoch. A window of w ns is the current (partial) bucket
 * and the ceil(w / width) - 1 before it: between w - width and w long.
 * The ring holds two buckets more than the longest window, so a bucket
 * being prepared is never one a window reads.
 *
 * Races are benign and bounded: a writer descheduled for a whole ring's
 * time could add one request to the wrong epoch; a writer whose bucket is
 * being prepared spins a few times, and drops its count (counted) in the
 * very unlikely case the preparer died in between.
 */
#ifndef VIE_MW_BURN_H
#define VIE_MW_BURN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BURN_BUCKETS_PER_WINDOW 12        /* buckets in the shortest window */
#define BURN_MAX_BUCKETS        4096      /* a ring's size, at most */
#define BURN_MIN_WIDTH_NS       100000ull /* 0.1 ms */
#define BURN_MAX_ALERTS         8

/* One bucket, in shared memory (zeroed memory is an empty bucket). */
typedef struct burn_bucket {
    _Atomic uint64_t tag; /* (epoch + 1) << 1, | 1 while being prepared; 0: never used */
    _Atomic uint64_t good;
    _Atomic uint64_t bad;
} burn_bucket;

/* A ring: a description (per process) of buckets (shared). */
typedef struct burn_ring {
    burn_bucket *b;
    uint32_t n;
    uint64_t width_ns;
    _Atomic uint64_t *dropped; /* counts lost to a dead preparer; may be NULL */
} burn_ring;

typedef struct burn_counts {
    uint64_t good, bad;
} burn_counts;

/* ns times scale, rounded to the nearest ns (0 when scale <= 0). */
uint64_t burn_scale(uint64_t ns, double scale);

/* The bucket width and count for windows from shortest_ns to longest_ns
 * (0 < shortest <= longest): width = shortest / 12, widened when the
 * longest window would need more than BURN_MAX_BUCKETS - 2 buckets, and
 * at least BURN_MIN_WIDTH_NS; n = ceil(longest / width) + 2. False when
 * the windows are 0 or out of order. */
bool burn_layout(uint64_t shortest_ns, uint64_t longest_ns, uint64_t *width_ns, uint32_t *n);

/* Buckets a window of window_ns spans: ceil(window / width), at least 1,
 * at most n - 2. */
uint32_t burn_window_buckets(const burn_ring *r, uint64_t window_ns);

/* Count good and bad requests at now_ns. */
void burn_record(const burn_ring *r, uint64_t now_ns, uint64_t good, uint64_t bad);

/* The counts of the window_ns that end at now_ns. */
burn_counts burn_window(const burn_ring *r, uint64_t now_ns, uint64_t window_ns);

/* (bad / total) / budget; 0 without requests. budget in (0, 1). */
double burn_rate(burn_counts c, double budget);

/* One multi-window alert: it fires when both windows burn at least
 * factor (>=) and the long window holds at least min_requests requests
 * (so one bad request on a quiet route is not a full burn). */
typedef struct burn_alert {
    uint64_t long_ns, short_ns;
    double factor;
    uint64_t min_requests;
} burn_alert;

typedef struct burn_alert_result {
    burn_counts long_c, short_c;
    double long_rate, short_rate;
    bool fires;
} burn_alert_result;

bool burn_alert_eval(const burn_ring *r, uint64_t now_ns, const burn_alert *a, double budget,
                     burn_alert_result *out);

/* Hold counting and hysteresis, in shared memory (zeroed: no alert, no
 * action). Written by one evaluator at a time; read by anyone. */
typedef struct burn_hold {
    _Atomic uint32_t streak[BURN_MAX_ALERTS]; /* consecutive evaluations each alert fired */
    _Atomic uint32_t quiet;                   /* consecutive evaluations no alert fired */
    _Atomic uint32_t firing;                  /* bit per alert, at the last evaluation */
    _Atomic bool active;                      /* actions in force */
    _Atomic uint64_t evaluations;
} burn_hold;

typedef enum burn_change {
    BURN_STEADY = 0, /* nothing to do */
    BURN_START,      /* an alert held for hold evaluations: start the actions */
    BURN_STOP,       /* no alert for hold evaluations: stop them */
} burn_change;

/* One evaluation: firing has bit a set when alert a (< n_alerts <=
 * BURN_MAX_ALERTS) fired. Actions start when an alert has fired hold
 * (>= 1) evaluations in a row, and stop when none has fired for hold
 * evaluations in a row. */
burn_change burn_hold_step(burn_hold *h, uint32_t firing, uint32_t n_alerts, uint32_t hold);

/* Claim the evaluation period of now_ns (periods of every_ns) for the
 * caller: true for exactly one caller per period, across processes.
 * *last holds the last claimed period + 1 (zeroed: none). */
bool burn_claim(_Atomic uint64_t *last, uint64_t now_ns, uint64_t every_ns);

#endif
