/* Syntax reader: the mirror of lib/encoder/syntax_writer.c, same structure names. */
#ifndef NNTM_DECODER_SYNTAX_READER_H
#define NNTM_DECODER_SYNTAX_READER_H

#include "../common/partition.h"
#include "bin_reader.h"

/* level_coding(); returns NNTM_OK or NNTM_ERR_CORRUPT. */
int nntm_read_level_coding(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                           const nntm_level_ctx_idx *ci, int num_gt_flags, int32_t *level);

/* Rows [y0, y1) of tensor_data() of format 1.0 (one raster scan; [1.8] one substream, whose
 * first row y0 has no row above for the contexts): fills the levels and their
 * reconstruction indices as coded; [1.5] with row_pred a row_pred_flag before each row r
 * after the first, its reference row (or -1) in row_ref[ r ] (nntm_apply_row_pred adds
 * the references afterwards).  ring 0: levels holds rows x cols levels; ring 1 (for a
 * caller that needs only rindex, a separate array): levels holds 2 x cols, row r's levels
 * at row r & 1 (the contexts look at the row above only).  NNTM_OK, NNTM_ERR_CORRUPT or
 * NNTM_ERR_TRUNCATED. */
int nntm_read_tensor_data(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                          const nntm_kernel_params *p, int32_t *levels, int32_t *rindex,
                          int32_t y0, int32_t y1, int ring, int32_t *row_ref);

/* Row prediction [1.5] after the parse: rows 1.. top to bottom, each predicted row
 * (row_ref[ r ] >= 0) adds the final reconstruction indices of its reference row and is
 * recorded in trace (a copy CU of one row).  NNTM_OK, NNTM_ERR_CORRUPT (an index past the
 * limit, E-D8) or NNTM_ERR_NOMEM. */
int nntm_apply_row_pred(const nntm_kernel_params *p, int32_t *rindex, const int32_t *row_ref,
                        nntm_buffer *trace);

/* Rows [y0, y1) of tensor_data() without row prediction, the levels in two rows (row r at
 * row r & 1 of levels, as ring 1 above) and the reconstruction indices of those rows only
 * (rindex[0] is row y0's first); called for y0 = top (the substream's first row), then
 * each y1 in turn. */
int nntm_read_tensor_rows(nntm_bin_reader *r, nntm_level_ctxs *ctxs, const nntm_kernel_params *p,
                          int32_t *levels, int32_t *rindex, int32_t y0, int32_t y1, int32_t top);

/* coding_tree() of every CTU: fills levels and the maps (mode, QP delta);
 * appends a record per CU to trace when not NULL. */
int nntm_read_tree_data(nntm_bin_reader *r, nntm_all_ctxs *ctxs, nntm_cu_maps *m,
                        const nntm_kernel_params *p, int32_t *levels, int32_t *rindex,
                        nntm_buffer *trace);

#endif
