/* The coding tree: node geometry, split legality (one can_split for both
 * sides), the per-element maps that neighbouring decisions are read from, and
 * the context sets of the tree syntax. */
#ifndef NNTM_COMMON_PARTITION_H
#define NNTM_COMMON_PARTITION_H

#include <stdint.h>

#include "contexts.h"
#include "nntm/nntm.h"

/* A node of the coding tree: a nominal rectangle of the kernel tensor
 * (x = column, y = row); only its part inside the tensor is coded. */
typedef struct nntm_node {
    int32_t x, y, w, h;
    int qt_depth;
    int mtt_depth;
} nntm_node;

/* Per-element maps of the decisions made so far (row-major, rows x cols). */
typedef struct nntm_cu_maps {
    int32_t rows, cols;
    uint8_t *qt_depth;  /* qt depth of the CU covering the element */
    uint8_t *log2_w;    /* nominal CU width and height, log2 */
    uint8_t *log2_h;
    uint8_t *mode;      /* NNTM_CU_* of the CU covering the element */
    int16_t *qp_delta;  /* CU QP - tensor QP */
    uint8_t *intra;     /* NNTM_INTRA_* of the CU (only with intra prediction, else NULL) */
    int16_t *bv_x;      /* its block vector */
    int16_t *bv_y;
} nntm_cu_maps;

/* NNTM_OK or NNTM_ERR_NOMEM; a zeroed struct is safe to free. */
int nntm_cu_maps_alloc(nntm_cu_maps *m, int32_t rows, int32_t cols);
/* The intra maps as well (after nntm_cu_maps_alloc); NNTM_OK or NNTM_ERR_NOMEM. */
int nntm_cu_maps_alloc_intra(nntm_cu_maps *m);
void nntm_cu_maps_free(nntm_cu_maps *m);

/* NNTM_OK when the tree parameters are within their documented ranges. */
int nntm_check_tree_params(const nntm_tree_params *t);

/* 1 when the split may be used at node n (both encoder and decoder ask this). */
int nntm_can_split(const nntm_tree_params *t, const nntm_node *n, int split);

/* The children of n for a split, in coding order; returns their number. */
int nntm_split_children(const nntm_node *n, int split, nntm_node out[4]);

/* Clip n to the tensor: the coded region [x0, x1) x [y0, y1); 0 when empty. */
static inline int nntm_node_clip(const nntm_node *n, int32_t rows, int32_t cols, int32_t *x0,
                                 int32_t *y0, int32_t *x1, int32_t *y1) {
    int64_t xe = (int64_t)n->x + n->w, ye = (int64_t)n->y + n->h; /* no int32 overflow */
    *x0 = n->x;
    *y0 = n->y;
    *x1 = xe < cols ? (int32_t)xe : cols;
    *y1 = ye < rows ? (int32_t)ye : rows;
    return *x0 < *x1 && *y0 < *y1;
}

/* Record a leaf CU in the maps (its intra mode, when the intra maps exist, as
 * NNTM_INTRA_NONE). */
void nntm_cu_maps_set(nntm_cu_maps *m, const nntm_node *n, int mode, int qp_delta);
/* Record the intra mode and block vector of a leaf CU (intra maps required). */
void nntm_cu_maps_set_intra(nntm_cu_maps *m, const nntm_node *n, int intra, int32_t bv_x,
                            int32_t bv_y);

/* Append one record to a trace; nothing when trace is NULL.  NNTM_OK or
 * NNTM_ERR_NOMEM. */
int nntm_trace_append(nntm_buffer *trace, const nntm_cu_record *rec);

/* Append the record of the CU at node n (mode and QP from the maps) to trace;
 * nothing when trace is NULL.  NNTM_OK or NNTM_ERR_NOMEM. */
int nntm_trace_cu(nntm_buffer *trace, const nntm_cu_maps *m, const nntm_kernel_params *p,
                  const nntm_node *n);

/* ---- Context sets of the tree syntax ---- */
#define NNTM_SPLIT_QT_CTX 9       /* split_qt_flag: 3 * min(qt_depth, 2) + neighbours deeper */
#define NNTM_MTT_SPLIT_CTX 9      /* mtt_split_flag: 3 * min(mtt_depth, 2) + neighbours smaller */
#define NNTM_MTT_VERTICAL_CTX 3   /* mtt_vertical_flag: width vs height */
#define NNTM_MTT_BINARY_CTX 4     /* mtt_binary_flag: 2 * vertical + (mtt_depth > 0) */
#define NNTM_CU_SKIP_CTX 3        /* cu_skip_flag: skipped neighbours */
#define NNTM_QP_DELTA_CTX 2       /* cu_qp_delta_abs: first bin, other prefix bins */
#define NNTM_QP_DELTA_PREFIX 5    /* unary prefix length of cu_qp_delta_abs */
#define NNTM_INTRA_FLAG_CTX 3     /* intra_pred_flag: intra-predicted neighbours */
#define NNTM_INTRA_COPY_CTX 1     /* intra_copy_flag */
#define NNTM_INTRA_DIR_CTX 1      /* intra_col_flag */

typedef struct nntm_tree_ctxs {
    nntm_ctx split_qt[NNTM_SPLIT_QT_CTX];
    nntm_ctx mtt_split[NNTM_MTT_SPLIT_CTX];
    nntm_ctx mtt_vertical[NNTM_MTT_VERTICAL_CTX];
    nntm_ctx mtt_binary[NNTM_MTT_BINARY_CTX];
    nntm_ctx cu_skip[NNTM_CU_SKIP_CTX];
    nntm_ctx qp_delta[NNTM_QP_DELTA_CTX];
    nntm_ctx intra_flag[NNTM_INTRA_FLAG_CTX];
    nntm_ctx intra_copy[NNTM_INTRA_COPY_CTX];
    nntm_ctx intra_dir[NNTM_INTRA_DIR_CTX];
} nntm_tree_ctxs;

/* Every context variable of a kernel tensor's payload. */
typedef struct nntm_all_ctxs {
    nntm_level_ctxs level;
    nntm_tree_ctxs tree;
} nntm_all_ctxs;

/* All context sets of a tree-coded tensor, with the estimator of prob_window and
 * suffix_ctx_flag. */
void nntm_all_ctxs_init(nntm_all_ctxs *c, int window, int suffix_ctx);

int nntm_ctx_split_qt(const nntm_cu_maps *m, const nntm_node *n);
int nntm_ctx_mtt_split(const nntm_cu_maps *m, const nntm_node *n);
int nntm_ctx_mtt_vertical(const nntm_node *n);
int nntm_ctx_cu_skip(const nntm_cu_maps *m, const nntm_node *n);
int nntm_ctx_intra_flag(const nntm_cu_maps *m, const nntm_node *n);

/* Which mtt flags a node codes, from the splits can_split allows. */
typedef struct nntm_mtt_options {
    int any;          /* some MTT split is allowed: mtt_split_flag is coded */
    int can_v, can_h; /* a vertical / horizontal split is allowed */
    int bt_v, tt_v, bt_h, tt_h;
} nntm_mtt_options;

void nntm_mtt_options_get(const nntm_tree_params *t, const nntm_node *n, nntm_mtt_options *o);

#endif
