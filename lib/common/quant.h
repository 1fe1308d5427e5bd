/* Quantizer shared by both sides: QP to step size, and the kernel parameter check. */
#ifndef NNTM_COMMON_QUANT_H
#define NNTM_COMMON_QUANT_H

#include "nntm/nntm.h"

/* NNTM_OK when every field of p is within its documented range. */
int nntm_check_kernel_params(const nntm_kernel_params *p);

/* Convert v * 2^e to the bit pattern of an IEEE binary format with mbits
 * mantissa and ebits exponent bits, round-to-nearest-even, overflow to inf. */
uint64_t nntm_int_to_float_bits(int64_t v, int32_t e, int mbits, int ebits);

/* Exact v_a * 2^ea + v_b * 2^eb (|v_a|, |v_b| < 2^42) converted like
 * nntm_int_to_float_bits: one round-to-nearest-even of the exact sum. */
uint64_t nntm_sum_to_float_bits(int64_t a, int32_t ea, int64_t b, int32_t eb, int mbits,
                                int ebits);

/* Sample i of a reference picture as m * 2^e (|m| < 2^24); 0 if it is not finite
 * or dtype is not float32/float16/bfloat16, else 1. */
int nntm_ref_sample(int32_t dtype, const void *samples, size_t i, int64_t *m, int32_t *e);

/* NNTM_OK if a reference picture of count samples is usable, else NNTM_ERR_ARG. */
int nntm_check_reference(const nntm_reference *ref, size_t count);

/* Reconstruct count reconstruction indices (the levels without DQ; with DQ
 * the indices in half steps, nntm_dq_rindex) whose QPs are params->qp +
 * qp_delta[i] (qp_delta NULL: all at params->qp) into samples of dtype,
 * added exactly to the prediction from ref (NULL: none) before the rounding.
 * NNTM_OK, NNTM_ERR_ARG or NNTM_ERR_NONFINITE (a reference sample). */
int nntm_reconstruct_map(const nntm_kernel_params *params, const int32_t *levels,
                         const int16_t *qp_delta, size_t count, int32_t dtype,
                         const nntm_reference *ref, void *out);

/* Step size of a QP in double (exact: mantissa * 2^shift). */
double nntm_step_double(int32_t qp, int32_t qp_density);

#endif
