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
/* Bytes read past the end of the payload (a valid stream reads none). */
size_t nntm_bin_reader_overread(const nntm_bin_reader *r);

#endif
