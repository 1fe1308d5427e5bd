/* Syntax writer: one function per syntax structure of docs/bitstream.md.
 * The reader (lib/decoder/syntax_reader.h) has the same structures. */
#ifndef NNTM_ENCODER_SYNTAX_WRITER_H
#define NNTM_ENCODER_SYNTAX_WRITER_H

#include "../common/partition.h"
#include "bin_writer.h"

/* level_coding(): one quantized level with the contexts derived for it. */
void nntm_write_level_coding(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                             const nntm_level_ctx_idx *ci, int32_t level, int num_gt_flags);

/* The row prediction syntax of row r >= 1 [1.5]: row_pred_flag on RowPredCtx[ prev ]
 * (prev: the flag of row r - 1) and, for a reference ref >= 0 (-1: none) in a row r > 1,
 * row_pred_above_flag and row_pred_ref_dist_minus2. */
void nntm_write_row_pred(nntm_bin_writer *w, nntm_level_ctxs *ctxs, int prev, int32_t r,
                         int32_t ref);

/* Rows [y0, y1) of tensor_data() of format 1.0 (the whole raster scan, or [1.8] one
 * substream, whose first row y0 has no row above for the contexts): the levels in raster
 * order; [1.5] with row_pred, row_ref[ r ] (rows 1..) the reference row of row r or -1
 * (row_pred_flag 0): the reconstruction indices of a predicted row are added to those of
 * its reference row (rindex is required then; earlier substreams written first). */
void nntm_write_tensor_data(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                            const nntm_kernel_params *p, const int32_t *levels, int32_t *rindex,
                            const int32_t *row_ref, int32_t y0, int32_t y1);

/* split_mode(): the split flags of a node for the given split. */
void nntm_write_split_mode(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                           const nntm_tree_params *t, const nntm_node *n, int split);

/* cu_skip_flag, when skip is enabled. */
void nntm_write_cu_skip_flag(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                             const nntm_node *n, int skip);

/* intra_pred(): the intra mode of a coded CU (NNTM_INTRA_*) and, for
 * NNTM_INTRA_COPY, its block vector. */
void nntm_write_intra_pred(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                           const nntm_node *n, int intra, int32_t bv_x, int32_t bv_y);

/* cu_qp_delta(). */
void nntm_write_cu_qp_delta(nntm_bin_writer *w, nntm_tree_ctxs *ctxs, int delta);

/* transform_unit(): the levels of the region [x0,x1) x [y0,y1) in raster
 * order, advancing the DQ state; rindex (or NULL) receives each level's
 * reconstruction index. */
void nntm_write_transform_unit(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                               const nntm_kernel_params *p, const int32_t *levels,
                               int32_t *rindex, int32_t x0, int32_t y0, int32_t x1, int32_t y1);

/* coding_tree() of every CTU, with the split decisions in preorder (one byte a
 * node inside the tensor) and the CU modes, QP deltas, intra modes and coded
 * levels from maps and levels.  rindex receives the reconstruction indices
 * (with intra prediction: prediction + residual; then rindex must be its own
 * array and the intra maps allocated). */
int nntm_write_tree_data(nntm_bin_writer *w, nntm_all_ctxs *ctxs, nntm_cu_maps *m,
                         const nntm_kernel_params *p, const int32_t *levels, int32_t *rindex,
                         const uint8_t *decisions, size_t num_decisions, nntm_buffer *trace);

#endif
