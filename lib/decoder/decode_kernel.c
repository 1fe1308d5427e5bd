/* nntm_decode_kernel: parse one tensor data unit payload. */
#include "nntm/nntm.h"

#include "../common/quant.h"
#include "syntax_reader.h"

int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t *levels, size_t *consumed) {
    int rv = nntm_check_kernel_params(params);
    if (rv) return rv;
    size_t count = (size_t)params->rows * (size_t)params->cols;
    if ((count && !levels) || (size && !data)) return NNTM_ERR_ARG;
    if (consumed) *consumed = 0;
    if (count == 0) return size == 0 ? NNTM_OK : NNTM_ERR_CORRUPT;
    nntm_bin_reader r;
    nntm_level_ctxs ctxs;
    nntm_bin_reader_init(&r, data, size);
    nntm_level_ctxs_init(&ctxs);
    rv = nntm_read_tensor_data(&r, &ctxs, params, levels);
    if (consumed) *consumed = r.pos < size ? r.pos : size;
    if (rv == NNTM_OK && r.pos != size) rv = NNTM_ERR_CORRUPT; /* bytes after the payload */
    return rv;
}
