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

#include "nntm_export.h"

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
/* Whole-stream decoding (nntm_stream.h). */
#define NNTM_ERR_UNSUPPORTED (-7) /* a newer format, unknown unit type, tool flag or profile */
#define NNTM_ERR_HASH (-8)        /* decoded, but an MD5 differs from the stream's */
#define NNTM_ERR_BUDGET (-9)      /* the stream needs more memory than allowed */
#define NNTM_ERR_REFERENCE (-10)  /* a predicted tensor's reference is missing or wrong */
#define NNTM_ERR_IO (-11)         /* a file cannot be read */

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

/* Intra prediction of a coded CU's levels (format 1.3, tree.intra_pred_enabled):
 * the CU's levels are predicted from levels of the same kernel tensor that
 * precede the CU in decoding order, and its transform unit codes the residual
 * levels.  See docs/bitstream.md, "Intra prediction". */
#define NNTM_INTRA_NONE 0
#define NNTM_INTRA_ROW 1   /* each row: rounded mean of the nearest levels to its left */
#define NNTM_INTRA_COL 2   /* each column: rounded mean of the nearest levels above it */
#define NNTM_INTRA_COPY 3  /* the block displaced by the block vector (bv_x, bv_y) */
#define NNTM_MAX_BV 32767  /* |bv_x|, |bv_y| */
#define NNTM_MAX_INTRA_COPY_RANGE 64

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
    int32_t intra_pred_enabled;  /* intra_pred() present in coded CUs; needs dq_enabled == 0 */
} nntm_tree_params;

/* What the decoder needs to parse and reconstruct one kernel tensor: all of it
 * comes from the tensor parameter set. */
#define NNTM_MAX_PROB_WINDOW 12 /* largest prob_window [1.4] */
#define NNTM_SUFFIX_CTX_BINS 2  /* abs_remainder suffix bins context coded with suffix_ctx [1.5] */
#define NNTM_ROW_PRED_CTX 2     /* contexts of row_pred_flag [1.5] */

typedef struct nntm_kernel_params {
    int32_t rows;          /* kernel tensor height, >= 0 */
    int32_t cols;          /* kernel tensor width, >= 0 */
    int32_t qp;            /* quantization parameter */
    int32_t qp_density;    /* 2^qp_density QP steps per doubling of the step, 0..6 */
    int32_t num_gt_flags;  /* greater-than flags before the remainder, 1..15 */
    nntm_tree_params tree;
    int32_t dq_enabled;    /* dependent quantization: 0 off, 1 four states, 2 eight [1.4],
                              3 thirty-two [1.5] */
    int32_t prob_window;   /* 0: dual-rate context estimator; 1..12: counting estimator [1.4] */
    int32_t suffix_ctx;    /* 1: abs_remainder's first two suffix bins context coded [1.5] */
    int32_t row_pred;      /* 1: each row after the first has a row_pred_flag: predicted from
                              the row above (raster tensors only, not with the tree) [1.5] */
    int32_t substream_rows; /* [1.8] entry points: 0 one substream; else the rows of each
                               substream (the last may have fewer), each parsed on its own,
                               their sizes at the head of the payload (raster tensors only) */
} nntm_kernel_params;

/* Substreams of a kernel tensor [1.8]: 1 without entry points (or no element), else
 * ceil(rows / substream_rows). */
static inline int64_t nntm_num_substreams(const nntm_kernel_params *p) {
    if (p->substream_rows <= 0 || p->rows <= 0 || p->cols <= 0) return 1;
    return ((int64_t)p->rows + p->substream_rows - 1) / p->substream_rows;
}

/* The rows [*y0, *y1) of substream s (0 <= s < nntm_num_substreams(p)) [1.8]: whole
 * blocks of substream_rows, the last one to the tensor's last row. */
static inline void nntm_substream_range(const nntm_kernel_params *p, int64_t s, int32_t *y0,
                                        int32_t *y1) {
    *y0 = (int32_t)(s * p->substream_rows);
    *y1 = s + 1 == nntm_num_substreams(p) ? p->rows : (int32_t)((s + 1) * p->substream_rows);
}

/* Encoder search settings (speed presets bound these). */
typedef struct nntm_search_params {
    int32_t max_depth;       /* deepest tree level (qt + mtt) the search tries */
    int32_t skip_no_split;   /* 1: a node whose best leaf is skip is not split further */
    int32_t num_qp_deltas;   /* CU QP deltas tried for a coded CU (0 allowed: {0}) */
    int32_t qp_deltas[8];
    int32_t intra_copy_range; /* block vectors tried: |bv_x|, |bv_y| <= this (0..64) */
} nntm_search_params;

/* Encoder-only settings. */
typedef struct nntm_encoder_params {
    nntm_kernel_params kernel;
    int32_t rdoq;          /* 0: round to nearest; 1: rate-distortion optimised rounding */
    double lambda_scale;   /* lambda = lambda_scale * step^2 (step of the tensor QP) */
    double max_abs_value;  /* reconstructions stay within +-max_abs_value (the dtype's range) */
    nntm_search_params search;
    const int32_t *row_hint; /* [1.5] row prediction: per kernel row a candidate reference
                                row (0..r - 2, tried besides the row above) or -1; NULL: none */
    int32_t threads;       /* [1.8] the substreams of a raster tensor without row prediction
                              are quantized and written on up to this many threads
                              (0 or 1: the caller's only; at most NNTM_MAX_THREADS); the
                              bytes do not depend on it */
} nntm_encoder_params;

/* One coded CU, for pictures of the decisions: its region inside the tensor. */
typedef struct nntm_cu_record {
    int32_t x, y, w, h;
    int32_t mode;  /* NNTM_CU_* */
    int32_t qp;
    int32_t depth; /* qt_depth + mtt_depth */
    int32_t intra; /* NNTM_INTRA_* */
    int32_t bv_x, bv_y;
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
NNTM_API const char *nntm_strerror(int code);

/* Release the memory of a buffer filled by the library; safe on a zeroed one. */
NNTM_API void nntm_buffer_free(nntm_buffer *buf);

/* Step size of a QP as mantissa * 2^shift (exact).
 * Returns NNTM_ERR_ARG for a qp_density outside 0..6. */
NNTM_API int nntm_qp_to_step(int32_t qp, int32_t qp_density, int32_t *mantissa, int32_t *shift);

/* Encode the rows x cols float weights (row-major) of one kernel tensor.
 * ref (or NULL: no prediction) is the reference picture the residual is
 * taken from; its samples must be finite (else NNTM_ERR_NONFINITE).
 * importance (rows*cols, >= 0, or NULL for all ones) weights the squared
 * error of each weight in every rate-distortion decision.
 * recon (rows*cols samples of dtype) receives the reconstruction the decoder
 * will produce; levels (rows*cols int32) the quantized levels, or NULL
 * (with intra prediction: prediction + coded residual, the levels reconstructed).
 * out receives the payload; cu_trace (or NULL) one nntm_cu_record per CU.
 * Both buffers must be zeroed or freed before; they are overwritten.
 * Returns NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_NOMEM, NNTM_ERR_NONFINITE or NNTM_ERR_RANGE. */
NNTM_API int nntm_encode_kernel(const nntm_encoder_params *params, const float *weights,
                       const float *importance, int32_t dtype, const nntm_reference *ref,
                       void *recon, int32_t *levels, nntm_buffer *out, nntm_buffer *cu_trace);

/* Row-reference hints [1.5] for rows start..stop-1 (2 <= start < stop <= rows) of a rows x
 * cols float kernel, from a projection of its rows: gram ((stop - start) x (stop - 2 - lo),
 * 0 <= lo <= start - 2) holds the projected inner products of row r with rows lo..stop-3 and
 * norm (rows) the projected squared norms; of the rows j in [max(lo, r - window), r - 1) the
 * num_cand closest in the projection (norm[j] - 2 gram, ties to the lower j) are measured
 * exactly (double, ties to the lower j) and hint[r] is the closest if nearer than the zero
 * row, else -1.
 * Returns NNTM_OK, NNTM_ERR_ARG or NNTM_ERR_NOMEM. */
NNTM_API int nntm_rowref_select(const float *weights, int32_t rows, int32_t cols, const float *gram,
                       const float *norm, int32_t start, int32_t stop, int32_t lo, int32_t window,
                       int32_t num_cand, int32_t *hint);

/* Bytes of scratch memory nntm_decode_kernel allocates itself for params (beyond the
 * caller's recon and levels buffers): a caller's memory budget adds it to those buffers
 * before it calls (0 for NULL or negative dimensions). */
NNTM_API size_t nntm_decode_kernel_scratch(const nntm_kernel_params *params);

/* Parse one kernel tensor's payload (size bytes, consumed exactly) and
 * reconstruct it into recon (rows*cols samples of dtype), predicted from ref
 * when ref is not NULL (NNTM_ERR_NONFINITE if a reference sample is not finite); levels (or NULL)
 * receives the levels, cu_trace (or NULL) one nntm_cu_record per CU.
 * Returns NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_NOMEM, NNTM_ERR_CORRUPT or NNTM_ERR_TRUNCATED. */
NNTM_API int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t dtype, const nntm_reference *ref, void *recon, int32_t *levels,
                       nntm_buffer *cu_trace);

/* nntm_decode_kernel on up to threads threads (1..NNTM_MAX_THREADS; 0: 1): the substreams
 * of a tensor with entry points [1.8] are parsed at once, one a thread at a time.  The
 * outputs are those of nntm_decode_kernel whatever the thread count (and so is the return
 * code: the failure of the first substream in order that fails). */
#define NNTM_MAX_THREADS 256
NNTM_API int nntm_decode_kernel_threads(const nntm_kernel_params *params, const uint8_t *data,
                               size_t size, int32_t dtype, const nntm_reference *ref,
                               void *recon, int32_t *levels, nntm_buffer *cu_trace,
                               int32_t threads);

/* Reconstruct count levels, all at the tensor QP, into samples of dtype
 * (NNTM_DTYPE_*), written as raw little-endian bit patterns to out (2, 4 or 8
 * bytes a sample).  The value level * mantissa * 2^shift, plus the prediction
 * from ref when ref is not NULL, is converted with round-to-nearest-even;
 * values beyond the format's range become infinities.
 * Returns NNTM_OK, NNTM_ERR_ARG or NNTM_ERR_NONFINITE (a reference sample). */
NNTM_API int nntm_reconstruct(const nntm_kernel_params *params, const int32_t *levels, size_t count,
                     int32_t dtype, const nntm_reference *ref, void *out);

/* The predicted levels of the CU [x0,x1) x [y0,y1) of a rows x cols kernel
 * tensor (CTUs of 2^log2_ctu_size) from the reconstructed levels rec: the
 * decoder's predictor, for tools and tests (pred: (x1-x0)*(y1-y0) int32,
 * row-major).  NNTM_ERR_ARG when the mode may not be used by that CU. */
NNTM_API int nntm_intra_predict_levels(int32_t log2_ctu_size, int32_t rows, int32_t cols,
                              const int32_t *rec, int32_t x0, int32_t y0, int32_t x1, int32_t y1,
                              int32_t mode, int32_t bv_x, int32_t bv_y, int32_t *pred);

/* Bit-estimation self-check used by the tests: codes n bins with the given
 * context indices (0..num_ctx-1) through the real coder and the estimator.
 * *real_bits receives 8 * payload bytes, *est_bits the estimate (in bits).
 * window is the contexts' prob_window (0: dual-rate estimator, 1..12: counting).
 * When decoded is not NULL, the payload is decoded again into it (n bytes). */
NNTM_API int nntm_selftest_bins(const uint8_t *bins, const uint8_t *ctx_idx, size_t n, int32_t num_ctx,
                       int32_t window, double *real_bits, double *est_bits, uint8_t *decoded);

/* ==== Clustering-based quantization (tensor coding mode CLUSTERED, format 1.2) ====
 * A tensor is rearranged (by the caller) into points: num_subspaces groups,
 * subspace s holding num_points[s] points of dims[s] values, row-major, the
 * subspaces one after another.  Each subspace has a codebook of
 * codebook_size[s] entries (dims[s] integers each, at the codebook step).
 * An inlier point reconstructs as codebook entry (+ residual levels at the
 * residual step), an outlier as levels at the outlier step; the steps are
 * those of codebook_qp, residual_qp and outlier_qp.  See docs/bitstream.md,
 * "Clustered tensors". */
#define NNTM_CLUSTER_MAX_SUBSPACES 64
#define NNTM_CLUSTER_MAX_CODEBOOK 256
#define NNTM_CLUSTER_MAX_SHIFT_GAP 24   /* |shift(codebook) - shift(residual)| */
#define NNTM_OUTLIER_POS_FLAGS 0        /* outlier_flag per point */
#define NNTM_OUTLIER_POS_RUNS 1         /* inlier run lengths between outliers */
#define NNTM_OUTLIER_SPREAD 0           /* encoder: distance > threshold * cluster spread */
#define NNTM_OUTLIER_FRACTION 1         /* encoder: the threshold fraction of farthest points */

typedef struct nntm_cluster_params {
    int32_t num_subspaces;       /* 1..NNTM_CLUSTER_MAX_SUBSPACES */
    int32_t qp_density;          /* 0..6 */
    int32_t codebook_qp;         /* step of the codebook integers */
    int32_t outlier_qp;          /* step of the outlier levels */
    int32_t residual_qp;         /* step of the residual levels */
    int32_t num_gt_flags;        /* of outlier and residual levels, 1..15 */
    int32_t outliers_enabled;    /* 0/1 */
    int32_t outlier_pos_mode;    /* NNTM_OUTLIER_POS_* */
    int32_t residual_enabled;    /* 0/1 */
    int32_t num_points[NNTM_CLUSTER_MAX_SUBSPACES];
    int32_t dims[NNTM_CLUSTER_MAX_SUBSPACES];          /* >= 1 */
    int32_t codebook_size[NNTM_CLUSTER_MAX_SUBSPACES]; /* 1..NNTM_CLUSTER_MAX_CODEBOOK */
    int32_t row_points[NNTM_CLUSTER_MAX_SUBSPACES];    /* points per row (above neighbour), >= 1 */
} nntm_cluster_params;

typedef struct nntm_cluster_encoder_params {
    nntm_cluster_params cluster; /* codebook_size: the largest size to use */
    int32_t qp;                  /* lambda = lambda_scale * step(qp)^2 */
    double lambda_scale;
    int32_t outlier_mode;        /* NNTM_OUTLIER_SPREAD or NNTM_OUTLIER_FRACTION */
    double outlier_threshold;    /* spread multiple (> 0) or fraction (0..0.5) */
    int32_t max_iterations;      /* Lloyd iterations, 1..1000 */
    double max_abs_value;        /* reconstructions stay within +-max_abs_value */
} nntm_cluster_encoder_params;

/* Cluster and code the points (see above; count = sum num_points[s]*dims[s]).
 * importance (count, >= 0, or NULL) weights each value's squared error.
 * codebook_size_out (num_subspaces) receives the sizes used, codebooks the
 * entries (room for sum codebook_size[s]*dims[s] int32), labels (or NULL, one
 * per point) the codebook index or -1 for an outlier, recon (count samples of
 * dtype) the decoder's reconstruction, out the payload (zeroed or freed before).
 * NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_NOMEM, NNTM_ERR_NONFINITE or NNTM_ERR_RANGE. */
NNTM_API int nntm_encode_cluster(const nntm_cluster_encoder_params *params, const float *points,
                        const float *importance, int32_t dtype, int32_t *codebook_size_out,
                        int32_t *codebooks, int32_t *labels, void *recon, nntm_buffer *out);

/* Parse a clustered tensor's payload (size bytes, consumed exactly) with the
 * codebooks of its tensor parameter set (sum codebook_size[s]*dims[s] int32,
 * |entry| <= NNTM_MAX_LEVEL) and reconstruct the points into recon (count
 * samples of dtype); labels (or NULL) as for the encoder.
 * NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_NOMEM, NNTM_ERR_CORRUPT or NNTM_ERR_TRUNCATED. */
NNTM_API int nntm_decode_cluster(const nntm_cluster_params *params, const int32_t *codebooks,
                        const uint8_t *data, size_t size, int32_t dtype, void *recon,
                        int32_t *labels);

#ifdef __cplusplus
}
#endif

#endif /* NNTM_NNTM_H */
