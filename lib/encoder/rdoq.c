/* Scalar quantization with rate-distortion optimised rounding.
 *
 * Levels are decided in coding order.  For each weight the candidates are the
 * two nearest levels and zero; each is priced with the bit estimator running
 * the real level_coding() syntax on the contexts as they stand, and the one
 * with the least D + lambda * R wins; then the contexts advance with it. */
#include "rdoq.h"

#include <math.h>
#include <stdlib.h>

#include "syntax_writer.h"

static int32_t clamp_level(double q, int *overflow) {
    if (q > (double)NNTM_MAX_LEVEL || q < -(double)NNTM_MAX_LEVEL) {
        *overflow = 1;
        return 0;
    }
    return (int32_t)q;
}

static double step_of(const nntm_kernel_params *k) {
    int32_t mant, shift;
    nntm_qp_to_step(k->qp, k->qp_density, &mant, &shift);
    return ldexp((double)mant, shift);
}

static int quantize_nearest(const nntm_kernel_params *k, const float *w, int32_t *levels) {
    double inv = 1.0 / step_of(k);
    size_t n = (size_t)k->rows * (size_t)k->cols;
    int overflow = 0;
    for (size_t i = 0; i < n; i++) {
        double q = (double)w[i] * inv;
        levels[i] = clamp_level(q < 0 ? -floor(-q + 0.5) : floor(q + 0.5), &overflow);
    }
    return overflow ? NNTM_ERR_RANGE : NNTM_OK;
}

static int quantize_rdoq(const nntm_encoder_params *p, const float *w, int32_t *levels) {
    const nntm_kernel_params *k = &p->kernel;
    double step = step_of(k);
    double inv = 1.0 / step;
    double lambda = p->lambda_scale * step * step / (double)(1u << NNTM_COST_SHIFT);
    nntm_bit_estimator *trial = malloc(sizeof *trial);
    nntm_bit_estimator *track = malloc(sizeof *track);
    if (!trial || !track) {
        free(trial);
        free(track);
        return NNTM_ERR_NOMEM;
    }
    nntm_bit_estimator_init(trial, 0);
    nntm_bit_estimator_init(track, 1);
    nntm_level_ctxs ctxs;
    nntm_level_ctxs_init(&ctxs);
    int overflow = 0;
    nntm_level_ctx_idx ci;
    for (int32_t r = 0; r < k->rows; r++) {
        for (int32_t c = 0; c < k->cols; c++) {
            size_t i = (size_t)r * (size_t)k->cols + (size_t)c;
            double x = (double)w[i];
            double q = fabs(x) * inv;
            int32_t lo = clamp_level(floor(q), &overflow);
            int32_t cand[3] = {lo, lo + 1, 0};
            int ncand = lo == 0 ? 2 : 3;
            nntm_level_ctx_derive(levels, k->cols, r, c, &ci);
            int32_t best = 0;
            double best_cost = 0;
            for (int j = 0; j < ncand; j++) {
                int32_t a = cand[j];
                if (a > NNTM_MAX_LEVEL) continue;
                int32_t lv = x < 0 ? -a : a;
                double d = x - (double)lv * step;
                trial->cost = 0;
                nntm_write_level_coding(&trial->w, &ctxs, &ci, lv, k->num_gt_flags);
                double cost = d * d + lambda * (double)trial->cost;
                if (j == 0 || cost < best_cost) {
                    best_cost = cost;
                    best = lv;
                }
            }
            levels[i] = best;
            nntm_write_level_coding(&track->w, &ctxs, &ci, best, k->num_gt_flags);
        }
    }
    free(trial);
    free(track);
    return overflow ? NNTM_ERR_RANGE : NNTM_OK;
}

int nntm_quantize_kernel(const nntm_encoder_params *p, const float *weights, int32_t *levels) {
    return p->rdoq ? quantize_rdoq(p, weights, levels)
                   : quantize_nearest(&p->kernel, weights, levels);
}
