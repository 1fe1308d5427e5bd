/* Bit reader for the high-level syntax: u(n), ue(v), se(v), byte_alignment()
 * over one unit payload (docs/bitstream.md, clause 4).  Every read reports
 * running out of bits; no read goes past the payload. */
#ifndef NNTM_DECODER_BIT_READER_H
#define NNTM_DECODER_BIT_READER_H

#include <stddef.h>
#include <stdint.h>

typedef struct nntm_bits {
    const uint8_t *data;
    uint64_t size_bits;
    uint64_t pos;         /* next bit, MSB first */
} nntm_bits;

static inline void nntm_bits_init(nntm_bits *b, const uint8_t *data, size_t size) {
    b->data = data;
    b->size_bits = (uint64_t)size * 8;
    b->pos = 0;
}

static inline uint64_t nntm_bits_left(const nntm_bits *b) { return b->size_bits - b->pos; }

/* u(n), n <= 32: 0 on success, -1 when the payload ends first. */
static inline int nntm_bits_u(nntm_bits *b, int n, uint32_t *out) {
    if ((uint64_t)n > nntm_bits_left(b)) return -1;
    uint32_t v = 0;
    for (int i = 0; i < n; i++, b->pos++)
        v = (v << 1) | ((b->data[b->pos >> 3] >> (7 - (b->pos & 7))) & 1u);
    *out = v;
    return 0;
}

/* ue(v): 0 on success, -1 when the payload ends inside the code, 1 when the
 * value does not fit in 63 bits (more than 62 leading zeros: beyond every limit). */
static inline int nntm_bits_ue(nntm_bits *b, uint64_t *out) {
    int zeros = 0;
    for (;;) {
        if (!nntm_bits_left(b)) return -1;
        int bit = (b->data[b->pos >> 3] >> (7 - (b->pos & 7))) & 1;
        b->pos++;
        if (bit) break;
        zeros++;
    }
    if ((uint64_t)zeros > nntm_bits_left(b)) return -1;
    if (zeros > 62) return 1;
    uint64_t v = 0;
    for (int i = 0; i < zeros; i++, b->pos++)
        v = (v << 1) | ((b->data[b->pos >> 3] >> (7 - (b->pos & 7))) & 1u);
    *out = ((uint64_t)1 << zeros) - 1 + v;
    return 0;
}

/* se(v) from ue(v): k odd -> (k + 1) / 2, k even -> -k / 2. */
static inline int nntm_bits_se(nntm_bits *b, int64_t *out) {
    uint64_t k;
    int rv = nntm_bits_ue(b, &k);
    if (rv) return rv;
    *out = (k & 1) ? (int64_t)((k + 1) / 2) : -(int64_t)(k / 2);
    return 0;
}

/* byte_alignment(): a one bit, then zero bits up to a byte boundary.
 * 0 on success, -1 truncated, 1 alignment_bit_equal_to_one is 0,
 * 2 an alignment_bit_equal_to_zero is 1. */
static inline int nntm_bits_align(nntm_bits *b) {
    uint32_t bit;
    if (nntm_bits_u(b, 1, &bit)) return -1;
    if (bit != 1) return 1;
    while (b->pos & 7) {
        if (nntm_bits_u(b, 1, &bit)) return -1;
        if (bit != 0) return 2;
    }
    return 0;
}

#endif
