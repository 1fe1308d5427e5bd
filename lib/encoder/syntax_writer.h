/* Syntax writer: one function per syntax structure of docs/bitstream.md. */
#ifndef NNTM_ENCODER_SYNTAX_WRITER_H
#define NNTM_ENCODER_SYNTAX_WRITER_H

#include "bin_writer.h"

/* level_coding(): one quantized level with the contexts derived for it. */
void nntm_write_level_coding(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                             const nntm_level_ctx_idx *ci, int32_t level, int num_gt_flags);

/* tensor_data(): every level of a kernel tensor in raster order. */
void nntm_write_tensor_data(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                            const nntm_kernel_params *p, const int32_t *levels);

#endif
