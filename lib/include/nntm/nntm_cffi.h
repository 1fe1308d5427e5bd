/* Declarations of nntm.h in the form cffi's cdef() reads (no preprocessor).
 * Keep in step with nntm.h; tests/test_core.py checks the constants. */
#define NNTM_OK 0
#define NNTM_ERR_NOMEM -1
#define NNTM_ERR_ARG -2
#define NNTM_ERR_CORRUPT -3
#define NNTM_ERR_TRUNCATED -4
#define NNTM_ERR_RANGE -5
#define NNTM_ERR_NONFINITE -6
#define NNTM_DTYPE_FLOAT32 0
#define NNTM_DTYPE_FLOAT16 1
#define NNTM_DTYPE_BFLOAT16 2
#define NNTM_DTYPE_FLOAT64 3
#define NNTM_MAX_GT_FLAGS 15
#define NNTM_MAX_LEVEL 1073741823
#define NNTM_MAX_QP_DENSITY 6

typedef struct nntm_kernel_params {
    int32_t rows;
    int32_t cols;
    int32_t qp;
    int32_t qp_density;
    int32_t num_gt_flags;
} nntm_kernel_params;

typedef struct nntm_encoder_params {
    nntm_kernel_params kernel;
    int32_t rdoq;
    double lambda_scale;
} nntm_encoder_params;

typedef struct nntm_buffer {
    uint8_t *data;
    size_t size;
    size_t capacity;
} nntm_buffer;

const char *nntm_strerror(int code);
void nntm_buffer_free(nntm_buffer *buf);
int nntm_qp_to_step(int32_t qp, int32_t qp_density, int32_t *mantissa, int32_t *shift);
int nntm_encode_kernel(const nntm_encoder_params *params, const float *weights,
                       int32_t *levels, nntm_buffer *out);
int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t *levels, size_t *consumed);
int nntm_reconstruct(const nntm_kernel_params *params, const int32_t *levels, size_t count,
                     int32_t dtype, void *out);
int nntm_selftest_bins(const uint8_t *bins, const uint8_t *ctx_idx, size_t n, int32_t num_ctx,
                       double *real_bits, double *est_bits, uint8_t *decoded);
