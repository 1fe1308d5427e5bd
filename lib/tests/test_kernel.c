/* Kernel tensor encode/decode round trips and decoder robustness. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nntm/nntm.h"

static void roundtrip(unsigned long long seed, int rows, int cols, int qp, int rdoq, double scale) {
    unsigned long long s = seed;
    size_t n = (size_t)rows * (size_t)cols;
    float *w = malloc(sizeof(float) * (n + 1));
    int32_t *lev = malloc(sizeof(int32_t) * (n + 1));
    int32_t *dec = malloc(sizeof(int32_t) * (n + 1));
    for (size_t i = 0; i < n; i++) {
        double g = test_uniform(&s) + test_uniform(&s) + test_uniform(&s) - 1.5;
        w[i] = (float)(g * scale);
    }
    nntm_encoder_params p = {{rows, cols, qp, 2, 4}, rdoq, 0.2};
    nntm_buffer buf = {0};
    CHECK(nntm_encode_kernel(&p, w, lev, &buf) == NNTM_OK);
    size_t used = 0;
    CHECK(nntm_decode_kernel(&p.kernel, buf.data, buf.size, dec, &used) == NNTM_OK);
    CHECK(n == 0 || memcmp(lev, dec, n * sizeof(int32_t)) == 0);
    CHECK(used == buf.size);
    /* every truncation is detected (or, if the decoder needs no more, decodes the same) */
    if (buf.size > 0) {
        for (size_t cut = 0; cut < buf.size; cut += 1 + buf.size / 8) {
            int rv = nntm_decode_kernel(&p.kernel, buf.data, cut, dec, &used);
            CHECK(rv == NNTM_ERR_TRUNCATED || rv == NNTM_ERR_CORRUPT);
        }
        /* flipped bytes: never a crash; either an error or some levels */
        for (size_t k = 0; k < buf.size && k < 64; k++) {
            buf.data[k] ^= 0x5A;
            (void)nntm_decode_kernel(&p.kernel, buf.data, buf.size, dec, &used);
            buf.data[k] ^= 0x5A;
        }
    }
    nntm_buffer_free(&buf);
    free(w);
    free(lev);
    free(dec);
}

int main(void) {
    int shapes[][2] = {{1, 1}, {1, 7}, {7, 1}, {3, 5}, {16, 16}, {33, 17}, {64, 300}, {0, 5}};
    unsigned long long seed = 1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int qp = -40; qp <= 0; qp += 8)
            for (int rdoq = 0; rdoq <= 1; rdoq++)
                roundtrip(seed++, shapes[i][0], shapes[i][1], qp, rdoq, 0.1);
    /* huge and tiny value ranges */
    roundtrip(99, 20, 20, -60, 1, 1e3);
    roundtrip(98, 20, 20, 0, 1, 1e-6);
    /* a level beyond the range is refused */
    {
        float w[2] = {1e30f, 0.0f};
        int32_t lev[2];
        nntm_encoder_params p = {{1, 2, -40, 2, 4}, 1, 0.2};
        nntm_buffer buf = {0};
        CHECK(nntm_encode_kernel(&p, w, lev, &buf) == NNTM_ERR_RANGE);
        w[0] = NAN;
        CHECK(nntm_encode_kernel(&p, w, lev, &buf) == NNTM_ERR_NONFINITE);
        p.kernel.num_gt_flags = 0;
        CHECK(nntm_encode_kernel(&p, w, lev, &buf) == NNTM_ERR_ARG);
    }
    /* garbage payloads never crash and never claim more than they hold */
    {
        unsigned long long s = 7;
        uint8_t junk[256];
        int32_t lev[40 * 40];
        nntm_kernel_params k = {40, 40, -20, 2, 4};
        for (int t = 0; t < 2000; t++) {
            size_t len = test_rand(&s) % sizeof junk;
            for (size_t i = 0; i < len; i++) junk[i] = (uint8_t)test_rand(&s);
            int rv = nntm_decode_kernel(&k, junk, len, lev, NULL);
            CHECK(rv == NNTM_OK || rv == NNTM_ERR_CORRUPT || rv == NNTM_ERR_TRUNCATED);
        }
    }
    CHECK(strcmp(nntm_strerror(NNTM_ERR_TRUNCATED), "truncated payload") == 0);
    TEST_DONE();
}
