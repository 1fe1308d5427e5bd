/* Declarations of nntm_stream.h in the form cffi's cdef() reads (no preprocessor).
 * Keep in step with nntm_stream.h; tests/test_cstream.py checks the constants.
 * The error codes and nntm_strerror are in nntm_cffi.h. */
#define NNTM_STREAM_MAX_NDIM 8
#define NNTM_CODING_QUANTIZED 0
#define NNTM_CODING_LOSSLESS 1
#define NNTM_CODING_CLUSTERED 2
#define NNTM_PRED_NONE 0
#define NNTM_PRED_REF_MODEL 1
#define NNTM_PRED_EARLIER_TENSOR 2

int32_t nntm_tensor_dtype_size(int32_t dtype);
const char *nntm_tensor_dtype_name(int32_t dtype);

typedef struct nntm_tensor_info {
    const char *name;
    size_t name_size;
    int32_t tensor_id;
    int32_t dtype;
    int32_t ndim;
    int64_t shape[8];
    uint64_t num_elements;
    uint64_t byte_size;
    int32_t coding_mode;
    int32_t pred_mode;
    int32_t params_ok;
    uint8_t md5[16];
} nntm_tensor_info;

typedef struct nntm_ref_tensor {
    const void *data;
    uint64_t byte_size;
    int32_t dtype;
    int32_t ndim;
    int64_t shape[8];
} nntm_ref_tensor;

typedef int (*nntm_ref_lookup)(void *cookie, const char *name, size_t name_size,
                               nntm_ref_tensor *out);

typedef struct nntm_thread_budget nntm_thread_budget;
int nntm_thread_budget_create(nntm_thread_budget **out, int32_t threads);
void nntm_thread_budget_destroy(nntm_thread_budget **b);
int32_t nntm_thread_budget_peak(nntm_thread_budget *b);
int nntm_decode_kernel_shared(const nntm_kernel_params *params, const uint8_t *data,
                              size_t size, int32_t dtype, const nntm_reference *ref,
                              void *recon, int32_t *levels, nntm_buffer *cu_trace,
                              int32_t threads, nntm_thread_budget *b);
int nntm_encode_kernel_shared(const nntm_encoder_params *params, const float *weights,
                              const float *importance, int32_t dtype,
                              const nntm_reference *ref, void *recon, int32_t *levels_out,
                              nntm_buffer *out, nntm_buffer *cu_trace, nntm_thread_budget *b);

typedef struct nntm_stream_settings {
    uint64_t max_memory;
    uint64_t max_expansion;
    uint64_t max_elements;
    nntm_ref_lookup ref_lookup;
    void *ref_cookie;
    int32_t threads;
    nntm_thread_budget *budget;
    int32_t skip_stream_md5;
} nntm_stream_settings;

void nntm_stream_default_settings(nntm_stream_settings *s);

typedef struct nntm_stream nntm_stream;

int nntm_stream_open_memory(nntm_stream **out, const uint8_t *data, size_t size,
                            const nntm_stream_settings *settings);
int nntm_stream_open_file(nntm_stream **out, const char *path,
                          const nntm_stream_settings *settings);
void nntm_stream_close(nntm_stream **s);
const char *nntm_stream_error(const nntm_stream *s);
int32_t nntm_stream_num_tensors(const nntm_stream *s);
int32_t nntm_stream_version(const nntm_stream *s);
uint32_t nntm_stream_tool_flags(const nntm_stream *s);
int32_t nntm_stream_source_format(const nntm_stream *s);
int nntm_stream_check(const nntm_stream *s, uint8_t digest[16]);
int nntm_stream_container(const nntm_stream *s, int32_t *format, const uint8_t **data,
                          size_t *size);
int nntm_stream_tensor_info(const nntm_stream *s, int32_t index, nntm_tensor_info *info);
int nntm_stream_decode_tensor(nntm_stream *s, int32_t index, void *out, size_t out_size,
                              uint8_t md5[16]);

/* The reference-model lookup, implemented in Python (nntm.cstream, ffi.def_extern). */
extern "Python" int nntm_py_ref_lookup(void *cookie, const char *name, size_t name_size,
                                       nntm_ref_tensor *out);

/* Defined in the extension's own source (python/nntm/_build_ffi.py), not in the library:
 * 1 when the extension was compiled with zlib (a container unit [1.7] inflates in C). */
int nntm_py_have_zlib(void);
