/* nntm_encode_kernel: quantize one kernel tensor and write its payload. */
#include "nntm/nntm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/partition.h"
#include "../common/quant.h"
#include "../common/threads.h"
#include "bin_writer.h"
#include "partition_search.h"
#include "rdoq.h"
#include "syntax_writer.h"

static void buffer_reset(nntm_buffer *b) {
    if (!b) return;
    b->data = NULL;
    b->size = 0;
    b->capacity = 0;
}

/* nntm_quantize_region over rows [r0, r1) of the whole width, the row above row top not
 * looked at (the first row of a substream [1.8]): the region quantized as the rows of a
 * kernel tensor that starts at row top (rdoq.c takes the row above row 0 as 0). */
static double quantize_rows(const nntm_region_input *in, nntm_quantizer *q, int32_t *levels,
                            nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                            nntm_bit_estimator *track, int32_t top, int32_t r0, int32_t r1) {
    const size_t off = (size_t)top * (size_t)in->k->cols;
    nntm_region_input view = *in;
    view.weights = in->weights + off;
    view.importance = in->importance ? in->importance + off : NULL;
    return nntm_quantize_region(&view, q, levels + off, ctxs, trial, track, 0, r0 - top,
                                in->k->cols, r1 - top);
}

/* The trial estimator's price of row r's prediction syntax [1.5] for reference row ref
 * (-1: none) on the contexts c (the estimator does not update them). */
static uint64_t row_syntax_cost(nntm_bit_estimator *trial, nntm_level_ctxs *c, int prev, int32_t r,
                                int32_t ref) {
    uint64_t c0 = trial->cost;
    nntm_write_row_pred(&trial->w, c, prev, r, ref);
    return trial->cost - c0;
}

/* The reconstruction indices of a row's levels lv coded from DQ state s, plus those of
 * the reference row src (NULL: none), into out.  With a reference: 0 when one leaves
 * +-max or, times unit, +-max_abs; 1 otherwise. */
static int row_rindex(int dq, int s, const int32_t *lv, const int32_t *src, size_t cols,
                      int64_t max, double unit, double max_abs, int32_t *out) {
    for (size_t c = 0; c < cols; c++) {
        int64_t v = nntm_dq_rindex(dq, s, lv[c]);
        if (dq) s = nntm_dq_next(dq, s, lv[c]);
        if (src) {
            v += src[c];
            if (v > max || v < -max || fabs((double)v * unit) > max_abs) return 0;
        }
        out[c] = (int32_t)v;
    }
    return 1;
}

/* Row prediction [1.5]: each row after the first is quantized as itself and, for each
 * candidate reference row (the row above, and hint[ r ] when given) whose reconstruction
 * leaves less energy than the row, once more as the difference to it, from the same
 * contexts and DQ state; the least D + lambda R (prediction syntax included) is kept.
 * Rows [y0, y1): the whole tensor, or [1.8] one substream (its first row without a row
 * above for the contexts, and row_pred_flag of row y0 on RowPredCtx[ 0 ]), whose rows may
 * refer to any earlier row; rec holds the reconstruction indices of the rows before y0.
 * Fills ref[] (-1: not predicted) and leaves the contexts after the last row. */
static int quantize_rows_pred(const nntm_region_input *in, nntm_quantizer *q, int32_t *levels,
                              nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                              nntm_bit_estimator *track, const int32_t *hint, int32_t *ref,
                              double max_abs, int32_t *rec, int32_t y0, int32_t y1) {
    const nntm_kernel_params *k = in->k;
    const size_t cols = (size_t)k->cols, n = (size_t)k->rows * cols;
    const int dq = k->dq_enabled;
    const double unit = dq ? 0.5 * q->step : q->step;
    const int64_t max = nntm_max_rindex(dq);
    float *res = malloc(n * sizeof *res);
    int32_t *keep = malloc(cols * sizeof *keep);
    int32_t *trial_rec = malloc(cols * sizeof *trial_rec);
    nntm_level_ctxs *start = malloc(sizeof *start), *best_ctxs = malloc(sizeof *best_ctxs);
    const int rv = res && keep && trial_rec && start && best_ctxs ? NNTM_OK : NNTM_ERR_NOMEM;
    nntm_region_input pred_in = *in;
    pred_in.weights = res;
    int prev = 0;
    for (int32_t r = y0; r < y1 && rv == NNTM_OK; r++) {
        int32_t *lv = levels + (size_t)r * cols;
        const float *w = in->weights + (size_t)r * cols;
        float *rr = res + (size_t)r * cols;
        *start = *ctxs;
        const uint64_t t0 = track->cost;
        int32_t *out = rec + (size_t)r * cols;  /* this row's reconstruction indices */
        double d = quantize_rows(in, q, levels, ctxs, trial, track, y0, r, r + 1);
        row_rindex(dq, start->dq_state, lv, NULL, cols, max, unit, max_abs, out);
        double best_j = d + in->lambda * (double)(track->cost - t0 +
                                                  (r ? row_syntax_cost(trial, start, prev, r, -1)
                                                     : 0));
        int32_t best = -1;
        uint64_t best_track = track->cost;
        memcpy(keep, lv, cols * sizeof *lv);
        *best_ctxs = *ctxs;
        int32_t cand[2] = {r - 1, hint && r > 1 && hint[r] >= 0 && hint[r] < r - 1 ? hint[r] : -1};
        for (int j = 0; j < 2 && r > 0; j++) {
            if (cand[j] < 0) continue;
            const int32_t *src = rec + (size_t)cand[j] * cols;
            double e0 = 0.0, e1 = 0.0;
            for (size_t c = 0; c < cols; c++) {
                double pv = (double)src[c] * unit, x = (double)w[c];
                e0 += x * x;
                e1 += (x - pv) * (x - pv);
                rr[c] = (float)(x - pv);
            }
            if (!(e1 < e0)) continue;
            *ctxs = *start;
            track->cost = t0;
            double db = quantize_rows(&pred_in, q, levels, ctxs, trial, track, y0, r, r + 1);
            double jb = db + in->lambda * (double)(track->cost - t0 +
                                                   row_syntax_cost(trial, start, prev, r, cand[j]));
            if (row_rindex(dq, start->dq_state, lv, src, cols, max, unit, max_abs, trial_rec) &&
                jb < best_j) {
                best_j = jb;
                best = cand[j];
                best_track = track->cost;
                memcpy(keep, lv, cols * sizeof *lv);
                memcpy(out, trial_rec, cols * sizeof *out);
                *best_ctxs = *ctxs;
            }
        }
        memcpy(lv, keep, cols * sizeof *lv);
        *ctxs = *best_ctxs;
        track->cost = best_track;
        if (r > 0) /* the prediction syntax through the tracking estimator */
            nntm_write_row_pred(&track->w, ctxs, prev, r, best);
        ref[r] = best;
        prev = best >= 0;
    }
    free(res);
    free(keep);
    free(trial_rec);
    free(start);
    free(best_ctxs);
    return rv;
}

/* The bits of ue(v) for v (the high-level syntax's Exp-Golomb code), MSB first, into a
 * bit accumulator of the payload head. */
typedef struct head_bits {
    uint8_t *data;
    size_t size, cap;
    int nbits;          /* bits of the last byte used (0..7) */
    int nomem;
} head_bits;

static void head_bit(head_bits *h, int bit) {
    if (h->nbits == 0) {
        if (h->size == h->cap) {
            size_t cap = h->cap ? 2 * h->cap : 64;
            uint8_t *d = realloc(h->data, cap);
            if (!d) {
                h->nomem = 1;
                return;
            }
            h->data = d;
            h->cap = cap;
        }
        h->data[h->size++] = 0;
    }
    if (bit) h->data[h->size - 1] |= (uint8_t)(0x80u >> h->nbits);
    h->nbits = (h->nbits + 1) & 7;
}

static void head_ue(head_bits *h, uint64_t v) {
    uint64_t x = v + 1;
    int len = 0;
    while ((x >> len) > 1) len++;
    for (int i = 0; i < len; i++) head_bit(h, 0);
    for (int i = len; i >= 0; i--) head_bit(h, (int)((x >> i) & 1));
}

/* The payload of a tensor with entry points [1.8]: substream_size[ k ] of every substream
 * but the last, byte_alignment(), then the substreams. */
static int join_substreams(nntm_buffer *sub, int64_t nsub, nntm_buffer *out) {
    head_bits h = {0};
    for (int64_t k = 0; k + 1 < nsub; k++) head_ue(&h, (uint64_t)sub[k].size);
    head_bit(&h, 1);
    while (h.nbits) head_bit(&h, 0);
    size_t total = h.size;
    for (int64_t k = 0; k < nsub; k++) total += sub[k].size;
    uint8_t *d = h.nomem ? NULL : malloc(total);
    if (!d) {
        free(h.data);
        return NNTM_ERR_NOMEM;
    }
    memcpy(d, h.data, h.size);
    size_t pos = h.size;
    for (int64_t k = 0; k < nsub; k++) {
        memcpy(d + pos, sub[k].data, sub[k].size);
        pos += sub[k].size;
    }
    free(h.data);
    out->data = d;
    out->size = out->capacity = total;
    return NNTM_OK;
}

/* [1.8] The substreams of a raster tensor without row prediction, each quantized and
 * written on its own: its own estimators, contexts and copy of the quantizer, fresh contexts
 * and DQ state 0, its first row without a row above, its own bytes.  No substream reads
 * another's rows, and the estimators only add up integer costs whose differences decide, so
 * the bytes are those of one thread whatever the thread count. */
typedef struct raster_job {
    const nntm_encoder_params *p;
    const nntm_region_input *in;
    nntm_quantizer q;      /* the quantizer every substream starts from */
    int32_t *levels, *rindex;
    nntm_buffer *sub;      /* per substream */
    int *rv;               /* per substream */
    int *overflow;         /* per substream: a weight needed a level beyond NNTM_MAX_LEVEL */
    nntm_items items;      /* the substreams (items.count of them), taken on threads */
    struct estimators *own; /* the caller's estimators */
} raster_job;

/* The two estimators of a quantization: trial prices candidates (contexts left alone),
 * track follows the chosen levels (contexts updated). */
typedef struct estimators {
    nntm_bit_estimator trial, track;
} estimators;

/* New estimators, or NULL when out of memory. */
static estimators *estimators_new(void) {
    estimators *e = malloc(sizeof *e);
    if (e) {
        nntm_bit_estimator_init(&e->trial, 0);
        nntm_bit_estimator_init(&e->track, 1);
    }
    return e;
}

static int raster_substream(raster_job *j, int64_t s, nntm_bit_estimator *trial,
                            nntm_bit_estimator *track) {
    const nntm_kernel_params *k = &j->p->kernel;
    int32_t y0, y1;
    nntm_substream_range(k, s, &y0, &y1);
    nntm_quantizer q = j->q;
    nntm_level_ctxs ctxs;
    nntm_level_ctxs_init(&ctxs, k->prob_window, k->suffix_ctx);
    quantize_rows(j->in, &q, j->levels, &ctxs, trial, track, y0, y0, y1);
    j->overflow[s] = q.overflow;
    if (q.nomem) return NNTM_ERR_NOMEM;
    nntm_arith_encoder enc;
    nntm_arith_encoder_init(&enc, &j->sub[s]);
    nntm_level_ctxs_init(&ctxs, k->prob_window, k->suffix_ctx);
    nntm_write_tensor_data(&enc.w, &ctxs, k, j->levels, j->rindex, NULL, y0, y1);
    return nntm_arith_encoder_finish(&enc);
}

/* Take the next substream of j and code it with the estimators e (NULL: none could be
 * allocated): 0 when none is left, or one failed. */
static int raster_take_with(raster_job *j, estimators *e) {
    int64_t s = nntm_items_claim(&j->items);
    if (s < 0) return 0;
    j->rv[s] = e ? raster_substream(j, s, &e->trial, &e->track) : NNTM_ERR_NOMEM;
    if (j->rv[s]) nntm_items_fail(&j->items);
    return 1;
}

/* The caller's substreams, with its estimators in j. */
static int raster_take(void *arg) {
    raster_job *j = arg;
    return raster_take_with(j, j->own);
}

/* A started thread's substreams, with estimators of its own. */
static void raster_worker(void *arg) {
    estimators *e = estimators_new();
    while (raster_take_with(arg, e)) {
    }
    free(e);
}

/* Every substream of j on up to threads threads (nntm_items_run).  Substreams are taken in
 * order, so each one before a failing one finishes: the result (the first failure, in
 * order; NNTM_ERR_RANGE where a level was out of range) does not depend on the count. */
static int raster_substreams(raster_job *j, int32_t threads, nntm_thread_budget *budget) {
    for (int64_t s = 0; s < j->items.count; s++) j->rv[s] = NNTM_OK;
    j->own = estimators_new();
    j->items.run = raster_worker;
    j->items.take = raster_take;
    j->items.arg = j;
    nntm_items_run(&j->items, threads, budget);
    free(j->own);
    for (int64_t s = 0; s < j->items.count; s++) {
        if (j->rv[s]) return j->rv[s];
        if (j->overflow[s]) return NNTM_ERR_RANGE;
    }
    return NNTM_OK;
}

/* Format 1.0: one raster scan over the whole kernel tensor ([1.5] with row prediction:
 * row by row); [1.8] with entry points one scan a substream, each quantized and written
 * with fresh contexts and DQ state 0 and its first row without a row above (without row
 * prediction on up to p->threads threads). */
static int encode_raster(const nntm_encoder_params *p, const float *w, const float *imp,
                         int32_t *levels, int32_t *rindex, nntm_buffer *out, nntm_buffer *trace,
                         nntm_thread_budget *budget) {
    const nntm_kernel_params *k = &p->kernel;
    const int64_t nsub = nntm_num_substreams(k);
    const size_t n = (size_t)k->rows * (size_t)k->cols;
    nntm_quantizer q;
    nntm_quantizer_init(&q, k->qp, k->qp_density, p->max_abs_value);
    nntm_region_input in = {k, p->rdoq,
                            p->lambda_scale * q.step * q.step / (double)(1u << NNTM_COST_SHIFT),
                            w, imp};
    nntm_buffer *sub = nsub > 1 ? calloc((size_t)nsub, sizeof *sub) : NULL;
    if (nsub > 1 && !sub) return NNTM_ERR_NOMEM;
    int rv = NNTM_OK;
    if (sub && !k->row_pred) {
        raster_job j;
        memset(&j, 0, sizeof j);
        j.p = p;
        j.in = &in;
        j.q = q;
        j.levels = levels;
        j.rindex = rindex;
        j.sub = sub;
        j.rv = calloc((size_t)nsub, sizeof(int));
        j.overflow = calloc((size_t)nsub, sizeof(int));
        j.items.count = nsub;
        rv = j.rv && j.overflow ? raster_substreams(&j, p->threads > 1 ? p->threads : 1, budget)
                                : NNTM_ERR_NOMEM;
        free(j.rv);
        free(j.overflow);
        if (rv == NNTM_OK) rv = join_substreams(sub, nsub, out);
        for (int64_t s = 0; s < nsub; s++) nntm_buffer_free(&sub[s]);
        free(sub);
        return rv;
    }
    estimators *e = estimators_new();
    int32_t *row_ref = k->row_pred ? malloc((size_t)k->rows * sizeof *row_ref) : NULL;
    int32_t *rec = k->row_pred ? malloc(n * sizeof *rec) : NULL;
    if (!e || (k->row_pred && (!row_ref || !rec))) {
        free(e);
        free(row_ref);
        free(rec);
        free(sub);
        return NNTM_ERR_NOMEM;
    }
    nntm_bit_estimator *trial = &e->trial, *track = &e->track;
    nntm_level_ctxs ctxs;
    for (int64_t s = 0; s < nsub && rv == NNTM_OK; s++) {
        int32_t y0, y1;
        nntm_substream_range(k, s, &y0, &y1);
        nntm_level_ctxs_init(&ctxs, k->prob_window, k->suffix_ctx);
        if (k->row_pred)
            rv = quantize_rows_pred(&in, &q, levels, &ctxs, trial, track, p->row_hint, row_ref,
                                    p->max_abs_value, rec, y0, y1);
        else
            quantize_rows(&in, &q, levels, &ctxs, trial, track, y0, y0, y1);
    }
    free(e);
    free(rec);
    if (rv == NNTM_OK && q.nomem) rv = NNTM_ERR_NOMEM;
    if (rv == NNTM_OK && q.overflow) rv = NNTM_ERR_RANGE;
    for (int64_t s = 0; s < nsub && rv == NNTM_OK; s++) {
        int32_t y0, y1;
        nntm_substream_range(k, s, &y0, &y1);
        nntm_arith_encoder enc;
        nntm_arith_encoder_init(&enc, sub ? &sub[s] : out);
        nntm_level_ctxs_init(&ctxs, k->prob_window, k->suffix_ctx);
        nntm_write_tensor_data(&enc.w, &ctxs, k, levels, rindex, row_ref, y0, y1);
        rv = nntm_arith_encoder_finish(&enc);
    }
    if (rv == NNTM_OK && sub) rv = join_substreams(sub, nsub, out);
    for (int64_t s = 0; sub && s < nsub; s++) nntm_buffer_free(&sub[s]);
    free(sub);
    /* the decoder's trace: a predicted row is a copy from its reference row */
    for (int32_t r = 1; row_ref && r < k->rows && rv == NNTM_OK; r++) {
        nntm_cu_record rc = {0, r, k->cols, 1, NNTM_CU_CODED, k->qp, 0, NNTM_INTRA_COPY, 0,
                             row_ref[r] - r};
        if (row_ref[r] >= 0) rv = nntm_trace_append(trace, &rc);
    }
    free(row_ref);
    return rv;
}

static int encode_tree(const nntm_encoder_params *p, const float *w, const float *imp,
                       int32_t *levels, int32_t *rindex, nntm_cu_maps *maps, nntm_buffer *out,
                       nntm_buffer *trace) {
    nntm_decisions dec = {0};
    int rv = nntm_search_tree(p, w, imp, levels, p->kernel.tree.intra_pred_enabled ? rindex : NULL,
                              maps, &dec);
    if (rv == NNTM_OK) {
        nntm_arith_encoder enc;
        nntm_all_ctxs ctxs;
        nntm_arith_encoder_init(&enc, out);
        nntm_all_ctxs_init(&ctxs, p->kernel.prob_window, p->kernel.suffix_ctx);
        rv = nntm_write_tree_data(&enc.w, &ctxs, maps, &p->kernel, levels, rindex, dec.d, dec.n,
                                  trace);
        int fin = nntm_arith_encoder_finish(&enc);
        if (rv == NNTM_OK) rv = fin;
    }
    nntm_decisions_free(&dec);
    return rv;
}

/* The residual target w - prediction (in double, rounded to float) of a predicted
 * tensor; NNTM_ERR_NONFINITE for a reference sample that is not finite. */
static int residual_target(const nntm_reference *ref, const float *w, size_t n, float *target) {
    for (size_t i = 0; i < n; i++) {
        int64_t m;
        int32_t e;
        if (!nntm_ref_sample(ref->dtype, ref->samples, i, &m, &e)) return NNTM_ERR_NONFINITE;
        double pred = ldexp((double)(m * ref->scale), e - NNTM_PRED_SCALE_SHIFT);
        double t = (double)w[i] - pred;
        if (!(fabs(t) <= 3.0e38)) return NNTM_ERR_RANGE;
        target[i] = (float)t;
    }
    return NNTM_OK;
}

/* 1 if a sample of dtype is an infinity (a prediction plus residual past the range). */
static int any_infinite(int32_t dtype, const void *recon, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t b;
        if (dtype == NNTM_DTYPE_FLOAT32) {
            uint32_t v;
            memcpy(&v, (const uint8_t *)recon + 4 * i, 4);
            if ((v & 0x7F800000u) == 0x7F800000u) return 1;
        } else if (dtype == NNTM_DTYPE_FLOAT64) {
            memcpy(&b, (const uint8_t *)recon + 8 * i, 8);
            if ((b & 0x7FF0000000000000ull) == 0x7FF0000000000000ull) return 1;
        } else {
            uint16_t v;
            memcpy(&v, (const uint8_t *)recon + 2 * i, 2);
            uint16_t mask = dtype == NNTM_DTYPE_FLOAT16 ? 0x7C00u : 0x7F80u;
            if ((v & mask) == mask) return 1;
        }
    }
    return 0;
}

static int encode_kernel(const nntm_encoder_params *params, const float *weights,
                         const float *importance, int32_t dtype, const nntm_reference *ref,
                         void *recon, int32_t *levels_out, nntm_buffer *out,
                         nntm_buffer *cu_trace, nntm_thread_budget *budget) {
    if (!params || !out) return NNTM_ERR_ARG;
    buffer_reset(out);
    buffer_reset(cu_trace);
    int rv = nntm_check_kernel_params(&params->kernel);
    if (rv) return rv;
    if (!(params->lambda_scale >= 0.0) || params->lambda_scale > 1e6) return NNTM_ERR_ARG;
    if (!(params->max_abs_value > 0.0)) return NNTM_ERR_ARG;
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    if (params->threads < 0 || params->threads > NNTM_MAX_THREADS) return NNTM_ERR_ARG;
    const nntm_kernel_params *k = &params->kernel;
    /* the encoder works with steps in double: keep them well inside its normal range
     * (the decoder's integer reconstruction has no such limit) */
    int32_t mant, shift;
    nntm_qp_to_step(k->qp, k->qp_density, &mant, &shift);
    if (shift < -1000 || shift > 1000) return NNTM_ERR_ARG;
    size_t n = (size_t)k->rows * (size_t)k->cols;
    if (n == 0) return NNTM_OK;
    if (!weights || !recon) return NNTM_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(weights[i])) return NNTM_ERR_NONFINITE;
    if (importance)
        for (size_t i = 0; i < n; i++)
            if (!(importance[i] >= 0.0f) || !isfinite(importance[i])) return NNTM_ERR_ARG;
    float *target = NULL;
    if (ref) {
        if (nntm_check_reference(ref, n)) return NNTM_ERR_ARG;
        target = malloc(n * sizeof(float));
        if (!target) return NNTM_ERR_NOMEM;
        rv = residual_target(ref, weights, n, target);
        if (rv) {
            free(target);
            return rv;
        }
        weights = target; /* the levels code the residual */
    }
    int intra = k->tree.enabled && k->tree.intra_pred_enabled;
    if (intra && (params->search.intra_copy_range < 0 ||
                  params->search.intra_copy_range > NNTM_MAX_INTRA_COPY_RANGE)) {
        free(target);
        return NNTM_ERR_ARG;
    }
    int32_t *levels = levels_out ? levels_out : malloc(n * sizeof(int32_t));
    int32_t *rindex = k->dq_enabled || intra || k->row_pred ? malloc(n * sizeof(int32_t))
                                                             : levels;
    nntm_cu_maps maps = {0};
    if (!levels || !rindex) {
        if (!levels_out) free(levels);
        if (rindex != levels) free(rindex);
        free(target);
        return NNTM_ERR_NOMEM;
    }
    memset(levels, 0, n * sizeof(int32_t));
    if (rindex != levels) memset(rindex, 0, n * sizeof(int32_t)); /* skip CUs stay 0 */
    if (k->tree.enabled) {
        rv = nntm_cu_maps_alloc(&maps, k->rows, k->cols);
        if (rv == NNTM_OK && intra) rv = nntm_cu_maps_alloc_intra(&maps);
        if (rv == NNTM_OK)
            rv = encode_tree(params, weights, importance, levels, rindex, &maps, out, cu_trace);
    } else {
        rv = encode_raster(params, weights, importance, levels, rindex, out, cu_trace, budget);
    }
    if (rv == NNTM_OK)
        rv = nntm_reconstruct_map(k, rindex, k->tree.enabled ? maps.qp_delta : NULL, n, dtype,
                                  ref, recon);
    if (rv == NNTM_OK && ref && any_infinite(dtype, recon, n)) rv = NNTM_ERR_RANGE;
    nntm_cu_maps_free(&maps);
    free(target);
    if (rv == NNTM_OK && intra && levels_out) /* report the reconstructed levels */
        memcpy(levels_out, rindex, n * sizeof(int32_t));
    if (rindex != levels) free(rindex);
    if (!levels_out) free(levels);
    if (rv) {
        nntm_buffer_free(out);
        nntm_buffer_free(cu_trace);
    }
    return rv;
}

int nntm_encode_kernel(const nntm_encoder_params *params, const float *weights,
                       const float *importance, int32_t dtype, const nntm_reference *ref,
                       void *recon, int32_t *levels_out, nntm_buffer *out,
                       nntm_buffer *cu_trace) {
    return encode_kernel(params, weights, importance, dtype, ref, recon, levels_out, out,
                         cu_trace, NULL);
}

int nntm_encode_kernel_shared(const nntm_encoder_params *params, const float *weights,
                              const float *importance, int32_t dtype, const nntm_reference *ref,
                              void *recon, int32_t *levels_out, nntm_buffer *out,
                              nntm_buffer *cu_trace, nntm_thread_budget *b) {
    if (b) nntm_budget_begin(b); /* the caller's slot, waited for */
    int rv = encode_kernel(params, weights, importance, dtype, ref, recon, levels_out, out,
                           cu_trace, b);
    if (b) nntm_budget_end(b);
    return rv;
}
