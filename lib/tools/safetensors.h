/* safetensors for nntm-dec: the header DecoderApp writes (python/nntm/modelio.py
 * _write_safetensors, byte for byte) and a reader of a reference model. */
#ifndef NNTM_TOOLS_SAFETENSORS_H
#define NNTM_TOOLS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "nntm/nntm_stream.h"

/* safetensors dtype code of a tensor_dtype ("F32" ...), NULL for an unknown one. */
const char *nntm_st_dtype_code(int32_t dtype);

/* The 8-byte length and the JSON header of the stream's tensors, in tensor order,
 * as json.dumps(separators=(",", ":"), ensure_ascii=False) writes it, padded with
 * spaces to a multiple of 8.  *out is malloc'ed; NNTM_OK or NNTM_ERR_NOMEM. */
int nntm_st_header(const nntm_stream *s, uint8_t **out, size_t *size);

typedef struct nntm_st_entry {
    char *name;
    size_t name_size;
    nntm_ref_tensor tensor;
} nntm_st_entry;

typedef struct nntm_st_model {
    void *map;
    size_t map_size;
    nntm_st_entry *entries;
    size_t count;
} nntm_st_model;

/* Read (map) a safetensors file; 0, or -1 with err filled. */
int nntm_st_open(nntm_st_model *m, const char *path, char *err, size_t err_size);
void nntm_st_close(nntm_st_model *m);
/* An nntm_ref_lookup over an nntm_st_model (cookie). */
int nntm_st_lookup(void *cookie, const char *name, size_t name_size, nntm_ref_tensor *out);

#endif
