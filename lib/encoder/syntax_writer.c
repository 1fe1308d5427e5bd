/* Syntax writer for the tensor data unit payload. */
#include "syntax_writer.h"

#include <stdlib.h>
#include <string.h>

#include "../common/intra.h"

/* abs_remainder: Exp-Golomb order 0, prefix bins context coded, suffix bypass
 * (its first two bins context coded with suffix_ctx_flag [1.5]). */
static void abs_remainder(nntm_bin_writer *w, nntm_level_ctxs *ctxs, int egp_class,
                          uint32_t rem) {
    uint32_t v = rem + 1;
    int prefix = 0;
    while ((v >> (prefix + 1)) != 0) prefix++;
    nntm_ctx *pc = ctxs->egp[egp_class];
    for (int i = 0; i < prefix; i++)
        w->encode_bin(w, &pc[i < NNTM_EGP_CTX ? i : NNTM_EGP_CTX - 1], 1);
    w->encode_bin(w, &pc[prefix < NNTM_EGP_CTX ? prefix : NNTM_EGP_CTX - 1], 0);
    uint32_t suffix = v - (1u << prefix);
    int nctx = nntm_egs_num_ctx_bins(ctxs, prefix);
    if (nctx) {
        nntm_ctx *sc = ctxs->egs[nntm_egs_set(prefix)];
        int b0 = (int)(suffix >> (prefix - 1)) & 1;
        w->encode_bin(w, &sc[0], b0);
        if (nctx > 1) w->encode_bin(w, &sc[1 + b0], (int)(suffix >> (prefix - 2)) & 1);
    }
    w->encode_bypass(w, suffix & ((1u << (prefix - nctx)) - 1), prefix - nctx);
}

void nntm_write_level_coding(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                             const nntm_level_ctx_idx *ci, int32_t level, int num_gt_flags) {
    w->encode_bin(w, &ctxs->sig[ci->sig], level != 0);
    if (level == 0) return;
    w->encode_bin(w, &ctxs->sign[ci->sign], level < 0);
    uint32_t a = level < 0 ? (uint32_t)(-(int64_t)level) : (uint32_t)level;
    for (int i = 0; i < num_gt_flags; i++) {
        int gt = a > (uint32_t)(i + 1);
        w->encode_bin(w, &ctxs->gt[i][ci->gt_class], gt);
        if (!gt) return;
    }
    abs_remainder(w, ctxs, ci->egp_class, a - (uint32_t)num_gt_flags - 1);
}

void nntm_write_row_pred(nntm_bin_writer *w, nntm_level_ctxs *ctxs, int prev, int32_t r,
                         int32_t ref) {
    w->encode_bin(w, &ctxs->row_pred[prev], ref >= 0);
    if (ref < 0 || r < 2) return;
    w->encode_bin(w, &ctxs->row_above, ref == r - 1);
    if (ref != r - 1) w->encode_bypass(w, (uint32_t)(r - 2 - ref), nntm_row_ref_bits(r));
}

/* The levels of rows [y0, y1) in raster order, advancing the DQ state; the row above row
 * top is not looked at (the first row of a substream [1.8]). */
static void write_rows(nntm_bin_writer *w, nntm_level_ctxs *ctxs, const nntm_kernel_params *p,
                       const int32_t *levels, int32_t *rindex, int32_t y0, int32_t y1,
                       int32_t top) {
    nntm_level_ctx_idx ci;
    const size_t cols = (size_t)p->cols;
    for (int32_t r = y0; r < y1; r++) {
        const int32_t *cur = levels + (size_t)r * cols, *above = r > top ? cur - cols : NULL;
        for (size_t c = 0; c < cols; c++) {
            nntm_level_ctx_from(c > 0 ? cur[c - 1] : 0, above ? above[c] : 0,
                                nntm_dq_sig_set(p->dq_enabled, ctxs->dq_state), &ci);
            nntm_write_level_coding(w, ctxs, &ci, cur[c], p->num_gt_flags);
            if (rindex)
                rindex[(size_t)r * cols + c] =
                    (int32_t)nntm_dq_rindex(p->dq_enabled, ctxs->dq_state, cur[c]);
            if (p->dq_enabled) ctxs->dq_state = nntm_dq_next(p->dq_enabled, ctxs->dq_state, cur[c]);
        }
    }
}

void nntm_write_tensor_data(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                            const nntm_kernel_params *p, const int32_t *levels, int32_t *rindex,
                            const int32_t *row_ref, int32_t y0, int32_t y1) {
    if (!p->row_pred) {
        write_rows(w, ctxs, p, levels, rindex, y0, y1, y0);
        return;
    }
    int prev = 0; /* row_pred_flag of the row above, in this substream */
    for (int32_t r = y0; r < y1; r++) {
        int flag = r > 0 && row_ref[r] >= 0;
        if (r > 0) nntm_write_row_pred(w, ctxs, prev, r, row_ref[r]);
        write_rows(w, ctxs, p, levels, rindex, r, r + 1, y0);
        if (flag) {
            int32_t *cur = rindex + (size_t)r * (size_t)p->cols;
            const int32_t *src = rindex + (size_t)row_ref[r] * (size_t)p->cols;
            for (int32_t c = 0; c < p->cols; c++) cur[c] += src[c];
        }
        prev = flag;
    }
}

void nntm_write_split_mode(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                           const nntm_tree_params *t, const nntm_node *n, int split) {
    if (nntm_can_split(t, n, NNTM_SPLIT_QT)) {
        w->encode_bin(w, &ctxs->split_qt[nntm_ctx_split_qt(m, n)], split == NNTM_SPLIT_QT);
        if (split == NNTM_SPLIT_QT) return;
    }
    nntm_mtt_options o;
    nntm_mtt_options_get(t, n, &o);
    if (!o.any) return;
    w->encode_bin(w, &ctxs->mtt_split[nntm_ctx_mtt_split(m, n)], split != NNTM_SPLIT_NONE);
    if (split == NNTM_SPLIT_NONE) return;
    int vertical = split == NNTM_SPLIT_BT_V || split == NNTM_SPLIT_TT_V;
    if (o.can_v && o.can_h)
        w->encode_bin(w, &ctxs->mtt_vertical[nntm_ctx_mtt_vertical(n)], vertical);
    int binary = split == NNTM_SPLIT_BT_H || split == NNTM_SPLIT_BT_V;
    if (vertical ? (o.bt_v && o.tt_v) : (o.bt_h && o.tt_h))
        w->encode_bin(w, &ctxs->mtt_binary[2 * vertical + (n->mtt_depth > 0)], binary);
}

void nntm_write_cu_skip_flag(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                             const nntm_node *n, int skip) {
    w->encode_bin(w, &ctxs->cu_skip[nntm_ctx_cu_skip(m, n)], skip);
}

void nntm_write_cu_qp_delta(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, int delta) {
    uint32_t a = (uint32_t)(delta < 0 ? -delta : delta);
    int i;
    for (i = 0; i < NNTM_QP_DELTA_PREFIX; i++) {
        int more = a > (uint32_t)i;
        w->encode_bin(w, &ctxs->qp_delta[i == 0 ? 0 : 1], more);
        if (!more) break;
    }
    if (i == NNTM_QP_DELTA_PREFIX) {
        uint32_t v = a - NNTM_QP_DELTA_PREFIX + 1;
        int prefix = 0;
        while ((v >> (prefix + 1)) != 0) prefix++;
        w->encode_bypass(w, (1u << prefix) - 1, prefix);
        w->encode_bypass(w, 0, 1);
        w->encode_bypass(w, v - (1u << prefix), prefix);
    }
    if (a) w->encode_bypass(w, delta < 0, 1);
}

/* A signed value as Exp-Golomb order 0 bypass bins of its zigzag index
 * (0, 1, -1, 2, -2, ... -> 0, 1, 2, 3, 4, ...). */
static void se_bypass(nntm_bin_writer *w, int32_t v) {
    uint32_t u = v > 0 ? 2u * (uint32_t)v - 1u : 2u * (uint32_t)(-(int64_t)v);
    uint32_t x = u + 1;
    int prefix = 0;
    while ((x >> (prefix + 1)) != 0) prefix++;
    w->encode_bypass(w, (1u << prefix) - 1, prefix);
    w->encode_bypass(w, 0, 1);
    w->encode_bypass(w, x - (1u << prefix), prefix);
}

void nntm_write_intra_pred(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                           const nntm_node *n, int intra, int32_t bv_x, int32_t bv_y) {
    w->encode_bin(w, &ctxs->intra_flag[nntm_ctx_intra_flag(m, n)], intra != NNTM_INTRA_NONE);
    if (intra == NNTM_INTRA_NONE) return;
    w->encode_bin(w, &ctxs->intra_copy[0], intra == NNTM_INTRA_COPY);
    if (intra == NNTM_INTRA_COPY) {
        se_bypass(w, bv_x);
        se_bypass(w, bv_y);
    } else {
        w->encode_bin(w, &ctxs->intra_dir[0], intra == NNTM_INTRA_COL);
    }
}

void nntm_write_transform_unit(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                               const nntm_kernel_params *p, const int32_t *levels,
                               int32_t *rindex, int32_t x0, int32_t y0, int32_t x1, int32_t y1) {
    nntm_level_ctx_idx ci;
    for (int32_t r = y0; r < y1; r++) {
        for (int32_t c = x0; c < x1; c++) {
            size_t i = (size_t)r * (size_t)p->cols + (size_t)c;
            nntm_level_ctx_derive(levels, p->cols, r, c,
                                  nntm_dq_sig_set(p->dq_enabled, ctxs->dq_state), &ci);
            nntm_write_level_coding(w, ctxs, &ci, levels[i], p->num_gt_flags);
            if (rindex) rindex[i] = (int32_t)nntm_dq_rindex(p->dq_enabled, ctxs->dq_state, levels[i]);
            if (p->dq_enabled)
                ctxs->dq_state = nntm_dq_next(p->dq_enabled, ctxs->dq_state, levels[i]);
        }
    }
}

typedef struct tree_writer {
    nntm_bin_writer *w;
    nntm_all_ctxs *ctxs;
    nntm_cu_maps *m;
    const nntm_kernel_params *p;
    const int32_t *levels;
    int32_t *rindex;
    const uint8_t *decisions;
    size_t num_decisions, pos;
    nntm_buffer *trace;
    int32_t *pred;  /* one CTU of predicted levels (intra prediction) */
} tree_writer;

static int coding_unit(tree_writer *tw, const nntm_node *n) {
    int32_t x0, y0, x1, y1;
    nntm_node_clip(n, tw->m->rows, tw->m->cols, &x0, &y0, &x1, &y1);
    size_t i = (size_t)y0 * (size_t)tw->m->cols + (size_t)x0;
    int mode = tw->m->mode[i];
    int qp_delta = tw->m->qp_delta[i];
    const nntm_tree_params *t = &tw->p->tree;
    int intra = t->intra_pred_enabled ? tw->m->intra[i] : NNTM_INTRA_NONE;
    int32_t bv_x = intra ? tw->m->bv_x[i] : 0, bv_y = intra ? tw->m->bv_y[i] : 0;
    if (t->skip_enabled) nntm_write_cu_skip_flag(tw->w, &tw->ctxs->tree, tw->m, n, mode == NNTM_CU_SKIP);
    if (mode != NNTM_CU_SKIP) {
        if (t->intra_pred_enabled) {
            if (intra && !nntm_intra_allowed_node(t, tw->m->rows, tw->m->cols, n, intra, bv_x, bv_y))
                return NNTM_ERR_ARG;
            nntm_write_intra_pred(tw->w, &tw->ctxs->tree, tw->m, n, intra, bv_x, bv_y);
        }
        if (t->cu_qp_delta_enabled) nntm_write_cu_qp_delta(tw->w, &tw->ctxs->tree, qp_delta);
        nntm_write_transform_unit(tw->w, &tw->ctxs->level, tw->p, tw->levels, tw->rindex, x0, y0,
                                  x1, y1);
        /* the levels reconstructed: prediction + coded residual */
        if (intra && nntm_intra_reconstruct(tw->rindex, tw->levels, tw->p->cols, intra, bv_x,
                                            bv_y, x0, y0, x1, y1, tw->pred))
            return NNTM_ERR_RANGE;
    } else if (t->intra_pred_enabled) {
        for (int32_t y = y0; y < y1; y++)
            for (int32_t x = x0; x < x1; x++) tw->rindex[(int64_t)y * tw->p->cols + x] = 0;
    }
    nntm_cu_maps_set(tw->m, n, mode, qp_delta);
    if (intra) nntm_cu_maps_set_intra(tw->m, n, intra, bv_x, bv_y);
    return nntm_trace_cu(tw->trace, tw->m, tw->p, n);
}

static int coding_tree(tree_writer *tw, const nntm_node *n) {
    int32_t x0, y0, x1, y1;
    if (!nntm_node_clip(n, tw->m->rows, tw->m->cols, &x0, &y0, &x1, &y1)) return NNTM_OK;
    if (tw->pos >= tw->num_decisions) return NNTM_ERR_ARG;
    int split = tw->decisions[tw->pos++];
    if (split != NNTM_SPLIT_NONE && !nntm_can_split(&tw->p->tree, n, split)) return NNTM_ERR_ARG;
    nntm_write_split_mode(tw->w, &tw->ctxs->tree, tw->m, &tw->p->tree, n, split);
    if (split == NNTM_SPLIT_NONE) return coding_unit(tw, n);
    nntm_node child[4];
    int k = nntm_split_children(n, split, child);
    for (int i = 0; i < k; i++) {
        int rv = coding_tree(tw, &child[i]);
        if (rv) return rv;
    }
    return NNTM_OK;
}

int nntm_write_tree_data(nntm_bin_writer *w, nntm_all_ctxs *ctxs, nntm_cu_maps *m,
                         const nntm_kernel_params *p, const int32_t *levels, int32_t *rindex,
                         const uint8_t *decisions, size_t num_decisions, nntm_buffer *trace) {
    tree_writer tw = {w, ctxs, m, p, levels, rindex, decisions, num_decisions, 0, trace, NULL};
    int32_t ctu = (int32_t)1 << p->tree.log2_ctu_size;
    if (p->tree.intra_pred_enabled) {
        if (!rindex || rindex == levels || !m->intra) return NNTM_ERR_ARG;
        tw.pred = malloc((size_t)ctu * (size_t)ctu * sizeof *tw.pred);
        if (!tw.pred) return NNTM_ERR_NOMEM;
    }
    int rv = NNTM_OK;
    for (int64_t y = 0; y < p->rows && !rv; y += ctu) {
        for (int64_t x = 0; x < p->cols && !rv; x += ctu) {
            nntm_node n = {(int32_t)x, (int32_t)y, ctu, ctu, 0, 0};
            rv = coding_tree(&tw, &n);
        }
    }
    free(tw.pred);
    if (rv) return rv;
    return tw.pos == num_decisions ? NNTM_OK : NNTM_ERR_ARG;
}
