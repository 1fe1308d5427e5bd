/* Coding-tree search with rate-distortion mode decision. */
#ifndef NNTM_ENCODER_PARTITION_SEARCH_H
#define NNTM_ENCODER_PARTITION_SEARCH_H

#include "../common/partition.h"
#include "bin_writer.h"

/* A growable list of split decisions in preorder. */
typedef struct nntm_decisions {
    uint8_t *d;
    size_t n, cap;
} nntm_decisions;

void nntm_decisions_free(nntm_decisions *v);

/* Search every CTU of the kernel tensor (distortion weighted by importance,
 * or NULL): fills levels (the coded ones), the maps (modes, QP deltas and,
 * with intra prediction, the intra modes) and the decisions.  With intra
 * prediction rec (else NULL) receives the reconstructed levels (prediction +
 * residual), which later CUs predict from.  Returns NNTM_OK, NNTM_ERR_NOMEM or NNTM_ERR_RANGE. */
int nntm_search_tree(const nntm_encoder_params *p, const float *weights, const float *importance,
                     int32_t *levels, int32_t *rec, nntm_cu_maps *maps,
                     nntm_decisions *decisions);

#endif
