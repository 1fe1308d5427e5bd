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

/* What the decoder needs to parse and reconstruct one kernel tensor: all of it
 * comes from the tensor parameter set. */
typedef struct nntm_kernel_params {
    int32_t rows;          /* kernel tensor height, >= 0 */
    int32_t cols;          /* kernel tensor width, >= 0 */
    int32_t qp;            /* quantization parameter */
    int32_t qp_density;    /* 2^qp_density QP steps per doubling of the step, 0..6 */
    int32_t num_gt_flags;  /* greater-than flags before the remainder, 1..15 */
} nntm_kernel_params;

/* Encoder-only settings. */
typedef struct nntm_encoder_params {
    nntm_kernel_params kernel;
    int32_t rdoq;          /* 0: round to nearest; 1: rate-distortion optimised rounding */
    double lambda_scale;   /* lambda = lambda_scale * step^2 */
} nntm_encoder_params;

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
 * levels (rows*cols int32) receives the quantized levels; out receives the
 * payload (out must be zeroed or previously freed; it is overwritten).
 * Returns NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_NOMEM, NNTM_ERR_NONFINITE or NNTM_ERR_RANGE. */
int nntm_encode_kernel(const nntm_encoder_params *params, const float *weights,
                       int32_t *levels, nntm_buffer *out);

/* Parse one kernel tensor's payload (size bytes) into levels (rows*cols int32).
 * *consumed receives the number of payload bytes the arithmetic decoder read.
 * The payload must be consumed exactly: bytes left after it are NNTM_ERR_CORRUPT.
 * Returns NNTM_OK, NNTM_ERR_ARG, NNTM_ERR_CORRUPT or NNTM_ERR_TRUNCATED. */
int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t *levels, size_t *consumed);

/* Reconstruct count levels into samples of dtype (NNTM_DTYPE_*), written as
 * raw little-endian bit patterns to out (2, 4 or 8 bytes a sample).  The value
 * level * mantissa * 2^shift is converted with round-to-nearest-even; values
 * beyond the format's range become infinities of the level's sign.
 * Returns NNTM_OK or NNTM_ERR_ARG. */
int nntm_reconstruct(const nntm_kernel_params *params, const int32_t *levels, size_t count,
                     int32_t dtype, void *out);

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
