/* nntm_encode_kernel: quantize one kernel tensor and write its payload. */
#include "nntm/nntm.h"

#include <math.h>
#include <stdlib.h>

#include "../common/quant.h"
#include "bin_writer.h"
#include "rdoq.h"
#include "syntax_writer.h"

int nntm_encode_kernel(const nntm_encoder_params *params, const float *weights,
                       int32_t *levels, nntm_buffer *out) {
    if (!params || !out) return NNTM_ERR_ARG;
    int rv = nntm_check_kernel_params(&params->kernel);
    if (rv) return rv;
    if (!(params->lambda_scale >= 0.0) || params->lambda_scale > 1e6) return NNTM_ERR_ARG;
    const nntm_kernel_params *k = &params->kernel;
    size_t n = (size_t)k->rows * (size_t)k->cols;
    if (n && (!weights || !levels)) return NNTM_ERR_ARG;
    out->data = NULL;
    out->size = 0;
    out->capacity = 0;
    if (n == 0) return NNTM_OK;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(weights[i])) return NNTM_ERR_NONFINITE;
    rv = nntm_quantize_kernel(params, weights, levels);
    if (rv) return rv;
    nntm_arith_encoder enc;
    nntm_level_ctxs ctxs;
    nntm_arith_encoder_init(&enc, out);
    nntm_level_ctxs_init(&ctxs);
    nntm_write_tensor_data(&enc.w, &ctxs, k, levels);
    rv = nntm_arith_encoder_finish(&enc);
    if (rv) nntm_buffer_free(out);
    return rv;
}
