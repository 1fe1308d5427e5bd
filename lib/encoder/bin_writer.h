/* The bin-encoder interface and its two implementations: the arithmetic
 * coder that writes bytes, and the bit estimator that RDO uses.  Both are
 * driven by the same syntax-writing code. */
#ifndef NNTM_ENCODER_BIN_WRITER_H
#define NNTM_ENCODER_BIN_WRITER_H

#include <stdint.h>

#include "../common/contexts.h"

typedef struct nntm_bin_writer nntm_bin_writer;
struct nntm_bin_writer {
    /* Code one bin with an adaptive context (and update the context). */
    void (*encode_bin)(nntm_bin_writer *w, nntm_ctx *ctx, int bin);
    /* Code the nbits (0..32) low bits of value, most significant first, at p = 1/2. */
    void (*encode_bypass)(nntm_bin_writer *w, uint32_t value, int nbits);
};

/* ---- Arithmetic encoder ---- */
typedef struct nntm_arith_encoder {
    nntm_bin_writer w;  /* first member: a pointer to it is a writer */
    uint64_t low;
    uint32_t range;
    uint8_t cache;
    uint64_t pending;   /* bytes waiting for a possible carry (cache + 0xFF run) */
    int first;          /* the first byte of the carry chain is always 0: not written */
    nntm_buffer *out;
    int error;          /* NNTM_ERR_NOMEM once a write failed */
} nntm_arith_encoder;

void nntm_arith_encoder_init(nntm_arith_encoder *e, nntm_buffer *out);
/* Flush the final bytes; returns NNTM_OK or NNTM_ERR_NOMEM. */
int nntm_arith_encoder_finish(nntm_arith_encoder *e);

/* ---- Bit estimator ---- */
#define NNTM_COST_SHIFT 16     /* costs are in 1/65536 bit */
#define NNTM_COST_TABLE_BITS 12

typedef struct nntm_bit_estimator {
    nntm_bin_writer w;
    uint64_t cost;      /* accumulated, in 1/65536 bit */
    int update;         /* 0: measure only (contexts left untouched) */
    uint32_t cost1[1 << NNTM_COST_TABLE_BITS]; /* cost of a 1 bin, by p1 >> 3 */
} nntm_bit_estimator;

void nntm_bit_estimator_init(nntm_bit_estimator *e, int update);

/* log2(x) in Q16 for x >= 1, with integer arithmetic only. */
uint32_t nntm_log2_q16(uint32_t x);

#endif
