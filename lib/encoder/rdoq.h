/* Quantization of a region of a kernel tensor in the encoder: nearest, RDOQ,
 * or the dependent-quantization trellis. */
#ifndef NNTM_ENCODER_RDOQ_H
#define NNTM_ENCODER_RDOQ_H

#include "bin_writer.h"

/* The quantizer of one QP: step and the largest level the output dtype holds. */
typedef struct nntm_quantizer {
    double step;        /* the step of a level (Q0 reconstructs level * step) */
    double inv_step;
    int32_t max_level;
    int overflow;       /* set when a weight needed a level beyond NNTM_MAX_LEVEL */
    int nomem;          /* set when the trellis could not allocate */
} nntm_quantizer;

void nntm_quantizer_init(nntm_quantizer *q, int32_t qp, int32_t qp_density, double max_abs_value);

/* What RDOQ needs of each weight for one quantizer, computed once for a
 * rectangle (a CTU) that the tree search quantizes many times: the floor level
 * and the weighted squared errors of the candidates lo, lo + 1 and 0, the very
 * values the per-weight code computes.  With DQ, one such triple for each of
 * the two quantizers Q0 and Q1. */
typedef struct nntm_quant_table {
    int32_t x0, y0, x1, y1;
    int dq;
    int32_t *lo;              /* per weight: lo (DQ: lo of Q0, lo of Q1) */
    double *dist;             /* per weight: lo, lo + 1, 0 (DQ: for Q0, then for Q1) */
    size_t cap;
} nntm_quant_table;

/* What a region is quantized against. */
typedef struct nntm_region_input {
    const nntm_kernel_params *k;
    int rdoq;
    double lambda;            /* per estimator cost unit */
    const float *weights;
    const float *importance;  /* NULL: all ones */
} nntm_region_input;

/* Fill t for the rectangle [x0,x1) x [y0,y1) (RDOQ, with or without DQ); sets
 * q->overflow exactly as quantizing those weights does.  NNTM_OK or
 * NNTM_ERR_NOMEM. */
int nntm_quant_table_fill(nntm_quant_table *t, const nntm_region_input *in, nntm_quantizer *q,
                          int32_t x0, int32_t y0, int32_t x1, int32_t y1);
void nntm_quant_table_free(nntm_quant_table *t);

/* Quantize the region [x0,x1) x [y0,y1) of the weights into levels, in raster
 * order, advancing ctxs (and the DQ state) with the chosen levels through
 * track, whose cost grows by their rate.  Candidates are priced with trial
 * (update off) and the least D + lambda R wins; with DQ a Viterbi trellis over
 * the four states decides each row.  Returns the (importance-weighted) squared
 * error of the region. */
double nntm_quantize_region(const nntm_region_input *in, nntm_quantizer *q, int32_t *levels,
                            nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                            nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                            int32_t y1);

/* nntm_quantize_region() with the table of quantizer q (or NULL): when the
 * table covers the region and RDOQ (or DQ) is on, the per-weight values are
 * read from it; the levels, contexts, rate and distortion are the same. */
double nntm_quantize_region_table(const nntm_region_input *in, nntm_quantizer *q,
                                  const nntm_quant_table *t, int32_t *levels,
                                  nntm_level_ctxs *ctxs, nntm_bit_estimator *trial,
                                  nntm_bit_estimator *track, int32_t x0, int32_t y0, int32_t x1,
                                  int32_t y1);

#endif
