/* Declarations of nntm.h in the form cffi's cdef() reads (no preprocessor).
 * Keep in step with nntm.h; tests/test_core.py checks the constants. */
#define NNTM_OK 0
#define NNTM_ERR_NOMEM -1
#define NNTM_ERR_ARG -2
#define NNTM_ERR_CORRUPT -3
#define NNTM_ERR_TRUNCATED -4
#define NNTM_ERR_RANGE -5
#define NNTM_ERR_NONFINITE -6
#define NNTM_ERR_UNSUPPORTED -7
#define NNTM_ERR_HASH -8
#define NNTM_ERR_BUDGET -9
#define NNTM_ERR_REFERENCE -10
#define NNTM_ERR_IO -11
#define NNTM_DTYPE_FLOAT32 0
#define NNTM_DTYPE_FLOAT16 1
#define NNTM_DTYPE_BFLOAT16 2
#define NNTM_DTYPE_FLOAT64 3
#define NNTM_MAX_GT_FLAGS 15
#define NNTM_MAX_PROB_WINDOW 12
#define NNTM_SUFFIX_CTX_BINS 2
#define NNTM_ROW_PRED_CTX 2
#define NNTM_MAX_LEVEL 1073741823
#define NNTM_MAX_QP_DENSITY 6

#define NNTM_MAX_LOG2_CTU 7
#define NNTM_MAX_MTT_DEPTH 4
#define NNTM_MAX_CU_QP_DELTA 64
#define NNTM_SPLIT_NONE 0
#define NNTM_SPLIT_QT 1
#define NNTM_SPLIT_BT_H 2
#define NNTM_SPLIT_BT_V 3
#define NNTM_SPLIT_TT_H 4
#define NNTM_SPLIT_TT_V 5
#define NNTM_SPLIT_MASK_ALL 60
#define NNTM_CU_CODED 0
#define NNTM_CU_SKIP 1
#define NNTM_INTRA_NONE 0
#define NNTM_INTRA_ROW 1
#define NNTM_INTRA_COL 2
#define NNTM_INTRA_COPY 3
#define NNTM_MAX_BV 32767
#define NNTM_MAX_INTRA_COPY_RANGE 64

typedef struct nntm_tree_params {
    int32_t enabled;
    int32_t log2_ctu_size;
    int32_t log2_min_qt_size;
    int32_t max_mtt_depth;
    int32_t log2_min_cu_size;
    int32_t split_mask;
    int32_t skip_enabled;
    int32_t cu_qp_delta_enabled;
    int32_t intra_pred_enabled;
} nntm_tree_params;

typedef struct nntm_kernel_params {
    int32_t rows;
    int32_t cols;
    int32_t qp;
    int32_t qp_density;
    int32_t num_gt_flags;
    nntm_tree_params tree;
    int32_t dq_enabled;
    int32_t prob_window;
    int32_t suffix_ctx;
    int32_t row_pred;
    int32_t substream_rows;
} nntm_kernel_params;

typedef struct nntm_search_params {
    int32_t max_depth;
    int32_t skip_no_split;
    int32_t num_qp_deltas;
    int32_t qp_deltas[8];
    int32_t intra_copy_range;
} nntm_search_params;

typedef struct nntm_encoder_params {
    nntm_kernel_params kernel;
    int32_t rdoq;
    double lambda_scale;
    double max_abs_value;
    nntm_search_params search;
    const int32_t *row_hint;
    int32_t threads;
} nntm_encoder_params;

typedef struct nntm_cu_record {
    int32_t x, y, w, h;
    int32_t mode;
    int32_t qp;
    int32_t depth;
    int32_t intra;
    int32_t bv_x, bv_y;
} nntm_cu_record;

#define NNTM_PRED_SCALE_SHIFT 12
#define NNTM_PRED_SCALE_ONE 4096
#define NNTM_MAX_PRED_SCALE 65535

typedef struct nntm_reference {
    const void *samples;
    int32_t dtype;
    int32_t scale;
} nntm_reference;

typedef struct nntm_buffer {
    uint8_t *data;
    size_t size;
    size_t capacity;
} nntm_buffer;

const char *nntm_strerror(int code);
void nntm_buffer_free(nntm_buffer *buf);
int nntm_qp_to_step(int32_t qp, int32_t qp_density, int32_t *mantissa, int32_t *shift);
int nntm_encode_kernel(const nntm_encoder_params *params, const float *weights,
                       const float *importance, int32_t dtype, const nntm_reference *ref,
                       void *recon, int32_t *levels, nntm_buffer *out, nntm_buffer *cu_trace);
int nntm_rowref_select(const float *weights, int32_t rows, int32_t cols, const float *gram,
                       const float *norm, int32_t start, int32_t stop, int32_t lo, int32_t window,
                       int32_t num_cand, int32_t *hint);
size_t nntm_decode_kernel_scratch(const nntm_kernel_params *params);
int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t dtype, const nntm_reference *ref, void *recon, int32_t *levels,
                       nntm_buffer *cu_trace);
#define NNTM_MAX_THREADS 256
int nntm_decode_kernel_threads(const nntm_kernel_params *params, const uint8_t *data,
                               size_t size, int32_t dtype, const nntm_reference *ref,
                               void *recon, int32_t *levels, nntm_buffer *cu_trace,
                               int32_t threads);
int nntm_reconstruct(const nntm_kernel_params *params, const int32_t *levels, size_t count,
                     int32_t dtype, const nntm_reference *ref, void *out);
int nntm_intra_predict_levels(int32_t log2_ctu_size, int32_t rows, int32_t cols,
                              const int32_t *rec, int32_t x0, int32_t y0, int32_t x1, int32_t y1,
                              int32_t mode, int32_t bv_x, int32_t bv_y, int32_t *pred);
int nntm_selftest_bins(const uint8_t *bins, const uint8_t *ctx_idx, size_t n, int32_t num_ctx,
                       int32_t window, double *real_bits, double *est_bits, uint8_t *decoded);

/* ==== Clustering-based quantization (format 1.2) ==== */
#define NNTM_CLUSTER_MAX_SUBSPACES 64
#define NNTM_CLUSTER_MAX_CODEBOOK 256
#define NNTM_CLUSTER_MAX_SHIFT_GAP 24
#define NNTM_OUTLIER_POS_FLAGS 0
#define NNTM_OUTLIER_POS_RUNS 1
#define NNTM_OUTLIER_SPREAD 0
#define NNTM_OUTLIER_FRACTION 1

typedef struct nntm_cluster_params {
    int32_t num_subspaces;
    int32_t qp_density;
    int32_t codebook_qp;
    int32_t outlier_qp;
    int32_t residual_qp;
    int32_t num_gt_flags;
    int32_t outliers_enabled;
    int32_t outlier_pos_mode;
    int32_t residual_enabled;
    int32_t num_points[64];
    int32_t dims[64];
    int32_t codebook_size[64];
    int32_t row_points[64];
} nntm_cluster_params;

typedef struct nntm_cluster_encoder_params {
    nntm_cluster_params cluster;
    int32_t qp;
    double lambda_scale;
    int32_t outlier_mode;
    double outlier_threshold;
    int32_t max_iterations;
    double max_abs_value;
} nntm_cluster_encoder_params;

int nntm_encode_cluster(const nntm_cluster_encoder_params *params, const float *points,
                        const float *importance, int32_t dtype, int32_t *codebook_size_out,
                        int32_t *codebooks, int32_t *labels, void *recon, nntm_buffer *out);
int nntm_decode_cluster(const nntm_cluster_params *params, const int32_t *codebooks,
                        const uint8_t *data, size_t size, int32_t dtype, void *recon,
                        int32_t *labels);
