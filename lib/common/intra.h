/* Intra prediction of a CU's levels from earlier levels of the same kernel
 * tensor (format 1.3): the legality rules and the predictor, shared by the
 * encoder's search, the syntax writer and the decoder. */
#ifndef NNTM_COMMON_INTRA_H
#define NNTM_COMMON_INTRA_H

#include <stdint.h>

#include "partition.h"

/* 1 when intra mode (with the block vector for NNTM_INTRA_COPY) may be used by
 * the CU [x0,x1) x [y0,y1) (inside the tensor) with CTUs of 2^log2_ctu_size:
 *   ROW needs a column to the left of the CU, COL a row above it;
 *   COPY needs |bv| <= NNTM_MAX_BV, the displaced block inside the tensor and
 *   every one of its levels decoded before the CU (checked on its bottom-right
 *   level; see docs/bitstream.md, "Intra prediction"). */
int nntm_intra_allowed(int32_t log2_ctu_size, int32_t rows, int32_t cols, int32_t x0, int32_t y0,
                       int32_t x1, int32_t y1, int mode, int32_t bv_x, int32_t bv_y);

/* nntm_intra_allowed() for the CU at node n (clipped to the tensor). */
static inline int nntm_intra_allowed_node(const nntm_tree_params *t, int32_t rows, int32_t cols,
                                          const nntm_node *n, int mode, int32_t bv_x,
                                          int32_t bv_y) {
    int32_t x0, y0, x1, y1;
    if (!nntm_node_clip(n, rows, cols, &x0, &y0, &x1, &y1)) return 0;
    return nntm_intra_allowed(t->log2_ctu_size, rows, cols, x0, y0, x1, y1, mode, bv_x, bv_y);
}

/* The predicted levels of the CU's region [x0,x1) x [y0,y1) (row-major, width
 * x1 - x0) from the reconstructed levels rec (row-major, width cols), which
 * must hold every level decoded before the CU.  The mode must be allowed. */
void nntm_intra_predict(const int32_t *rec, int32_t cols, int mode, int32_t bv_x, int32_t bv_y,
                        int32_t x0, int32_t y0, int32_t x1, int32_t y1, int32_t *pred);

/* The reconstructed levels of an intra CU [x0,x1) x [y0,y1): rec = prediction
 * (from rec itself, into the CTU-sized scratch pred) + coded, both row-major over
 * the tensor of width cols; 0, or -1 when a level is beyond +-NNTM_MAX_LEVEL (rec
 * is then partly written).  The writer and the reader call it after the CU's TU. */
int nntm_intra_reconstruct(int32_t *rec, const int32_t *coded, int32_t cols, int mode,
                           int32_t bv_x, int32_t bv_y, int32_t x0, int32_t y0, int32_t x1,
                           int32_t y1, int32_t *pred);

#endif
