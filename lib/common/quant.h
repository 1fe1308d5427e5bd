/* Quantizer shared by both sides: QP to step size, and the kernel parameter check. */
#ifndef NNTM_COMMON_QUANT_H
#define NNTM_COMMON_QUANT_H

#include "nntm/nntm.h"

/* NNTM_OK when every field of p is within its documented range. */
int nntm_check_kernel_params(const nntm_kernel_params *p);

/* Convert v * 2^e to the bit pattern of an IEEE binary format with mbits
 * mantissa and ebits exponent bits, round-to-nearest-even, overflow to inf. */
uint64_t nntm_int_to_float_bits(int64_t v, int32_t e, int mbits, int ebits);

/* Reconstruct count reconstruction indices (the levels without DQ; with DQ
 * the indices in half steps, nntm_dq_rindex) whose QPs are params->qp +
 * qp_delta[i] (qp_delta NULL: all at params->qp) into samples of dtype.
 * NNTM_OK or NNTM_ERR_ARG. */
int nntm_reconstruct_map(const nntm_kernel_params *params, const int32_t *levels,
                         const int16_t *qp_delta, size_t count, int32_t dtype, void *out);

/* Step size of a QP in double (exact: mantissa * 2^shift). */
double nntm_step_double(int32_t qp, int32_t qp_density);

#endif
