/* Arithmetic coder round trips and the bit estimator's accuracy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "encoder/bin_writer.h"
#include "nntm/nntm.h"

/* Random bins over random contexts, each context with its own bias. */
static void roundtrip(unsigned long long seed, size_t n, int num_ctx, int window, double *ratio) {
    unsigned long long s = seed;
    double *bias = malloc(sizeof(double) * (size_t)num_ctx);
    uint8_t *bins = malloc(n), *ctx = malloc(n), *dec = malloc(n);
    for (int i = 0; i < num_ctx; i++) bias[i] = test_uniform(&s) * test_uniform(&s);
    for (size_t i = 0; i < n; i++) {
        ctx[i] = (uint8_t)(test_rand(&s) % (unsigned)num_ctx);
        bins[i] = test_uniform(&s) < bias[ctx[i]];
        if (test_rand(&s) % 7 == 0) bins[i] ^= 1; /* keep some surprise in */
    }
    double real = 0, est = 0;
    CHECK(nntm_selftest_bins(bins, ctx, n, num_ctx, window, &real, &est, dec) == NNTM_OK);
    CHECK(memcmp(bins, dec, n) == 0);
    *ratio = real > 0 ? est / real : 1.0;
    free(bias);
    free(bins);
    free(ctx);
    free(dec);
}

int main(void) {
    double ratio;
    /* short and odd-sized runs must round-trip exactly */
    for (unsigned long long seed = 1; seed <= 200; seed++)
        roundtrip(seed, (size_t)(seed * 37 % 1000), 1 + (int)(seed % 40),
                  (int)(seed % (NNTM_MAX_PROB_WINDOW + 1)), &ratio);
    /* long runs: estimate within 1 % of the real coder's bits */
    for (unsigned long long seed = 1000; seed < 1008; seed++) {
        int window = seed < 1005 ? 0 : 6 + 2 * (int)(seed - 1005);
        roundtrip(seed, 2000000, 24, window, &ratio);
        printf("seed %llu window %d: estimate / real = %.5f\n", seed, window, ratio);
        CHECK(fabs(ratio - 1.0) < 0.01);
    }
    /* all-zero and all-one runs */
    {
        size_t n = 100000;
        uint8_t *bins = calloc(n, 1), *ctx = calloc(n, 1), *dec = malloc(n);
        double real, est;
        for (int window = 0; window <= NNTM_MAX_PROB_WINDOW; window += 4) {
            memset(bins, 0, n);
            CHECK(nntm_selftest_bins(bins, ctx, n, 1, window, &real, &est, dec) == NNTM_OK);
            CHECK(memcmp(bins, dec, n) == 0);
            memset(bins, 1, n);
            CHECK(nntm_selftest_bins(bins, ctx, n, 1, window, &real, &est, dec) == NNTM_OK);
            CHECK(memcmp(bins, dec, n) == 0);
        }
        free(bins);
        free(ctx);
        free(dec);
    }
    /* integer log2 */
    CHECK(nntm_log2_q16(1) == 0);
    CHECK(nntm_log2_q16(2) == 65536);
    CHECK(nntm_log2_q16(32768) == 15u * 65536);
    CHECK(fabs(nntm_log2_q16(3) / 65536.0 - log2(3.0)) < 1e-4);
    TEST_DONE();
}
