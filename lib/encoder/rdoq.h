/* Quantization of a region of a kernel tensor in the encoder: nearest or RDOQ. */
#ifndef NNTM_ENCODER_RDOQ_H
#define NNTM_ENCODER_RDOQ_H

#include "bin_writer.h"

/* The quantizer of one QP: step and the largest level the output dtype holds. */
typedef struct nntm_quantizer {
    double step;
    double inv_step;
    int32_t max_level;
    int overflow;       /* set when a weight needed a level beyond NNTM_MAX_LEVEL */
} nntm_quantizer;

void nntm_quantizer_init(nntm_quantizer *q, int32_t qp, int32_t qp_density, double max_abs_value);

/* Quantize the region [x0,x1) x [y0,y1) of the weights into levels, in raster
 * order, advancing ctxs with the chosen levels through track (whose cost grows
 * by their rate).  RDOQ prices the candidates with trial (update off) and keeps
 * the one with least D + lambda R (lambda per cost unit).  Returns the squared
 * error of the region. */
double nntm_quantize_region(const nntm_kernel_params *k, int rdoq, double lambda,
                            nntm_quantizer *q, const float *weights, int32_t *levels,
                            nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                            nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                            int32_t y1);

#endif
