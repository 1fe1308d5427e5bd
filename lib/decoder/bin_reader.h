/* Arithmetic decoder, the mirror of the encoder in lib/encoder/bin_writer.c. */
#ifndef NNTM_DECODER_BIN_READER_H
#define NNTM_DECODER_BIN_READER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/contexts.h"

typedef struct nntm_bin_reader {
    const uint8_t *data;
    size_t size;
    size_t pos;        /* next byte to read; may run past size (zeros are read) */
    uint32_t range;
    uint32_t code;     /* a valid stream keeps code < range */
    int corrupt;       /* set once code >= range: no encoder makes that state */
} nntm_bin_reader;

void nntm_bin_reader_init(nntm_bin_reader *r, const uint8_t *data, size_t size);
int nntm_decode_bin(nntm_bin_reader *r, nntm_ctx *ctx);
uint32_t nntm_decode_bypass(nntm_bin_reader *r, int nbits);

/* The same as nntm_decode_bin / nntm_decode_bypass, inlined into the level syntax (the
 * hot loop): a caller that keeps a local copy of the reader lets the compiler hold
 * range, code and pos in registers. */
#define NNTM_BIN_TOP (1u << 24)

static inline uint32_t nntm_bin_next_byte(nntm_bin_reader *r) {
    uint32_t b = r->pos < r->size ? r->data[r->pos] : 0;
    r->pos++;
    return b;
}

/* windowed: 1 when ctx uses the counting estimator (window > 0), 0 when not, -1 to look;
 * a constant there lets the compiler drop the test of every bin. */
static inline int nntm_decode_bin_mode(nntm_bin_reader *r, nntm_ctx *ctx, int windowed) {
    if (windowed < 0) windowed = ctx->window != 0;
    uint32_t range = r->range, code = r->code, p1;
    if (windowed) {
        p1 = ctx->p >> (NNTM_WIN_BITS - NNTM_PROB_BITS);
        p1 = p1 < NNTM_WIN_PMIN ? NNTM_WIN_PMIN : p1;
        p1 = p1 > NNTM_PROB_ONE - NNTM_WIN_PMIN ? NNTM_PROB_ONE - NNTM_WIN_PMIN : p1;
    } else {
        p1 = ((uint32_t)ctx->p_fast + (uint32_t)ctx->p_slow) >> 1;
    }
    uint32_t bound = (range >> NNTM_PROB_BITS) * p1;
    int bin = code < bound;
    /* selects rather than branches: the bin is data, a branch on it mispredicts */
    uint32_t lps_code = code - bound, lps_range = range - bound;
    code = bin ? code : lps_code;
    range = bin ? bound : lps_range;
    if (windowed) {
        uint32_t p = ctx->p, sh = ctx->shift;
        uint32_t up = p + (((1u << NNTM_WIN_BITS) - p) >> sh), down = p - (p >> sh);
        ctx->p = bin ? up : down;
        if (sh < ctx->window) {
            ctx->count++;
            if ((uint32_t)ctx->count + 2 >= (1u << (sh + 1))) ctx->shift++;
        }
    } else {
        nntm_ctx_update(ctx, bin);
    }
    while (range < NNTM_BIN_TOP) {
        range <<= 8;
        code = (code << 8) | nntm_bin_next_byte(r);
    }
    r->range = range;
    r->code = code;
    return bin;
}

static inline int nntm_decode_bin_inline(nntm_bin_reader *r, nntm_ctx *ctx) {
    return nntm_decode_bin_mode(r, ctx, -1);
}

static inline uint32_t nntm_decode_bypass_inline(nntm_bin_reader *r, int nbits) {
    uint32_t v = 0, range = r->range, code = r->code;
    for (int i = 0; i < nbits; i++) {
        range >>= 1;
        uint32_t bit = code >= range;
        if (bit) code -= range;
        if (code >= range) r->corrupt = 1;
        v = (v << 1) | bit;
        while (range < NNTM_BIN_TOP) {
            range <<= 8;
            code = (code << 8) | nntm_bin_next_byte(r);
        }
    }
    r->range = range;
    r->code = code;
    return v;
}
/* Bytes read past the end of the payload (a valid stream reads none). */
size_t nntm_bin_reader_overread(const nntm_bin_reader *r);

#endif
