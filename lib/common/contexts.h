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

/* Counting estimator [1.4]: P(bin == 1) in NNTM_WIN_BITS bits; its adaptation
 * shift grows from 1 with the number of bins seen (a running mean) up to the
 * tensor's prob_window; the probability used for coding is clipped to
 * [NNTM_WIN_PMIN, 2^15 - NNTM_WIN_PMIN]. */
#define NNTM_WIN_BITS 23
#define NNTM_WIN_PMIN 16u

/* An adaptive binary model. window 0: the mean of a fast and a slow estimator
 * (formats 1.0-1.3); window 1..NNTM_MAX_PROB_WINDOW: the counting estimator. */
typedef struct nntm_ctx {
    union {
        struct {
            uint16_t p_fast;  /* window 0 */
            uint16_t p_slow;  /* window 0 */
        };
        uint32_t p;           /* window > 0: P(1) * 2^NNTM_WIN_BITS */
    };
    uint16_t count;   /* window > 0: bins seen while shift < window */
    uint8_t shift;    /* window > 0: current adaptation shift, 1..window */
    uint8_t window;
} nntm_ctx;           /* 8 bytes: the search copies and hashes context sets */

static inline uint32_t nntm_ctx_p1(const nntm_ctx *c) {
    if (!c->window) return ((uint32_t)c->p_fast + (uint32_t)c->p_slow) >> 1;
    uint32_t p1 = c->p >> (NNTM_WIN_BITS - NNTM_PROB_BITS);
    p1 = p1 < NNTM_WIN_PMIN ? NNTM_WIN_PMIN : p1; /* selects: no branch on the estimate */
    p1 = p1 > NNTM_PROB_ONE - NNTM_WIN_PMIN ? NNTM_PROB_ONE - NNTM_WIN_PMIN : p1;
    return p1;
}

/* p stays within [1, 2^15 - 1] for any start value in that range (window 0);
 * within [0, 2^23) (window > 0). */
static inline void nntm_ctx_update(nntm_ctx *c, int bin) {
    if (c->window) {
        if (bin)
            c->p += ((1u << NNTM_WIN_BITS) - c->p) >> c->shift;
        else
            c->p -= c->p >> c->shift;
        if (c->shift < c->window) {
            c->count++;
            if ((uint32_t)c->count + 2 >= (1u << (c->shift + 1))) c->shift++;
        }
        return;
    }
    if (bin) {
        c->p_fast = (uint16_t)(c->p_fast + ((NNTM_PROB_ONE - c->p_fast) >> NNTM_RATE_FAST));
        c->p_slow = (uint16_t)(c->p_slow + ((NNTM_PROB_ONE - c->p_slow) >> NNTM_RATE_SLOW));
    } else {
        c->p_fast = (uint16_t)(c->p_fast - (c->p_fast >> NNTM_RATE_FAST));
        c->p_slow = (uint16_t)(c->p_slow - (c->p_slow >> NNTM_RATE_SLOW));
    }
}

/* ---- Context sets of level_coding (docs/bitstream.md, "Context sets"). ---- */
#define NNTM_SIG_NEIGH 9    /* sig_flag: min(|L|,2) * 3 + min(|A|,2) ... */
#define NNTM_SIG_SETS 4     /* ... + 9 * nntm_dq_sig_set(dq, dq_state): 0..2 with 4 states,
                               0..3 with 8 [1.4] and 32 [1.5] */
#define NNTM_SIG_CTX (NNTM_SIG_NEIGH * NNTM_SIG_SETS)
#define NNTM_SIGN_CTX 3     /* sign_flag: sign of the left level (0, +, -) */
#define NNTM_GT_CLASSES 5   /* abs_level_greater_flag: neighbourhood class */
#define NNTM_EGP_CLASSES 2  /* abs_remainder prefix: neighbourhood small / large */
#define NNTM_EGP_CTX 12     /* abs_remainder prefix: bin index, last one shared */
#define NNTM_EGS_K 12       /* abs_remainder suffix [1.5]: Min( prefix, 12 ) - 1 */
#define NNTM_EGS_NODES 3    /* the suffix's first bin; its second after a 0, after a 1 */
#define NNTM_EGS_BINS 2     /* context-coded suffix bins (the most significant ones) */

typedef struct nntm_level_ctxs {
    int32_t dq_state;  /* dependent quantization state (0 without DQ) */
    int32_t suffix_ctx; /* 1: the first NNTM_EGS_BINS suffix bins context coded [1.5] */
    nntm_ctx sig[NNTM_SIG_CTX];
    nntm_ctx sign[NNTM_SIGN_CTX];
    nntm_ctx gt[NNTM_MAX_GT_FLAGS][NNTM_GT_CLASSES];
    nntm_ctx egp[NNTM_EGP_CLASSES][NNTM_EGP_CTX];
    nntm_ctx egs[NNTM_EGS_K][NNTM_EGS_NODES];
    nntm_ctx row_pred[NNTM_ROW_PRED_CTX];  /* row_pred_flag [1.5]: by the previous row's flag */
    nntm_ctx row_above;                    /* row_pred_above_flag [1.5] */
} nntm_level_ctxs;

/* Set every context of the level context sets to its initial value, with the
 * estimator of prob_window (0: the dual estimator) and suffix_ctx_flag. */
void nntm_level_ctxs_init(nntm_level_ctxs *c, int window, int suffix_ctx);

/* abs_remainder's suffix of a prefix of k (>= 1) bins [1.5]: the number of its
 * bins that are context coded, and the index of their context set EgsCtx[ Min( k, 12 ) - 1 ]. */
static inline int nntm_egs_num_ctx_bins(const nntm_level_ctxs *c, int k) {
    if (!c->suffix_ctx) return 0;
    return k < NNTM_EGS_BINS ? k : NNTM_EGS_BINS;
}

static inline int nntm_egs_set(int k) { return (k < NNTM_EGS_K ? k : NNTM_EGS_K) - 1; }

/* Set n context variables to the probability p (15 bits), estimator window. */
void nntm_ctx_fill(nntm_ctx *c, int n, uint16_t p, int window);

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

/* ---- Dependent quantization (docs/bitstream.md 5.5.4) ----
 * dq 1: the 4-state machine; states 0 and 1 use quantizer Q0 (reconstruction
 * index 2k), states 2 and 3 quantizer Q1 (2k - sgn(k)).  dq 2 [1.4]: an 8-state
 * machine; states 0..3 use Q0, 4..7 Q1.  dq 3 [1.5]: a 32-state machine; states
 * 0..15 use Q0, 16..31 Q1.  The parity of each level drives the state. */
#define NNTM_DQ_MAX_STATES 32

static inline int nntm_dq_num_states(int dq) { return dq == 3 ? 32 : dq == 2 ? 8 : 4; }

static inline int nntm_dq_quantizer(int dq, int state) {
    return state >= nntm_dq_num_states(dq) / 2;
}

/* The state table of dq (1, 2 or 3): next state = table[2 * state + (level & 1)].
 * The 32 states are Ungerboeck's rate-1/2 code for four subsets with parity-check
 * polynomials (45, 10) octal, numbered so that the quantizer is state >= 16. */
static inline const int8_t *nntm_dq_table(int dq) {
    static const int8_t next4[8] = {0, 2, 2, 0, 1, 3, 3, 1};
    static const int8_t next8[16] = {0, 1, 4, 5, 1, 0, 5, 4, 7, 6, 3, 2, 6, 7, 2, 3};
    static const int8_t next32[64] = {
        0,  2,  16, 18, 1,  3,  17, 19, 2,  0,  18, 16, 3,  1,  19, 17,
        4,  6,  20, 22, 5,  7,  21, 23, 6,  4,  22, 20, 7,  5,  23, 21,
        9,  11, 25, 27, 8,  10, 24, 26, 11, 9,  27, 25, 10, 8,  26, 24,
        13, 15, 29, 31, 12, 14, 28, 30, 15, 13, 31, 29, 14, 12, 30, 28};
    return dq == 3 ? next32 : dq == 2 ? next8 : next4;
}

static inline int nntm_dq_next(int dq, int state, int32_t level) {
    return nntm_dq_table(dq)[2 * state + (level & 1)];
}

/* The SigCtx set of a state (0 without DQ): 4 states {0, 0, 1, 2}; 8 states state >> 1;
 * 32 states state >> 3. */
static inline int nntm_dq_sig_set(int dq, int state) {
    if (dq == 3) return state >> 3;
    if (dq == 2) return state >> 1;
    return state > 1 ? state - 1 : 0;
}

/* The bits of row_pred_ref_dist_minus2 in row r >= 2 [1.5]: Ceil( Log2( r - 1 ) ). */
static inline int nntm_row_ref_bits(int32_t r) {
    int b = 0;
    while (b < 31 && ((int64_t)1 << b) < (int64_t)r - 1) b++;
    return b;
}

/* The largest |RecIdx| of a tensor: 2 * MaxLevel with DQ, MaxLevel without (a
 * reconstruction index with row prediction [1.5] is checked against it). */
static inline int64_t nntm_max_rindex(int dq) {
    return (dq ? 2 : 1) * (int64_t)NNTM_MAX_LEVEL;
}

/* Reconstruction index of a level: in units of step / 2 with DQ, of step without. */
static inline int64_t nntm_dq_rindex(int dq, int state, int32_t level) {
    if (!dq) return level;
    int64_t twice = 2 * (int64_t)level;
    if (nntm_dq_quantizer(dq, state) == 0 || level == 0) return twice;
    return level > 0 ? twice - 1 : twice + 1;
}

/* Contexts of a level from its left and above neighbours' levels and the SigCtx
 * set of the DQ state (nntm_dq_sig_set; 0 without DQ). */
static inline void nntm_level_ctx_from(int32_t left, int32_t above, int sig_set,
                                       nntm_level_ctx_idx *out) {
    int32_t a = nntm_abs_clip(left, 64);
    int32_t b = nntm_abs_clip(above, 64);
    int32_t s = a + b;
    out->sig = (int)(nntm_abs_clip(left, 2) * 3 + nntm_abs_clip(above, 2)) +
               NNTM_SIG_NEIGH * sig_set;
    out->sign = left == 0 ? 0 : (left > 0 ? 1 : 2);
    out->gt_class = s == 0 ? 0 : s <= 2 ? 1 : s <= 5 ? 2 : s <= 10 ? 3 : 4;
    out->egp_class = s > 10 ? 1 : 0;
}

/* The contexts of the level at (r, c) of a row-major kernel tensor of width
 * cols, from its left (r, c-1) and above (r-1, c) neighbours. */
static inline void nntm_level_ctx_derive(const int32_t *levels, int32_t cols, int32_t r,
                                         int32_t c, int sig_set, nntm_level_ctx_idx *out) {
    int32_t left = c > 0 ? levels[(int64_t)r * cols + c - 1] : 0;
    int32_t above = r > 0 ? levels[(int64_t)(r - 1) * cols + c] : 0;
    nntm_level_ctx_from(left, above, sig_set, out);
}

#endif
