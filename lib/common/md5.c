/* MD5 message digest, written from the description in RFC 1321. */
#include "md5.h"

#include <string.h>

/* Per-round left-rotation amounts (RFC 1321, 3.4). */
static const uint8_t md5_shift[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

/* T[i] = floor(2^32 * |sin(i + 1)|) (RFC 1321, 3.4). */
static const uint32_t md5_t[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
    0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
    0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
    0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
    0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
    0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
    0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
    0xeb86d391,
};

static inline uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

/* One step of round r (RFC 1321, 3.4): a = b + ((a + F(b,c,d) + X[k] + T[i]) <<< s).  The
 * sum is written so that only F's last operation waits for b (the previous step's result):
 * X[k] + T[i] is added to a first, and G = (b & d) | (c & ~d) as the sum of its two terms
 * (they have no bit in common), c & ~d added before b & d. */
#define MD5_F(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))      /* (b & c) | (~b & d) */
#define MD5_H(b, c, d) ((b) ^ ((c) ^ (d)))
#define MD5_I(b, c, d) ((c) ^ ((b) | ~(d)))
#define MD5_STEP(f, a, b, c, d, k, i)                                                      \
    do {                                                                                   \
        (a) += x[k] + md5_t[i];                                                            \
        (a) += f(b, c, d);                                                                 \
        (a) = (b) + rotl((a), md5_shift[i]);                                               \
    } while (0)
#define MD5_STEP_G(a, b, c, d, k, i)                                                       \
    do {                                                                                   \
        (a) += x[k] + md5_t[i];                                                            \
        (a) += (c) & ~(d);                                                                 \
        (a) += (b) & (d);                                                                  \
        (a) = (b) + rotl((a), md5_shift[i]);                                               \
    } while (0)

static void md5_block(uint32_t st[4], const uint8_t *p) {
    uint32_t x[16];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(x, p, sizeof x); /* the words are little-endian: one load each */
#else
    for (int i = 0; i < 16; i++)
        x[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
#endif
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    /* the 64 steps unrolled (the rotation of a, b, c, d by renaming): k as in the RFC */
    for (int i = 0; i < 16; i += 4) {
        MD5_STEP(MD5_F, a, b, c, d, i, i);
        MD5_STEP(MD5_F, d, a, b, c, i + 1, i + 1);
        MD5_STEP(MD5_F, c, d, a, b, i + 2, i + 2);
        MD5_STEP(MD5_F, b, c, d, a, i + 3, i + 3);
    }
    for (int i = 16; i < 32; i += 4) {
        MD5_STEP_G(a, b, c, d, (5 * i + 1) & 15, i);
        MD5_STEP_G(d, a, b, c, (5 * i + 6) & 15, i + 1);
        MD5_STEP_G(c, d, a, b, (5 * i + 11) & 15, i + 2);
        MD5_STEP_G(b, c, d, a, (5 * i + 16) & 15, i + 3);
    }
    for (int i = 32; i < 48; i += 4) {
        MD5_STEP(MD5_H, a, b, c, d, (3 * i + 5) & 15, i);
        MD5_STEP(MD5_H, d, a, b, c, (3 * i + 8) & 15, i + 1);
        MD5_STEP(MD5_H, c, d, a, b, (3 * i + 11) & 15, i + 2);
        MD5_STEP(MD5_H, b, c, d, a, (3 * i + 14) & 15, i + 3);
    }
    for (int i = 48; i < 64; i += 4) {
        MD5_STEP(MD5_I, a, b, c, d, (7 * i) & 15, i);
        MD5_STEP(MD5_I, d, a, b, c, (7 * i + 7) & 15, i + 1);
        MD5_STEP(MD5_I, c, d, a, b, (7 * i + 14) & 15, i + 2);
        MD5_STEP(MD5_I, b, c, d, a, (7 * i + 21) & 15, i + 3);
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
}

void nntm_md5_init(nntm_md5 *m) {
    m->state[0] = 0x67452301;
    m->state[1] = 0xefcdab89;
    m->state[2] = 0x98badcfe;
    m->state[3] = 0x10325476;
    m->length = 0;
    m->fill = 0;
}

void nntm_md5_update(nntm_md5 *m, const void *data, size_t size) {
    const uint8_t *p = data;
    m->length += size;
    if (m->fill) {
        size_t take = 64 - m->fill < size ? 64 - m->fill : size;
        memcpy(m->block + m->fill, p, take);
        m->fill += take;
        p += take;
        size -= take;
        if (m->fill < 64) return;
        md5_block(m->state, m->block);
        m->fill = 0;
    }
    for (; size >= 64; p += 64, size -= 64) md5_block(m->state, p);
    if (size) memcpy(m->block, p, size);
    m->fill = size;
}

void nntm_md5_final(nntm_md5 *m, uint8_t digest[16]) {
    uint64_t bits = m->length * 8;
    uint8_t pad[72] = {0x80};
    size_t n = (m->fill < 56 ? 56 : 120) - m->fill;
    for (int i = 0; i < 8; i++) pad[n + (size_t)i] = (uint8_t)(bits >> (8 * i));
    nntm_md5_update(m, pad, n + 8);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(m->state[i] >> (8 * j));
}

void nntm_md5_digest(const void *data, size_t size, uint8_t digest[16]) {
    nntm_md5 m;
    nntm_md5_init(&m);
    nntm_md5_update(&m, data, size);
    nntm_md5_final(&m, digest);
}
