/* Scalar quantization with rate-distortion optimised rounding.
 *
 * Levels are decided in coding order.  For each weight the candidates are the
 * two nearest levels and zero; each is priced with the bit estimator running
 * the real level_coding() syntax on the contexts as they stand, and the one
 * with the least D + lambda * R wins; then the contexts advance with it. */
#include "rdoq.h"

#include <math.h>

#include "../common/quant.h"
#include "syntax_writer.h"

void nntm_quantizer_init(nntm_quantizer *q, int32_t qp, int32_t qp_density, double max_abs_value) {
    q->step = nntm_step_double(qp, qp_density);
    q->inv_step = 1.0 / q->step;
    double m = floor(max_abs_value / q->step);
    int32_t lim = m >= (double)NNTM_MAX_LEVEL ? NNTM_MAX_LEVEL : (int32_t)m;
    while (lim > 0 && (double)lim * q->step > max_abs_value) lim--; /* exact products */
    q->max_level = lim;
    q->overflow = 0;
}

/* |level| candidates below and above |x| / step, clamped to the dtype's range. */
static int32_t floor_level(nntm_quantizer *q, double ax) {
    double f = floor(ax * q->inv_step);
    if (f > (double)NNTM_MAX_LEVEL) {
        if (q->max_level == NNTM_MAX_LEVEL) q->overflow = 1;
        return q->max_level;
    }
    return (int32_t)f < q->max_level ? (int32_t)f : q->max_level;
}

double nntm_quantize_region(const nntm_kernel_params *k, int rdoq, double lambda,
                            nntm_quantizer *q, const float *weights, int32_t *levels,
                            nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                            nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                            int32_t y1) {
    double dist = 0.0;
    nntm_level_ctx_idx ci;
    for (int32_t r = y0; r < y1; r++) {
        for (int32_t c = x0; c < x1; c++) {
            size_t i = (size_t)r * (size_t)k->cols + (size_t)c;
            double x = (double)weights[i];
            double ax = fabs(x);
            int32_t lo = floor_level(q, ax);
            int32_t hi = lo < q->max_level ? lo + 1 : lo;
            nntm_level_ctx_derive(levels, k->cols, r, c, &ci);
            int32_t best;
            if (!rdoq) {
                double nearest = floor(ax * q->inv_step + 0.5); /* ties away from zero */
                best = nearest > (double)lo ? hi : lo;
            } else {
                int32_t cand[3];
                int ncand = 0;
                cand[ncand++] = lo;
                if (hi > lo) cand[ncand++] = hi;
                if (lo > 0) cand[ncand++] = 0;
                double best_cost = 0.0;
                best = 0;
                for (int j = 0; j < ncand; j++) {
                    double d = ax - (double)cand[j] * q->step;
                    trial->cost = 0;
                    nntm_write_level_coding(&trial->w, ctxs, &ci, x < 0 ? -cand[j] : cand[j],
                                            k->num_gt_flags);
                    double cost = d * d + lambda * (double)trial->cost;
                    if (j == 0 || cost < best_cost) {
                        best_cost = cost;
                        best = cand[j];
                    }
                }
            }
            int32_t lv = x < 0 ? -best : best;
            double d = x - (double)lv * q->step;
            dist += d * d;
            levels[i] = lv;
            nntm_write_level_coding(&track->w, ctxs, &ci, lv, k->num_gt_flags);
        }
    }
    return dist;
}
