/* Quantizer shared by both sides: QP to step size, and the kernel parameter check. */
#ifndef NNTM_COMMON_QUANT_H
#define NNTM_COMMON_QUANT_H

#include "nntm/nntm.h"

/* NNTM_OK when every field of p is within its documented range. */
int nntm_check_kernel_params(const nntm_kernel_params *p);

/* Convert v * 2^e to the bit pattern of an IEEE binary format with mbits
 * mantissa and ebits exponent bits, round-to-nearest-even, overflow to inf. */
uint64_t nntm_int_to_float_bits(int64_t v, int32_t e, int mbits, int ebits);

#endif
