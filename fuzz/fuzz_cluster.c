/* libFuzzer harness for nntm_decode_cluster (clustered tensors, format 1.2).
 *
 * Build and run (clang): see fuzz/README.md ("Clustered tensors"); the library
 * sources are those of lib/common and lib/decoder.
 *
 * Input (little-endian):
 *   u8 num_subspaces (1..8, taken mod 8 + 1), u8 qp_density (mod 7), i8 codebook_qp,
 *   i8 outlier_qp, i8 residual_qp, u8 flags (bit 0 outliers, bit 1 runs, bit 2 residual),
 *   u8 num_gt_flags, u8 dtype (mod 4);
 *   per subspace: u16 num_points, u16 dims, u16 codebook_size, u16 row_points;
 *   int32 codebook values (sum codebook_size * dims); the payload (the rest).
 * A bug is: any sanitizer report, a crash, a hang, a return code nntm.h does not list
 * for nntm_decode_cluster, an outlier label other than -1, a label beyond the codebook. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nntm/nntm.h"

#define MAX_FUZZ_VALUES (1u << 20)

static uint32_t u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    nntm_cluster_params p;
    memset(&p, 0, sizeof p);
    p.num_subspaces = data[0] % 8 + 1;
    p.qp_density = data[1] % 7;
    p.codebook_qp = (int8_t)data[2];
    p.outlier_qp = (int8_t)data[3];
    p.residual_qp = (int8_t)data[4];
    p.outliers_enabled = data[5] & 1;
    p.outlier_pos_mode = (data[5] >> 1) & 1;
    p.residual_enabled = (data[5] >> 2) & 1;
    p.num_gt_flags = data[6];
    int32_t dtype = data[7] % 4;
    size_t pos = 8;
    uint64_t values = 0, points = 0, books = 0;
    for (int32_t s = 0; s < p.num_subspaces; s++) {
        if (size - pos < 8) return 0;
        p.num_points[s] = (int32_t)u16(data + pos);
        p.dims[s] = (int32_t)u16(data + pos + 2);
        p.codebook_size[s] = (int32_t)u16(data + pos + 4);
        p.row_points[s] = (int32_t)u16(data + pos + 6);
        pos += 8;
        values += (uint64_t)p.num_points[s] * (uint64_t)p.dims[s];
        points += (uint64_t)p.num_points[s];
        books += (uint64_t)p.codebook_size[s] * (uint64_t)p.dims[s];
    }
    if (values > MAX_FUZZ_VALUES || books > MAX_FUZZ_VALUES || (size - pos) / 4 < books) return 0;
    int32_t *cb = malloc((size_t)(books + 1) * sizeof(int32_t));
    int32_t *labels = malloc((size_t)(points + 1) * sizeof(int32_t));
    void *recon = malloc((size_t)(values + 1) * 8);
    size_t psize = size - pos - 4 * (size_t)books;
    uint8_t *payload = malloc(psize ? psize : 1);
    if (!cb || !labels || !recon || !payload) abort();
    memcpy(cb, data + pos, 4 * (size_t)books);
    memcpy(payload, data + pos + 4 * (size_t)books, psize);
    int rv = nntm_decode_cluster(&p, cb, payload, psize, dtype, recon, labels);
    if (rv != NNTM_OK && rv != NNTM_ERR_ARG && rv != NNTM_ERR_NOMEM && rv != NNTM_ERR_CORRUPT &&
        rv != NNTM_ERR_TRUNCATED) {
        fprintf(stderr, "fuzz_cluster: undocumented return code %d\n", rv);
        abort();
    }
    if (rv == NNTM_OK) {
        size_t pt = 0;
        for (int32_t s = 0; s < p.num_subspaces; s++)
            for (int32_t i = 0; i < p.num_points[s]; i++, pt++)
                if (labels[pt] < -1 || labels[pt] >= p.codebook_size[s]) {
                    fprintf(stderr, "fuzz_cluster: label %d of codebook %d\n", labels[pt],
                            p.codebook_size[s]);
                    abort();
                }
    }
    free(cb), free(labels), free(recon), free(payload);
    return 0;
}
