#include "bin_reader.h"

#define TOP (1u << 24)

static inline uint32_t next_byte(nntm_bin_reader *r) {
    uint32_t b = r->pos < r->size ? r->data[r->pos] : 0;
    r->pos++;
    return b;
}

void nntm_bin_reader_init(nntm_bin_reader *r, const uint8_t *data, size_t size) {
    r->data = data;
    r->size = size;
    r->pos = 0;
    r->range = 0xFFFFFFFFu;
    r->code = 0;
    for (int i = 0; i < 4; i++) r->code = (r->code << 8) | next_byte(r);
    r->corrupt = r->code >= r->range;
}

int nntm_decode_bin(nntm_bin_reader *r, nntm_ctx *ctx) { return nntm_decode_bin_inline(r, ctx); }

uint32_t nntm_decode_bypass(nntm_bin_reader *r, int nbits) {
    return nntm_decode_bypass_inline(r, nbits);
}

size_t nntm_bin_reader_overread(const nntm_bin_reader *r) {
    return r->pos > r->size ? r->pos - r->size : 0;
}
