/* nntm_decode_kernel: parse and reconstruct one tensor data unit payload. */
#include "nntm/nntm.h"

#include <stdlib.h>
#include <string.h>

#include "../common/partition.h"
#include "../common/quant.h"
#include "syntax_reader.h"

size_t nntm_decode_kernel_scratch(const nntm_kernel_params *params) {
    if (!params || params->rows < 0 || params->cols < 0) return 0;
    size_t count = (size_t)params->rows * (size_t)params->cols;
    int intra = params->tree.enabled && params->tree.intra_pred_enabled;
    size_t per = 0;
    if (params->dq_enabled || intra || params->row_pred) per += sizeof(int32_t); /* rindex */
    if (params->tree.enabled) per += 4 + sizeof(int16_t);     /* CU maps: 4 bytes, qp_delta */
    if (intra) per += 1 + 2 * sizeof(int16_t);                /* intra mode, block vector */
    return count * per;
}

/* Tensors of more than BAND_ELEMENTS samples without the tree, row prediction or a
 * reference, whose levels the caller does not want, are decoded and reconstructed a band of
 * about BAND_ELEMENTS samples at a time: the decoder then holds two rows of levels and one
 * band of indices beside the output, not 4 bytes a sample (the bits are the same: the rows
 * are decoded in the same order and each sample reconstructed alone). */
#define BAND_ELEMENTS ((size_t)1 << 16)

static int decode_banded(const nntm_kernel_params *params, nntm_bin_reader *r, int32_t dtype,
                         void *recon) {
    size_t cols = (size_t)params->cols, rows = (size_t)params->rows;
    size_t band = cols >= BAND_ELEMENTS ? 1 : BAND_ELEMENTS / cols;
    if (band > rows) band = rows;
    size_t es = dtype == NNTM_DTYPE_FLOAT64 ? 8 : dtype == NNTM_DTYPE_FLOAT32 ? 4 : 2;
    int32_t *levels = malloc(2 * cols * sizeof *levels);
    int32_t *rindex = malloc(band * cols * sizeof *rindex);
    int rv = levels && rindex ? NNTM_OK : NNTM_ERR_NOMEM;
    nntm_level_ctxs ctxs;
    nntm_level_ctxs_init(&ctxs, params->prob_window, params->suffix_ctx);
    for (size_t y = 0; y < rows && rv == NNTM_OK; y += band) {
        size_t y1 = y + band < rows ? y + band : rows;
        rv = nntm_read_tensor_rows(r, &ctxs, params, levels, rindex, (int32_t)y, (int32_t)y1);
        if (rv == NNTM_OK)
            rv = nntm_reconstruct_map(params, rindex, NULL, (y1 - y) * cols, dtype, NULL,
                                      (uint8_t *)recon + y * cols * es);
    }
    free(levels);
    free(rindex);
    return rv;
}

int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t dtype, const nntm_reference *ref, void *recon, int32_t *levels_out,
                       nntm_buffer *cu_trace) {
    if (cu_trace) {
        cu_trace->data = NULL;
        cu_trace->size = cu_trace->capacity = 0;
    }
    int rv = nntm_check_kernel_params(params);
    if (rv) return rv;
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    size_t count = (size_t)params->rows * (size_t)params->cols;
    if ((count && !recon) || (size && !data)) return NNTM_ERR_ARG;
    if (ref && nntm_check_reference(ref, count)) return NNTM_ERR_ARG;
    if (count == 0) return size == 0 ? NNTM_OK : NNTM_ERR_CORRUPT;
    if (!params->tree.enabled && !params->row_pred && !ref && !levels_out && !cu_trace &&
        count > BAND_ELEMENTS) {
        nntm_bin_reader r;
        nntm_bin_reader_init(&r, data, size);
        rv = decode_banded(params, &r, dtype, recon);
        if (rv == NNTM_OK && r.pos != size) rv = NNTM_ERR_CORRUPT; /* bytes after the payload */
        return rv;
    }
    int intra = params->tree.enabled && params->tree.intra_pred_enabled;
    int separate = params->dq_enabled || intra || params->row_pred; /* rindex != levels */
    /* without the tree only the row above is looked at: with a separate rindex and no
     * caller wanting the levels, two rows of levels are enough */
    int ring = separate && !params->tree.enabled && !levels_out && params->rows > 2;
    int32_t *levels = levels_out ? levels_out
                                 : malloc((ring ? 2 * (size_t)params->cols : count) *
                                          sizeof(int32_t));
    int32_t *rindex = separate ? malloc(count * sizeof(int32_t)) : levels;
    if (!levels || !rindex) {
        if (!levels_out) free(levels);
        if (rindex != levels) free(rindex);
        return NNTM_ERR_NOMEM;
    }
    nntm_cu_maps maps = {0};
    nntm_bin_reader r;
    nntm_bin_reader_init(&r, data, size);
    if (params->tree.enabled) {
        nntm_all_ctxs ctxs;
        nntm_all_ctxs_init(&ctxs, params->prob_window, params->suffix_ctx);
        rv = nntm_cu_maps_alloc(&maps, params->rows, params->cols);
        if (rv == NNTM_OK && intra) rv = nntm_cu_maps_alloc_intra(&maps);
        if (rv == NNTM_OK)
            rv = nntm_read_tree_data(&r, &ctxs, &maps, params, levels, rindex, cu_trace);
    } else {
        nntm_level_ctxs ctxs;
        nntm_level_ctxs_init(&ctxs, params->prob_window, params->suffix_ctx);
        rv = nntm_read_tensor_data(&r, &ctxs, params, levels, rindex, cu_trace, ring);
    }
    if (rv == NNTM_OK && r.pos != size) rv = NNTM_ERR_CORRUPT; /* bytes after the payload */
    if (rv == NNTM_OK)
        rv = nntm_reconstruct_map(params, rindex, params->tree.enabled ? maps.qp_delta : NULL,
                                  count, dtype, ref, recon);
    nntm_cu_maps_free(&maps);
    if (rv == NNTM_OK && intra && levels_out) /* report the reconstructed levels */
        memcpy(levels_out, rindex, count * sizeof(int32_t));
    if (rindex != levels) free(rindex);
    if (!levels_out) free(levels);
    if (rv) nntm_buffer_free(cu_trace);
    return rv;
}
