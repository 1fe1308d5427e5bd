/* Clustering-based quantization: parameter check, contexts and reconstruction. */
#include "cluster.h"

#include <string.h>

#include "quant.h"

#define NNTM_INIT_INDEX 16384u
#define NNTM_INIT_OUTLIER_FLAG 2048u /* P(outlier_flag == 1) = 1/16 */
#define NNTM_INIT_RUN 16384u


void nntm_cluster_ctxs_init(nntm_cluster_ctxs *c) {
    nntm_ctx_fill(c->index, NNTM_CLUSTER_MAX_CODEBOOK, NNTM_INIT_INDEX, 0);
    nntm_ctx_fill(c->outlier_flag, NNTM_OUTLIER_FLAG_CTX, NNTM_INIT_OUTLIER_FLAG, 0);
    nntm_ctx_fill(c->run, NNTM_RUN_CTX, NNTM_INIT_RUN, 0);
    nntm_level_ctxs_init(&c->index_lv, 0, 0);
    nntm_level_ctxs_init(&c->outlier, 0, 0);
    nntm_level_ctxs_init(&c->residual, 0, 0);
}

int nntm_check_cluster_params(const nntm_cluster_params *p, nntm_cluster_steps *steps) {
    if (!p || p->num_subspaces < 1 || p->num_subspaces > NNTM_CLUSTER_MAX_SUBSPACES)
        return NNTM_ERR_ARG;
    if (p->num_gt_flags < 1 || p->num_gt_flags > NNTM_MAX_GT_FLAGS) return NNTM_ERR_ARG;
    if ((p->outliers_enabled != 0 && p->outliers_enabled != 1) ||
        (p->residual_enabled != 0 && p->residual_enabled != 1))
        return NNTM_ERR_ARG;
    if (p->outlier_pos_mode != NNTM_OUTLIER_POS_FLAGS && p->outlier_pos_mode != NNTM_OUTLIER_POS_RUNS)
        return NNTM_ERR_ARG;
    nntm_cluster_steps s;
    if (nntm_qp_to_step(p->codebook_qp, p->qp_density, &s.cb_mant, &s.cb_shift) ||
        nntm_qp_to_step(p->outlier_qp, p->qp_density, &s.out_mant, &s.out_shift) ||
        nntm_qp_to_step(p->residual_qp, p->qp_density, &s.res_mant, &s.res_shift))
        return NNTM_ERR_ARG;
    int32_t gap = s.cb_shift - s.res_shift;
    if (p->residual_enabled && (gap > NNTM_CLUSTER_MAX_SHIFT_GAP || gap < -NNTM_CLUSTER_MAX_SHIFT_GAP))
        return NNTM_ERR_ARG;
    for (int32_t i = 0; i < p->num_subspaces; i++) {
        if (p->num_points[i] < 0 || p->dims[i] < 1) return NNTM_ERR_ARG;
        if (p->codebook_size[i] < 1 || p->codebook_size[i] > NNTM_CLUSTER_MAX_CODEBOOK)
            return NNTM_ERR_ARG;
        if (p->row_points[i] < 1) return NNTM_ERR_ARG;
    }
    if (steps) *steps = s;
    return NNTM_OK;
}

int nntm_cluster_counts(const nntm_cluster_params *p, size_t *values, size_t *points,
                        size_t *codebook_values) {
    uint64_t v = 0, n = 0, c = 0;
    for (int32_t i = 0; i < p->num_subspaces; i++) {
        v += (uint64_t)p->num_points[i] * (uint64_t)p->dims[i];
        n += (uint64_t)p->num_points[i];
        c += (uint64_t)p->codebook_size[i] * (uint64_t)p->dims[i];
        if (v > (uint64_t)INT32_MAX || c > (uint64_t)INT32_MAX) return NNTM_ERR_ARG;
    }
    if (values) *values = (size_t)v;
    if (points) *points = (size_t)n;
    if (codebook_values) *codebook_values = (size_t)c;
    return NNTM_OK;
}

void nntm_cluster_store(int32_t dtype, int64_t v, int32_t e, void *out, size_t i) {
    switch (dtype) {
    case NNTM_DTYPE_FLOAT32: {
        uint32_t b = (uint32_t)nntm_int_to_float_bits(v, e, 23, 8);
        memcpy((uint8_t *)out + 4 * i, &b, 4);
        break;
    }
    case NNTM_DTYPE_FLOAT16: {
        uint16_t b = (uint16_t)nntm_int_to_float_bits(v, e, 10, 5);
        memcpy((uint8_t *)out + 2 * i, &b, 2);
        break;
    }
    case NNTM_DTYPE_BFLOAT16: {
        uint16_t b = (uint16_t)nntm_int_to_float_bits(v, e, 7, 8);
        memcpy((uint8_t *)out + 2 * i, &b, 2);
        break;
    }
    default: {
        uint64_t b = nntm_int_to_float_bits(v, e, 52, 11);
        memcpy((uint8_t *)out + 8 * i, &b, 8);
        break;
    }
    }
}

int nntm_cluster_reconstruct(const nntm_cluster_params *p, const nntm_cluster_steps *s,
                             const int32_t *codebooks, const int32_t *labels,
                             const int32_t *levels, int32_t dtype, void *out) {
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    size_t v = 0, pt = 0, cb = 0;
    for (int32_t sp = 0; sp < p->num_subspaces; sp++) {
        int32_t d = p->dims[sp];
        for (int32_t i = 0; i < p->num_points[sp]; i++, pt++) {
            int32_t k = labels[pt];
            if (k >= p->codebook_size[sp] || k < -1) return NNTM_ERR_ARG;
            for (int32_t j = 0; j < d; j++, v++) {
                int64_t val;
                int32_t e;
                if (k < 0) {
                    val = (int64_t)levels[v] * s->out_mant;
                    e = s->out_shift;
                } else {
                    nntm_cluster_inlier_value(s, codebooks[cb + (size_t)k * (size_t)d + (size_t)j],
                                              p->residual_enabled ? levels[v] : 0, &val, &e);
                }
                nntm_cluster_store(dtype, val, e, out, v);
            }
        }
        cb += (size_t)p->codebook_size[sp] * (size_t)d;
    }
    return NNTM_OK;
}
