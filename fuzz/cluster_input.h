/* The input format shared by the cluster fuzzer (fuzz_cluster.c) and the sanitizer
 * check program (cluster_check.c): one clustered tensor case (little-endian) =
 *
 *   u8 num_subspaces - 1 (taken mod 8, so 1..8), u8 qp_density (mod 7),
 *   i8 codebook_qp, i8 outlier_qp, i8 residual_qp,
 *   u8 flags (bit 0 outliers_enabled, bit 1 outlier_pos_mode, bit 2 residual_enabled),
 *   u8 num_gt_flags (as is: out-of-range values must give NNTM_ERR_ARG),
 *   u8 dtype (mod 4, an NNTM_DTYPE_*);
 *   per subspace: u16 num_points, u16 dims, u16 codebook_size, u16 row_points;
 *   int32 codebook entries (sum codebook_size * dims); the payload (the rest).
 *
 * fuzz/make_cluster_seeds.py writes it for every CLUSTERED tensor of the conformance
 * streams. */
#ifndef NNTM_FUZZ_CLUSTER_INPUT_H
#define NNTM_FUZZ_CLUSTER_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nntm/nntm.h"

#define CLUSTER_INPUT_HEADER 8
#define CLUSTER_INPUT_MAX_SUBSPACES 8
/* The caller allocates the samples, the labels and the codebooks: keep a case within
 * libFuzzer's default memory limit. */
#define CLUSTER_INPUT_MAX_VALUES (1u << 20)

typedef struct cluster_input {
    nntm_cluster_params params;
    int32_t dtype;
    uint64_t values;   /* sum num_points * dims: samples of the reconstruction */
    uint64_t points;   /* sum num_points: labels */
    uint64_t books;    /* sum codebook_size * dims: codebook entries */
    const uint8_t *codebooks; /* books int32, unaligned */
    const uint8_t *payload;
    size_t payload_size;
} cluster_input;

static inline uint32_t cluster_input_u16(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

/* Returns 0, or -1 when the case is shorter than its header and codebooks or larger
 * than CLUSTER_INPUT_MAX_VALUES (the fuzzer skips such inputs). */
static inline int cluster_input_parse(const uint8_t *data, size_t size, cluster_input *in) {
    if (size < CLUSTER_INPUT_HEADER) return -1;
    memset(in, 0, sizeof *in);
    nntm_cluster_params *p = &in->params;
    p->num_subspaces = data[0] % CLUSTER_INPUT_MAX_SUBSPACES + 1;
    p->qp_density = data[1] % 7;
    p->codebook_qp = (int8_t)data[2];
    p->outlier_qp = (int8_t)data[3];
    p->residual_qp = (int8_t)data[4];
    p->outliers_enabled = data[5] & 1;
    p->outlier_pos_mode = (data[5] >> 1) & 1;
    p->residual_enabled = (data[5] >> 2) & 1;
    p->num_gt_flags = data[6];
    in->dtype = data[7] % 4;
    size_t pos = CLUSTER_INPUT_HEADER;
    for (int32_t s = 0; s < p->num_subspaces; s++) {
        if (size - pos < 8) return -1;
        p->num_points[s] = (int32_t)cluster_input_u16(data + pos);
        p->dims[s] = (int32_t)cluster_input_u16(data + pos + 2);
        p->codebook_size[s] = (int32_t)cluster_input_u16(data + pos + 4);
        p->row_points[s] = (int32_t)cluster_input_u16(data + pos + 6);
        pos += 8;
        in->values += (uint64_t)p->num_points[s] * (uint64_t)p->dims[s];
        in->points += (uint64_t)p->num_points[s];
        in->books += (uint64_t)p->codebook_size[s] * (uint64_t)p->dims[s];
    }
    if (in->values > CLUSTER_INPUT_MAX_VALUES || in->books > CLUSTER_INPUT_MAX_VALUES ||
        (size - pos) / 4 < in->books)
        return -1;
    in->codebooks = data + pos;
    in->payload = data + pos + 4 * (size_t)in->books;
    in->payload_size = size - pos - 4 * (size_t)in->books;
    return 0;
}

/* A return code nntm.h lists for nntm_decode_cluster. */
static inline int cluster_input_documented(int rv) {
    return rv == NNTM_OK || rv == NNTM_ERR_ARG || rv == NNTM_ERR_NOMEM ||
           rv == NNTM_ERR_CORRUPT || rv == NNTM_ERR_TRUNCATED;
}

/* After NNTM_OK: every label is a codebook index of its subspace, or -1 (an outlier)
 * when outliers are enabled.  Returns 0, or -1 after printing the first bad label. */
static inline int cluster_input_check_labels(const cluster_input *in, const int32_t *labels) {
    const nntm_cluster_params *p = &in->params;
    size_t pt = 0;
    for (int32_t s = 0; s < p->num_subspaces; s++)
        for (int32_t i = 0; i < p->num_points[s]; i++, pt++) {
            int32_t l = labels[pt];
            if (l >= p->codebook_size[s] || l < -1 || (l == -1 && !p->outliers_enabled)) {
                fprintf(stderr, "cluster case: label %d of point %zu, codebook size %d%s\n", l,
                        pt, p->codebook_size[s], p->outliers_enabled ? "" : ", no outliers");
                return -1;
            }
        }
    return 0;
}

#endif
