/* Coding tree geometry, split legality and tree contexts (both sides). */
#include "partition.h"

#include <stdlib.h>
#include <string.h>

int nntm_cu_maps_alloc(nntm_cu_maps *m, int32_t rows, int32_t cols) {
    size_t n = (size_t)rows * (size_t)cols;
    m->rows = rows;
    m->cols = cols;
    m->qt_depth = calloc(n ? n : 1, 1);
    m->log2_w = calloc(n ? n : 1, 1);
    m->log2_h = calloc(n ? n : 1, 1);
    m->mode = calloc(n ? n : 1, 1);
    m->qp_delta = calloc(n ? n : 1, sizeof(int16_t));
    if (!m->qt_depth || !m->log2_w || !m->log2_h || !m->mode || !m->qp_delta) {
        nntm_cu_maps_free(m);
        return NNTM_ERR_NOMEM;
    }
    return NNTM_OK;
}

int nntm_cu_maps_alloc_intra(nntm_cu_maps *m) {
    size_t n = (size_t)m->rows * (size_t)m->cols;
    m->intra = calloc(n ? n : 1, 1);
    m->bv_x = calloc(n ? n : 1, sizeof(int16_t));
    m->bv_y = calloc(n ? n : 1, sizeof(int16_t));
    return m->intra && m->bv_x && m->bv_y ? NNTM_OK : NNTM_ERR_NOMEM;
}

void nntm_cu_maps_free(nntm_cu_maps *m) {
    free(m->intra);
    free(m->bv_x);
    free(m->bv_y);
    m->intra = NULL;
    m->bv_x = m->bv_y = NULL;
    free(m->qt_depth);
    free(m->log2_w);
    free(m->log2_h);
    free(m->mode);
    free(m->qp_delta);
    m->qt_depth = m->log2_w = m->log2_h = m->mode = NULL;
    m->qp_delta = NULL;
}

int nntm_check_tree_params(const nntm_tree_params *t) {
    if (!t->enabled) return NNTM_OK;
    if (t->log2_ctu_size < 1 || t->log2_ctu_size > NNTM_MAX_LOG2_CTU) return NNTM_ERR_ARG;
    if (t->log2_min_cu_size < 0 || t->log2_min_cu_size > t->log2_ctu_size) return NNTM_ERR_ARG;
    if (t->log2_min_qt_size < t->log2_min_cu_size || t->log2_min_qt_size > t->log2_ctu_size)
        return NNTM_ERR_ARG;
    if (t->max_mtt_depth < 0 || t->max_mtt_depth > NNTM_MAX_MTT_DEPTH) return NNTM_ERR_ARG;
    if (t->split_mask & ~NNTM_SPLIT_MASK_ALL) return NNTM_ERR_ARG;
    if (t->skip_enabled < 0 || t->skip_enabled > 1) return NNTM_ERR_ARG;
    if (t->cu_qp_delta_enabled < 0 || t->cu_qp_delta_enabled > 1) return NNTM_ERR_ARG;
    if (t->intra_pred_enabled < 0 || t->intra_pred_enabled > 1) return NNTM_ERR_ARG;
    return NNTM_OK;
}

int nntm_can_split(const nntm_tree_params *t, const nntm_node *n, int split) {
    int32_t min_cu = (int32_t)1 << t->log2_min_cu_size;
    if (split == NNTM_SPLIT_QT)
        return n->mtt_depth == 0 && n->w == n->h && (n->w >> 1) >= ((int32_t)1 << t->log2_min_qt_size);
    if (!(t->split_mask & (1 << split)) || n->mtt_depth >= t->max_mtt_depth) return 0;
    switch (split) {
    case NNTM_SPLIT_BT_H: return (n->h >> 1) >= min_cu;
    case NNTM_SPLIT_BT_V: return (n->w >> 1) >= min_cu;
    case NNTM_SPLIT_TT_H: return (n->h >> 2) >= min_cu && (n->h & 3) == 0;
    case NNTM_SPLIT_TT_V: return (n->w >> 2) >= min_cu && (n->w & 3) == 0;
    default: return 0;
    }
}

int nntm_split_children(const nntm_node *n, int split, nntm_node out[4]) {
    nntm_node c = *n;
    switch (split) {
    case NNTM_SPLIT_QT:
        c.w = n->w >> 1;
        c.h = n->h >> 1;
        c.qt_depth = n->qt_depth + 1;
        for (int i = 0; i < 4; i++) {
            out[i] = c;
            out[i].x = n->x + (i & 1) * c.w;
            out[i].y = n->y + (i >> 1) * c.h;
        }
        return 4;
    case NNTM_SPLIT_BT_H:
    case NNTM_SPLIT_BT_V: {
        int v = split == NNTM_SPLIT_BT_V;
        c.mtt_depth = n->mtt_depth + 1;
        if (v) c.w = n->w >> 1; else c.h = n->h >> 1;
        out[0] = c;
        out[1] = c;
        if (v) out[1].x += c.w; else out[1].y += c.h;
        return 2;
    }
    case NNTM_SPLIT_TT_H:
    case NNTM_SPLIT_TT_V: {
        int v = split == NNTM_SPLIT_TT_V;
        int32_t q = (v ? n->w : n->h) >> 2;
        int32_t sizes[3] = {q, 2 * q, q};
        int32_t off = 0;
        c.mtt_depth = n->mtt_depth + 1;
        for (int i = 0; i < 3; i++) {
            out[i] = c;
            if (v) {
                out[i].x = n->x + off;
                out[i].w = sizes[i];
            } else {
                out[i].y = n->y + off;
                out[i].h = sizes[i];
            }
            off += sizes[i];
        }
        return 3;
    }
    default: return 0;
    }
}

static uint8_t log2_of(int32_t v) {
    uint8_t n = 0;
    while ((v >> (n + 1)) != 0) n++;
    return n;
}

void nntm_cu_maps_set(nntm_cu_maps *m, const nntm_node *n, int mode, int qp_delta) {
    int32_t x0, y0, x1, y1;
    if (!nntm_node_clip(n, m->rows, m->cols, &x0, &y0, &x1, &y1)) return;
    uint8_t lw = log2_of(n->w), lh = log2_of(n->h);
    for (int32_t y = y0; y < y1; y++) {
        size_t i = (size_t)y * (size_t)m->cols;
        for (int32_t x = x0; x < x1; x++) {
            m->qt_depth[i + x] = (uint8_t)n->qt_depth;
            m->log2_w[i + x] = lw;
            m->log2_h[i + x] = lh;
            m->mode[i + x] = (uint8_t)mode;
            m->qp_delta[i + x] = (int16_t)qp_delta;
        }
    }
    if (m->intra) nntm_cu_maps_set_intra(m, n, NNTM_INTRA_NONE, 0, 0);
}

void nntm_cu_maps_set_intra(nntm_cu_maps *m, const nntm_node *n, int intra, int32_t bv_x,
                            int32_t bv_y) {
    int32_t x0, y0, x1, y1;
    if (!nntm_node_clip(n, m->rows, m->cols, &x0, &y0, &x1, &y1)) return;
    for (int32_t y = y0; y < y1; y++) {
        size_t i = (size_t)y * (size_t)m->cols;
        for (int32_t x = x0; x < x1; x++) {
            m->intra[i + x] = (uint8_t)intra;
            m->bv_x[i + x] = (int16_t)bv_x;
            m->bv_y[i + x] = (int16_t)bv_y;
        }
    }
}


/* Initial values of the tree context sets (P(bin == 1), 15 bits). */
#define NNTM_INIT_SPLIT_QT 16384
#define NNTM_INIT_MTT_SPLIT 12288
#define NNTM_INIT_MTT_VERTICAL 16384
#define NNTM_INIT_MTT_BINARY 16384
#define NNTM_INIT_CU_SKIP 8192
#define NNTM_INIT_QP_DELTA 8192
#define NNTM_INIT_INTRA_FLAG 8192
#define NNTM_INIT_INTRA_COPY 16384
#define NNTM_INIT_INTRA_DIR 16384

void nntm_all_ctxs_init(nntm_all_ctxs *c, int window, int suffix_ctx) {
    nntm_level_ctxs_init(&c->level, window, suffix_ctx);
    nntm_ctx_fill(c->tree.split_qt, NNTM_SPLIT_QT_CTX, NNTM_INIT_SPLIT_QT, window);
    nntm_ctx_fill(c->tree.mtt_split, NNTM_MTT_SPLIT_CTX, NNTM_INIT_MTT_SPLIT, window);
    nntm_ctx_fill(c->tree.mtt_vertical, NNTM_MTT_VERTICAL_CTX, NNTM_INIT_MTT_VERTICAL, window);
    nntm_ctx_fill(c->tree.mtt_binary, NNTM_MTT_BINARY_CTX, NNTM_INIT_MTT_BINARY, window);
    nntm_ctx_fill(c->tree.cu_skip, NNTM_CU_SKIP_CTX, NNTM_INIT_CU_SKIP, window);
    nntm_ctx_fill(c->tree.qp_delta, NNTM_QP_DELTA_CTX, NNTM_INIT_QP_DELTA, window);
    nntm_ctx_fill(c->tree.intra_flag, NNTM_INTRA_FLAG_CTX, NNTM_INIT_INTRA_FLAG, window);
    nntm_ctx_fill(c->tree.intra_copy, NNTM_INTRA_COPY_CTX, NNTM_INIT_INTRA_COPY, window);
    nntm_ctx_fill(c->tree.intra_dir, NNTM_INTRA_DIR_CTX, NNTM_INIT_INTRA_DIR, window);
}

/* The left and above neighbours of a node's top-left element, when inside. */
static int left_of(const nntm_cu_maps *m, const nntm_node *n, size_t *i) {
    if (n->x <= 0 || n->y >= m->rows) return 0;
    *i = (size_t)n->y * (size_t)m->cols + (size_t)(n->x - 1);
    return 1;
}

static int above_of(const nntm_cu_maps *m, const nntm_node *n, size_t *i) {
    if (n->y <= 0 || n->x >= m->cols) return 0;
    *i = (size_t)(n->y - 1) * (size_t)m->cols + (size_t)n->x;
    return 1;
}

static int min2(int a) { return a < 2 ? a : 2; }

int nntm_ctx_split_qt(const nntm_cu_maps *m, const nntm_node *n) {
    size_t i;
    int inc = 0;
    if (left_of(m, n, &i) && m->qt_depth[i] > n->qt_depth) inc++;
    if (above_of(m, n, &i) && m->qt_depth[i] > n->qt_depth) inc++;
    return 3 * min2(n->qt_depth) + inc;
}

int nntm_ctx_mtt_split(const nntm_cu_maps *m, const nntm_node *n) {
    size_t i;
    int inc = 0;
    if (left_of(m, n, &i) && ((int32_t)1 << m->log2_h[i]) < n->h) inc++;
    if (above_of(m, n, &i) && ((int32_t)1 << m->log2_w[i]) < n->w) inc++;
    return 3 * min2(n->mtt_depth) + inc;
}

int nntm_ctx_mtt_vertical(const nntm_node *n) {
    return n->w > n->h ? 0 : n->w == n->h ? 1 : 2;
}

int nntm_ctx_cu_skip(const nntm_cu_maps *m, const nntm_node *n) {
    size_t i;
    int inc = 0;
    if (left_of(m, n, &i) && m->mode[i] == NNTM_CU_SKIP) inc++;
    if (above_of(m, n, &i) && m->mode[i] == NNTM_CU_SKIP) inc++;
    return inc;
}

int nntm_ctx_intra_flag(const nntm_cu_maps *m, const nntm_node *n) {
    size_t i;
    int inc = 0;
    if (left_of(m, n, &i) && m->intra[i] != NNTM_INTRA_NONE) inc++;
    if (above_of(m, n, &i) && m->intra[i] != NNTM_INTRA_NONE) inc++;
    return inc;
}

void nntm_mtt_options_get(const nntm_tree_params *t, const nntm_node *n, nntm_mtt_options *o) {
    o->bt_v = nntm_can_split(t, n, NNTM_SPLIT_BT_V);
    o->tt_v = nntm_can_split(t, n, NNTM_SPLIT_TT_V);
    o->bt_h = nntm_can_split(t, n, NNTM_SPLIT_BT_H);
    o->tt_h = nntm_can_split(t, n, NNTM_SPLIT_TT_H);
    o->can_v = o->bt_v || o->tt_v;
    o->can_h = o->bt_h || o->tt_h;
    o->any = o->can_v || o->can_h;
}

int nntm_trace_append(nntm_buffer *trace, const nntm_cu_record *rec) {
    if (!trace) return NNTM_OK;
    if (trace->size + sizeof *rec > trace->capacity) {
        size_t cap = trace->capacity ? trace->capacity * 2 : 64 * sizeof *rec;
        uint8_t *d = realloc(trace->data, cap);
        if (!d) return NNTM_ERR_NOMEM;
        trace->data = d;
        trace->capacity = cap;
    }
    memcpy(trace->data + trace->size, rec, sizeof *rec);
    trace->size += sizeof *rec;
    return NNTM_OK;
}

int nntm_trace_cu(nntm_buffer *trace, const nntm_cu_maps *m, const nntm_kernel_params *p,
                  const nntm_node *n) {
    int32_t x0, y0, x1, y1;
    if (!trace || !nntm_node_clip(n, m->rows, m->cols, &x0, &y0, &x1, &y1)) return NNTM_OK;
    size_t i = (size_t)y0 * (size_t)m->cols + (size_t)x0;
    nntm_cu_record rec = {x0, y0, x1 - x0, y1 - y0, m->mode[i], p->qp + m->qp_delta[i],
                          n->qt_depth + n->mtt_depth, m->intra ? m->intra[i] : NNTM_INTRA_NONE,
                          m->bv_x ? m->bv_x[i] : 0, m->bv_y ? m->bv_y[i] : 0};
    return nntm_trace_append(trace, &rec);
}
