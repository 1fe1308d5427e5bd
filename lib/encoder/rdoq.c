/* Scalar quantization with rate-distortion optimised rounding, and the
 * dependent-quantization trellis.
 *
 * RDOQ decides levels in coding order: for each weight the candidates are the
 * two nearest levels and zero; each is priced with the bit estimator running
 * the real level_coding() syntax on the contexts as they stand, and the one
 * with the least D + lambda * R wins; then the contexts advance with it.
 *
 * With dependent quantization a Viterbi search runs over each row of the
 * region: one survivor per state (4, or 8 [1.4]), each candidate of the state's
 * quantizer priced with the contexts frozen at the row start and the
 * survivor's own left neighbour; the best end state's path is kept. */
#include "rdoq.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    q->nomem = 0;
}

/* The largest |level| at or below |x| / step, clamped to the dtype's range. */
static int32_t floor_level(nntm_quantizer *q, double ax) {
    double f = floor(ax * q->inv_step);
    if (f > (double)NNTM_MAX_LEVEL) {
        if (q->max_level == NNTM_MAX_LEVEL) q->overflow = 1;
        return q->max_level;
    }
    return (int32_t)f < q->max_level ? (int32_t)f : q->max_level;
}

/* The estimator's price of one bin on ctx (est_encode_bin without the call). */
static inline uint32_t bin_cost(const uint32_t *cost1, const nntm_ctx *c, int bin) {
    uint32_t idx = nntm_ctx_p1(c) >> (NNTM_PROB_BITS - NNTM_COST_TABLE_BITS);
    if (!bin) idx = (1u << NNTM_COST_TABLE_BITS) - 1 - idx;
    return cost1[idx];
}

/* The suffix bins of abs_remainder() (prefix k, suffix value) as the
 * non-updating estimator prices them: bypass bins 1 each, the first two on
 * EgsCtx with suffix_ctx_flag [1.5]. */
static inline uint64_t suffix_rate(const uint32_t *cost1, const nntm_level_ctxs *ctxs, int k,
                                   uint32_t suffix) {
    int nctx = nntm_egs_num_ctx_bins(ctxs, k);
    uint64_t r = (uint64_t)(k - nctx) << NNTM_COST_SHIFT;
    if (nctx) {
        const nntm_ctx *sc = ctxs->egs[nntm_egs_set(k)];
        int b0 = (int)(suffix >> (k - 1)) & 1;
        r += bin_cost(cost1, &sc[0], b0);
        if (nctx > 1) r += bin_cost(cost1, &sc[1 + b0], (int)(suffix >> (k - 2)) & 1);
    }
    return r;
}

/* The rate of level_coding() for a level of magnitude a (sign neg) as the
 * non-updating estimator measures it: the bins of nntm_write_level_coding(),
 * each priced on its context as it stands (no update between bins), summed as
 * integers.  Equal to running the syntax writer through the trial estimator. */
static inline uint64_t level_rate(const uint32_t *cost1, const nntm_level_ctxs *ctxs,
                                  const nntm_level_ctx_idx *ci, uint32_t a, int neg, int num_gt) {
    if (a == 0) return bin_cost(cost1, &ctxs->sig[ci->sig], 0);
    uint64_t r = (uint64_t)bin_cost(cost1, &ctxs->sig[ci->sig], 1) +
                 bin_cost(cost1, &ctxs->sign[ci->sign], neg);
    for (int i = 0; i < num_gt; i++) {
        int gt = a > (uint32_t)(i + 1);
        r += bin_cost(cost1, &ctxs->gt[i][ci->gt_class], gt);
        if (!gt) return r;
    }
    uint32_t v = a - (uint32_t)num_gt - 1 + 1;
    int prefix = 0;
    while ((v >> (prefix + 1)) != 0) prefix++;
    const nntm_ctx *pc = ctxs->egp[ci->egp_class];
    for (int i = 0; i < prefix; i++) r += bin_cost(cost1, &pc[i < NNTM_EGP_CTX ? i : NNTM_EGP_CTX - 1], 1);
    r += bin_cost(cost1, &pc[prefix < NNTM_EGP_CTX ? prefix : NNTM_EGP_CTX - 1], 0);
    return r + suffix_rate(cost1, ctxs, prefix, v - (1u << prefix));
}

/* abs_remainder() of rem as the non-updating estimator prices it. */
static inline uint64_t remainder_rate(const uint32_t *cost1, const nntm_level_ctxs *ctxs,
                                      const nntm_ctx *pc, uint32_t rem) {
    uint32_t v = rem + 1;
    int prefix = 0;
    while ((v >> (prefix + 1)) != 0) prefix++;
    uint64_t r = suffix_rate(cost1, ctxs, prefix, v - (1u << prefix));
    for (int i = 0; i < prefix; i++) r += bin_cost(cost1, &pc[i < NNTM_EGP_CTX ? i : NNTM_EGP_CTX - 1], 1);
    return r + bin_cost(cost1, &pc[prefix < NNTM_EGP_CTX ? prefix : NNTM_EGP_CTX - 1], 0);
}

/* level_rate() of the magnitudes 0, a and a + 1 at once (the candidates of a
 * weight): the bins that a and a + 1 share are priced once.  The integer sums
 * equal level_rate()'s. */
static inline void candidate_rates(const uint32_t *cost1, const nntm_level_ctxs *ctxs,
                                   const nntm_level_ctx_idx *ci, uint32_t a, int neg, int num_gt,
                                   uint64_t *r0, uint64_t *ra, uint64_t *ra1) {
    const nntm_ctx *sig = &ctxs->sig[ci->sig];
    *r0 = bin_cost(cost1, sig, 0);
    uint64_t base = (uint64_t)bin_cost(cost1, sig, 1) + bin_cost(cost1, &ctxs->sign[ci->sign], neg);
    const nntm_ctx *pc = ctxs->egp[ci->egp_class];
    const uint32_t g = (uint32_t)num_gt;
    if (a == 0) {
        *ra = *r0;
        *ra1 = base + bin_cost(cost1, &ctxs->gt[0][ci->gt_class], 0);
        return;
    }
    /* a >= 1: greater-than flags 0 .. min(a - 1, g) - 1 are 1 for both */
    uint32_t ones = a - 1 < g ? a - 1 : g;
    for (uint32_t i = 0; i < ones; i++) base += bin_cost(cost1, &ctxs->gt[i][ci->gt_class], 1);
    if (a - 1 < g) {
        const nntm_ctx *c = &ctxs->gt[a - 1][ci->gt_class];
        *ra = base + bin_cost(cost1, c, 0);
        base += bin_cost(cost1, c, 1);
        if (a < g)
            *ra1 = base + bin_cost(cost1, &ctxs->gt[a][ci->gt_class], 0);
        else
            *ra1 = base + remainder_rate(cost1, ctxs, pc, a - g);
    } else {
        *ra = base + remainder_rate(cost1, ctxs, pc, a - g - 1);
        *ra1 = base + remainder_rate(cost1, ctxs, pc, a - g);
    }
}


/* The prices of one row's candidates, from the contexts frozen at the row start (the
 * trellis does not update them inside a row): the sig and sign bins of every context and,
 * by greater-than class, the bins after them of every |level| 1..top.  Sums of the same
 * integer bin costs as candidate_rates(), so the same rates. */
#define NNTM_RATE_TAB_LEVELS 64
typedef struct row_rates {
    uint32_t sig[2][NNTM_SIG_CTX];
    uint32_t sign[NNTM_SIGN_CTX][2];
    uint64_t mag[NNTM_GT_CLASSES][NNTM_RATE_TAB_LEVELS + 1]; /* index |level| */
    int32_t top;  /* mag holds |level| 1..top */
} row_rates;

static void row_rates_build(row_rates *t, const uint32_t *cost1, const nntm_level_ctxs *ctxs,
                            int num_gt, int32_t top) {
    for (int i = 0; i < NNTM_SIG_CTX; i++) {
        t->sig[0][i] = bin_cost(cost1, &ctxs->sig[i], 0);
        t->sig[1][i] = bin_cost(cost1, &ctxs->sig[i], 1);
    }
    for (int i = 0; i < NNTM_SIGN_CTX; i++) {
        t->sign[i][0] = bin_cost(cost1, &ctxs->sign[i], 0);
        t->sign[i][1] = bin_cost(cost1, &ctxs->sign[i], 1);
    }
    t->top = top < NNTM_RATE_TAB_LEVELS ? top : NNTM_RATE_TAB_LEVELS;
    for (int cls = 0; cls < NNTM_GT_CLASSES; cls++) {
        /* egp_class is 1 exactly for the largest greater-than class (s > 10) */
        const nntm_ctx *pc = ctxs->egp[cls == NNTM_GT_CLASSES - 1];
        uint64_t ones = 0; /* the greater-than flags 0 .. a - 2 set */
        for (int32_t a = 1; a <= t->top; a++) {
            int i = (int)a - 1;
            if (i < num_gt) {
                t->mag[cls][a] = ones + bin_cost(cost1, &ctxs->gt[i][cls], 0);
                ones += bin_cost(cost1, &ctxs->gt[i][cls], 1);
            } else {
                t->mag[cls][a] = ones + remainder_rate(cost1, ctxs, pc, (uint32_t)(a - num_gt - 1));
            }
        }
    }
}

/* candidate_rates() from the row's table when lo + 1 is in it. */
static inline void table_rates(const row_rates *t, const uint32_t *cost1,
                               const nntm_level_ctxs *ctxs, const nntm_level_ctx_idx *ci,
                               uint32_t a, int neg, int num_gt, uint64_t *r0, uint64_t *ra,
                               uint64_t *ra1) {
    if ((int32_t)a >= t->top) {
        candidate_rates(cost1, ctxs, ci, a, neg, num_gt, r0, ra, ra1);
        return;
    }
    uint64_t base = (uint64_t)t->sig[1][ci->sig] + t->sign[ci->sign][neg];
    const uint64_t *mag = t->mag[ci->gt_class];
    *r0 = t->sig[0][ci->sig];
    *ra = a ? base + mag[a] : *r0;
    *ra1 = base + mag[a + 1];
}

/* One bin through the updating estimator (est_encode_bin inlined). */
static inline void bin_track(nntm_bit_estimator *e, nntm_ctx *c, int bin) {
    e->cost += bin_cost(e->cost1, c, bin);
    nntm_ctx_update(c, bin);
}

/* nntm_write_level_coding() through the updating estimator, inlined: the same
 * bins on the same contexts in the same order. */
static inline void level_track(nntm_bit_estimator *e, nntm_level_ctxs *ctxs,
                               const nntm_level_ctx_idx *ci, int32_t level, int num_gt) {
    bin_track(e, &ctxs->sig[ci->sig], level != 0);
    if (level == 0) return;
    bin_track(e, &ctxs->sign[ci->sign], level < 0);
    uint32_t a = level < 0 ? (uint32_t)(-(int64_t)level) : (uint32_t)level;
    for (int i = 0; i < num_gt; i++) {
        int gt = a > (uint32_t)(i + 1);
        bin_track(e, &ctxs->gt[i][ci->gt_class], gt);
        if (!gt) return;
    }
    uint32_t v = a - (uint32_t)num_gt - 1 + 1;
    int prefix = 0;
    while ((v >> (prefix + 1)) != 0) prefix++;
    nntm_ctx *pc = ctxs->egp[ci->egp_class];
    for (int i = 0; i < prefix; i++) bin_track(e, &pc[i < NNTM_EGP_CTX ? i : NNTM_EGP_CTX - 1], 1);
    bin_track(e, &pc[prefix < NNTM_EGP_CTX ? prefix : NNTM_EGP_CTX - 1], 0);
    int nctx = nntm_egs_num_ctx_bins(ctxs, prefix);
    if (nctx) {
        uint32_t suffix = v - (1u << prefix);
        nntm_ctx *sc = ctxs->egs[nntm_egs_set(prefix)];
        int b0 = (int)(suffix >> (prefix - 1)) & 1;
        bin_track(e, &sc[0], b0);
        if (nctx > 1) bin_track(e, &sc[1 + b0], (int)(suffix >> (prefix - 2)) & 1);
    }
    e->cost += (uint64_t)(prefix - nctx) << NNTM_COST_SHIFT;
}

/* The context updates of nntm_write_level_coding() for a level whose bins all
 * use distinct contexts (remainder prefix at most NNTM_EGP_CTX - 1, i.e.
 * |level| - num_gt < 2^NNTM_EGP_CTX): then the rate of the updating estimator
 * equals the non-updating one, and only the updates are left to do. */
static inline void level_update(nntm_level_ctxs *ctxs, const nntm_level_ctx_idx *ci, uint32_t a,
                                int neg, int num_gt) {
    nntm_ctx_update(&ctxs->sig[ci->sig], a != 0);
    if (a == 0) return;
    nntm_ctx_update(&ctxs->sign[ci->sign], neg);
    for (int i = 0; i < num_gt; i++) {
        int gt = a > (uint32_t)(i + 1);
        nntm_ctx_update(&ctxs->gt[i][ci->gt_class], gt);
        if (!gt) return;
    }
    uint32_t v = a - (uint32_t)num_gt;
    int prefix = 0;
    while ((v >> (prefix + 1)) != 0) prefix++;
    nntm_ctx *pc = ctxs->egp[ci->egp_class];
    for (int i = 0; i < prefix; i++) nntm_ctx_update(&pc[i], 1);
    nntm_ctx_update(&pc[prefix], 0);
    int nctx = nntm_egs_num_ctx_bins(ctxs, prefix);
    if (nctx) {
        uint32_t suffix = v - (1u << prefix);
        nntm_ctx *sc = ctxs->egs[nntm_egs_set(prefix)];
        int b0 = (int)(suffix >> (prefix - 1)) & 1;
        nntm_ctx_update(&sc[0], b0);
        if (nctx > 1) nntm_ctx_update(&sc[1 + b0], (int)(suffix >> (prefix - 2)) & 1);
    }
}


/* The |level| candidates of a quantizer for |x| (in half steps u = 2|x|/step):
 * Q0 reconstructs 2k, Q1 2k - 1 (and 0). */
static int dq_candidates(int quantizer, double u, int32_t max_level, int32_t cand[3]) {
    int n = 0;
    int32_t lo;
    if (quantizer == 0) {
        double f = floor(u * 0.5);
        lo = f > (double)max_level ? max_level : (int32_t)f;
    } else {
        double f = floor((u + 1.0) * 0.5);
        lo = f > (double)max_level ? max_level : (int32_t)f;
    }
    cand[n++] = lo;
    if (lo < max_level) cand[n++] = lo + 1;
    if (lo > 0) cand[n++] = 0;
    return n;
}

static double dq_recon_half(int quantizer, int32_t a) {
    return quantizer == 0 || a == 0 ? 2.0 * (double)a : 2.0 * (double)a - 1.0;
}

int nntm_quant_table_fill(nntm_quant_table *t, const nntm_region_input *in, nntm_quantizer *q,
                          int32_t x0, int32_t y0, int32_t x1, int32_t y1) {
    size_t n = (size_t)(x1 - x0) * (size_t)(y1 - y0);
    if (n > t->cap) {
        int32_t *lo = realloc(t->lo, 2 * n * sizeof *lo);
        if (lo) t->lo = lo;
        double *dist = realloc(t->dist, 6 * n * sizeof *dist);
        if (dist) t->dist = dist;
        if (!lo || !dist) return NNTM_ERR_NOMEM;
        t->cap = n;
    }
    t->x0 = x0;
    t->y0 = y0;
    t->x1 = x1;
    t->y1 = y1;
    const nntm_kernel_params *k = in->k;
    t->dq = k->dq_enabled;
    size_t j = 0;
    if (t->dq) {
        double half = 0.5 * q->step;
        int32_t max_level = q->max_level;
        for (int32_t r = y0; r < y1; r++)
            for (int32_t c = x0; c < x1; c++, j++) {
                size_t i = (size_t)r * (size_t)k->cols + (size_t)c;
                double x = (double)in->weights[i];
                double imp = in->importance ? (double)in->importance[i] : 1.0;
                double ax = fabs(x);
                double u = ax / half;
                if (u * 0.5 > (double)NNTM_MAX_LEVEL && max_level == NNTM_MAX_LEVEL)
                    q->overflow = 1;
                for (int qz = 0; qz < 2; qz++) {
                    int32_t cand[3];
                    dq_candidates(qz, u, max_level, cand);
                    int32_t lo = cand[0];
                    int32_t hi = lo < max_level ? lo + 1 : lo;
                    double d;
                    t->lo[2 * j + (size_t)qz] = lo;
                    double *dd = &t->dist[6 * j + 3 * (size_t)qz];
                    d = ax - dq_recon_half(qz, lo) * half;
                    dd[0] = imp * d * d;
                    d = ax - dq_recon_half(qz, hi) * half;
                    dd[1] = imp * d * d;
                    d = ax - dq_recon_half(qz, 0) * half;
                    dd[2] = imp * d * d;
                }
            }
        return NNTM_OK;
    }
    for (int32_t r = y0; r < y1; r++)
        for (int32_t c = x0; c < x1; c++, j++) {
            size_t i = (size_t)r * (size_t)k->cols + (size_t)c;
            double x = (double)in->weights[i];
            double imp = in->importance ? (double)in->importance[i] : 1.0;
            double ax = fabs(x);
            int32_t lo = floor_level(q, ax);
            int32_t hi = lo < q->max_level ? lo + 1 : lo;
            double d;
            t->lo[j] = lo;
            d = ax - (double)lo * q->step;
            t->dist[3 * j] = imp * d * d;
            d = ax - (double)hi * q->step;
            t->dist[3 * j + 1] = imp * d * d;
            d = ax - (double)0 * q->step;
            t->dist[3 * j + 2] = imp * d * d;
        }
    return NNTM_OK;
}

void nntm_quant_table_free(nntm_quant_table *t) {
    free(t->lo);
    free(t->dist);
    t->lo = NULL;
    t->dist = NULL;
    t->cap = 0;
}

/* RDOQ without DQ from a table: the same candidates, costs and decisions as
 * quantize_scalar(), with the per-weight arithmetic looked up. */
static double quantize_scalar_table(const nntm_region_input *in, nntm_quantizer *q,
                                    const nntm_quant_table *t, int32_t *levels, nntm_level_ctxs *ctxs,
                                    nntm_bit_estimator *trial, nntm_bit_estimator *track,
                                    int32_t x0, int32_t y0, int32_t x1, int32_t y1) {
    const nntm_kernel_params *k = in->k;
    const uint32_t *cost1 = trial->cost1;
    const int num_gt = k->num_gt_flags;
    const double lambda = in->lambda;
    const int32_t max_level = q->max_level;
    const size_t tw = (size_t)(t->x1 - t->x0);
    double dist = 0.0;
    nntm_level_ctx_idx ci;
    for (int32_t r = y0; r < y1; r++) {
        size_t row = (size_t)r * (size_t)k->cols;
        size_t trow = (size_t)(r - t->y0) * tw - (size_t)t->x0;
        for (int32_t c = x0; c < x1; c++) {
            size_t i = row + (size_t)c, j = trow + (size_t)c;
            int neg = in->weights[i] < 0.0f;
            int32_t lo = t->lo[j];
            const double *dd = &t->dist[3 * j];
            nntm_level_ctx_derive(levels, k->cols, r, c, 0, &ci);
            uint64_t r0, rlo, rhi;
            candidate_rates(cost1, ctxs, &ci, (uint32_t)lo, neg, num_gt, &r0, &rlo, &rhi);
            /* candidates in quantize_scalar()'s order: lo, lo + 1, 0; rates below 2^63 */
            int32_t best = lo;
            uint64_t best_rate = rlo;
            double best_d = dd[0];
            double best_cost = dd[0] + lambda * (double)(int64_t)rlo;
            if (lo < max_level) {
                double cost = dd[1] + lambda * (double)(int64_t)rhi;
                if (cost < best_cost) {
                    best_cost = cost;
                    best = lo + 1;
                    best_rate = rhi;
                    best_d = dd[1];
                }
            }
            if (lo > 0) {
                double cost = dd[2] + lambda * (double)(int64_t)r0;
                if (cost < best_cost) {
                    best = 0;
                    best_rate = r0;
                    best_d = dd[2];
                }
            }
            int32_t lv = neg ? -best : best;
            dist += best_d;
            levels[i] = lv;
            if ((uint32_t)best < (uint32_t)num_gt + (1u << NNTM_EGP_CTX)) {
                track->cost += best_rate;
                level_update(ctxs, &ci, (uint32_t)best, neg, num_gt);
            } else {
                level_track(track, ctxs, &ci, lv, num_gt);
            }
        }
    }
    return dist;
}

static double quantize_scalar(const nntm_region_input *in, nntm_quantizer *q, int32_t *levels,
                              nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                              nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                              int32_t y1) {
    const nntm_kernel_params *k = in->k;
    double dist = 0.0;
    nntm_level_ctx_idx ci;
    for (int32_t r = y0; r < y1; r++) {
        for (int32_t c = x0; c < x1; c++) {
            size_t i = (size_t)r * (size_t)k->cols + (size_t)c;
            double x = (double)in->weights[i];
            double imp = in->importance ? (double)in->importance[i] : 1.0;
            double ax = fabs(x);
            int32_t lo = floor_level(q, ax);
            int32_t hi = lo < q->max_level ? lo + 1 : lo;
            nntm_level_ctx_derive(levels, k->cols, r, c, 0, &ci);
            int32_t best;
            if (!in->rdoq) {
                double nearest = floor(ax * q->inv_step + 0.5); /* ties away from zero */
                best = nearest > (double)lo ? hi : lo;
            } else {
                int32_t cand[3];
                uint64_t rate[3], r0, rlo, rhi;
                candidate_rates(trial->cost1, ctxs, &ci, (uint32_t)lo, x < 0, k->num_gt_flags,
                                &r0, &rlo, &rhi);
                int ncand = 0;
                rate[ncand] = rlo;
                cand[ncand++] = lo;
                if (hi > lo) {
                    rate[ncand] = rhi;
                    cand[ncand++] = hi;
                }
                if (lo > 0) {
                    rate[ncand] = r0;
                    cand[ncand++] = 0;
                }
                double best_cost = 0.0;
                int best_j = 0;
                for (int j = 0; j < ncand; j++) {
                    double d = ax - (double)cand[j] * q->step;
                    double cost = imp * d * d + in->lambda * (double)rate[j];
                    if (j == 0 || cost < best_cost) {
                        best_cost = cost;
                        best_j = j;
                    }
                }
                best = cand[best_j];
                if ((uint32_t)best < (uint32_t)k->num_gt_flags + (1u << NNTM_EGP_CTX)) {
                    /* distinct contexts: the trial rate is the tracked rate */
                    int32_t lv = x < 0 ? -best : best;
                    double d = x - (double)lv * q->step;
                    dist += imp * d * d;
                    levels[i] = lv;
                    track->cost += rate[best_j];
                    level_update(ctxs, &ci, (uint32_t)best, x < 0, k->num_gt_flags);
                    continue;
                }
            }
            int32_t lv = x < 0 ? -best : best;
            double d = x - (double)lv * q->step;
            dist += imp * d * d;
            levels[i] = lv;
            level_track(track, ctxs, &ci, lv, k->num_gt_flags);
        }
    }
    return dist;
}

/* Start of a row: only the current DQ state is reachable, and every survivor's left
 * neighbour is the level before x0 (0 at the tensor's left edge). */
static inline void dq_start_row(double *cost, int32_t *last, int ns, int state,
                                const int32_t *levels, int32_t cols, int32_t r, int32_t x0) {
    int32_t left = x0 > 0 ? levels[(size_t)r * (size_t)cols + (size_t)x0 - 1] : 0;
    for (int s = 0; s < ns; s++) {
        cost[s] = DBL_MAX;
        last[s] = left;
    }
    cost[state] = 0.0;
}

/* The two incoming edges of every state of a DQ machine: pred[2 * t + e] = 2 * s + parity
 * for the edges s --parity--> t, in ascending s (each state of the 4-, 8- and 32-state
 * machines has exactly two, from two different states).  0 if the table is not of that
 * shape. */
static int dq_predecessors(const int8_t *next, int ns, int8_t *pred) {
    int count[NNTM_DQ_MAX_STATES] = {0};
    for (int s = 0; s < ns; s++)
        for (int p = 0; p < 2; p++) {
            int t = next[2 * s + p];
            if (next[2 * s] == next[2 * s + 1]) return 0;
            if (count[t] == 2) return 0;
            pred[2 * t + count[t]++] = (int8_t)(2 * s + p);
        }
    for (int t = 0; t < ns; t++)
        if (count[t] != 2) return 0;
    return 1;
}

/* One position of the trellis: for each state, the level on the best path into it and the
 * state before it (what the backtracking needs; the costs live in the row loop). */
typedef struct dq_step {
    int32_t level[NNTM_DQ_MAX_STATES];
    int8_t prev[NNTM_DQ_MAX_STATES];
} dq_step;

/* The left neighbours that give the same contexts: clamped to -11..11 (beyond, |L| + |A|
 * > 10 whatever A: the same sig, sign, greater-than and remainder contexts). */
#define DQ_LEFT_CLAMP 11
#define DQ_LEFT_KEYS (2 * DQ_LEFT_CLAMP + 1)

/* The lambda-weighted rates of one position's candidates 0, lo, lo + 1, by quantizer and
 * SigCtx set (slot qz * NNTM_SIG_SETS + set) and left key, each computed the first time a
 * state needs it at the position (stamp): states that share a quantizer, a set and their
 * left neighbour's contexts share every rate. */
typedef struct dq_rate_memo {
    uint32_t stamp[2 * NNTM_SIG_SETS][DQ_LEFT_KEYS];
    double lr[2 * NNTM_SIG_SETS][DQ_LEFT_KEYS][3];
} dq_rate_memo;

/* End of a row: backtrack the best survivor into levels, then advance the contexts, the
 * DQ state and the tracking estimator along it, adding its weighted distortion to *dist. */
static void dq_finish_row(const nntm_region_input *in, const dq_step *steps,
                          const double *cost, int32_t r, int32_t x0, int32_t x1, double half,
                          int32_t *levels, nntm_level_ctxs *ctxs, nntm_bit_estimator *track,
                          double *dist) {
    const nntm_kernel_params *k = in->k;
    const int dq = k->dq_enabled, ns = nntm_dq_num_states(dq);
    nntm_level_ctx_idx ci;
    int best = 0;
    for (int s = 1; s < ns; s++)
        if (cost[s] < cost[best]) best = s;
    for (int32_t c = x1 - 1; c >= x0; c--) {
        const dq_step *st = &steps[c - x0];
        levels[(size_t)r * (size_t)k->cols + (size_t)c] = st->level[best];
        best = st->prev[best];
    }
    for (int32_t c = x0; c < x1; c++) {
        size_t i = (size_t)r * (size_t)k->cols + (size_t)c;
        int s = ctxs->dq_state;
        nntm_level_ctx_derive(levels, k->cols, r, c, nntm_dq_sig_set(dq, s), &ci);
        level_track(track, ctxs, &ci, levels[i], k->num_gt_flags);
        double d = (double)in->weights[i] - (double)nntm_dq_rindex(dq, s, levels[i]) * half;
        *dist += (in->importance ? (double)in->importance[i] : 1.0) * d * d;
        ctxs->dq_state = nntm_dq_next(dq, s, levels[i]);
    }
}

/* The DQ trellis over the rows of [x0,x1) x [y0,y1), with the per-weight
 * candidates and errors of the table t (which covers the region); adds the
 * region's distortion to *dist in raster order.
 *
 * At each position every reachable state s relaxes its candidates lo, lo + 1 (below
 * max_level) and 0 (above 0) of its quantizer, each costing cost[s] + dist + lambda *
 * rate, into its two parity edges (the first of the least cost kept on an edge); then
 * every state takes the better of its two incoming edges, the one from the lower state on
 * a tie: the decisions of relaxing every candidate in state order. */
static void dq_trellis(const nntm_region_input *in, nntm_quantizer *q, const nntm_quant_table *t,
                       int32_t *levels, nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                       nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1, int32_t y1,
                       double *dist) {
    const nntm_kernel_params *k = in->k;
    const uint32_t *cost1 = trial->cost1;
    const int num_gt = k->num_gt_flags;
    const double lambda = in->lambda;
    int32_t w = x1 - x0;
    double half = 0.5 * q->step;
    int32_t max_level = q->max_level;
    const size_t tw = (size_t)(t->x1 - t->x0);
    const int dq = k->dq_enabled, ns = nntm_dq_num_states(dq), half_ns = ns / 2;
    int8_t pred[2 * NNTM_DQ_MAX_STATES];
    if (!dq_predecessors(nntm_dq_table(dq), ns, pred)) {
        q->nomem = 1; /* not reached: every state machine has two edges into each state */
        return;
    }
    int set_of[NNTM_DQ_MAX_STATES];
    for (int s = 0; s < ns; s++) {
        set_of[s] = nntm_dq_sig_set(dq, s);
        if (nntm_dq_quantizer(dq, s) != (s >= half_ns)) {
            q->nomem = 1; /* not reached: the upper half of the states uses Q1 */
            return;
        }
    }
    dq_step *steps = malloc(sizeof *steps * (size_t)w);
    row_rates *rates = malloc(sizeof *rates);
    dq_rate_memo *memo = malloc(sizeof *memo);
    if (!steps || !rates || !memo) {
        free(steps);
        free(rates);
        free(memo);
        q->nomem = 1;
        return;
    }
    for (int32_t r = y0; r < y1; r++) {
        double cost[NNTM_DQ_MAX_STATES];
        int32_t last[NNTM_DQ_MAX_STATES];  /* the survivor's level at the previous position */
        dq_start_row(cost, last, ns, ctxs->dq_state, levels, k->cols, r, x0);
        size_t trow = (size_t)(r - t->y0) * tw - (size_t)t->x0;
        int32_t top = 0; /* the largest lo + 1 of the row */
        for (int32_t c = x0; c < x1; c++) {
            const int32_t *lo2 = &t->lo[2 * (trow + (size_t)c)];
            int32_t m = (lo2[0] > lo2[1] ? lo2[0] : lo2[1]) + 1;
            if (m > top) top = m;
        }
        if (w >= 16) /* the table pays for itself on rows of some length */
            row_rates_build(rates, cost1, ctxs, num_gt, top);
        else
            rates->top = 0;
        memset(memo->stamp, 0, sizeof memo->stamp);
        for (int32_t c = x0; c < x1; c++) {
            const uint32_t pos = (uint32_t)(c - x0) + 1;
            size_t i = (size_t)r * (size_t)k->cols + (size_t)c, tj = trow + (size_t)c;
            int neg = in->weights[i] < 0.0f;
            int32_t above = r > 0 ? levels[i - (size_t)k->cols] : 0;
            dq_step *st = &steps[c - x0];
            double ecost[2 * NNTM_DQ_MAX_STATES];
            int32_t elevel[2 * NNTM_DQ_MAX_STATES];
            for (int qz = 0; qz < 2; qz++) {
                const int32_t lo = t->lo[2 * tj + (size_t)qz];
                const double *dd = &t->dist[6 * tj + 3 * (size_t)qz];
                const int p_lo = lo & 1, has_hi = lo < max_level, has_zero = lo > 0;
                const int32_t lv_lo = neg ? -lo : lo, lv_hi = has_hi ? (neg ? -(lo + 1) : lo + 1) : 0;
                for (int s = qz * half_ns; s < (qz + 1) * half_ns; s++) {
                    double *ec = &ecost[2 * s];
                    if (cost[s] == DBL_MAX) {
                        ec[0] = ec[1] = DBL_MAX;
                        continue;
                    }
                    int32_t left = last[s];
                    left = left < -DQ_LEFT_CLAMP ? -DQ_LEFT_CLAMP
                                                 : left > DQ_LEFT_CLAMP ? DQ_LEFT_CLAMP : left;
                    const int slot = qz * NNTM_SIG_SETS + set_of[s], key = left + DQ_LEFT_CLAMP;
                    double *lr = memo->lr[slot][key];
                    if (memo->stamp[slot][key] != pos) {
                        nntm_level_ctx_idx ci;
                        uint64_t r0, rlo, rhi;
                        nntm_level_ctx_from(left, above, set_of[s], &ci);
                        table_rates(rates, cost1, ctxs, &ci, (uint32_t)lo, neg, num_gt, &r0, &rlo,
                                    &rhi);
                        lr[0] = lambda * (double)r0;
                        lr[1] = lambda * (double)rlo;
                        lr[2] = lambda * (double)rhi;
                        memo->stamp[slot][key] = pos;
                    }
                    /* the edges in registers: lo on parity p_lo, lo + 1 on the other, then
                     * zero on the even one if it costs less */
                    const double base = cost[s];
                    const double c_lo = base + dd[0] + lr[1];
                    const double c_hi = has_hi ? base + dd[1] + lr[2] : DBL_MAX;
                    double even = p_lo ? c_hi : c_lo, odd = p_lo ? c_lo : c_hi;
                    int32_t l_even = p_lo ? lv_hi : lv_lo, l_odd = p_lo ? lv_lo : lv_hi;
                    if (has_zero) { /* zero, even: after lo (lo even) or lo + 1 (lo odd) */
                        const double c0 = base + dd[2] + lr[0];
                        const int take = c0 < even; /* selects, no branch on the data */
                        even = take ? c0 : even;
                        l_even = take ? 0 : l_even;
                    }
                    ec[0] = even;
                    ec[1] = odd;
                    elevel[2 * s] = l_even;
                    elevel[2 * s + 1] = l_odd;
                }
            }
            for (int s = 0; s < ns; s++) {
                const int a = pred[2 * s], b = pred[2 * s + 1];
                const int e = ecost[b] < ecost[a] ? b : a;
                if (ecost[e] < DBL_MAX) {
                    cost[s] = ecost[e];
                    last[s] = st->level[s] = elevel[e];
                    st->prev[s] = (int8_t)(e >> 1);
                } else {
                    cost[s] = DBL_MAX;
                    st->level[s] = 0;
                    st->prev[s] = 0;
                }
            }
        }
        dq_finish_row(in, steps, cost, r, x0, x1, half, levels, ctxs, track, dist);
    }
    free(steps);
    free(rates);
    free(memo);
}

/* The DQ trellis from a table: the per-weight values looked up. */
static double quantize_dq_table(const nntm_region_input *in, nntm_quantizer *q,
                                const nntm_quant_table *t, int32_t *levels,
                                nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                                nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                                int32_t y1) {
    double dist = 0.0;
    dq_trellis(in, q, t, levels, ctxs, trial, track, x0, y0, x1, y1, &dist);
    return dist;
}

/* The DQ trellis without a table: each row's per-weight values computed first
 * (nntm_quant_table_fill, the same values), then the same trellis. */
static double quantize_dq(const nntm_region_input *in, nntm_quantizer *q, int32_t *levels,
                          nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                          nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                          int32_t y1) {
    nntm_quant_table row = {0};
    double dist = 0.0;
    for (int32_t r = y0; r < y1 && !q->nomem; r++) {
        if (nntm_quant_table_fill(&row, in, q, x0, r, x1, r + 1)) {
            q->nomem = 1;
            break;
        }
        dq_trellis(in, q, &row, levels, ctxs, trial, track, x0, r, x1, r + 1, &dist);
    }
    nntm_quant_table_free(&row);
    return dist;
}


double nntm_quantize_region(const nntm_region_input *in, nntm_quantizer *q, int32_t *levels,
                            nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                            nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                            int32_t y1) {
    if (in->k->dq_enabled)
        return quantize_dq(in, q, levels, ctxs, trial, track, x0, y0, x1, y1);
    return quantize_scalar(in, q, levels, ctxs, trial, track, x0, y0, x1, y1);
}

double nntm_quantize_region_table(const nntm_region_input *in, nntm_quantizer *q,
                                  const nntm_quant_table *t, int32_t *levels,
                                  nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                                  nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                                  int32_t y1) {
    if (t && x0 >= t->x0 && y0 >= t->y0 && x1 <= t->x1 && y1 <= t->y1) {
        if (in->k->dq_enabled && t->dq)
            return quantize_dq_table(in, q, t, levels, ctxs, trial, track, x0, y0, x1, y1);
        if (in->rdoq && !in->k->dq_enabled && !t->dq)
            return quantize_scalar_table(in, q, t, levels, ctxs, trial, track, x0, y0, x1, y1);
    }
    return nntm_quantize_region(in, q, levels, ctxs, trial, track, x0, y0, x1, y1);
}
