/*
 * NNTM: whole-stream decoding (docs/bitstream.md, format 1.0 to 1.8).
 *
 *   nntm_stream *s;
 *   int rv = nntm_stream_open_file(&s, "model.bit", &settings);   (or _open_memory)
 *   if (rv < 0) { fprintf(stderr, "%s\n", nntm_stream_error(s)); nntm_stream_close(&s); }
 *   for (i = 0; i < nntm_stream_num_tensors(s); i++) {
 *       nntm_tensor_info info;  nntm_stream_tensor_info(s, i, &info);
 *       buf = malloc(info.byte_size);
 *       rv = nntm_stream_decode_tensor(s, i, buf, info.byte_size, md5);
 *   }
 *   nntm_stream_close(&s);
 *
 * Opening parses every unit and parameter set, checks the unit order, the
 * parameter set MD5s and the stream MD5 of a 1.6 stream with TOOL_INTEGRITY
 * and the memory budget, before anything is allocated for a tensor.  Decoding
 * a tensor fills the caller's buffer with its little-endian bytes in C order
 * (the bytes tensor_md5 hashes) and checks them against the hash unit.
 * Tensors are numbered in the order of their hash units (the model's order).
 *
 * Every function returns NNTM_OK (0) or a negative NNTM_ERR_* code
 * (nntm_strerror); nntm_stream_error() adds what and where.  No globals.
 */
#ifndef NNTM_NNTM_STREAM_H
#define NNTM_NNTM_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "nntm.h"
#include "nntm_export.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef NNTM_OK
#define NNTM_OK 0
#define NNTM_ERR_NOMEM (-1)
#define NNTM_ERR_ARG (-2)
#define NNTM_ERR_CORRUPT (-3)
#define NNTM_ERR_TRUNCATED (-4)
#define NNTM_ERR_RANGE (-5)
#define NNTM_ERR_NONFINITE (-6)
#endif
#ifndef NNTM_ERR_UNSUPPORTED
#define NNTM_ERR_UNSUPPORTED (-7) /* a newer format, unknown unit type, tool flag or profile */
#define NNTM_ERR_HASH (-8)        /* decoded, but an MD5 differs from the stream's */
#define NNTM_ERR_BUDGET (-9)      /* the stream needs more memory than allowed */
#define NNTM_ERR_REFERENCE (-10)  /* a predicted tensor's reference is missing or wrong */
#define NNTM_ERR_IO (-11)         /* a file cannot be read */
#endif

NNTM_API const char *nntm_strerror(int code);

/* tensor_dtype codes of the tensor parameter set. */
enum nntm_tensor_dtype {
    NNTM_TDTYPE_FLOAT32 = 0, NNTM_TDTYPE_FLOAT16, NNTM_TDTYPE_BFLOAT16, NNTM_TDTYPE_FLOAT64,
    NNTM_TDTYPE_INT8, NNTM_TDTYPE_INT16, NNTM_TDTYPE_INT32, NNTM_TDTYPE_INT64,
    NNTM_TDTYPE_UINT8, NNTM_TDTYPE_UINT16, NNTM_TDTYPE_UINT32, NNTM_TDTYPE_UINT64,
    NNTM_TDTYPE_BOOL, NNTM_TDTYPE_COUNT
};

/* Bytes of one element of a tensor_dtype (0 for an unknown code). */
NNTM_API int32_t nntm_tensor_dtype_size(int32_t dtype);
/* The dtype's NumPy name ("float32", ... "bool"; "?" for an unknown code). */
NNTM_API const char *nntm_tensor_dtype_name(int32_t dtype);

#define NNTM_STREAM_MAX_NDIM 8
#define NNTM_CODING_QUANTIZED 0
#define NNTM_CODING_LOSSLESS 1
#define NNTM_CODING_CLUSTERED 2
#define NNTM_PRED_NONE 0
#define NNTM_PRED_REF_MODEL 1
#define NNTM_PRED_EARLIER_TENSOR 2

typedef struct nntm_tensor_info {
    const char *name;        /* UTF-8, NUL-terminated, owned by the stream */
    size_t name_size;        /* bytes, without the NUL */
    int32_t tensor_id;
    int32_t dtype;           /* enum nntm_tensor_dtype */
    int32_t ndim;
    int64_t shape[NNTM_STREAM_MAX_NDIM];
    uint64_t num_elements;
    uint64_t byte_size;      /* num_elements * element size */
    int32_t coding_mode;     /* NNTM_CODING_* */
    int32_t pred_mode;       /* NNTM_PRED_* */
    int32_t params_ok;       /* tps_md5 [1.6]: 1 equal, 0 differs, -1 not carried */
    uint8_t md5[16];         /* tensor_md5 of the hash unit */
} nntm_tensor_info;

/* A reference model's tensor, given by the caller for pred_mode REF_MODEL. */
typedef struct nntm_ref_tensor {
    const void *data;        /* little-endian bytes, C order */
    uint64_t byte_size;
    int32_t dtype;           /* enum nntm_tensor_dtype */
    int32_t ndim;
    int64_t shape[NNTM_STREAM_MAX_NDIM];
} nntm_ref_tensor;

/* Fill *out with the reference model's tensor called name (name_size bytes);
 * return 0, or nonzero when the reference model has no such tensor. */
typedef int (*nntm_ref_lookup)(void *cookie, const char *name, size_t name_size,
                               nntm_ref_tensor *out);

/* A budget of threads shared by the streams that decode at once: nntm-dec and DecoderApp
 * decode N tensors at once, a stream each, on N threads, and a tensor with entry points
 * [1.8] gets its substream threads from the slots the other tensors leave free (taken before
 * each substream, given back when none is left), so that at most threads (1..256) threads
 * decode at once under it, whatever the number of streams.  nntm_stream_decode_tensor waits
 * for a free slot.  The output does not depend on it. */
typedef struct nntm_thread_budget nntm_thread_budget;

NNTM_API int nntm_thread_budget_create(nntm_thread_budget **out, int32_t threads);
/* Release a budget no stream uses any more (safe on NULL and *b NULL); sets *b to NULL. */
NNTM_API void nntm_thread_budget_destroy(nntm_thread_budget **b);
/* The most threads that decoded at once under b (counted as they start and stop, apart
 * from the slots). */
NNTM_API int32_t nntm_thread_budget_peak(nntm_thread_budget *b);
/* nntm_decode_kernel_threads under budget b (NULL: nntm_decode_kernel_threads): the caller's
 * thread waits for a slot of b, decodes in it, and takes more slots for the substreams of a
 * tensor with entry points [1.8] only while they are free; so callers that decode tensors on
 * N threads of their own under one budget of N run at most N threads at once (the Python
 * stream reader's workers).  The outputs are those of nntm_decode_kernel. */
NNTM_API int nntm_decode_kernel_shared(const nntm_kernel_params *params, const uint8_t *data,
                                       size_t size, int32_t dtype, const nntm_reference *ref,
                                       void *recon, int32_t *levels, nntm_buffer *cu_trace,
                                       int32_t threads, nntm_thread_budget *b);
/* nntm_encode_kernel under budget b (NULL: nntm_encode_kernel): as for decoding, the
 * caller's thread waits for a slot of b and codes in it, and the substreams of a raster
 * tensor without row prediction [1.8] take up to params->threads threads, more slots only
 * while they are free (the Python encoder's tensor workers share one budget).  The outputs
 * are those of nntm_encode_kernel, whatever the threads. */
NNTM_API int nntm_encode_kernel_shared(const nntm_encoder_params *params, const float *weights,
                                       const float *importance, int32_t dtype,
                                       const nntm_reference *ref, void *recon,
                                       int32_t *levels_out, nntm_buffer *out,
                                       nntm_buffer *cu_trace, nntm_thread_budget *b);

typedef struct nntm_stream_settings {
    uint64_t max_memory;     /* bytes the decode may need (the nntm.memory estimate); 0: none */
    uint64_t max_expansion;  /* decoded bytes a stream byte, not counting REF_MODEL tensors;
                                0: none (DecoderApp's default is 2^20) */
    uint64_t max_elements;   /* elements of one tensor; 0: none (DecoderApp: 2^28) */
    nntm_ref_lookup ref_lookup; /* NULL: REF_MODEL tensors fail with NNTM_ERR_REFERENCE */
    void *ref_cookie;
    int32_t threads;         /* [1.8] threads that parse the substreams of one tensor with
                                entry points (1..256; 0: 1); the output is the same for any */
    nntm_thread_budget *budget; /* NULL: threads substream threads a tensor; else at most
                                   threads, from the budget's free slots (kept alive by the
                                   caller while the stream decodes) */
    int32_t skip_stream_md5; /* 1: the stream MD5 [1.6] is not computed (nntm_stream_check
                                returns -1): a second stream object over a stream another
                                one checks (a worker's), so that it is hashed once; 0 */
} nntm_stream_settings;

/* DecoderApp's defaults (max_memory: half of physical memory is the caller's to find). */
NNTM_API void nntm_stream_default_settings(nntm_stream_settings *s);

typedef struct nntm_stream nntm_stream;

/* Open a stream held in memory (size bytes; the caller keeps data alive and
 * unchanged until nntm_stream_close).  *out is set, also on failure (except
 * NNTM_ERR_NOMEM/ARG with *out NULL) so that nntm_stream_error() can say why;
 * close it in every case.  settings NULL: nntm_stream_default_settings. */
NNTM_API int nntm_stream_open_memory(nntm_stream **out, const uint8_t *data, size_t size,
                            const nntm_stream_settings *settings);
/* The same for a file (mapped with mmap where it can be, else read). */
NNTM_API int nntm_stream_open_file(nntm_stream **out, const char *path,
                          const nntm_stream_settings *settings);
/* Release a stream (safe on NULL and on *s NULL); sets *s to NULL. */
NNTM_API void nntm_stream_close(nntm_stream **s);

/* Text of the last failure of this stream, with unit and tensor ("" if none). */
NNTM_API const char *nntm_stream_error(const nntm_stream *s);

NNTM_API int32_t nntm_stream_num_tensors(const nntm_stream *s);
/* The format version (major * 256 + minor), tool_flags and source_format of the MPS. */
NNTM_API int32_t nntm_stream_version(const nntm_stream *s);
NNTM_API uint32_t nntm_stream_tool_flags(const nntm_stream *s);
NNTM_API int32_t nntm_stream_source_format(const nntm_stream *s);
/* stream_md5 [1.6]: 1 equal, 0 differs, -1 not carried; digest (or NULL) gets the
 * MD5 computed over the bytes before end_of_stream (zeros when not carried). */
NNTM_API int nntm_stream_check(const nntm_stream *s, uint8_t digest[16]);

/* [1.7] The container unit (TOOL_CONTAINER): 1 and *format (3: ONNX), *data (owned by the
 * stream, inflated and checked when the stream was opened) and *size, or 0 (and 0, NULL, 0)
 * when the stream has none.  Tensors decode without it; it is what rebuilds the source
 * file (for ONNX: onnx_container(), docs/bitstream.md clause 3.8). */
NNTM_API int nntm_stream_container(const nntm_stream *s, int32_t *format, const uint8_t **data,
                          size_t *size);

/* Information on tensor index (0 .. num_tensors - 1). */
NNTM_API int nntm_stream_tensor_info(const nntm_stream *s, int32_t index, nntm_tensor_info *info);

/* Decode tensor index into out (out_size >= byte_size).  md5 (or NULL) gets
 * the MD5 of the decoded bytes.  Returns NNTM_OK, NNTM_ERR_HASH when they differ
 * from the hash unit (out is filled all the same), or another negative code
 * (out unspecified).  A tensor predicted from an earlier one decodes that one
 * too (kept inside the stream for as long as later tensors need it). */
NNTM_API int nntm_stream_decode_tensor(nntm_stream *s, int32_t index, void *out, size_t out_size,
                              uint8_t md5[16]);

#ifdef __cplusplus
}
#endif

#endif /* NNTM_NNTM_STREAM_H */
