/* Syntax reader: the mirror of lib/encoder/syntax_writer.c, same structure names. */
#ifndef NNTM_DECODER_SYNTAX_READER_H
#define NNTM_DECODER_SYNTAX_READER_H

#include "../common/partition.h"
#include "bin_reader.h"

/* level_coding(); returns NNTM_OK or NNTM_ERR_CORRUPT. */
int nntm_read_level_coding(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                           const nntm_level_ctx_idx *ci, int num_gt_flags, int32_t *level);

/* tensor_data() of format 1.0 (one raster scan); fills the levels and their
 * reconstruction indices; [1.5] with row_pred a row_pred_flag before each row after the
 * first, a predicted row recorded in trace (a copy from the row above).  ring 0: levels
 * holds rows x cols levels; ring 1 (for a caller that needs only rindex, a separate
 * array): levels holds 2 x cols, row r's levels at row r & 1 (the contexts look at the row
 * above only).  NNTM_OK, NNTM_ERR_CORRUPT, NNTM_ERR_TRUNCATED or NNTM_ERR_NOMEM. */
int nntm_read_tensor_data(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                          const nntm_kernel_params *p, int32_t *levels, int32_t *rindex,
                          nntm_buffer *trace, int ring);

/* Rows [y0, y1) of tensor_data() without row prediction, the levels in two rows (row r at
 * row r & 1 of levels, as ring 1 above) and the reconstruction indices of those rows only
 * (rindex[0] is row y0's first); called for y0 = 0, then each y1 in turn. */
int nntm_read_tensor_rows(nntm_bin_reader *r, nntm_level_ctxs *ctxs, const nntm_kernel_params *p,
                          int32_t *levels, int32_t *rindex, int32_t y0, int32_t y1);

/* coding_tree() of every CTU: fills levels and the maps (mode, QP delta);
 * appends a record per CU to trace when not NULL. */
int nntm_read_tree_data(nntm_bin_reader *r, nntm_all_ctxs *ctxs, nntm_cu_maps *m,
                        const nntm_kernel_params *p, int32_t *levels, int32_t *rindex,
                        nntm_buffer *trace);

#endif
