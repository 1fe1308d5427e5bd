/* MD5 (RFC 1321): tensor_md5, tps_md5 and stream_md5 of the stream reader. */
#ifndef NNTM_COMMON_MD5_H
#define NNTM_COMMON_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct nntm_md5 {
    uint32_t state[4];
    uint64_t length;     /* bytes hashed so far */
    uint8_t block[64];   /* the pending partial block */
    size_t fill;         /* bytes in block */
} nntm_md5;

void nntm_md5_init(nntm_md5 *m);
void nntm_md5_update(nntm_md5 *m, const void *data, size_t size);
void nntm_md5_final(nntm_md5 *m, uint8_t digest[16]);
/* One call: the MD5 of size bytes. */
void nntm_md5_digest(const void *data, size_t size, uint8_t digest[16]);

#endif
