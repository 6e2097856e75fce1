#include "core/clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

clock_tsc clock_tsc_state;

#if defined(__x86_64__)
static uint64_t tsc_ns(void)
{
    uint64_t d = __rdtsc() - clock_tsc_state.tsc_base;
    return clock_tsc_state.ns_base +
           (uint64_t)(((unsigned __int128)d * clock_tsc_state.mult) >> 32);
}

/* The kernel vouches for the TSC only when it made it the clocksource. */
static bool kernel_uses_tsc(void)
{
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (!f) return false;
    char buf[32] = {0};
    bool yes = fgets(buf, sizeof buf, f) && strncmp(buf, "tsc", 3) == 0;
    fclose(f);
    return yes;
}

static clock_source calibrate(void)
{
    if (!kernel_uses_tsc()) return mono_ns;
    /* The first clock_gettime is slow (symbol binding, the vDSO page):
     * take it first, then read both clocks in the same order at each end. */
    mono_ns();
    uint64_t n0 = mono_ns(), t0 = __rdtsc(), n1, t1;
    do {
        n1 = mono_ns();
        t1 = __rdtsc();
    } while (n1 - n0 < 2000000); /* 2 ms, once per process */
    if (t1 <= t0) return mono_ns;
    clock_tsc_state.mult = (uint64_t)((((unsigned __int128)(n1 - n0)) << 32) / (t1 - t0));
    clock_tsc_state.tsc_base = t1;
    clock_tsc_state.ns_base = n1;
    return tsc_ns;
}
#else
static clock_source calibrate(void)
{
    return mono_ns;
}
#endif

static clock_source real_source; /* chosen by calibrate(), once */
static clock_source override;    /* a test's clock */

uint64_t clock_now_slow(void)
{
    if (override) return override();
    if (!real_source) {
        real_source = calibrate();
        clock_tsc_state.on = real_source != mono_ns;
    }
    return real_source();
}

void clock_set_source(clock_source fn)
{
    clock_now_slow(); /* calibrate first, so restoring is exact */
    override = fn;
    clock_tsc_state.on = !fn && real_source != mono_ns;
}
