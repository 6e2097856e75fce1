/* GCRA: the pure decision, and the local backend's table of TATs in
 * shared memory (see gcra.h for the formula and the table's design). */
#include "mw/gcra.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

bool gcra_decide(uint64_t T_ns, uint32_t burst, uint64_t tat_in, uint64_t now_ns, uint64_t *tat_out,
                 gcra_result *r)
{
    uint64_t tau = T_ns * (uint64_t)(burst - 1);
    uint64_t base = tat_in > now_ns ? tat_in : now_ns;
    uint64_t ahead = base - now_ns; /* how far the TAT runs ahead of now */
    if (ahead > tau) {
        *tat_out = tat_in;
        r->allowed = false;
        r->remaining = 0;
        r->retry_after_ns = ahead - tau;
        r->reset_ns = ahead;
        return false;
    }
    *tat_out = base + T_ns;
    r->allowed = true;
    r->remaining = (uint32_t)((tau - ahead) / T_ns);
    r->retry_after_ns = 0;
    r->reset_ns = ahead + T_ns;
    return true;
}

uint64_t gcra_ceil_seconds(uint64_t ns)
{
    return ns / 1000000000u + (ns % 1000000000u != 0);
}

/* ------------------------------------------------------------------ */
/* The table                                                           */

#define WAYS       8
#define EPOCH_BITS 4
#define EPOCH_MASK ((uint64_t)(1u << EPOCH_BITS) - 1)
#define TAT_LOCKED (UINT64_MAX >> EPOCH_BITS) /* the TAT field of a claimed entry */
#define LOCK_STEAL (1u << 20)                 /* yields before a live holder is overruled */

/* Two cache lines: the hashes a lookup scans, then their words. */
typedef struct bucket {
    _Atomic uint64_t hash[WAYS]; /* 0: empty */
    _Atomic uint64_t word[WAYS]; /* TAT << EPOCH_BITS | epoch */
} bucket;

struct gcra_table {
    uint32_t n_buckets; /* a power of two */
    _Atomic uint64_t evictions;
    _Atomic uint64_t *locks; /* per bucket: 0, or the pid of the claimer */
    bucket *buckets;
};

_Static_assert(sizeof(bucket) == 128, "a bucket is two cache lines");
_Static_assert(sizeof(struct gcra_table) <= 64, "the header fits one line");

static uint64_t pack(uint64_t tat, uint64_t epoch)
{
    return tat << EPOCH_BITS | (epoch & EPOCH_MASK);
}
static uint64_t tat_of(uint64_t w)
{
    return w >> EPOCH_BITS;
}
static bool is_locked(uint64_t w)
{
    return tat_of(w) == TAT_LOCKED;
}

uint32_t gcra_table_entries(uint32_t max_keys)
{
    uint64_t n = WAYS;
    while (n < max_keys)
        n <<= 1;
    return n > UINT32_MAX ? (uint32_t)1 << 31 : (uint32_t)n;
}

static size_t locks_bytes(uint32_t n_buckets)
{
    return ((size_t)n_buckets * sizeof(uint64_t) + 63) & ~(size_t)63;
}

size_t gcra_table_size(uint32_t max_keys)
{
    uint32_t nb = gcra_table_entries(max_keys) / WAYS;
    return 64 + locks_bytes(nb) + (size_t)nb * sizeof(bucket);
}

gcra_table *gcra_table_init(void *mem, uint32_t max_keys)
{
    gcra_table *t = mem;
    t->n_buckets = gcra_table_entries(max_keys) / WAYS;
    atomic_init(&t->evictions, 0);
    /* Pointers into the same mapping: valid in every process that
     * inherited it at the same address (forked workers). */
    t->locks = (_Atomic uint64_t *)((char *)mem + 64);
    t->buckets = (bucket *)((char *)mem + 64 + locks_bytes(t->n_buckets));
    return t;
}

uint64_t gcra_table_evictions(const gcra_table *t)
{
    return atomic_load(&((gcra_table *)t)->evictions);
}

static int find(bucket *b, uint64_t h)
{
    for (int i = 0; i < WAYS; i++)
        if (atomic_load(&b->hash[i]) == h) return i;
    return -1;
}

/* Decide on entry i, which held h when we looked. Returns 1 decided,
 * 0 the entry changed hands or is being claimed (look again). */
static int decide_on(bucket *b, int i, uint64_t h, uint64_t T_ns, uint32_t burst, gcra_clock now,
                     gcra_result *r)
{
    for (;;) {
        uint64_t w = atomic_load(&b->word[i]);
        if (is_locked(w)) return 0;
        /* The hash is read after the word: if the word is unchanged at the
         * CAS (or the re-read below), no claim came between, so the entry
         * was h's all along (a claim always changes the word's epoch). */
        if (atomic_load(&b->hash[i]) != h) return 0;
        /* The clock is read after the state: a decision that saw another's
         * TAT also sees a time at least as late as that one's, so the
         * decisions are ordered as their CASes are (and the remaining
         * counts clients see go down one by one). */
        uint64_t tat, now_ns = now();
        if (!gcra_decide(T_ns, burst, tat_of(w), now_ns, &tat, r)) {
            if (atomic_load(&b->word[i]) == w) return 1; /* refused on h's current state */
            continue;
        }
        if (atomic_compare_exchange_strong(&b->word[i], &w, pack(tat, w))) return 1;
        /* another decision (or a claim) came first: decide again */
    }
}

static bool pid_dead(uint64_t pid)
{
    return pid && kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

static void lock_bucket(gcra_table *t, uint32_t bi)
{
    _Atomic uint64_t *l = &t->locks[bi];
    uint64_t me = (uint64_t)getpid(), seen = 0;
    for (uint32_t spin = 0;; spin++) {
        uint64_t cur = 0;
        if (atomic_compare_exchange_weak(l, &cur, me)) return;
        if (cur != seen) { /* another holder: its own time starts */
            seen = cur;
            spin = 0;
        }
        if (spin < 64) continue;
        /* A claim takes a few dozen ns: a holder that keeps the lock is
         * descheduled or dead. Take over a dead one's lock; overrule a
         * live one only after a very long wait (a stopped process). */
        bool dead = (spin & 63) == 0 && pid_dead(cur);
        if (dead || spin >= LOCK_STEAL) {
            if (atomic_compare_exchange_strong(l, &cur, me)) {
                if (!dead)
                    LOG_WARN("rate_limit: took over a claim lock held by pid %llu for too long",
                             (unsigned long long)cur);
                return;
            }
            continue;
        }
        sched_yield();
    }
}

static void unlock_bucket(gcra_table *t, uint32_t bi)
{
    atomic_store(&t->locks[bi], 0);
}

/* Under the bucket's claim lock: find h or claim an entry for it. */
static bool claim_and_decide(gcra_table *t, uint32_t bi, uint64_t h, uint64_t T_ns, uint32_t burst,
                             gcra_clock now, gcra_result *r)
{
    bucket *b = &t->buckets[bi];
    lock_bucket(t, bi);
    /* Claims are made only under this lock: an entry still claimed now
     * was left by a claimer that died. Empty it (its epoch moves on). */
    for (int i = 0; i < WAYS; i++) {
        uint64_t w = atomic_load(&b->word[i]);
        if (is_locked(w)) {
            atomic_store(&b->hash[i], 0);
            atomic_store(&b->word[i], pack(0, w));
        }
    }
    for (;;) {
        int i = find(b, h);
        if (i >= 0) {
            /* Claimed by another worker while we waited: no claim can
             * come now, so deciding on it settles. */
            if (decide_on(b, i, h, T_ns, burst, now, r)) break;
            continue;
        }
        /* The victim: an empty entry, else the oldest TAT. */
        int v = 0;
        uint64_t vw = 0, vtat = UINT64_MAX;
        for (int k = 0; k < WAYS; k++) {
            uint64_t w = atomic_load(&b->word[k]);
            bool empty = atomic_load(&b->hash[k]) == 0;
            uint64_t tat = empty ? 0 : tat_of(w);
            if (tat < vtat) {
                v = k;
                vw = w;
                vtat = tat;
            }
            if (empty) break;
        }
        /* Lock the entry against decisions on its old key; a decision
         * that came first changes the word and we choose again. */
        uint64_t epoch = (vw & EPOCH_MASK) + 1;
        if (!atomic_compare_exchange_strong(&b->word[v], &vw, pack(TAT_LOCKED, epoch))) continue;
        uint64_t old = atomic_load(&b->hash[v]);
        atomic_store(&b->hash[v], h);
        uint64_t tat, now_ns = now();
        gcra_decide(T_ns, burst, 0, now_ns, &tat, r); /* a new key: a full bucket */
        atomic_store(&b->word[v], pack(tat, epoch));
        if (old != 0 && tat_of(vw) > now_ns) atomic_fetch_add(&t->evictions, 1);
        break;
    }
    unlock_bucket(t, bi);
    return r->allowed;
}

bool gcra_table_decide(gcra_table *t, uint64_t key_hash, uint64_t T_ns, uint32_t burst,
                       gcra_clock now, gcra_result *r)
{
    uint64_t h = key_hash ? key_hash : 1; /* 0 marks an empty entry */
    uint32_t bi = (uint32_t)(h & (t->n_buckets - 1));
    bucket *b = &t->buckets[bi];
    /* The common case, a key already in the table: lock-free. */
    for (;;) {
        int i = find(b, h);
        if (i < 0) break;
        if (decide_on(b, i, h, T_ns, burst, now, r)) return r->allowed;
        if (is_locked(atomic_load(&b->word[i]))) break; /* being claimed: wait on the lock */
    }
    return claim_and_decide(t, bi, h, T_ns, burst, now, r);
}
