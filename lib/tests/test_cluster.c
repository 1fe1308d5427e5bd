/* Clustering-based quantization: encoder/decoder round trips, exact
 * reconstruction, the index binarization, corrupt payloads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/cluster.h"
#include "nntm/nntm.h"

static void setup(nntm_cluster_encoder_params *ep, int32_t n, int32_t d, int32_t k, int outliers,
                  int residual, int runs) {
    memset(ep, 0, sizeof *ep);
    nntm_cluster_params *p = &ep->cluster;
    p->num_subspaces = 2;
    p->qp_density = 2;
    p->codebook_qp = -36;
    p->outlier_qp = -24;
    p->residual_qp = -20;
    p->num_gt_flags = 4;
    p->outliers_enabled = outliers;
    p->outlier_pos_mode = runs ? NNTM_OUTLIER_POS_RUNS : NNTM_OUTLIER_POS_FLAGS;
    p->residual_enabled = residual;
    for (int s = 0; s < 2; s++) {
        p->num_points[s] = n / d / 2;
        p->dims[s] = d;
        p->codebook_size[s] = k;
        p->row_points[s] = 16;
    }
    ep->qp = -20;
    ep->lambda_scale = 0.1;
    ep->outlier_mode = NNTM_OUTLIER_SPREAD;
    ep->outlier_threshold = 3.0;
    ep->max_iterations = 20;
    ep->max_abs_value = 3.4e38;
}

static int round_trip(int32_t d, int32_t k, int outliers, int residual, int runs,
                      unsigned long long seed) {
    const int32_t n = 4096;
    float *x = malloc(n * sizeof(float)), *rec = malloc(n * sizeof(float));
    float *dec = malloc(n * sizeof(float));
    int32_t *books = malloc(2 * (size_t)k * d * sizeof(int32_t)), sizes[2];
    int32_t *labels = malloc((size_t)n * sizeof(int32_t)), *labels2 = malloc(n * sizeof(int32_t));
    nntm_buffer out = {0};
    unsigned long long st = seed;
    for (int32_t i = 0; i < n; i++) {
        double u = test_uniform(&st) - 0.5;
        x[i] = (float)(0.05 * (u < 0 ? log(1 + 2 * u) : -log(1 - 2 * u)));
        if (test_rand(&st) % 500 == 0) x[i] = (float)(test_uniform(&st) > 0.5 ? 1.5 : -1.5);
    }
    nntm_cluster_encoder_params ep;
    setup(&ep, n, d, k, outliers, residual, runs);
    int fails = nntm_test_failures;
    CHECK(nntm_encode_cluster(&ep, x, NULL, NNTM_DTYPE_FLOAT32, sizes, books, labels, rec, &out) ==
          NNTM_OK);
    nntm_cluster_params p = ep.cluster;
    p.codebook_size[0] = sizes[0];
    p.codebook_size[1] = sizes[1];
    CHECK(sizes[0] >= 1 && sizes[0] <= k && sizes[1] >= 1 && sizes[1] <= k);
    CHECK(nntm_decode_cluster(&p, books, out.data, out.size, NNTM_DTYPE_FLOAT32, dec, labels2) ==
          NNTM_OK);
    CHECK(memcmp(rec, dec, n * sizeof(float)) == 0);
    CHECK(memcmp(labels, labels2, (size_t)(n / d) * sizeof(int32_t)) == 0);
    /* the exact reconstruction formula */
    double cb = ldexp(1.0, -9), os = ldexp(1.0, -6), rs = ldexp(1.0, -5);
    int32_t outl = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t pt = i / d, s = pt >= n / d / 2, j = i % d;
        int32_t lab = labels[pt];
        if (lab < 0) {
            outl++;
            CHECK(fabs((double)dec[i] - (double)x[i]) <= os / 2);
            CHECK(fmod((double)dec[i], os) == 0.0);
        } else if (!residual) {
            int32_t c = books[(size_t)s * sizes[0] * d + (size_t)lab * d + j];
            CHECK((double)dec[i] == (double)(float)(c * cb));
        } else {
            int32_t c = books[(size_t)s * sizes[0] * d + (size_t)lab * d + j];
            double r = ((double)dec[i] - c * cb) / rs;
            CHECK(r == floor(r));
        }
    }
    if (outliers) CHECK(outl > 0);
    else CHECK(outl == 0);
    /* truncated and extended payloads */
    if (out.size > 8) {
        CHECK(nntm_decode_cluster(&p, books, out.data, out.size / 2, NNTM_DTYPE_FLOAT32, dec,
                                  NULL) < 0);
    }
    uint8_t *longer = malloc(out.size + 1);
    memcpy(longer, out.data, out.size);
    longer[out.size] = 0;
    CHECK(nntm_decode_cluster(&p, books, longer, out.size + 1, NNTM_DTYPE_FLOAT32, dec, NULL) ==
          NNTM_ERR_CORRUPT);
    /* random corruption never crashes, never reads past the payload */
    for (int t = 0; t < 200; t++) {
        memcpy(longer, out.data, out.size);
        longer[test_rand(&st) % out.size] ^= (uint8_t)(1u << (test_rand(&st) % 8));
        int rv = nntm_decode_cluster(&p, books, longer, out.size, NNTM_DTYPE_FLOAT32, dec, NULL);
        CHECK(rv == NNTM_OK || rv == NNTM_ERR_CORRUPT || rv == NNTM_ERR_TRUNCATED);
    }
    /* determinism */
    nntm_buffer again = {0};
    CHECK(nntm_encode_cluster(&ep, x, NULL, NNTM_DTYPE_FLOAT32, sizes, books, labels, rec,
                              &again) == NNTM_OK);
    CHECK(again.size == out.size && memcmp(again.data, out.data, out.size) == 0);
    nntm_buffer_free(&again);
    free(longer);
    nntm_buffer_free(&out);
    free(x), free(rec), free(dec), free(books), free(labels), free(labels2);
    return nntm_test_failures == fails;
}

int main(void) {
    /* the index binarization: every index of every size, bins inferred beyond k - 1 */
    for (int32_t k = 1; k <= NNTM_CLUSTER_MAX_CODEBOOK; k++) {
        int nbits = nntm_cluster_index_bits(k);
        CHECK((1 << nbits) >= k && (nbits == 0 || (1 << (nbits - 1)) < k));
        for (int32_t idx = 0; idx < k; idx++) {
            int32_t prefix = 0;
            for (int i = 0; i < nbits; i++) {
                int bin = (idx >> (nbits - 1 - i)) & 1;
                if (!nntm_cluster_index_bin_coded(k, nbits, i, prefix)) CHECK(bin == 0);
                prefix = (prefix << 1) | bin;
            }
            CHECK(prefix == idx);
        }
    }
    int32_t book[4] = {-5, 3, -2, 2};
    CHECK(nntm_cluster_zero_entry(book, 4) == 2);
    CHECK(round_trip(1, 16, 0, 0, 0, 11));
    CHECK(round_trip(1, 64, 1, 0, 0, 12));
    CHECK(round_trip(1, 8, 1, 1, 1, 13));
    CHECK(round_trip(4, 32, 0, 0, 0, 14));
    CHECK(round_trip(8, 16, 1, 0, 1, 15));
    CHECK(round_trip(16, 4, 1, 1, 0, 16));
    /* argument checks */
    nntm_cluster_encoder_params ep;
    setup(&ep, 64, 1, 4, 0, 0, 0);
    float x[64] = {0}, rec[64];
    int32_t books[8], sizes[2];
    nntm_buffer out = {0};
    ep.cluster.residual_enabled = 1;
    ep.cluster.residual_qp = 200; /* shift gap beyond NNTM_CLUSTER_MAX_SHIFT_GAP */
    CHECK(nntm_encode_cluster(&ep, x, NULL, 0, sizes, books, NULL, rec, &out) == NNTM_ERR_ARG);
    setup(&ep, 64, 1, 4, 0, 0, 0);
    x[3] = NAN;
    CHECK(nntm_encode_cluster(&ep, x, NULL, 0, sizes, books, NULL, rec, &out) ==
          NNTM_ERR_NONFINITE);
    x[3] = 0;
    ep.cluster.row_points[1] = 0;
    CHECK(nntm_encode_cluster(&ep, x, NULL, 0, sizes, books, NULL, rec, &out) == NNTM_ERR_ARG);
    TEST_DONE();
}
