/* Clustering-based quantization: what encoder and decoder share (parameter
 * check, steps, context sets, index binarization, reconstruction). */
#ifndef NNTM_COMMON_CLUSTER_H
#define NNTM_COMMON_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "contexts.h"
#include "nntm/nntm.h"

#define NNTM_RUN_CTX 12        /* outlier_run prefix: bin index, last one shared */
#define NNTM_OUTLIER_FLAG_CTX 2 /* outlier_flag: the previous point's flag */

/* Context sets of cluster_data(), initialised at the start of every subspace. */
typedef struct nntm_cluster_ctxs {
    nntm_ctx index[NNTM_CLUSTER_MAX_CODEBOOK]; /* cluster_index bins: node of the binary tree */
    nntm_ctx outlier_flag[NNTM_OUTLIER_FLAG_CTX];
    nntm_ctx run[NNTM_RUN_CTX];
    nntm_level_ctxs index_lv; /* cluster_index_delta of scalar codebooks */
    nntm_level_ctxs outlier;  /* outlier_level */
    nntm_level_ctxs residual; /* residual_level */
} nntm_cluster_ctxs;

void nntm_cluster_ctxs_init(nntm_cluster_ctxs *c);

/* Steps of a clustered tensor as mantissa * 2^shift. */
typedef struct nntm_cluster_steps {
    int32_t cb_mant, cb_shift;
    int32_t out_mant, out_shift;
    int32_t res_mant, res_shift;
} nntm_cluster_steps;

/* NNTM_OK when every field is in range (and the steps exist). */
int nntm_check_cluster_params(const nntm_cluster_params *p, nntm_cluster_steps *steps);

/* Number of values (sum num_points[s] * dims[s]) and of codebook integers
 * (sum codebook_size[s] * dims[s]); NNTM_ERR_ARG if they overflow. */
int nntm_cluster_counts(const nntm_cluster_params *p, size_t *values, size_t *points,
                        size_t *codebook_values);

/* Number of bins of cluster_index for a codebook of k entries: ceil(log2 k). */
static inline int nntm_cluster_index_bits(int32_t k) {
    int n = 0;
    while (((int32_t)1 << n) < k) n++;
    return n;
}

/* Whether bin i (0 = most significant) of an index with the bits before it
 * equal to prefix is coded: it is inferred 0 when a 1 would exceed k - 1. */
static inline int nntm_cluster_index_bin_coded(int32_t k, int nbits, int i, int32_t prefix) {
    int32_t with_one = ((prefix << 1) | 1) << (nbits - i - 1);
    return with_one <= k - 1;
}

/* Zero entry of a scalar codebook: the first entry of least magnitude. */
static inline int32_t nntm_cluster_zero_entry(const int32_t *codebook, int32_t k) {
    int32_t z = 0;
    for (int32_t i = 1; i < k; i++) {
        int64_t a = codebook[i] < 0 ? -(int64_t)codebook[i] : codebook[i];
        int64_t b = codebook[z] < 0 ? -(int64_t)codebook[z] : codebook[z];
        if (a < b) z = i;
    }
    return z;
}

/* Contexts of the index delta of point i of a subspace from the deltas of its
 * left (same row) and above (previous row) points; outliers count as 0. */
static inline void nntm_cluster_delta_ctx(const int32_t *delta, int32_t i, int32_t row,
                                          nntm_level_ctx_idx *ci) {
    int32_t left = (i % row) ? delta[i - 1] : 0;
    int32_t above = i >= row ? delta[i - row] : 0;
    nntm_level_ctx_from(left, above, 0, ci);
}

/* Store one reconstructed value to sample i of out (dtype NNTM_DTYPE_*):
 * v * 2^e rounded once to the format. */
void nntm_cluster_store(int32_t dtype, int64_t v, int32_t e, void *out, size_t i);

/* Value of an inlier component, codebook integer c plus residual level r, as
 * v * 2^e (exact; the parameter check bounds the shift gap). */
static inline void nntm_cluster_inlier_value(const nntm_cluster_steps *s, int32_t c, int32_t r,
                                             int64_t *v, int32_t *e) {
    if (r == 0) {
        *v = (int64_t)c * s->cb_mant;
        *e = s->cb_shift;
        return;
    }
    int32_t lo = s->cb_shift < s->res_shift ? s->cb_shift : s->res_shift;
    *v = ((int64_t)c * s->cb_mant) * ((int64_t)1 << (s->cb_shift - lo)) +
         ((int64_t)r * s->res_mant) * ((int64_t)1 << (s->res_shift - lo));
    *e = lo;
}

/* Reconstruct every point: an inlier (labels[i] >= 0) from its codebook entry
 * plus the residual levels in levels (zeros without residual), an outlier
 * (labels[i] == -1) from its levels at the outlier step.  labels must be
 * valid (< codebook_size of the subspace).  NNTM_OK or NNTM_ERR_ARG. */
int nntm_cluster_reconstruct(const nntm_cluster_params *p, const nntm_cluster_steps *s,
                             const int32_t *codebooks, const int32_t *labels,
                             const int32_t *levels, int32_t dtype, void *out);

#endif
