/* Quantization of a kernel tensor in the encoder: nearest or RDOQ. */
#ifndef NNTM_ENCODER_RDOQ_H
#define NNTM_ENCODER_RDOQ_H

#include "nntm/nntm.h"

/* Fill levels from weights; step = mantissa * 2^shift. Returns NNTM_OK,
 * NNTM_ERR_NOMEM or NNTM_ERR_RANGE. */
int nntm_quantize_kernel(const nntm_encoder_params *p, const float *weights, int32_t *levels);

#endif
