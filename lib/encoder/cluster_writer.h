/* Syntax writer of cluster_data() (docs/bitstream.md, "Clustered tensors");
 * the reader (lib/decoder/cluster_reader.h) has the same structures. */
#ifndef NNTM_ENCODER_CLUSTER_WRITER_H
#define NNTM_ENCODER_CLUSTER_WRITER_H

#include "../common/cluster.h"
#include "bin_writer.h"

/* cluster_index(): index k of a codebook of size K. */
void nntm_write_cluster_index(nntm_bin_writer *w, nntm_cluster_ctxs *ctxs, int32_t size,
                              int32_t k);

/* outlier_run(): inlier points before the next outlier (or to the subspace end). */
void nntm_write_outlier_run(nntm_bin_writer *w, nntm_cluster_ctxs *ctxs, uint32_t run);

/* cluster_data(): every subspace's points; labels (index or -1) per point,
 * levels per value (outlier levels of outliers, residual levels of inliers);
 * codebooks as in the tensor parameter set; delta: scratch of one int32 per
 * point of the largest subspace. */
void nntm_write_cluster_data(nntm_bin_writer *w, nntm_cluster_ctxs *ctxs,
                             const nntm_cluster_params *p, const int32_t *codebooks,
                             const int32_t *labels, const int32_t *levels, int32_t *delta);

#endif
