/*
 * NNTM: public C interface of the neural-network test model core.
 *
 * One call codes one kernel tensor (a 2-D array of weights) into the CABAC
 * payload of its tensor data unit, and one call parses it back.  Every
 * function returns NNTM_OK (0) or a negative NNTM_ERR_* code; nntm_strerror()
 * turns a code into text.  The library has no global state.
 *
 * The declarations that cffi reads are kept in nntm_cffi.h beside this file;
 * keep the two in step.
 */
#ifndef NNTM_NNTM_H
#define NNTM_NNTM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define NNTM_OK 0
#define NNTM_ERR_NOMEM (-1)      /* allocation failed */
#define NNTM_ERR_ARG (-2)        /* an argument is out of its documented range */
#define NNTM_ERR_CORRUPT (-3)    /* the payload violates a syntax constraint */
#define NNTM_ERR_TRUNCATED (-4)  /* the payload ends before the tensor is complete */
#define NNTM_ERR_RANGE (-5)      /* a weight is too large for the QP (level overflow) */
#define NNTM_ERR_NONFINITE (-6)  /* a weight is NaN or infinite */

/* Output sample formats of nntm_reconstruct(). */
#define NNTM_DTYPE_FLOAT32 0
#define NNTM_DTYPE_FLOAT16 1
#define NNTM_DTYPE_BFLOAT16 2
#define NNTM_DTYPE_FLOAT64 3

/* Limits. */
#define NNTM_MAX_GT_FLAGS 15
#define NNTM_MAX_LEVEL 0x3FFFFFFF /* |level| never exceeds 2^30 - 1 */
#define NNTM_MAX_QP_DENSITY 6

/* Limits. */
#define NNTM_MAX_LOG2_CTU 7      /* CTUs of up to 128 x 128 */
#define NNTM_MAX_MTT_DEPTH 4
#define NNTM_MAX_CU_QP_DELTA 64

/* Split types of the coding tree (split_mask has bit (1 << type) set for
 * each multi-type split allowed; the quad split is governed by the QT size). */
#define NNTM_SPLIT_NONE 0
#define NNTM_SPLIT_QT 1
#define NNTM_SPLIT_BT_H 2  /* horizontal binary: top and bottom halves */
#define NNTM_SPLIT_BT_V 3  /* vertical binary: left and right halves */
#define NNTM_SPLIT_TT_H 4  /* horizontal ternary: 1/4, 1/2, 1/4 of the height */
#define NNTM_SPLIT_TT_V 5  /* vertical ternary: 1/4, 1/2, 1/4 of the width */
#define NNTM_SPLIT_MASK_ALL 0x3C

/* CU coding modes. */
#define NNTM_CU_CODED 0    /* levels coded (with an optional CU QP delta) */
#define NNTM_CU_SKIP 1     /* every level zero, nothing else coded */

/* Coding tree settings of a kernel tensor (tensor parameter set). With
 * enabled == 0 the levels are coded in one raster scan (format 1.0). */
typedef struct nntm_tree_params {
    int32_t enabled;
    int32_t log2_ctu_size;       /* 1..7 */
    int32_t log2_min_qt_size;    /* log2_min_cu_size..log2_ctu_size */
    int32_t max_mtt_depth;       /* 0..4 */
    int32_t log2_min_cu_size;    /* 0..log2_ctu_size */
    int32_t split_mask;          /* subset of NNTM_SPLIT_MASK_ALL */
    int32_t skip_enabled;        /* cu_skip_flag present */
    int32_t cu_qp_delta_enabled; /* cu_qp_delta present in coded CUs */
} nntm_tree_params;

/* What the decoder needs to parse and reconstruct one kernel tensor: all of it
 * comes from the tensor parameter set. */
typedef struct nntm_kernel_params {
    int32_t rows;          /* kernel tensor height, >= 0 */
    int32_t cols;          /* kernel tensor width, >= 0 */
    int32_t qp;            /* quantization parameter */
    int32_t qp_density;    /* 2^qp_density QP steps per doubling of the step, 0..6 */
    int32_t num_gt_flags;  /* greater-than flags before the remainder, 1..15 */
    nntm_tree_params tree;
    int32_t dq_enabled;    /* dependent quantization (4-state trellis quantizers) */
} nntm_kernel_params;

/* Encoder search settings (speed presets bound these). */
typedef struct nntm_search_params {
    int32_t max_depth;       /* deepest tree level (qt + mtt) the search tries */
    int32_t skip_no_split;   /* 1: a node whose best leaf is skip is not split further */
    int32_t num_qp_deltas;   /* CU QP deltas tried for a coded CU (0 allowed: {0}) */
    int32_t qp_deltas[8];
} nntm_search_params;

/* Encoder-only settings. */
typedef struct nntm_encoder_params {
    nntm_kernel_params kernel;
    int32_t rdoq;          /* 0: round to nearest; 1: rate-distortion optimised rounding */
    double lambda_scale;   /* lambda = lambda_scale * step^2 (step of the tensor QP) */
    double max_abs_value;  /* reconstructions stay within +-max_abs_value (the dtype's range) */
    nntm_search_params search;
} nntm_encoder_params;

/* One coded CU, for pictures of the decisions: its region inside the tensor. */
typedef struct nntm_cu_record {
    int32_t x, y, w, h;
    int32_t mode;  /* NNTM_CU_* */
    int32_t qp;
    int32_t depth; /* qt_depth + mtt_depth */
} nntm_cu_record;

/* Prediction of a kernel tensor from a reference picture (format 1.2): each
 * sample is predicted by the co-located reference sample times
 * scale * 2^-NNTM_PRED_SCALE_SHIFT, the levels code the residual, and the
 * reconstruction prediction + residual is formed exactly and rounded once.
 * Skip CUs (all levels zero) reconstruct the prediction itself. */
#define NNTM_PRED_SCALE_SHIFT 12
#define NNTM_PRED_SCALE_ONE 4096
#define NNTM_MAX_PRED_SCALE 65535

typedef struct nntm_reference {
    const void *samples; /* rows*cols raw little-endian samples, in the kernel arrangement */
    int32_t dtype;       /* NNTM_DTYPE_FLOAT32, NNTM_DTYPE_FLOAT16 or NNTM_DTYPE_BFLOAT16 */
    int32_t scale;       /* -65535..65535, NNTM_PRED_SCALE_ONE is 1.0 */
} nntm_reference;

/* A growable byte buffer owned by the library; release with nntm_buffer_free. */
typedef struct nntm_buffer {
    uint8_t *data;
    size_t size;
    size_t capacity;
} nntm_buffer;

/* Text for a return code (never NULL). */
const char *nntm_strerror(int code);

/* Release the memory of a buffer filled by the library; safe on a zeroed one. */
void nntm_buffer_free(nntm_buffer *buf);

/* Step size of a QP as mantissa * 2^shift (exact).
 * Returns NNTM_ERR_ARG for a qp_density outside 0..6. */
int nntm_qp_to_step(int32_t qp, int32_t qp_density, int32_t *mantissa, int32_t *shift);

/* Encode the rows x cols float weights (row-major) of one kernel tensor.
 * ref (or NULL: no prediction) is the reference picture the residual is
 * taken from; its samples must be finite (else NNTM_ERR_NONFINITE).
 * importance (rows*cols, >= 0, or NULL for all ones) weights the squared
 * error of each weight in every rate-distortion decision.
 * recon (rows*cols samples of dtype) receives the reconstruction the decoder
 * will produce; levels (rows*cols int32) the quantized levels, or NULL.
 * out receives the payload; cu_trace (or NULL) one nntm_cu_record per CU.
 * Both buffers must be zeroed or freed before; they are overwritten.
 * Returns NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_NOMEM, NNTM_ERR_NONFINITE or NNTM_ERR_RANGE. */
int nntm_encode_kernel(const nntm_encoder_params *params, const float *weights,
                       const float *importance, int32_t dtype, const nntm_reference *ref,
                       void *recon, int32_t *levels, nntm_buffer *out, nntm_buffer *cu_trace);

/* Parse one kernel tensor's payload (size bytes, consumed exactly) and
 * reconstruct it into recon (rows*cols samples of dtype), predicted from ref
 * when ref is not NULL (NNTM_ERR_NONFINITE if a reference sample is not finite); levels (or NULL)
 * receives the levels, cu_trace (or NULL) one nntm_cu_record per CU.
 * Returns NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_NOMEM, NNTM_ERR_CORRUPT or NNTM_ERR_TRUNCATED. */
int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t dtype, const nntm_reference *ref, void *recon, int32_t *levels,
                       nntm_buffer *cu_trace);

/* Reconstruct count levels, all at the tensor QP, into samples of dtype
 * (NNTM_DTYPE_*), written as raw little-endian bit patterns to out (2, 4 or 8
 * bytes a sample).  The value level * mantissa * 2^shift, plus the prediction
 * from ref when ref is not NULL, is converted with round-to-nearest-even;
 * values beyond the format's range become infinities.
 * Returns NNTM_OK, NNTM_ERR_ARG or NNTM_ERR_NONFINITE (a reference sample). */
int nntm_reconstruct(const nntm_kernel_params *params, const int32_t *levels, size_t count,
                     int32_t dtype, const nntm_reference *ref, void *out);

/* Bit-estimation self-check used by the tests: codes n bins with the given
 * context indices (0..num_ctx-1) through the real coder and the estimator.
 * *real_bits receives 8 * payload bytes, *est_bits the estimate (in bits).
 * When decoded is not NULL, the payload is decoded again into it (n bytes). */
int nntm_selftest_bins(const uint8_t *bins, const uint8_t *ctx_idx, size_t n, int32_t num_ctx,
                       double *real_bits, double *est_bits, uint8_t *decoded);

#ifdef __cplusplus
}
#endif

#endif /* NNTM_NNTM_H */
