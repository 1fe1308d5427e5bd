/* Coding-tree search.
 *
 * Each node is tried as a leaf CU (skip, or coded at each candidate CU QP
 * delta with RDOQ) and, within the preset's depth, with every split that
 * can_split allows; the children are searched recursively on a copy of the
 * context state.  Every cost is D + lambda * R, with R from the bit estimator
 * running the real syntax writer on the contexts as they stand.  The best
 * option's levels, maps and context state are kept.
 *
 * Speed without changing a decision: per CTU, each quantizer's per-weight
 * values (floor level, candidate errors) are computed once (rdoq.h,
 * nntm_quant_table), and a leaf quantized from the same level contexts and
 * boundary levels as before is taken from the leaf cache. */
#include "partition_search.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/intra.h"
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
    int32_t *leaf_keep;            /* the best leaf candidate's levels (search_leaf) */
    struct leaf_cache *cache;      /* quantized regions of the current CTU */
    int32_t deltas[8];
    int num_deltas;
    int error;
    /* intra prediction (NULL / 0 without it) */
    int32_t *rec;                  /* reconstructed levels: prediction + residual */
    float *shifted;                /* weights minus the prediction, for a candidate's region */
    int32_t *pred;                 /* one CTU of predicted levels */
} search;

/* The state of a region that an option leaves behind. */
typedef struct region_state {
    int32_t x0, y0, x1, y1;
    int32_t *levels;
    uint8_t *qt, *lw, *lh, *mode;
    int16_t *qpd;
    int32_t *rec;      /* intra prediction only */
    uint8_t *intra;
    int16_t *bvx, *bvy;
} region_state;

static int region_alloc(region_state *r, int32_t x0, int32_t y0, int32_t x1, int32_t y1,
                        int with_intra) {
    size_t n = (size_t)(x1 - x0) * (size_t)(y1 - y0);
    if (with_intra) {
        r->rec = malloc(n * sizeof(int32_t));
        r->intra = malloc(n);
        r->bvx = malloc(2 * n * sizeof(int16_t));
        if (!r->rec || !r->intra || !r->bvx) return NNTM_ERR_NOMEM;
        r->bvy = r->bvx + n;
    }
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
    free(r->rec);
    free(r->intra);
    free(r->bvx);
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
        if (s->rec) {
            COPY(r->rec + k, s->rec + i, w * sizeof(int32_t));
            COPY(r->intra + k, s->m->intra + i, w);
            COPY(r->bvx + k, s->m->bv_x + i, w * sizeof(int16_t));
            COPY(r->bvy + k, s->m->bv_y + i, w * sizeof(int16_t));
        }
#undef COPY
    }
}

/* ---- Leaf cache ----
 * Quantizing a region with one quantizer is a pure function of the region,
 * the quantizer, the level contexts (with the DQ state) and the levels just
 * left of and just above the region: the only levels outside the region that
 * the context derivation reads.  Different split paths reach the same region
 * in the same state (the first child of QT and of BT_H then BT_V, ...), so the
 * result (levels, contexts after, rate, distortion) is kept per CTU under the
 * whole key, compared in full, and reused: the same decisions, faster. */
#define CACHE_BUCKETS 65536

typedef struct leaf_entry {
    uint64_t hash;
    size_t key_off, key_len;   /* 32-bit words in the key pool */
    size_t lv_off;             /* levels in the level pool */
    nntm_level_ctxs after;
    uint64_t rate;
    double dist;
    int32_t next;
} leaf_entry;

typedef struct leaf_cache {
    int32_t head[CACHE_BUCKETS];
    leaf_entry *e;
    size_t n, cap;
    uint32_t *keys;
    size_t nkeys, capkeys;
    int32_t *lv;
    size_t nlv, caplv;
    uint32_t *scratch;         /* the key being looked up */
    size_t capscratch;
} leaf_cache;

static void cache_reset(leaf_cache *c) {
    memset(c->head, 0xFF, sizeof c->head);
    c->n = c->nkeys = c->nlv = 0;
}

static void cache_free(leaf_cache *c) {
    if (!c) return;
    free(c->e);
    free(c->keys);
    free(c->lv);
    free(c->scratch);
    free(c);
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Build the key of quantizing [x0,x1) x [y0,y1) with quantizer k from ctx;
 * returns its length in words (in c->scratch), 0 when out of memory. */
static size_t cache_key(search *s, leaf_cache *c, int k, const nntm_level_ctxs *ctx, int32_t x0,
                        int32_t y0, int32_t x1, int32_t y1) {
    size_t cw = (sizeof *ctx + 3) / 4;
    size_t len = 5 + cw + (size_t)(y1 - y0) + (size_t)(x1 - x0);
    if (grow((void **)&c->scratch, &c->capscratch, len, sizeof *c->scratch)) return 0;
    uint32_t *w = c->scratch;
    w[0] = (uint32_t)x0;
    w[1] = (uint32_t)y0;
    w[2] = (uint32_t)x1;
    w[3] = (uint32_t)y1;
    w[4] = (uint32_t)k;
    w[4 + cw] = 0;
    memcpy(w + 5, ctx, sizeof *ctx);
    size_t o = 5 + cw;
    size_t cols = (size_t)s->m->cols;
    for (int32_t y = y0; y < y1; y++)
        w[o++] = x0 > 0 ? (uint32_t)s->levels[(size_t)y * cols + (size_t)x0 - 1] : 0;
    for (int32_t x = x0; x < x1; x++)
        w[o++] = y0 > 0 ? (uint32_t)s->levels[(size_t)(y0 - 1) * cols + (size_t)x] : 0;
    return len;
}

/* The hash of a key: its header, the DQ state and significance contexts (the
 * first words of the context copy, which change with nearly every level) and
 * the boundary levels.  Lookups compare whole keys, so the words left out
 * only cost collisions. */
#define KEY_HASH_CTX_WORDS 32

static uint64_t hash_words(uint64_t h, const uint32_t *w, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= w[i];
        h *= 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    return h;
}

static uint64_t key_hash(const uint32_t *w, size_t len) {
    size_t cw = (sizeof(nntm_level_ctxs) + 3) / 4;
    size_t hc = cw < KEY_HASH_CTX_WORDS ? cw : KEY_HASH_CTX_WORDS;
    uint64_t h = hash_words(0x9E3779B97F4A7C15ull ^ (uint64_t)len, w, 5 + hc);
    return hash_words(h, w + 5 + cw, len - 5 - cw);
}

static const leaf_entry *cache_find(const leaf_cache *c, uint64_t h, size_t len) {
    for (int32_t i = c->head[h & (CACHE_BUCKETS - 1)]; i >= 0; i = c->e[i].next) {
        const leaf_entry *e = &c->e[i];
        if (e->hash == h && e->key_len == len &&
            memcmp(c->keys + e->key_off, c->scratch, len * sizeof *c->scratch) == 0)
            return e;
    }
    return NULL;
}

/* Keep the result now in s->levels and ctx under the key in c->scratch. */
static void cache_store(search *s, leaf_cache *c, uint64_t h, size_t len,
                        const nntm_level_ctxs *ctx, uint64_t rate, double dist, int32_t x0,
                        int32_t y0, int32_t x1, int32_t y1) {
    size_t w = (size_t)(x1 - x0), area = w * (size_t)(y1 - y0);
    if (c->n >= (size_t)INT32_MAX || grow((void **)&c->e, &c->cap, c->n + 1, sizeof *c->e) ||
        grow((void **)&c->keys, &c->capkeys, c->nkeys + len, sizeof *c->keys) ||
        grow((void **)&c->lv, &c->caplv, c->nlv + area, sizeof *c->lv))
        return; /* not kept: only slower */
    leaf_entry *e = &c->e[c->n];
    e->hash = h;
    e->key_off = c->nkeys;
    e->key_len = len;
    e->lv_off = c->nlv;
    e->after = *ctx;
    e->rate = rate;
    e->dist = dist;
    memcpy(c->keys + c->nkeys, c->scratch, len * sizeof *c->keys);
    c->nkeys += len;
    for (int32_t y = y0; y < y1; y++, c->nlv += w)
        memcpy(c->lv + c->nlv, s->levels + (size_t)y * (size_t)s->m->cols + (size_t)x0,
               w * sizeof *c->lv);
    size_t b = h & (CACHE_BUCKETS - 1);
    e->next = c->head[b];
    c->head[b] = (int32_t)c->n++;
}

/* Quantize the region with quantizer k on ctx through the track estimator,
 * or take the same result from the cache. */
static double quantize_leaf(search *s, int k, nntm_level_ctxs *ctx, int32_t x0, int32_t y0,
                            int32_t x1, int32_t y1) {
    leaf_cache *c = s->cache;
    size_t len = c ? cache_key(s, c, k, ctx, x0, y0, x1, y1) : 0;
    uint64_t h = 0;
    if (len) {
        h = key_hash(c->scratch, len);
        const leaf_entry *e = cache_find(c, h, len);
        if (e) {
            size_t w = (size_t)(x1 - x0);
            const int32_t *src = c->lv + e->lv_off;
            for (int32_t y = y0; y < y1; y++, src += w)
                memcpy(s->levels + (size_t)y * (size_t)s->m->cols + (size_t)x0, src,
                       w * sizeof *src);
            *ctx = e->after;
            s->track->cost += e->rate;
            return e->dist;
        }
    }
    uint64_t r0 = s->track->cost;
    nntm_region_input in = {&s->p->kernel, s->p->rdoq, s->lambda, s->w, s->imp};
    double d = nntm_quantize_region_table(&in, &s->quant[k], s->use_table ? &s->table[k] : NULL,
                                          s->levels, ctx, s->trial, s->track, x0, y0, x1, y1);
    if (len) cache_store(s, c, h, len, ctx, s->track->cost - r0, d, x0, y0, x1, y1);
    return d;
}

/* Cost of coding bins through the track estimator on ctx. */
#define RATE_BEGIN(s) uint64_t rate0_ = (s)->track->cost
#define RATE_END(s) ((s)->track->cost - rate0_)

/* Copy the levels of [x0,x1) x [y0,y1) between the search array and buf. */
static void levels_copy(search *s, int32_t *buf, int save, int32_t x0, int32_t y0, int32_t x1,
                        int32_t y1) {
    size_t w = (size_t)(x1 - x0);
    for (int32_t y = y0; y < y1; y++, buf += w) {
        int32_t *a = s->levels + (size_t)y * (size_t)s->m->cols + (size_t)x0;
        if (save)
            memcpy(buf, a, w * sizeof *a);
        else
            memcpy(a, buf, w * sizeof *a);
    }
}

/* ---- Intra prediction candidates ----
 * A prediction pays only when it leaves less (importance-weighted) error to
 * code than no prediction.  The search measures that for the row mean, the
 * column mean and every block vector within the copy range, and quantizes at
 * most three candidates: each mean that reduces the error and the block
 * vector that reduces it most. */
typedef struct intra_cand {
    int mode;
    int32_t bv_x, bv_y;
} intra_cand;

/* The weighted error of the region against pred * step (pred region-major, or
 * NULL: zero); stops early once above bound. */
static double pred_error(const search *s, const int32_t *pred, double step, double bound,
                         int32_t x0, int32_t y0, int32_t x1, int32_t y1) {
    double e = 0.0;
    size_t cols = (size_t)s->m->cols, k = 0;
    for (int32_t y = y0; y < y1 && e <= bound; y++)
        for (int32_t x = x0; x < x1; x++, k++) {
            size_t i = (size_t)y * cols + (size_t)x;
            double d = (double)s->w[i] - (pred ? (double)pred[k] * step : 0.0);
            e += (s->imp ? (double)s->imp[i] : 1.0) * d * d;
        }
    return e;
}

static int intra_candidates(search *s, const nntm_node *n, double step, int32_t x0, int32_t y0,
                            int32_t x1, int32_t y1, intra_cand out[3]) {
    const nntm_tree_params *t = &s->p->kernel.tree;
    int32_t rows = s->m->rows, cols = s->m->cols;
    double e0 = pred_error(s, NULL, step, DBL_MAX, x0, y0, x1, y1);
    int k = 0;
    for (int mode = NNTM_INTRA_ROW; mode <= NNTM_INTRA_COL; mode++) {
        if (!nntm_intra_allowed_node(t, rows, cols, n, mode, 0, 0)) continue;
        nntm_intra_predict(s->rec, cols, mode, 0, 0, x0, y0, x1, y1, s->pred);
        if (pred_error(s, s->pred, step, e0, x0, y0, x1, y1) < e0)
            out[k++] = (intra_cand){mode, 0, 0};
    }
    int32_t range = s->p->search.intra_copy_range;
    double best = e0;
    int found = 0;
    for (int32_t by = -range; by <= range; by++)
        for (int32_t bx = -range; bx <= range; bx++) {
            if (!nntm_intra_allowed_node(t, rows, cols, n, NNTM_INTRA_COPY, bx, by)) continue;
            nntm_intra_predict(s->rec, cols, NNTM_INTRA_COPY, bx, by, x0, y0, x1, y1, s->pred);
            double e = pred_error(s, s->pred, step, best, x0, y0, x1, y1);
            if (e < best) {
                best = e;
                out[k] = (intra_cand){NNTM_INTRA_COPY, bx, by};
                found = 1;
            }
        }
    return k + found;
}

/* D + lambda R of the CU at node n coded with intra candidate c and
 * quantizer k, on a copy of base left in out; DBL_MAX when a level or a
 * weight minus its prediction leaves the representable range. */
static double intra_leaf(search *s, const nntm_node *n, const nntm_all_ctxs *base, int k,
                         const intra_cand *c, double split_rate, nntm_all_ctxs *out, int32_t x0,
                         int32_t y0, int32_t x1, int32_t y1) {
    const nntm_tree_params *t = &s->p->kernel.tree;
    size_t cols = (size_t)s->m->cols, j = 0;
    nntm_quantizer q = s->quant[k];
    nntm_intra_predict(s->rec, s->m->cols, c->mode, c->bv_x, c->bv_y, x0, y0, x1, y1, s->pred);
    for (int32_t y = y0; y < y1; y++)
        for (int32_t x = x0; x < x1; x++, j++) {
            size_t i = (size_t)y * cols + (size_t)x;
            double v = (double)s->w[i] - (double)s->pred[j] * q.step;
            if (!(fabs(v) <= 3.0e38)) return DBL_MAX;
            s->shifted[i] = (float)v;
        }
    *out = *base;
    uint64_t r0 = s->track->cost;
    if (t->skip_enabled) nntm_write_cu_skip_flag(&s->track->w, &out->tree, s->m, n, 0);
    nntm_write_intra_pred(&s->track->w, &out->tree, s->m, n, c->mode, c->bv_x, c->bv_y);
    if (t->cu_qp_delta_enabled) nntm_write_cu_qp_delta(&s->track->w, &out->tree, s->deltas[k]);
    q.overflow = 0;
    nntm_region_input in = {&s->p->kernel, s->p->rdoq, s->lambda, s->shifted, s->imp};
    double d = nntm_quantize_region(&in, &q, s->levels, &out->level, s->trial, s->track, x0, y0,
                                    x1, y1);
    if (q.nomem) {
        s->error = NNTM_ERR_NOMEM;
        return DBL_MAX;
    }
    if (q.overflow) return DBL_MAX;
    j = 0;
    for (int32_t y = y0; y < y1; y++)
        for (int32_t x = x0; x < x1; x++, j++) {
            int64_t v = (int64_t)s->levels[(size_t)y * cols + (size_t)x] + s->pred[j];
            if (v > s->quant[k].max_level || v < -(int64_t)s->quant[k].max_level) return DBL_MAX;
        }
    return d + s->lambda * (split_rate + (double)(s->track->cost - r0));
}

/* The best leaf CU of node n: skip or coded at one of the QP deltas.  Only
 * the levels of the candidates differ inside the region (the maps of the
 * region are read by no candidate), so the best one's levels are kept aside
 * while later candidates run, and the maps are set once for the winner. */
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
    int best_k = -2;   /* -1: skip; k: coded with delta k */
    int last_k = -2;   /* the candidate whose levels are in the search array */
    if (t->skip_enabled) {
        trial_ctx = base;
        double d = 0.0;
        for (int32_t y = y0; y < y1; y++)
            for (int32_t x = x0; x < x1; x++) {
                size_t i = (size_t)y * (size_t)s->m->cols + (size_t)x;
                double v = (double)s->w[i];
                d += (s->imp ? (double)s->imp[i] : 1.0) * v * v;
            }
        uint64_t r0 = s->track->cost;
        nntm_write_cu_skip_flag(&s->track->w, &trial_ctx.tree, s->m, n, 1);
        double j = d + s->lambda * (split_rate + (double)(s->track->cost - r0));
        best = j;
        best_mode = NNTM_CU_SKIP;
        best_k = -1;
        *ctx = trial_ctx;
    }
    for (int k = 0; k < s->num_deltas; k++) {
        if (best_k >= 0 && best_k == last_k)  /* the best so far is about to be overwritten */
            levels_copy(s, s->leaf_keep, 1, x0, y0, x1, y1);
        trial_ctx = base;
        uint64_t r0 = s->track->cost;
        if (t->skip_enabled) nntm_write_cu_skip_flag(&s->track->w, &trial_ctx.tree, s->m, n, 0);
        if (t->intra_pred_enabled)
            nntm_write_intra_pred(&s->track->w, &trial_ctx.tree, s->m, n, NNTM_INTRA_NONE, 0, 0);
        if (t->cu_qp_delta_enabled) nntm_write_cu_qp_delta(&s->track->w, &trial_ctx.tree, s->deltas[k]);
        double d = quantize_leaf(s, k, &trial_ctx.level, x0, y0, x1, y1);
        last_k = k;
        double j = d + s->lambda * (split_rate + (double)(s->track->cost - r0));
        if (j < best) {
            best = j;
            best_mode = NNTM_CU_CODED;
            best_delta = s->deltas[k];
            best_k = k;
            *ctx = trial_ctx;
        }
    }
    intra_cand best_intra = {NNTM_INTRA_NONE, 0, 0};
    if (s->rec) {
        int k = best_k >= 0 ? best_k : 0;
        intra_cand cand[3];
        int nc = intra_candidates(s, n, s->quant[k].step, x0, y0, x1, y1, cand);
        for (int c = 0; c < nc && !s->error; c++) {
            if (best_k >= 0 && best_k == last_k) levels_copy(s, s->leaf_keep, 1, x0, y0, x1, y1);
            double j = intra_leaf(s, n, &base, k, &cand[c], split_rate, &trial_ctx, x0, y0, x1, y1);
            last_k = s->num_deltas + c;
            if (j < best) {
                best = j;
                best_mode = NNTM_CU_CODED;
                best_delta = s->deltas[k];
                best_k = last_k;
                best_intra = cand[c];
                *ctx = trial_ctx;
            }
        }
    }
    if (best_k == -1) {
        for (int32_t y = y0; y < y1; y++)
            memset(s->levels + (size_t)y * (size_t)s->m->cols + (size_t)x0, 0,
                   (size_t)(x1 - x0) * sizeof *s->levels);
    } else if (best_k != last_k) {
        levels_copy(s, s->leaf_keep, 0, x0, y0, x1, y1);
    }
    if (s->rec) { /* the reconstructed levels later CUs predict from */
        int intra = best_intra.mode != NNTM_INTRA_NONE;
        if (intra)
            nntm_intra_predict(s->rec, s->m->cols, best_intra.mode, best_intra.bv_x,
                               best_intra.bv_y, x0, y0, x1, y1, s->pred);
        size_t j = 0;
        for (int32_t y = y0; y < y1; y++)
            for (int32_t x = x0; x < x1; x++, j++) {
                size_t i = (size_t)y * (size_t)s->m->cols + (size_t)x;
                s->rec[i] = s->levels[i] + (intra ? s->pred[j] : 0);
            }
    }
    nntm_cu_maps_set(s->m, n, best_mode, best_delta);
    if (best_intra.mode != NNTM_INTRA_NONE)
        nntm_cu_maps_set_intra(s->m, n, best_intra.mode, best_intra.bv_x, best_intra.bv_y);
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
        if (region_alloc(&keep, x0, y0, x1, y1, s->rec != NULL)) s->error = NNTM_ERR_NOMEM;
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
                     int32_t *levels, int32_t *rec, nntm_cu_maps *maps,
                     nntm_decisions *decisions) {
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
    s.use_table = p->rdoq || k->dq_enabled;
    int32_t ctu = (int32_t)1 << k->tree.log2_ctu_size;
    s.leaf_keep = malloc((size_t)ctu * (size_t)ctu * sizeof *s.leaf_keep);
    s.cache = malloc(sizeof *s.cache);
    if (s.cache) memset(s.cache, 0, sizeof *s.cache); /* without it: no cache, same result */
    int intra_nomem = 0;
    if (rec && k->tree.intra_pred_enabled) {
        s.rec = rec;
        s.shifted = malloc((size_t)k->rows * (size_t)k->cols * sizeof *s.shifted);
        s.pred = malloc((size_t)ctu * (size_t)ctu * sizeof *s.pred);
        intra_nomem = !s.shifted || !s.pred || !maps->intra;
    }
    if (!s.leaf_keep || intra_nomem) {
        free(s.shifted);
        free(s.pred);
        free(s.leaf_keep);
        cache_free(s.cache);
        free(s.trial);
        free(s.track);
        return NNTM_ERR_NOMEM;
    }
    nntm_all_ctxs ctx;
    nntm_all_ctxs_init(&ctx, k->prob_window, k->suffix_ctx);
    for (int64_t y = 0; y < k->rows && !s.error; y += ctu)
        for (int64_t x = 0; x < k->cols && !s.error; x += ctu) {
            nntm_node n = {(int32_t)x, (int32_t)y, ctu, ctu, 0, 0};
            if (s.cache) cache_reset(s.cache);
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
    cache_free(s.cache);
    free(s.shifted);
    free(s.pred);
    free(s.leaf_keep);
    free(s.trial);
    free(s.track);
    return s.error;
}
