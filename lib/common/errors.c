/* Text of the return codes. */
#include "nntm/nntm.h"

#include <stdlib.h>

const char *nntm_strerror(int code) {
    switch (code) {
    case NNTM_OK: return "success";
    case NNTM_ERR_NOMEM: return "out of memory";
    case NNTM_ERR_ARG: return "invalid argument";
    case NNTM_ERR_CORRUPT: return "corrupt payload (syntax constraint violated)";
    case NNTM_ERR_TRUNCATED: return "truncated payload";
    case NNTM_ERR_RANGE: return "weight too large for the QP (level out of range)";
    case NNTM_ERR_NONFINITE: return "weight is NaN or infinite";
    case NNTM_ERR_UNSUPPORTED: return "unsupported stream (newer format, unknown unit or tool)";
    case NNTM_ERR_HASH: return "MD5 mismatch";
    case NNTM_ERR_BUDGET: return "the stream needs more memory than allowed";
    case NNTM_ERR_REFERENCE: return "reference tensor missing or wrong";
    case NNTM_ERR_IO: return "cannot read the file";
    default: return "unknown error";
    }
}

void nntm_buffer_free(nntm_buffer *buf) {
    if (!buf) return;
    free(buf->data);
    buf->data = NULL;
    buf->size = 0;
    buf->capacity = 0;
}
