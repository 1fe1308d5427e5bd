/* Context models and the named context sets shared by encoder and decoder. */
#ifndef NNTM_COMMON_CONTEXTS_H
#define NNTM_COMMON_CONTEXTS_H

#include <stdint.h>

#include "nntm/nntm.h"

/* Probabilities are 15-bit estimates of P(bin == 1). */
#define NNTM_PROB_BITS 15
#define NNTM_PROB_ONE (1u << NNTM_PROB_BITS)
#define NNTM_RATE_FAST 4
#define NNTM_RATE_SLOW 7

/* An adaptive binary model: the mean of a fast and a slow estimator. */
typedef struct nntm_ctx {
    uint16_t p_fast;
    uint16_t p_slow;
} nntm_ctx;

static inline uint32_t nntm_ctx_p1(const nntm_ctx *c) {
    return ((uint32_t)c->p_fast + (uint32_t)c->p_slow) >> 1;
}

/* p stays within [1, 2^15 - 1] for any start value in that range. */
static inline void nntm_ctx_update(nntm_ctx *c, int bin) {
    if (bin) {
        c->p_fast = (uint16_t)(c->p_fast + ((NNTM_PROB_ONE - c->p_fast) >> NNTM_RATE_FAST));
        c->p_slow = (uint16_t)(c->p_slow + ((NNTM_PROB_ONE - c->p_slow) >> NNTM_RATE_SLOW));
    } else {
        c->p_fast = (uint16_t)(c->p_fast - (c->p_fast >> NNTM_RATE_FAST));
        c->p_slow = (uint16_t)(c->p_slow - (c->p_slow >> NNTM_RATE_SLOW));
    }
}

/* ---- Context sets of level_coding (docs/bitstream.md, "Context sets"). ---- */
#define NNTM_SIG_CTX 9      /* sig_flag: min(|L|,2) * 3 + min(|A|,2) */
#define NNTM_SIGN_CTX 3     /* sign_flag: sign of the left level (0, +, -) */
#define NNTM_GT_CLASSES 5   /* abs_level_greater_flag: neighbourhood class */
#define NNTM_EGP_CLASSES 2  /* abs_remainder prefix: neighbourhood small / large */
#define NNTM_EGP_CTX 12     /* abs_remainder prefix: bin index, last one shared */

typedef struct nntm_level_ctxs {
    nntm_ctx sig[NNTM_SIG_CTX];
    nntm_ctx sign[NNTM_SIGN_CTX];
    nntm_ctx gt[NNTM_MAX_GT_FLAGS][NNTM_GT_CLASSES];
    nntm_ctx egp[NNTM_EGP_CLASSES][NNTM_EGP_CTX];
} nntm_level_ctxs;

/* Set every context of the level context sets to its initial value. */
void nntm_level_ctxs_init(nntm_level_ctxs *c);

/* Context indices of one level, derived from already coded neighbours. */
typedef struct nntm_level_ctx_idx {
    int sig;
    int sign;
    int gt_class;
    int egp_class;
} nntm_level_ctx_idx;

static inline int32_t nntm_abs_clip(int32_t v, int32_t cap) {
    int32_t a = v < 0 ? -v : v;
    return a < cap ? a : cap;
}

/* Derive the contexts of the level at (r, c) of a row-major kernel tensor of
 * width cols from its left (r, c-1) and above (r-1, c) neighbours. */
static inline void nntm_level_ctx_derive(const int32_t *levels, int32_t cols, int32_t r,
                                         int32_t c, nntm_level_ctx_idx *out) {
    int32_t left = c > 0 ? levels[(int64_t)r * cols + c - 1] : 0;
    int32_t above = r > 0 ? levels[(int64_t)(r - 1) * cols + c] : 0;
    int32_t a = nntm_abs_clip(left, 64);
    int32_t b = nntm_abs_clip(above, 64);
    int32_t s = a + b;
    out->sig = (int)(nntm_abs_clip(left, 2) * 3 + nntm_abs_clip(above, 2));
    out->sign = left == 0 ? 0 : (left > 0 ? 1 : 2);
    out->gt_class = s == 0 ? 0 : s <= 2 ? 1 : s <= 5 ? 2 : s <= 10 ? 3 : 4;
    out->egp_class = s > 10 ? 1 : 0;
}

#endif
