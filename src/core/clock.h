/* The monotonic clock of the executor, in nanoseconds.
 *
 * Each layer boundary is timestamped, so the clock is on the hot path:
 * where the kernel itself uses the TSC as its clocksource (invariant and
 * synchronized), Vie reads it directly (about half the cost of
 * clock_gettime), scaled by a factor calibrated once against
 * CLOCK_MONOTONIC. Elsewhere it is clock_gettime(CLOCK_MONOTONIC).
 * Tests can replace the clock (clock_set_source). */
#ifndef VIE_CORE_CLOCK_H
#define VIE_CORE_CLOCK_H

#include <stdint.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

typedef uint64_t (*clock_source)(void);

/* Set once by the first clock_now_slow (at app freeze, before any thread). */
typedef struct clock_tsc {
    int on; /* the TSC path is calibrated and no test override is set */
    uint64_t tsc_base, ns_base;
    uint64_t mult; /* ns per tick, 32.32 fixed point */
} clock_tsc;
extern clock_tsc clock_tsc_state;

uint64_t clock_now_slow(void);

/* Monotonic nanoseconds (arbitrary origin). Inline: it runs at every
 * layer boundary. */
static inline uint64_t clock_now_ns(void)
{
#if defined(__x86_64__)
    if (__builtin_expect(clock_tsc_state.on, 1)) {
        uint64_t d = __rdtsc() - clock_tsc_state.tsc_base;
        return clock_tsc_state.ns_base +
               (uint64_t)(((unsigned __int128)d * clock_tsc_state.mult) >> 32);
    }
#endif
    return clock_now_slow();
}
/* Replace the clock (NULL restores the real one). For tests. */
void clock_set_source(clock_source fn);

#endif
