/* Syntax reader of cluster_data(). */
#include "cluster_reader.h"

#include <stdlib.h>
#include <string.h>

#include "syntax_reader.h"

#define MAX_RUN_PREFIX 31

int32_t nntm_read_cluster_index(nntm_bin_reader *r, nntm_cluster_ctxs *ctxs, int32_t size) {
    int nbits = nntm_cluster_index_bits(size);
    int32_t prefix = 0;
    for (int i = 0; i < nbits; i++) {
        int bin = 0;
        if (nntm_cluster_index_bin_coded(size, nbits, i, prefix))
            bin = nntm_decode_bin(r, &ctxs->index[((int32_t)1 << i) | prefix]);
        prefix = (prefix << 1) | bin;
    }
    return prefix;
}

int nntm_read_outlier_run(nntm_bin_reader *r, nntm_cluster_ctxs *ctxs, uint32_t limit,
                          uint32_t *run) {
    int prefix = 0;
    while (nntm_decode_bin(r, &ctxs->run[prefix < NNTM_RUN_CTX ? prefix : NNTM_RUN_CTX - 1])) {
        if (++prefix > MAX_RUN_PREFIX) return NNTM_ERR_CORRUPT;
    }
    uint64_t v = ((uint64_t)1 << prefix) + nntm_decode_bypass(r, prefix);
    if (v - 1 > (uint64_t)limit) return NNTM_ERR_CORRUPT;
    *run = (uint32_t)(v - 1);
    return NNTM_OK;
}

static int point_levels(nntm_bin_reader *r, nntm_level_ctxs *ctxs, int32_t *lv, int32_t d,
                        int num_gt) {
    nntm_level_ctx_idx ci;
    int32_t left = 0;
    for (int32_t j = 0; j < d; j++) {
        nntm_level_ctx_from(left, 0, 0, &ci);
        int rv = nntm_read_level_coding(r, ctxs, &ci, num_gt, &lv[j]);
        if (rv) return rv;
        left = lv[j];
    }
    return NNTM_OK;
}

int nntm_read_cluster_data(nntm_bin_reader *r, nntm_cluster_ctxs *ctxs,
                           const nntm_cluster_params *p, const int32_t *codebooks,
                           int32_t *labels, int32_t *levels, int32_t *delta) {
    size_t v = 0, pt = 0, cb = 0;
    for (int32_t s = 0; s < p->num_subspaces; s++) {
        int32_t n = p->num_points[s], d = p->dims[s], k = p->codebook_size[s];
        int32_t zero = d == 1 ? nntm_cluster_zero_entry(codebooks + cb, k) : 0;
        cb += (size_t)k * (size_t)d;
        nntm_cluster_ctxs_init(ctxs);
        int prev = 0;
        int32_t next_outlier = -1;
        for (int32_t i = 0; i < n; i++, pt++, v += (size_t)d) {
            int outlier = 0;
            if (p->outliers_enabled && p->outlier_pos_mode == NNTM_OUTLIER_POS_FLAGS) {
                outlier = nntm_decode_bin(r, &ctxs->outlier_flag[prev]);
            } else if (p->outliers_enabled) {
                if (next_outlier < i) {
                    uint32_t run;
                    int rv = nntm_read_outlier_run(r, ctxs, (uint32_t)(n - i), &run);
                    if (rv) return rv;
                    next_outlier = i + (int32_t)run;
                }
                outlier = next_outlier == i;
            }
            prev = outlier;
            delta[i] = 0;
            if (nntm_bin_reader_overread(r) > 0) return NNTM_ERR_TRUNCATED;
            if (r->corrupt) return NNTM_ERR_CORRUPT;
            if (outlier) {
                labels[pt] = -1;
                int rv = point_levels(r, &ctxs->outlier, levels + v, d, p->num_gt_flags);
                if (rv) return rv;
                continue;
            }
            if (d == 1 && k > 1) {
                nntm_level_ctx_idx ci;
                nntm_cluster_delta_ctx(delta, i, p->row_points[s], &ci);
                int rv = nntm_read_level_coding(r, &ctxs->index_lv, &ci, p->num_gt_flags, &delta[i]);
                if (rv) return rv;
                if (delta[i] < -zero || delta[i] > k - 1 - zero) return NNTM_ERR_CORRUPT;
                labels[pt] = zero + delta[i];
            } else {
                labels[pt] = k > 1 ? nntm_read_cluster_index(r, ctxs, k) : 0;
            }
            if (p->residual_enabled) {
                int rv = point_levels(r, &ctxs->residual, levels + v, d, p->num_gt_flags);
                if (rv) return rv;
            } else {
                memset(levels + v, 0, (size_t)d * sizeof(int32_t));
            }
        }
    }
    if (nntm_bin_reader_overread(r) > 0) return NNTM_ERR_TRUNCATED;
    return r->corrupt ? NNTM_ERR_CORRUPT : NNTM_OK;
}

int nntm_decode_cluster(const nntm_cluster_params *params, const int32_t *codebooks,
                        const uint8_t *data, size_t size, int32_t dtype, void *recon,
                        int32_t *labels_out) {
    nntm_cluster_steps steps;
    int rv = nntm_check_cluster_params(params, &steps);
    if (rv) return rv;
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    size_t count, npoints, ncb;
    rv = nntm_cluster_counts(params, &count, &npoints, &ncb);
    if (rv) return rv;
    if ((ncb && !codebooks) || (count && !recon) || (size && !data)) return NNTM_ERR_ARG;
    for (size_t i = 0; i < ncb; i++)
        if (codebooks[i] > NNTM_MAX_LEVEL || codebooks[i] < -NNTM_MAX_LEVEL) return NNTM_ERR_ARG;
    if (count == 0) return size == 0 ? NNTM_OK : NNTM_ERR_CORRUPT;
    int32_t *labels = labels_out ? labels_out : malloc(npoints * sizeof(int32_t));
    int32_t *levels = malloc(count * sizeof(int32_t));
    int32_t *delta = malloc(npoints * sizeof(int32_t));
    nntm_cluster_ctxs *ctxs = malloc(sizeof *ctxs);
    if (!labels || !levels || !ctxs || !delta) {
        rv = NNTM_ERR_NOMEM;
    } else {
        nntm_bin_reader r;
        nntm_bin_reader_init(&r, data, size);
        rv = nntm_read_cluster_data(&r, ctxs, params, codebooks, labels, levels, delta);
        if (rv == NNTM_OK && r.pos != size) rv = NNTM_ERR_CORRUPT; /* bytes after the payload */
        if (rv == NNTM_OK)
            rv = nntm_cluster_reconstruct(params, &steps, codebooks, labels, levels, dtype, recon);
    }
    free(ctxs);
    free(delta);
    free(levels);
    if (!labels_out) free(labels);
    return rv;
}
