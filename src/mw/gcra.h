/* GCRA, the generic cell rate algorithm: the arithmetic of every rate
 * limit backend (the local table below; Redis, in a Lua script doing
 * the same steps in microseconds: rate_limit_redis.c), and the local
 * backend's table of TATs in shared memory.
 *
 * gcra_decide is a pure function of its arguments: no clock, no state,
 * so the backends decide identically on the same sequence and the unit
 * tests give explicit times.
 */
#ifndef VIE_MW_GCRA_H
#define VIE_MW_GCRA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds that keep every intermediate value exact in 64 bits (and the
 * TAT in the 60 bits the table stores): now_ns < GCRA_MAX_NOW_NS (18
 * years of uptime) and T_ns * burst <= GCRA_MAX_WINDOW_NS (9 years). */
#define GCRA_MAX_NOW_NS    ((uint64_t)1 << 59)
#define GCRA_MAX_WINDOW_NS ((uint64_t)1 << 58)

typedef struct gcra_result {
    bool allowed;
    uint32_t remaining;      /* requests still allowed at now after this one */
    uint64_t retry_after_ns; /* limited: how long until a request is allowed; else 0 */
    uint64_t reset_ns;       /* how long until the bucket is full (burst available) */
} gcra_result;

/* One decision for a request at now_ns against the state tat_in (0 for a
 * key never seen: a full bucket).
 *
 *   T    = the emission interval, 1 / rate, in ns (T_ns >= 1)
 *   tau  = T * (burst - 1), the tolerance: how far ahead of now the TAT
 *          may be for a request to pass
 *   base = max(tat_in, now): an idle key does not bank more than a full
 *          bucket
 *
 *   allowed  iff base - now <= tau
 *            tat_out        = base + T
 *            remaining      = (tau - (base - now)) / T   (floor)
 *            retry_after_ns = 0
 *            reset_ns       = tat_out - now
 *   limited  otherwise (then tat_in > now + tau)
 *            tat_out        = tat_in (a refused request costs nothing)
 *            remaining      = 0
 *            retry_after_ns = tat_in - tau - now        (> 0)
 *            reset_ns       = tat_in - now
 *
 * So from a full bucket burst requests pass at once, then one every T;
 * after an idle time of burst * T the bucket is full again.
 * Needs burst >= 1 and the bounds above. Returns result->allowed. */
bool gcra_decide(uint64_t T_ns, uint32_t burst, uint64_t tat_in, uint64_t now_ns, uint64_t *tat_out,
                 gcra_result *result);

/* Whole seconds, rounded up (Retry-After, RateLimit-Reset). */
uint64_t gcra_ceil_seconds(uint64_t ns);

/* ------------------------------------------------------------------ */
/* The local backend: a bounded table of TATs shared by all workers     */
/*
 * Open addressing in fixed sets ("buckets") of 8 entries: a key's hash
 * picks its bucket; the entry holds the hash (0: empty) and a word with
 * the TAT and a 4-bit epoch. Deciding for a key already in the table is
 * lock-free: a CAS loop on its word, so two workers can never both take
 * the last token. Inserting a key claims, under the bucket's claim lock,
 * an empty entry or else the one with the oldest TAT (expired entries
 * first: a full bucket loses nothing); a claim bumps the entry's epoch so
 * a decision racing with it cannot land on the new key. The claim lock
 * holds the holder's pid: a lock left by a worker that died is taken
 * over. */

typedef struct gcra_table gcra_table;

/* Entries a table for max_keys has (a power of two, at least 8). */
uint32_t gcra_table_entries(uint32_t max_keys);
/* Bytes gcra_table_init needs for max_keys. */
size_t gcra_table_size(uint32_t max_keys);
/* Lay a table out in mem: zeroed, 64-byte aligned, gcra_table_size
 * bytes, shared by the processes that decide on it (MAP_SHARED). */
gcra_table *gcra_table_init(void *mem, uint32_t max_keys);

/* A clock in ns (the layer's injectable one; tests return fixed times). */
typedef uint64_t (*gcra_clock)(void);

/* Decide for the key whose hash is key_hash (any value; 0 is mapped to
 * another), store the new TAT and fill r. now is read inside the atomic
 * step, after the key's state, so concurrent decisions are ordered by
 * time as by their effect. Returns r->allowed. */
bool gcra_table_decide(gcra_table *t, uint64_t key_hash, uint64_t T_ns, uint32_t burst,
                       gcra_clock now, gcra_result *r);

/* Entries dropped while their TAT was still ahead of now (state lost). */
uint64_t gcra_table_evictions(const gcra_table *t);

#endif
