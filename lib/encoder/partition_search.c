/* Coding-tree search.
 *
 * Each node is tried as a leaf CU (skip, or coded at each candidate CU QP
 * delta with RDOQ) and, within the preset's depth, with every split that
 * can_split allows; the children are searched recursively on a copy of the
 * context state.  Every cost is D + lambda * R, with R from the bit estimator
 * running the real syntax writer on the contexts as they stand.  The best
 * option's levels, maps and context state are kept. */
#include "partition_search.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "../common/quant.h"
#include "rdoq.h"
#include "syntax_writer.h"

void nntm_decisions_free(nntm_decisions *v) {
    free(v->d);
    v->d = NULL;
    v->n = v->cap = 0;
}

static int push(nntm_decisions *v, const uint8_t *src, size_t n) {
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->n + n) cap *= 2;
        uint8_t *d = realloc(v->d, cap);
        if (!d) return NNTM_ERR_NOMEM;
        v->d = d;
        v->cap = cap;
    }
    memcpy(v->d + v->n, src, n);
    v->n += n;
    return NNTM_OK;
}

typedef struct search {
    const nntm_encoder_params *p;
    const float *w;
    const float *imp;
    int32_t *levels;
    nntm_cu_maps *m;
    double lambda;                 /* per estimator cost unit */
    nntm_bit_estimator *trial;     /* prices candidates, contexts untouched */
    nntm_bit_estimator *track;     /* advances contexts, accumulates rate */
    nntm_quantizer quant[8];       /* one per candidate QP delta */
    nntm_quant_table table[8];     /* per quantizer, for the current CTU (RDOQ without DQ) */
    int use_table;
    int32_t deltas[8];
    int num_deltas;
    int error;
} search;

/* The state of a region that an option leaves behind. */
typedef struct region_state {
    int32_t x0, y0, x1, y1;
    int32_t *levels;
    uint8_t *qt, *lw, *lh, *mode;
    int16_t *qpd;
} region_state;

static int region_alloc(region_state *r, int32_t x0, int32_t y0, int32_t x1, int32_t y1) {
    size_t n = (size_t)(x1 - x0) * (size_t)(y1 - y0);
    r->x0 = x0;
    r->y0 = y0;
    r->x1 = x1;
    r->y1 = y1;
    r->levels = malloc(n * sizeof(int32_t));
    r->qt = malloc(n * 4);
    r->qpd = malloc(n * sizeof(int16_t));
    if (!r->levels || !r->qt || !r->qpd) return NNTM_ERR_NOMEM;
    r->lw = r->qt + n;
    r->lh = r->qt + 2 * n;
    r->mode = r->qt + 3 * n;
    return NNTM_OK;
}

static void region_free(region_state *r) {
    free(r->levels);
    free(r->qt);
    free(r->qpd);
}

/* Copy the region between the search arrays and a saved state. */
static void region_copy(search *s, region_state *r, int save) {
    size_t w = (size_t)(r->x1 - r->x0), k = 0;
    for (int32_t y = r->y0; y < r->y1; y++, k += w) {
        size_t i = (size_t)y * (size_t)s->m->cols + (size_t)r->x0;
#define COPY(dst, src, n) memcpy(save ? (dst) : (src), save ? (src) : (dst), n)
        COPY(r->levels + k, s->levels + i, w * sizeof(int32_t));
        COPY(r->qt + k, s->m->qt_depth + i, w);
        COPY(r->lw + k, s->m->log2_w + i, w);
        COPY(r->lh + k, s->m->log2_h + i, w);
        COPY(r->mode + k, s->m->mode + i, w);
        COPY(r->qpd + k, s->m->qp_delta + i, w * sizeof(int16_t));
#undef COPY
    }
}

/* Cost of coding bins through the track estimator on ctx. */
#define RATE_BEGIN(s) uint64_t rate0_ = (s)->track->cost
#define RATE_END(s) ((s)->track->cost - rate0_)

/* The best leaf CU of node n: skip or coded at one of the QP deltas. */
static double search_leaf(search *s, const nntm_node *n, nntm_all_ctxs *ctx, int *skip_won) {
    const nntm_tree_params *t = &s->p->kernel.tree;
    int32_t x0, y0, x1, y1;
    nntm_node_clip(n, s->m->rows, s->m->cols, &x0, &y0, &x1, &y1);
    nntm_all_ctxs base = *ctx, trial_ctx;
    RATE_BEGIN(s);
    nntm_write_split_mode(&s->track->w, &base.tree, s->m, t, n, NNTM_SPLIT_NONE);
    double split_rate = (double)RATE_END(s);
    double best = DBL_MAX;
    int best_mode = NNTM_CU_CODED, best_delta = 0;
    region_state keep = {0};
    if (region_alloc(&keep, x0, y0, x1, y1)) {
        s->error = NNTM_ERR_NOMEM;
        region_free(&keep);
        return DBL_MAX;
    }
    if (t->skip_enabled) {
        trial_ctx = base;
        double d = 0.0;
        for (int32_t y = y0; y < y1; y++)
            for (int32_t x = x0; x < x1; x++) {
                size_t i = (size_t)y * (size_t)s->m->cols + (size_t)x;
                double v = (double)s->w[i];
                d += (s->imp ? (double)s->imp[i] : 1.0) * v * v;
                s->levels[(size_t)y * (size_t)s->m->cols + (size_t)x] = 0;
            }
        uint64_t r0 = s->track->cost;
        nntm_write_cu_skip_flag(&s->track->w, &trial_ctx.tree, s->m, n, 1);
        double j = d + s->lambda * (split_rate + (double)(s->track->cost - r0));
        nntm_cu_maps_set(s->m, n, NNTM_CU_SKIP, 0);
        best = j;
        best_mode = NNTM_CU_SKIP;
        *ctx = trial_ctx;
        region_copy(s, &keep, 1);
    }
    for (int k = 0; k < s->num_deltas; k++) {
        trial_ctx = base;
        uint64_t r0 = s->track->cost;
        if (t->skip_enabled) nntm_write_cu_skip_flag(&s->track->w, &trial_ctx.tree, s->m, n, 0);
        if (t->cu_qp_delta_enabled) nntm_write_cu_qp_delta(&s->track->w, &trial_ctx.tree, s->deltas[k]);
        nntm_region_input in = {&s->p->kernel, s->p->rdoq, s->lambda, s->w, s->imp};
        double d = nntm_quantize_region_table(&in, &s->quant[k], s->use_table ? &s->table[k] : NULL,
                                              s->levels, &trial_ctx.level, s->trial, s->track,
                                              x0, y0, x1, y1);
        double j = d + s->lambda * (split_rate + (double)(s->track->cost - r0));
        if (j < best) {
            best = j;
            best_mode = NNTM_CU_CODED;
            best_delta = s->deltas[k];
            *ctx = trial_ctx;
            nntm_cu_maps_set(s->m, n, best_mode, best_delta);
            region_copy(s, &keep, 1);
        }
    }
    region_copy(s, &keep, 0);
    region_free(&keep);
    *skip_won = best_mode == NNTM_CU_SKIP;
    return best;
}

static double search_node(search *s, const nntm_node *n, nntm_all_ctxs *ctx, nntm_decisions *out) {
    const nntm_tree_params *t = &s->p->kernel.tree;
    int32_t x0, y0, x1, y1;
    if (!nntm_node_clip(n, s->m->rows, s->m->cols, &x0, &y0, &x1, &y1)) return 0.0;
    nntm_all_ctxs best_ctx = *ctx;
    int skip_won = 0;
    double best = search_leaf(s, n, &best_ctx, &skip_won);
    uint8_t none = NNTM_SPLIT_NONE;
    nntm_decisions best_dec = {0};
    if (s->error || push(&best_dec, &none, 1)) {
        s->error = s->error ? s->error : NNTM_ERR_NOMEM;
        nntm_decisions_free(&best_dec);
        return DBL_MAX;
    }
    int depth = n->qt_depth + n->mtt_depth;
    if (depth < s->p->search.max_depth && !(skip_won && s->p->search.skip_no_split)) {
        region_state keep = {0};
        if (region_alloc(&keep, x0, y0, x1, y1)) s->error = NNTM_ERR_NOMEM;
        region_copy(s, &keep, 1);
        for (int split = NNTM_SPLIT_QT; split <= NNTM_SPLIT_TT_V && !s->error; split++) {
            if (!nntm_can_split(t, n, split)) continue;
            nntm_all_ctxs c = *ctx;
            nntm_decisions dec = {0};
            uint8_t code = (uint8_t)split;
            if (push(&dec, &code, 1)) {
                s->error = NNTM_ERR_NOMEM;
                break;
            }
            RATE_BEGIN(s);
            nntm_write_split_mode(&s->track->w, &c.tree, s->m, t, n, split);
            double j = s->lambda * (double)RATE_END(s);
            nntm_node child[4];
            int kids = nntm_split_children(n, split, child);
            for (int i = 0; i < kids && j < best && !s->error; i++)
                j += search_node(s, &child[i], &c, &dec);
            if (j < best && !s->error) {
                best = j;
                best_ctx = c;
                nntm_decisions_free(&best_dec);
                best_dec = dec;
                region_copy(s, &keep, 1);
            } else {
                nntm_decisions_free(&dec);
            }
        }
        region_copy(s, &keep, 0);
        region_free(&keep);
    }
    *ctx = best_ctx;
    if (!s->error && push(out, best_dec.d, best_dec.n)) s->error = NNTM_ERR_NOMEM;
    nntm_decisions_free(&best_dec);
    return best;
}

int nntm_search_tree(const nntm_encoder_params *p, const float *weights, const float *importance,
                     int32_t *levels, nntm_cu_maps *maps, nntm_decisions *decisions) {
    const nntm_kernel_params *k = &p->kernel;
    search s = {0};
    s.p = p;
    s.w = weights;
    s.imp = importance;
    s.levels = levels;
    s.m = maps;
    double step = nntm_step_double(k->qp, k->qp_density);
    s.lambda = p->lambda_scale * step * step / (double)(1u << NNTM_COST_SHIFT);
    s.num_deltas = p->search.num_qp_deltas > 0 && k->tree.cu_qp_delta_enabled
                       ? p->search.num_qp_deltas : 1;
    if (s.num_deltas > 8) return NNTM_ERR_ARG;
    for (int i = 0; i < s.num_deltas; i++) {
        s.deltas[i] = p->search.num_qp_deltas > 0 && k->tree.cu_qp_delta_enabled
                          ? p->search.qp_deltas[i] : 0;
        if (s.deltas[i] < -NNTM_MAX_CU_QP_DELTA || s.deltas[i] > NNTM_MAX_CU_QP_DELTA)
            return NNTM_ERR_ARG;
        int32_t m_, sh_;
        if (nntm_qp_to_step(k->qp + s.deltas[i], k->qp_density, &m_, &sh_)) return NNTM_ERR_ARG;
        nntm_quantizer_init(&s.quant[i], k->qp + s.deltas[i], k->qp_density, p->max_abs_value);
    }
    s.trial = malloc(sizeof *s.trial);
    s.track = malloc(sizeof *s.track);
    if (!s.trial || !s.track) {
        free(s.trial);
        free(s.track);
        return NNTM_ERR_NOMEM;
    }
    nntm_bit_estimator_init(s.trial, 0);
    nntm_bit_estimator_init(s.track, 1);
    s.use_table = p->rdoq && !k->dq_enabled;
    nntm_all_ctxs ctx;
    nntm_all_ctxs_init(&ctx);
    int32_t ctu = (int32_t)1 << k->tree.log2_ctu_size;
    for (int64_t y = 0; y < k->rows && !s.error; y += ctu)
        for (int64_t x = 0; x < k->cols && !s.error; x += ctu) {
            nntm_node n = {(int32_t)x, (int32_t)y, ctu, ctu, 0, 0};
            if (s.use_table) {
                int32_t x0, y0, x1, y1;
                nntm_node_clip(&n, maps->rows, maps->cols, &x0, &y0, &x1, &y1);
                nntm_region_input in = {k, p->rdoq, s.lambda, weights, importance};
                for (int i = 0; i < s.num_deltas && !s.error; i++)
                    s.error = nntm_quant_table_fill(&s.table[i], &in, &s.quant[i], x0, y0, x1, y1);
                if (s.error) break;
            }
            search_node(&s, &n, &ctx, decisions);
        }
    for (int i = 0; i < s.num_deltas; i++) {
        if (s.quant[i].overflow && !s.error) s.error = NNTM_ERR_RANGE;
        if (s.quant[i].nomem) s.error = NNTM_ERR_NOMEM;
    }
    for (int i = 0; i < 8; i++) nntm_quant_table_free(&s.table[i]);
    free(s.trial);
    free(s.track);
    return s.error;
}
