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

typedef uint64_t (*clock_source)(void);

/* Monotonic nanoseconds (arbitrary origin). */
uint64_t clock_now_ns(void);
/* Replace the clock (NULL restores the real one). For tests. */
void clock_set_source(clock_source fn);

#endif
