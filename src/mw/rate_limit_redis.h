/* The Redis backend of rate_limit: GCRA decided by a Lua script (the
 * arithmetic of gcra_decide, step for step, in microseconds), atomically
 * in Redis, over one hiredis asynchronous connection per worker.
 *
 * This file is the transport: the connection (made at WORKER_START on the
 * worker's loop, re-made with back-off when it drops), the script (loaded
 * at connect; NOSCRIPT: loaded again and the command sent once more), the
 * per-request timeout on a uv timer, and requests parked while Redis
 * answers. What a decision or an error means for the request (headers,
 * 429, on_backend_error, counters, incident log lines) is rate_limit.c's.
 *
 * Limiters with the same address, password and db share one connection
 * (and its pool of pending requests) per worker.
 */
#ifndef VIE_MW_RATE_LIMIT_REDIS_H
#define VIE_MW_RATE_LIMIT_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mw/gcra.h"
#include "vie/vie.h"

/* The script: KEYS[1] the bucket; ARGV[1] T (µs, >= 1), ARGV[2] burst
 * (>= 1), ARGV[3] now (µs) or "" to read Redis TIME. Returns {allowed
 * (1|0), remaining, retry_after (µs), reset (µs)}, exactly what
 * gcra_decide returns for the same integers. The key's TAT is stored as
 * a decimal string with a PX of the time until the bucket is full again
 * plus RLR_EXPIRE_SLACK_MS (clock skew between machines with clock:
 * local; an expired key is a full bucket, as is a TAT in the past). */
extern const char rlr_script[];
#define RLR_EXPIRE_SLACK_MS 1000

/* Every value the script handles stays below 2^53 (Lua numbers are
 * doubles): now < 2^52 µs (142 years since the epoch) and T * burst <=
 * RLR_MAX_WINDOW_US (about 9 years, as the local backend's bound). */
#define RLR_MAX_NOW_US    ((uint64_t)1 << 52)
#define RLR_MAX_WINDOW_US (GCRA_MAX_WINDOW_NS / 1000)

#define RLR_DEFAULT_ADDRESS "127.0.0.1:6379"
#define RLR_DEFAULT_TIMEOUT 20    /* ms */
#define RLR_MAX_TIMEOUT     10000 /* ms */
#define RLR_MAX_PREFIX      128   /* bytes */
#define RLR_MAX_PASSWORD    512   /* bytes */
#define RLR_MAX_DB          65535
/* A key value longer than this (a long header value) is replaced by a
 * hash of it; a whole key (prefix, kind, value) fits RLR_KEY_MAX. */
#define RLR_MAX_KEY_VALUE 200
#define RLR_KEY_MAX       (RLR_MAX_PREFIX + 16 + RLR_MAX_KEY_VALUE)

/* Why an address is refused, or NULL. "host:port" (host: an IPv4
 * address, a name, or an IPv6 address in brackets), or "unix:/path". */
const char *rlr_address_check(const char *address);

typedef enum rlr_error {
    RLR_OK = 0,
    RLR_ERR_TIMEOUT,    /* no answer within the limiter's timeout */
    RLR_ERR_CONNECTION, /* not connected, or the connection dropped */
    RLR_ERR_REPLY,      /* Redis answered with an error or a malformed reply */
} rlr_error;
#define RLR_N_ERRORS 4
extern const char *const rlr_error_names[RLR_N_ERRORS]; /* "", "timeout", "connection", "reply" */

typedef struct rlr_config {
    const char *limiter; /* the layer's name (logs) */
    const char *address;
    const char *password; /* NULL: no AUTH */
    uint32_t db;
    uint32_t timeout_ms;
} rlr_config;

/* A decision's end, on the loop: the request is still parked (a request
 * that ended meanwhile gets no call). err RLR_OK: r holds the script's
 * answer (in µs); else detail says what went wrong (for the log). */
typedef void (*rlr_done_fn)(void *owner, vie_ref ref, rlr_error err, const gcra_result *r,
                            const char *detail);

typedef struct rlr rlr;

/* A limiter's backend (cfg is copied). No connection is made here (vie
 * check never connects): rlr_attach registers the worker hooks that do.
 * NULL when out of memory. */
rlr *rlr_new(const rlr_config *cfg, rlr_done_fn done, void *owner);
/* Once its layer is registered: share the connection of an earlier
 * limiter of the app with the same address, password and db (first: the
 * app's first Redis limiter, NULL if b is the first), or make one and
 * register its WORKER_START and WORKER_STOP hooks. */
int rlr_attach(rlr *b, vie_app *app, rlr *first);
/* At the app's end (after WORKER_STOP); b may be unattached. */
void rlr_free(rlr *b);
/* The address, for log lines. */
const char *rlr_address(const rlr *b);

/* Start a decision for the request c on the bucket key (len bytes):
 * RLR_OK when it is under way (the caller returns VIE_PENDING; done is
 * called later, or never if the request ends first), or the error that
 * prevents it (done is not called; *detail says why). has_now: pass
 * now_us (clock: local); else the script reads Redis TIME. */
rlr_error rlr_decide(rlr *b, vie_ctx *c, const char *key, size_t len, uint64_t T_us, uint32_t burst,
                     bool has_now, uint64_t now_us, const char **detail);

#endif
