/* The input format shared by the C fuzzer (fuzz_kernel.c) and the sanitizer check
 * program (kernel_check.c): one kernel tensor case =
 *
 *   int32 rows, int32 cols, int32 qp        little-endian
 *   uint8 qp_density, uint8 num_gt_flags    as in nntm_kernel_params
 *   uint8 dtype                             NNTM_DTYPE_* of the reconstruction
 *   uint8 ext                               extension flags, 0 for format 1.0
 *   [ext & 1: int32 x 8, the coding tree parameters (nntm_tree_params order: enabled,
 *    log2_ctu_size, log2_min_qt_size, max_mtt_depth, log2_min_cu_size, split_mask,
 *    skip_enabled, cu_qp_delta_enabled), for libraries that have them]
 *   [ext & 2: int32 dq_enabled (dependent quantization: 1 four states, 2 eight [1.4],
 *    3 thirty-two [1.5]),
 *    for libraries that have it:
 *    compile with -DKERNEL_INPUT_HAS_DQ (fuzz/build.sh and scripts/run_sanitizers.sh
 *    set it when nntm_kernel_params has dq_enabled)]
 *   [ext & 4: int32 ref_dtype, int32 scale, then rows*cols reference samples of
 *    ref_dtype (raw little-endian, kernel order): the reference picture of a
 *    predicted tensor (format 1.2), for libraries that have nntm_reference]
 *   [ext & 8: int32 intra_pred_enabled (format 1.3, intra prediction of CU levels),
 *    for libraries that have NNTM_INTRA_COPY]
 *   [ext & 16: int32 prob_window (format 1.4, the counting probability estimator),
 *    for libraries that have NNTM_MAX_PROB_WINDOW]
 *   [ext & 32: int32 suffix_ctx (format 1.5, context-coded abs_remainder suffix bins),
 *    for libraries that have NNTM_SUFFIX_CTX_BINS]
 *   [ext & 64: int32 row_pred (format 1.5, rows predicted from the row above), for
 *    libraries that have NNTM_ROW_PRED_CTX]
 *   [ext & 128: int32 substream_rows (format 1.8, entry points: rows per substream), for
 *    libraries that have NNTM_MAX_THREADS]
 *   payload                                 the tensor data unit payload (the rest)
 *
 * python/nntm/conformance.py (KERNEL_CASE_HEADER, kernel_cases) writes it. */
#ifndef NNTM_FUZZ_KERNEL_INPUT_H
#define NNTM_FUZZ_KERNEL_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nntm/nntm.h"

#define KERNEL_INPUT_HEADER 16
#define KERNEL_INPUT_EXT_TREE 1
#define KERNEL_INPUT_TREE_BYTES 32
#define KERNEL_INPUT_EXT_DQ 2
#define KERNEL_INPUT_EXT_PRED 4
#define KERNEL_INPUT_EXT_INTRA 8
#define KERNEL_INPUT_EXT_WINDOW 16
#define KERNEL_INPUT_EXT_SUFFIX 32
#define KERNEL_INPUT_EXT_ROW_PRED 64
#define KERNEL_INPUT_EXT_SUBSTREAMS 128

typedef struct kernel_input {
    nntm_kernel_params params;
    int32_t dtype;
    int tree_ext;          /* the case carries coding tree parameters */
    int dq_ext;            /* the case carries dq_enabled */
    int pred_ext;          /* the case carries a reference picture */
    int intra_ext;         /* the case carries intra_pred_enabled */
    int window_ext;        /* the case carries prob_window */
    int suffix_ext;        /* the case carries suffix_ctx */
    int row_pred_ext;      /* the case carries row_pred */
    int substreams_ext;    /* the case carries substream_rows */
#if defined(NNTM_PRED_SCALE_SHIFT)
    nntm_reference ref;
#endif
    const uint8_t *payload;
    size_t payload_size;
} kernel_input;

static inline int32_t kernel_input_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

/* The one-int32 extensions (dq_enabled, intra_pred_enabled, prob_window): read the
 * value at *header into *out and step over it; -1 when the case is too short. */
static inline int kernel_input_take_i32(const uint8_t *data, size_t size, size_t *header,
                                        int32_t *out) {
    if (size < *header + 4) return -1;
    *out = kernel_input_i32(data + *header);
    *header += 4;
    return 0;
}

/* Returns 0, or -1 when size is smaller than the header or the case needs parameters
 * that this library does not have. */
static inline int kernel_input_parse(const uint8_t *data, size_t size, kernel_input *in) {
    if (size < KERNEL_INPUT_HEADER) return -1;
    memset(in, 0, sizeof *in); /* later parameter fields (e.g. coding tree): 0, off */
    in->params.rows = kernel_input_i32(data);
    in->params.cols = kernel_input_i32(data + 4);
    in->params.qp = kernel_input_i32(data + 8);
    in->params.qp_density = data[12];
    in->params.num_gt_flags = data[13];
    in->dtype = data[14];
    size_t header = KERNEL_INPUT_HEADER;
    if (data[15] & KERNEL_INPUT_EXT_TREE) {
#if defined(NNTM_SPLIT_QT)
        if (size < header + KERNEL_INPUT_TREE_BYTES) return -1;
        const uint8_t *t = data + header;
        nntm_tree_params *tree = &in->params.tree;
        tree->enabled = kernel_input_i32(t);
        tree->log2_ctu_size = kernel_input_i32(t + 4);
        tree->log2_min_qt_size = kernel_input_i32(t + 8);
        tree->max_mtt_depth = kernel_input_i32(t + 12);
        tree->log2_min_cu_size = kernel_input_i32(t + 16);
        tree->split_mask = kernel_input_i32(t + 20);
        tree->skip_enabled = kernel_input_i32(t + 24);
        tree->cu_qp_delta_enabled = kernel_input_i32(t + 28);
        header += KERNEL_INPUT_TREE_BYTES;
        in->tree_ext = 1;
#else
        return -1;
#endif
    }
    if (data[15] & KERNEL_INPUT_EXT_DQ) {
#if defined(KERNEL_INPUT_HAS_DQ)
        if (kernel_input_take_i32(data, size, &header, &in->params.dq_enabled)) return -1;
        in->dq_ext = 1;
#else
        return -1;
#endif
    }
    if (data[15] & KERNEL_INPUT_EXT_PRED) {
#if defined(NNTM_PRED_SCALE_SHIFT)
        if (size < header + 8) return -1;
        in->ref.dtype = kernel_input_i32(data + header);
        in->ref.scale = kernel_input_i32(data + header + 4);
        header += 8;
        size_t item = in->ref.dtype == NNTM_DTYPE_FLOAT32 ? 4 : 2;
        if (in->params.rows < 0 || in->params.cols < 0) return -1;
        size_t count = (size_t)in->params.rows * (size_t)in->params.cols;
        if (count > (size - header) / item) return -1;
        in->ref.samples = data + header;
        header += count * item;
        in->pred_ext = 1;
#else
        return -1;
#endif
    }
    if (data[15] & KERNEL_INPUT_EXT_INTRA) {
#if defined(NNTM_INTRA_COPY)
        if (kernel_input_take_i32(data, size, &header, &in->params.tree.intra_pred_enabled))
            return -1;
        in->intra_ext = 1;
#else
        return -1;
#endif
    }
    if (data[15] & KERNEL_INPUT_EXT_WINDOW) {
#if defined(NNTM_MAX_PROB_WINDOW)
        if (kernel_input_take_i32(data, size, &header, &in->params.prob_window)) return -1;
        in->window_ext = 1;
#else
        return -1;
#endif
    }
    if (data[15] & KERNEL_INPUT_EXT_SUFFIX) {
#if defined(NNTM_SUFFIX_CTX_BINS)
        if (kernel_input_take_i32(data, size, &header, &in->params.suffix_ctx)) return -1;
        in->suffix_ext = 1;
#else
        return -1;
#endif
    }
    if (data[15] & KERNEL_INPUT_EXT_ROW_PRED) {
#if defined(NNTM_ROW_PRED_CTX)
        if (kernel_input_take_i32(data, size, &header, &in->params.row_pred)) return -1;
        in->row_pred_ext = 1;
#else
        return -1;
#endif
    }
    if (data[15] & KERNEL_INPUT_EXT_SUBSTREAMS) {
#if defined(NNTM_MAX_THREADS)
        if (kernel_input_take_i32(data, size, &header, &in->params.substream_rows)) return -1;
        in->substreams_ext = 1;
#else
        return -1;
#endif
    }
    in->payload = data + header;
    in->payload_size = size - header;
    return 0;
}

/* Bytes per reconstructed sample of an NNTM_DTYPE_*, 0 for an unknown one. */
static inline size_t kernel_input_sample_bytes(int32_t dtype) {
    switch (dtype) {
    case NNTM_DTYPE_FLOAT32: return 4;
    case NNTM_DTYPE_FLOAT16: return 2;
    case NNTM_DTYPE_BFLOAT16: return 2;
    case NNTM_DTYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Decode the payload of a case and reconstruct it into recon (count samples of
 * in->dtype); levels receives the levels.  Returns an NNTM_* code; a payload that
 * is not consumed exactly is NNTM_ERR_CORRUPT, as in the Python decoder. */
static inline int kernel_input_decode(const kernel_input *in, int32_t *levels, void *recon,
                                      size_t *consumed) {
    const uint8_t *data = in->payload_size ? in->payload : NULL;
#if defined(NNTM_PRED_SCALE_SHIFT) /* format 1.2 API: with a reference picture, or none */
    int rv = nntm_decode_kernel(&in->params, data, in->payload_size, in->dtype,
                                in->pred_ext ? &in->ref : NULL, recon, levels, NULL);
    *consumed = rv == NNTM_OK ? in->payload_size : 0;
    return rv;
#elif defined(NNTM_SPLIT_QT) /* the API with the coding tree: decode and reconstruct at once */
    int rv = nntm_decode_kernel(&in->params, data, in->payload_size, in->dtype, recon, levels,
                                NULL);
    *consumed = rv == NNTM_OK ? in->payload_size : 0;
    return rv;
#else /* format 1.0 API: parse, then reconstruct */
    *consumed = 0;
    int rv = nntm_decode_kernel(&in->params, data, in->payload_size, levels, consumed);
    if (rv != NNTM_OK) return rv;
    if (*consumed != in->payload_size) return NNTM_ERR_CORRUPT;
    size_t count = (size_t)in->params.rows * (size_t)in->params.cols;
    return nntm_reconstruct(&in->params, levels, count, in->dtype, recon);
#endif
}

#endif
