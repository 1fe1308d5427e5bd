/* Arithmetic encoder (range coder with carry propagation) and bit estimator. */
#include "bin_writer.h"

#include <stdlib.h>

#define TOP (1u << 24)

static int put_byte(nntm_arith_encoder *e, uint8_t b) {
    nntm_buffer *o = e->out;
    if (o->size == o->capacity) {
        size_t cap = o->capacity ? o->capacity * 2 : 4096;
        uint8_t *d = realloc(o->data, cap);
        if (!d) {
            e->error = NNTM_ERR_NOMEM;
            return -1;
        }
        o->data = d;
        o->capacity = cap;
    }
    o->data[o->size++] = b;
    return 0;
}

/* Move the top byte of low out, resolving carries into the pending run. */
static void shift_low(nntm_arith_encoder *e) {
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(e->low >> 32);
        uint8_t b = e->cache;
        do {
            if (e->first)
                e->first = 0;
            else
                put_byte(e, (uint8_t)(b + carry));
            b = 0xFF;
        } while (--e->pending != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static void arith_encode_bin(nntm_bin_writer *w, nntm_ctx *ctx, int bin) {
    nntm_arith_encoder *e = (nntm_arith_encoder *)w;
    uint32_t bound = (e->range >> NNTM_PROB_BITS) * nntm_ctx_p1(ctx);
    if (bin) {
        e->range = bound;
    } else {
        e->low += bound;
        e->range -= bound;
    }
    nntm_ctx_update(ctx, bin);
    while (e->range < TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

static void arith_encode_bypass(nntm_bin_writer *w, uint32_t value, int nbits) {
    nntm_arith_encoder *e = (nntm_arith_encoder *)w;
    for (int i = nbits - 1; i >= 0; i--) {
        e->range >>= 1;
        if ((value >> i) & 1u) e->low += e->range;
        while (e->range < TOP) {
            e->range <<= 8;
            shift_low(e);
        }
    }
}

void nntm_arith_encoder_init(nntm_arith_encoder *e, nntm_buffer *out) {
    e->w.encode_bin = arith_encode_bin;
    e->w.encode_bypass = arith_encode_bypass;
    e->low = 0;
    e->range = 0xFFFFFFFFu;
    e->cache = 0;
    e->pending = 1;
    e->first = 1;
    e->out = out;
    e->error = NNTM_OK;
}

int nntm_arith_encoder_finish(nntm_arith_encoder *e) {
    /* Four bytes of low leave the coder; the fifth call empties the carry chain. */
    for (int i = 0; i < 5; i++) shift_low(e);
    return e->error;
}

/* ---- Bit estimator ---- */

uint32_t nntm_log2_q16(uint32_t x) {
    int n = 0;
    while ((x >> n) > 1) n++;
    /* y = x / 2^n in Q31, in [1, 2) */
    uint64_t y = n >= 31 ? (uint64_t)x >> (n - 31) : (uint64_t)x << (31 - n);
    uint32_t frac = 0;
    for (int i = 0; i < 16; i++) {
        y = (y * y) >> 31;
        frac <<= 1;
        if (y >= ((uint64_t)2 << 31)) {
            y >>= 1;
            frac |= 1;
        }
    }
    return ((uint32_t)n << 16) | frac;
}

static void est_encode_bin(nntm_bin_writer *w, nntm_ctx *ctx, int bin) {
    nntm_bit_estimator *e = (nntm_bit_estimator *)w;
    uint32_t p1 = nntm_ctx_p1(ctx);
    uint32_t idx = p1 >> (NNTM_PROB_BITS - NNTM_COST_TABLE_BITS);
    if (!bin) idx = (1u << NNTM_COST_TABLE_BITS) - 1 - idx;
    e->cost += e->cost1[idx];
    if (e->update) nntm_ctx_update(ctx, bin);
}

static void est_encode_bypass(nntm_bin_writer *w, uint32_t value, int nbits) {
    (void)value;
    nntm_bit_estimator *e = (nntm_bit_estimator *)w;
    e->cost += (uint64_t)nbits << NNTM_COST_SHIFT;
}

void nntm_bit_estimator_init(nntm_bit_estimator *e, int update) {
    e->w.encode_bin = est_encode_bin;
    e->w.encode_bypass = est_encode_bypass;
    e->cost = 0;
    e->update = update;
    const int drop = NNTM_PROB_BITS - NNTM_COST_TABLE_BITS;
    for (uint32_t i = 0; i < (1u << NNTM_COST_TABLE_BITS); i++) {
        /* centre of the bucket: p = (i * 8 + 4) / 2^15 */
        uint32_t pnum = (i << drop) + (1u << (drop - 1));
        e->cost1[i] = ((uint32_t)NNTM_PROB_BITS << 16) - nntm_log2_q16(pnum);
    }
}
