/* xoshiro256** seeded by splitmix64, and the few portable math functions
 * its non-uniform draws need (see rand.h for why not libm's). */
#include "core/rand.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* splitmix64: one step of the sequence starting at *x. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void rng_seed(rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    /* splitmix64 is a bijection of distinct inputs: the four words cannot
     * all be 0, the one state xoshiro must never be in. */
    r->spare = 0;
    r->has_spare = false;
}

uint64_t rng_entropy_seed(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x =
            ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 48);
        v = splitmix64(&x);
    }
    return v ? v : 0x9e3779b97f4a7c15u;
}

uint64_t rng_mix(uint64_t a, uint64_t b)
{
    /* Two rounds so that neighbouring b (pids 100, 101) land far apart. */
    uint64_t x = a;
    uint64_t h = splitmix64(&x) ^ b;
    return splitmix64(&h);
}

uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

bool rng_chance(rng *r, double percent)
{
    if (!(percent > 0)) return false; /* NaN too */
    if (percent >= 100) return true;
    return rng_uniform(r) * 100.0 < percent;
}

double rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u, v, s;
    do { /* a point in the unit disc, not its centre: accepted ~78.5% */
        u = rng_uniform(r) * 2.0 - 1.0;
        v = rng_uniform(r) * 2.0 - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = rng_sqrt(-2.0 * rng_ln(s) / s);
    r->spare = v * f;
    r->has_spare = true;
    return u * f;
}

double rng_lognormal(rng *r, double mu, double sigma)
{
    return rng_exp(mu + sigma * rng_normal(r));
}

void rng_lognormal_params(double p50, double p99, double *mu, double *sigma)
{
    *mu = rng_ln(p50);
    *sigma = (rng_ln(p99) - *mu) / 2.3263478740;
}

/* ------------------------------------------------------------------ */
/* Portable math                                                       */

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* ln 2 in two parts (fdlibm): k * LN2_HI is exact for |k| < 2^11. */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10

double rng_ln(double x)
{
    if (x != x) return x;                               /* NaN */
    if (x <= 0) return x == 0 ? -1.0 / 0.0 : 0.0 / 0.0; /* -inf, NaN */
    if (x == 1.0 / 0.0) return x;
    int adj = 0;
    if (x < 0x1p-1022) { /* subnormal: make it normal first */
        x *= 0x1p54;
        adj = -54;
    }
    uint64_t b = to_bits(x);
    int e = (int)((b >> 52) & 0x7ff) - 1023 + adj;
    double m = from_bits((b & 0x000fffffffffffffu) | 0x3ff0000000000000u); /* [1, 2) */
    if (m > 1.41421356237309504880) {
        m *= 0.5;
        e++;
    }
    /* ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.1716: the odd
     * series to t^23 is below half an ulp. */
    double t = (m - 1.0) / (m + 1.0);
    double t2 = t * t;
    double p = 1.0 / 23;
    for (int k = 21; k >= 1; k -= 2)
        p = 1.0 / k + t2 * p;
    double lnm = 2.0 * t * p;
    return (double)e * LN2_HI + (lnm + (double)e * LN2_LO);
}

double rng_exp(double x)
{
    if (x != x) return x;
    if (x > 709.782712893383973096) return 1.0 / 0.0;
    if (x < -745.133219101941108420) return 0.0;
    /* x = k ln 2 + r, |r| <= ln 2 / 2; e^r by Taylor to r^17 (below half an
     * ulp), then times 2^k. */
    double kd = x * 1.44269504088896340736 + (x < 0 ? -0.5 : 0.5);
    int k = (int)kd;
    double r = (x - (double)k * LN2_HI) - (double)k * LN2_LO;
    double p = 1.0;
    for (int n = 17; n >= 1; n--)
        p = 1.0 + r * p / n;
    /* 2^k in two factors: k runs from -1075 to 1024, past one double's
     * exponent range. */
    int k1 = k / 2, k2 = k - k1;
    return p * from_bits((uint64_t)(k1 + 1023) << 52) * from_bits((uint64_t)(k2 + 1023) << 52);
}

double rng_sqrt(double x)
{
    if (x != x || x < 0) return 0.0 / 0.0;
    if (x == 0 || x == 1.0 / 0.0) return x;
    /* Scale into [1, 4) by an even power of 2, Newton from (1 + m) / 2
     * (never below the root, at most 25% above: six steps reach it), then
     * scale back exactly. */
    int adj = 0;
    if (x < 0x1p-1000) {
        x *= 0x1p600;
        adj = -300;
    }
    uint64_t b = to_bits(x);
    int e = (int)((b >> 52) & 0x7ff) - 1023;
    int half = e >> 1; /* floor(e / 2) */
    double m = from_bits((b & 0x000fffffffffffffu) | ((uint64_t)(e - 2 * half + 1023) << 52));
    double y = 0.5 * (1.0 + m);
    for (int i = 0; i < 6; i++)
        y = 0.5 * (y + m / y);
    /* Newton in doubles can stop an ulp off; one more step with the
     * residual m - y*y computed exactly (Dekker's product) lands on the
     * nearest double. */
    const double split = 134217729.0; /* 2^27 + 1 */
    double t = split * y, hi = t - (t - y), lo = y - hi;
    double p = y * y;
    double err = ((hi * hi - p) + 2.0 * hi * lo) + lo * lo;
    y += ((m - p) - err) / (2.0 * y);
    return y * from_bits((uint64_t)(half + adj + 1023) << 52);
}
