/* A seedable pseudo-random generator for decisions tests must be able to
 * replay: fault injection, circuit breaker probes, SLO sampling.
 *
 * xoshiro256** (Blackman and Vigna), its state filled from the seed by
 * splitmix64. The same seed gives the same sequence on every platform:
 * the uniform, normal and lognormal draws use only integer arithmetic and
 * the portable rng_ln / rng_exp below, never the C library's math, whose
 * last bits differ between versions. Not for secrets (tokens, ids).
 *
 * One state per user, not shared between threads. A forked worker gets a
 * copy of its parent's state: reseed it (rng_mix the seed with something
 * of the worker's) unless every worker should draw the same sequence.
 */
#ifndef VIE_CORE_RAND_H
#define VIE_CORE_RAND_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
    double spare; /* the second normal of the last polar pair */
    bool has_spare;
} rng;

/* Start the sequence of seed (any value, 0 included). */
void rng_seed(rng *r, uint64_t seed);
/* A seed from the system's entropy (getrandom; if that fails, the time
 * and the pid mixed): never 0, so it can be printed and set to replay. */
uint64_t rng_entropy_seed(void);
/* A seed derived from two values (a configured seed and a worker's pid):
 * different b give unrelated sequences. */
uint64_t rng_mix(uint64_t a, uint64_t b);

/* The next 64 random bits. */
uint64_t rng_next(rng *r);
/* Uniform in [0, 1), 53 bits. */
double rng_uniform(rng *r);
/* True with probability percent / 100. No draw when percent <= 0 (false)
 * or >= 100 (true), so a rule that is always or never on does not move
 * the sequence. */
bool rng_chance(rng *r, double percent);
/* Standard normal (mean 0, standard deviation 1): Marsaglia's polar
 * method, which makes two at a time (the second is kept for the next
 * call). */
double rng_normal(rng *r);
/* Lognormal: exp(mu + sigma * N(0, 1)). */
double rng_lognormal(rng *r, double mu, double sigma);
/* mu and sigma of the lognormal whose median is p50 and whose 99th
 * percentile is p99 (0 < p50 <= p99): mu = ln p50, sigma = (ln p99 -
 * ln p50) / z99, z99 = 2.3263478740 the standard normal's 99th
 * percentile. */
void rng_lognormal_params(double p50, double p99, double *mu, double *sigma);

/* Natural logarithm (x > 0) and exponential, within 2 ulps of libm's
 * (measured on 2 million values), the same on every platform. ln of x <= 0 gives -inf; exp
 * overflows to +inf past 709.78 and is 0 below -745. */
double rng_ln(double x);
double rng_exp(double x);
/* Square root (x >= 0), rounded to nearest (it matched libm's on 2 million
 * values); NaN for x < 0. */
double rng_sqrt(double x);

#endif
