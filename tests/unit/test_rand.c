/* The seedable generator (core/rand.h): the reference sequences of
 * splitmix64 and xoshiro256**, determinism per seed, and the shape of the
 * uniform, normal and lognormal draws on 100k samples each (bounded: a
 * few milliseconds). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/rand.h"

#define N 100000

static double absd(double x)
{
    return x < 0 ? -x : x;
}

/* Published vectors: splitmix64 from 0 gives e220a8397b1dcdaf,
 * 6e789e6aa1b965f4, 06c45d188009454f (the first three state words), and
 * xoshiro256** from the state {1, 2, 3, 4} gives 11520, 0, 1509978240,
 * 1215971899390074240, 1216172134540287360. */
static void test_reference_vectors(void **state)
{
    rng r;
    rng_seed(&r, 0);
    assert_true(r.s[0] == 0xe220a8397b1dcdafu);
    assert_true(r.s[1] == 0x6e789e6aa1b965f4u);
    assert_true(r.s[2] == 0x06c45d188009454fu);

    r.s[0] = 1, r.s[1] = 2, r.s[2] = 3, r.s[3] = 4;
    static const uint64_t want[] = {11520u, 0u, 1509978240u, 1215971899390074240u,
                                    1216172134540287360u};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_true(rng_next(&r) == want[i]);
}

static void test_same_seed_same_sequence(void **state)
{
    rng a, b, c;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_next(&a);
        assert_true(x == rng_next(&b));
        differ += x != rng_next(&c);
    }
    assert_true(differ > 990);
    /* Every kind of draw, interleaved, replays bit for bit. */
    rng_seed(&a, 7);
    rng_seed(&b, 7);
    for (int i = 0; i < 1000; i++) {
        assert_true(rng_uniform(&a) == rng_uniform(&b));
        assert_true(rng_normal(&a) == rng_normal(&b));
        assert_true(rng_lognormal(&a, 3, 0.5) == rng_lognormal(&b, 3, 0.5));
        assert_true(rng_chance(&a, 30) == rng_chance(&b, 30));
    }
    /* Reseeding restarts the sequence, dropping a kept normal. */
    rng_seed(&a, 9);
    double first = rng_normal(&a);
    rng_seed(&a, 9);
    assert_true(rng_normal(&a) == first);
}

static void test_mix_separates_streams(void **state)
{
    /* Workers' seeds from one configured seed and neighbouring pids. */
    uint64_t s1 = rng_mix(42, 1000), s2 = rng_mix(42, 1001), s3 = rng_mix(43, 1000);
    assert_true(s1 != s2 && s1 != s3 && s2 != s3);
    assert_true(rng_mix(42, 1000) == s1);
    rng a, b;
    rng_seed(&a, s1);
    rng_seed(&b, s2);
    int same = 0;
    for (int i = 0; i < 100; i++)
        same += rng_next(&a) == rng_next(&b);
    assert_int_equal(same, 0);
    uint64_t e1 = rng_entropy_seed(), e2 = rng_entropy_seed();
    assert_true(e1 != 0 && e2 != 0 && e1 != e2);
}

static void test_uniform(void **state)
{
    rng r;
    rng_seed(&r, 12345);
    double sum = 0, sq = 0;
    int buckets[10] = {0};
    for (int i = 0; i < N; i++) {
        double u = rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        sq += u * u;
        buckets[(int)(u * 10)]++;
    }
    double mean = sum / N, var = sq / N - mean * mean;
    assert_true(absd(mean - 0.5) < 0.005);     /* sd of the mean: 0.0009 */
    assert_true(absd(var - 1.0 / 12) < 0.002); /* 0.0833 */
    for (int i = 0; i < 10; i++)               /* 10000 each, sd 95 */
        assert_true(buckets[i] > 9500 && buckets[i] < 10500);
}

static void test_chance(void **state)
{
    rng r, before;
    rng_seed(&r, 5);
    before = r;
    /* 0 and 100 decide without drawing: the sequence does not move. */
    for (int i = 0; i < 100; i++) {
        assert_false(rng_chance(&r, 0));
        assert_true(rng_chance(&r, 100));
        assert_false(rng_chance(&r, -3));
    }
    assert_memory_equal(r.s, before.s, sizeof r.s);
    int hits = 0;
    for (int i = 0; i < N; i++)
        hits += rng_chance(&r, 30);
    assert_true(hits > 29400 && hits < 30600); /* sd 145 */
}

static void test_normal(void **state)
{
    rng r;
    rng_seed(&r, 777);
    double sum = 0, sq = 0;
    int within1 = 0;
    for (int i = 0; i < N; i++) {
        double z = rng_normal(&r);
        sum += z;
        sq += z * z;
        within1 += z > -1 && z < 1;
    }
    double mean = sum / N, var = sq / N - mean * mean;
    assert_true(absd(mean) < 0.02);      /* sd of the mean: 0.003 */
    assert_true(absd(var - 1.0) < 0.03); /* sd of the variance: 0.0045 */
    /* 68.27% within one standard deviation. */
    assert_true(within1 > 67500 && within1 < 69000);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_lognormal_percentiles(void **state)
{
    /* The fault layer's parametrisation: median 20 ms, p99 200 ms. */
    double mu, sigma;
    rng_lognormal_params(20, 200, &mu, &sigma);
    assert_true(absd(mu - 2.995732273553991) < 1e-12);
    assert_true(absd(sigma - 2.302585092994046 / 2.3263478740) < 1e-12);
    rng r;
    rng_seed(&r, 2024);
    double *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < N; i++) {
        v[i] = rng_lognormal(&r, mu, sigma);
        assert_true(v[i] > 0);
    }
    qsort(v, N, sizeof *v, cmp_double);
    double p50 = v[N / 2], p99 = v[N / 100 * 99];
    assert_true(absd(p50 / 20 - 1) < 0.05);
    assert_true(absd(p99 / 200 - 1) < 0.05);
    free(v);
    /* p50 == p99: no spread, every draw is the median. */
    rng_lognormal_params(50, 50, &mu, &sigma);
    assert_true(sigma == 0);
    assert_true(absd(rng_lognormal(&r, mu, sigma) - 50) < 1e-9);
}

/* The portable math against values known to 17 digits. */
static void test_math(void **state)
{
    static const struct {
        double x, ln;
    } lns[] = {{1, 0},
               {2, 0.69314718055994531},
               {10, 2.3025850929940457},
               {0.5, -0.69314718055994531},
               {1e-300, -690.77552789821368},
               {3600000, 15.096444403426338},
               {1.4142135623730951, 0.3465735902799727},
               {4.9406564584124654e-324, -744.44007192138127}};
    for (size_t i = 0; i < sizeof lns / sizeof lns[0]; i++)
        assert_true(absd(rng_ln(lns[i].x) - lns[i].ln) <= 2e-16 * (1 + absd(lns[i].ln)));
    static const struct {
        double x, e;
    } exps[] = {{0, 1},
                {1, 2.7182818284590452},
                {-1, 0.36787944117144233},
                {0.3, 1.3498588075760032},
                {10, 22026.465794806718},
                {-20, 2.0611536224385579e-09},
                {700, 1.0142320547350045e+304}};
    for (size_t i = 0; i < sizeof exps / sizeof exps[0]; i++)
        assert_true(absd(rng_exp(exps[i].x) / exps[i].e - 1) <= 4e-16);
    assert_true(rng_exp(800) > 1e308);
    assert_true(rng_exp(-800) == 0);
    assert_true(rng_ln(0) < -1e308);
    for (double x = 1e-10; x < 1e10; x *= 3.7) {
        assert_true(absd(rng_exp(rng_ln(x)) / x - 1) < 1e-14);
        double s = rng_sqrt(x);
        assert_true(absd(s * s / x - 1) < 4e-16);
    }
    assert_true(rng_sqrt(4) == 2);
    assert_true(rng_sqrt(0) == 0);
    assert_true(rng_sqrt(2) == 1.4142135623730951);
    assert_true(rng_sqrt(1e-310) > 0);
    assert_true(rng_sqrt(-1) != rng_sqrt(-1)); /* NaN */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_same_seed_same_sequence),
        cmocka_unit_test(test_mix_separates_streams),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_chance),
        cmocka_unit_test(test_normal),
        cmocka_unit_test(test_lognormal_percentiles),
        cmocka_unit_test(test_math),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
