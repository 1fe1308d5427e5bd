/* Syntax reader of cluster_data(): the mirror of lib/encoder/cluster_writer.h. */
#ifndef NNTM_DECODER_CLUSTER_READER_H
#define NNTM_DECODER_CLUSTER_READER_H

#include "../common/cluster.h"
#include "bin_reader.h"

/* cluster_index(); always a valid index (< size). */
int32_t nntm_read_cluster_index(nntm_bin_reader *r, nntm_cluster_ctxs *ctxs, int32_t size);

/* outlier_run(); NNTM_ERR_CORRUPT when it exceeds limit. */
int nntm_read_outlier_run(nntm_bin_reader *r, nntm_cluster_ctxs *ctxs, uint32_t limit,
                          uint32_t *run);

/* cluster_data(): fills labels and levels (zeros where none are coded).
 * NNTM_OK or NNTM_ERR_CORRUPT. */
int nntm_read_cluster_data(nntm_bin_reader *r, nntm_cluster_ctxs *ctxs,
                           const nntm_cluster_params *p, const int32_t *codebooks,
                           int32_t *labels, int32_t *levels, int32_t *delta);

#endif
