/* Syntax writer of cluster_data(). */
#include "cluster_writer.h"

#include "syntax_writer.h"

void nntm_write_cluster_index(nntm_bin_writer *w, nntm_cluster_ctxs *ctxs, int32_t size,
                              int32_t k) {
    int nbits = nntm_cluster_index_bits(size);
    int32_t prefix = 0;
    for (int i = 0; i < nbits; i++) {
        int bin = (int)((k >> (nbits - 1 - i)) & 1);
        if (nntm_cluster_index_bin_coded(size, nbits, i, prefix))
            w->encode_bin(w, &ctxs->index[((int32_t)1 << i) | prefix], bin);
        prefix = (prefix << 1) | bin;
    }
}

void nntm_write_outlier_run(nntm_bin_writer *w, nntm_cluster_ctxs *ctxs, uint32_t run) {
    uint64_t v = (uint64_t)run + 1;
    int prefix = 0;
    while ((v >> (prefix + 1)) != 0) prefix++;
    for (int i = 0; i < prefix; i++)
        w->encode_bin(w, &ctxs->run[i < NNTM_RUN_CTX ? i : NNTM_RUN_CTX - 1], 1);
    w->encode_bin(w, &ctxs->run[prefix < NNTM_RUN_CTX ? prefix : NNTM_RUN_CTX - 1], 0);
    w->encode_bypass(w, (uint32_t)(v - ((uint64_t)1 << prefix)), prefix);
}

/* levels of one point: each with contexts from the previous value of the point. */
static void point_levels(nntm_bin_writer *w, nntm_level_ctxs *ctxs, const int32_t *lv,
                         int32_t d, int num_gt) {
    nntm_level_ctx_idx ci;
    int32_t left = 0;
    for (int32_t j = 0; j < d; j++) {
        nntm_level_ctx_from(left, 0, 0, &ci);
        nntm_write_level_coding(w, ctxs, &ci, lv[j], num_gt);
        left = lv[j];
    }
}

void nntm_write_cluster_data(nntm_bin_writer *w, nntm_cluster_ctxs *ctxs,
                             const nntm_cluster_params *p, const int32_t *codebooks,
                             const int32_t *labels, const int32_t *levels, int32_t *delta) {
    size_t v = 0, pt = 0, cb = 0;
    for (int32_t s = 0; s < p->num_subspaces; s++) {
        int32_t n = p->num_points[s], d = p->dims[s], k = p->codebook_size[s];
        int32_t zero = d == 1 ? nntm_cluster_zero_entry(codebooks + cb, k) : 0;
        cb += (size_t)k * (size_t)d;
        nntm_cluster_ctxs_init(ctxs);
        int prev = 0;
        int32_t next_outlier = -1; /* runs: position of the next outlier (n: none) */
        for (int32_t i = 0; i < n; i++, pt++, v += (size_t)d) {
            int outlier = labels[pt] < 0;
            if (p->outliers_enabled && p->outlier_pos_mode == NNTM_OUTLIER_POS_FLAGS) {
                w->encode_bin(w, &ctxs->outlier_flag[prev], outlier);
            } else if (p->outliers_enabled && next_outlier < i) {
                int32_t j = i;
                while (j < n && labels[pt + (size_t)(j - i)] >= 0) j++;
                nntm_write_outlier_run(w, ctxs, (uint32_t)(j - i));
                next_outlier = j;
            }
            prev = outlier;
            delta[i] = 0;
            if (outlier) {
                point_levels(w, &ctxs->outlier, levels + v, d, p->num_gt_flags);
                continue;
            }
            if (d == 1 && k > 1) { /* scalar codebook: signed distance to the zero entry */
                nntm_level_ctx_idx ci;
                delta[i] = labels[pt] - zero;
                nntm_cluster_delta_ctx(delta, i, p->row_points[s], &ci);
                nntm_write_level_coding(w, &ctxs->index_lv, &ci, delta[i], p->num_gt_flags);
            } else if (k > 1) {
                nntm_write_cluster_index(w, ctxs, k, labels[pt]);
            }
            if (p->residual_enabled) point_levels(w, &ctxs->residual, levels + v, d, p->num_gt_flags);
        }
    }
}
