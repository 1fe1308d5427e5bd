/* Syntax reader for the tensor data unit payload. */
#include "syntax_reader.h"

#include <stdlib.h>
#include <string.h>

#include "../common/intra.h"
#include "../common/quant.h"

/* Longest Exp-Golomb prefix that keeps |level| <= NNTM_MAX_LEVEL. */
#define MAX_EG_PREFIX 29
/* The decoder reads exactly the bytes the encoder wrote: reading past the end
 * means the payload was cut short. */
#define MAX_OVERREAD 0

static inline int abs_remainder(nntm_bin_reader *r, nntm_level_ctxs *ctxs, int egp_class,
                                uint32_t *rem, int win) {
    nntm_ctx *pc = ctxs->egp[egp_class];
    int prefix = 0;
    while (nntm_decode_bin_mode(r, &pc[prefix < NNTM_EGP_CTX ? prefix : NNTM_EGP_CTX - 1], win)) {
        if (++prefix > MAX_EG_PREFIX) return NNTM_ERR_CORRUPT;
    }
    uint32_t suffix = 0;
    int nctx = nntm_egs_num_ctx_bins(ctxs, prefix);
    if (nctx) {
        nntm_ctx *sc = ctxs->egs[nntm_egs_set(prefix)];
        uint32_t b0 = (uint32_t)nntm_decode_bin_mode(r, &sc[0], win);
        suffix = b0;
        if (nctx > 1) suffix = (suffix << 1) | (uint32_t)nntm_decode_bin_mode(r, &sc[1 + b0], win);
    }
    suffix = (suffix << (prefix - nctx)) | nntm_decode_bypass_inline(r, prefix - nctx);
    *rem = (1u << prefix) + suffix - 1;
    return NNTM_OK;
}

/* level_coding(), inlined into the loops over levels; win as in nntm_decode_bin_mode (every
 * context of a tensor has the same estimator). */
static inline int read_level(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                             const nntm_level_ctx_idx *ci, int num_gt_flags, int32_t *level,
                             int win) {
    if (!nntm_decode_bin_mode(r, &ctxs->sig[ci->sig], win)) {
        *level = 0;
        return NNTM_OK;
    }
    int negative = nntm_decode_bin_mode(r, &ctxs->sign[ci->sign], win);
    uint32_t a = 1;
    int i;
    for (i = 0; i < num_gt_flags; i++) {
        if (!nntm_decode_bin_mode(r, &ctxs->gt[i][ci->gt_class], win)) break;
        a++;
    }
    if (i == num_gt_flags) {
        uint32_t rem;
        int rv = abs_remainder(r, ctxs, ci->egp_class, &rem, win);
        if (rv) return rv;
        if (rem > (uint32_t)NNTM_MAX_LEVEL - a) return NNTM_ERR_CORRUPT;
        a += rem;
    }
    *level = negative ? -(int32_t)a : (int32_t)a;
    return NNTM_OK;
}

int nntm_read_level_coding(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                           const nntm_level_ctx_idx *ci, int num_gt_flags, int32_t *level) {
    return read_level(r, ctxs, ci, num_gt_flags, level, -1);
}

/* transform_unit(): the levels of the region [x0,x1) x [y0,y1) in raster order,
 * advancing the DQ state; rindex receives the reconstruction indices (row r at row
 * r - rrow0).  The row above row top is not looked at (taken as 0): the first row of the
 * tensor, and [1.8] of a substream. */
static inline int transform_unit_mode(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                                      const nntm_kernel_params *p, int32_t *levels,
                                      int32_t *rindex, int32_t x0, int32_t y0, int32_t x1,
                                      int32_t y1, int win, int ring, int32_t rrow0, int32_t top) {
    nntm_level_ctx_idx ci;
    nntm_bin_reader lr = *r; /* a local copy: range, code and pos stay in registers */
    const int dq = p->dq_enabled, num_gt = p->num_gt_flags;
    const size_t cols = (size_t)p->cols;
    int state = ctxs->dq_state, rv = NNTM_OK;
    for (int32_t row = y0; row < y1 && rv == NNTM_OK; row++) {
        int32_t *cur = levels + (size_t)(ring ? (row & 1) : row) * cols;
        const int32_t *above =
            row <= top ? NULL : ring ? levels + (size_t)((row - 1) & 1) * cols : cur - cols;
        int32_t left = x0 > 0 ? cur[x0 - 1] : 0;
        for (int32_t c = x0; c < x1; c++) {
            nntm_level_ctx_from(left, above ? above[c] : 0, nntm_dq_sig_set(dq, state), &ci);
            int32_t level;
            rv = read_level(&lr, ctxs, &ci, num_gt, &level, win);
            if (rv) break;
            if (lr.pos > lr.size + MAX_OVERREAD) { rv = NNTM_ERR_TRUNCATED; break; }
            if (lr.corrupt) { rv = NNTM_ERR_CORRUPT; break; }
            cur[c] = level;
            left = level;
            rindex[(size_t)(row - rrow0) * cols + (size_t)c] =
                (int32_t)nntm_dq_rindex(dq, state, level);
            if (dq) state = nntm_dq_next(dq, state, level);
        }
    }
    ctxs->dq_state = state;
    *r = lr;
    return rv;
}

/* ---- The counting estimator's loop [1.4] (prob_window > 0), the hot loop of every stream
 * the default configuration makes.  The same bins as read_level with win 1, written so that
 * each bin costs as few instructions as the compiler can give it: a bin that decides where
 * the syntax goes next (sig_flag, the greater-than flags, the remainder's prefix) branches
 * once on its own value and does only that branch's update; sign_flag and the suffix bins,
 * whose values are data, select.  The reader's state is a local (range, code, the next byte
 * as a pointer), the window one value for the loop rather than a field read a bin. ---- */

typedef struct wreader {
    uint32_t range, code;
    const uint8_t *next, *end; /* the next byte; end: the payload's end */
    size_t over;               /* bytes read past end (zeros, as nntm_bin_reader) */
    uint32_t corrupt;
} wreader;

/* Renormalisation: whole bytes while range < 2^24 (at most two: bound >= 2^13). */
#define WBIN_RENORM(w)                                                                      \
    while ((w)->range < NNTM_BIN_TOP) {                                                     \
        (w)->range <<= 8;                                                                   \
        (w)->code <<= 8;                                                                    \
        if ((w)->next < (w)->end)                                                           \
            (w)->code |= *(w)->next++;                                                      \
        else                                                                                \
            (w)->over++;                                                                    \
    }

/* The estimator's adaptation after a bin of a context whose shift sh is below the window. */
static inline void wbin_adapt(nntm_ctx *c, uint32_t sh) {
    c->count++;
    if ((uint32_t)c->count + 2 >= (1u << (sh + 1))) c->shift++;
}

/* The coding estimate: p in 15 bits, clipped to [NNTM_WIN_PMIN, 2^15 - NNTM_WIN_PMIN]; one
 * compare for the usual estimate inside the clip. */
static inline uint32_t wbin_p1(uint32_t p) {
    uint32_t p1 = p >> (NNTM_WIN_BITS - NNTM_PROB_BITS);
    if (__builtin_expect(p1 - NNTM_WIN_PMIN > NNTM_PROB_ONE - 2 * NNTM_WIN_PMIN, 0))
        p1 = p1 < NNTM_WIN_PMIN ? NNTM_WIN_PMIN : NNTM_PROB_ONE - NNTM_WIN_PMIN;
    return p1;
}

/* One bin with branches on its value: each branch does its own update, adaptation and
 * renormalisation and returns a constant, so that the caller's test of the bin merges
 * with the decoder's. */
static inline int wbin(wreader *w, nntm_ctx *c, uint32_t window) {
    uint32_t p = c->p, sh = c->shift;
    uint32_t bound = (w->range >> NNTM_PROB_BITS) * wbin_p1(p);
    if (w->code < bound) {
        w->range = bound;
        c->p = p + (((1u << NNTM_WIN_BITS) - p) >> sh);
        if (__builtin_expect(sh < window, 0)) wbin_adapt(c, sh);
        WBIN_RENORM(w);
        return 1;
    }
    w->code -= bound;
    w->range -= bound;
    c->p = p - (p >> sh);
    if (__builtin_expect(sh < window, 0)) wbin_adapt(c, sh);
    WBIN_RENORM(w);
    return 0;
}

/* wbin for a context whose shift has reached the window (it stays there: no adaptation). */
static inline int wbin_saturated(wreader *w, nntm_ctx *c, uint32_t window) {
    uint32_t p = c->p;
    uint32_t bound = (w->range >> NNTM_PROB_BITS) * wbin_p1(p);
    if (w->code < bound) {
        w->range = bound;
        c->p = p + (((1u << NNTM_WIN_BITS) - p) >> window);
        WBIN_RENORM(w);
        return 1;
    }
    w->code -= bound;
    w->range -= bound;
    c->p = p - (p >> window);
    WBIN_RENORM(w);
    return 0;
}

/* One bin with selects (its value is data: a branch on it would mispredict half the time).
 * GCC turns ?: (even with a 0.5 probability) and if-else back into a branch here, so x86-64
 * takes the three conditional moves from one compare written out; elsewhere masks. */
static inline uint32_t wbin_select(wreader *w, nntm_ctx *c, uint32_t window) {
    uint32_t p = c->p, sh = c->shift, range = w->range, code = w->code;
    uint32_t bound = (range >> NNTM_PROB_BITS) * wbin_p1(p);
    uint32_t up = p + (((1u << NNTM_WIN_BITS) - p) >> sh), down = p - (p >> sh);
    uint32_t lcode = code - bound, lrange = range - bound;
#if defined(__GNUC__) && defined(__x86_64__)
    /* code < bound (bin 1): code, bound, up; else code - bound, range - bound, down */
    __asm__("cmpl %[bound], %[code]\n\t"
            "cmovbl %[code], %[lcode]\n\t"
            "cmovbl %[bound], %[lrange]\n\t"
            "cmovbl %[up], %[down]"
            : [lcode] "+&r"(lcode), [lrange] "+&r"(lrange), [down] "+&r"(down)
            : [code] "r"(code), [bound] "r"(bound), [up] "r"(up)
            : "cc");
    uint32_t bin = code < bound;
#else
    uint32_t bin = code < bound, m = 0u - bin; /* all ones after a 1 bin */
    lcode ^= (lcode ^ code) & m;
    lrange ^= (lrange ^ bound) & m;
    down ^= (down ^ up) & m;
#endif
    w->code = lcode;
    w->range = lrange;
    c->p = down;
    if (__builtin_expect(sh < window, 0)) wbin_adapt(c, sh);
    WBIN_RENORM(w);
    return bin;
}

/* nbits (1..29) bypass bins, as nntm_decode_bypass_inline. */
static inline uint32_t wbypass(wreader *w, int nbits) {
    uint32_t v = 0, range = w->range, code = w->code;
    for (int i = 0; i < nbits; i++) {
        range >>= 1;
        uint32_t bit = code >= range;
        code -= range & (0u - bit);
        w->corrupt |= code >= range;
        v = (v << 1) | bit;
        if (range < NNTM_BIN_TOP) {
            w->range = range;
            w->code = code;
            WBIN_RENORM(w);
            range = w->range;
            code = w->code;
        }
    }
    w->range = range;
    w->code = code;
    return v;
}

/* gtClass of s = Min( |L|, 64 ) + Min( |A|, 64 ) (0..128); egpClass is gtClass == 4. */
static const uint8_t gt_class_of_sum[129] = {
    0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4};

/* abs_remainder with the counting estimator: NNTM_OK, or NNTM_ERR_CORRUPT (E-D1). */
static inline int wremainder(wreader *w, nntm_level_ctxs *ctxs, int egp_class,
                             uint32_t window, uint32_t *rem) {
    nntm_ctx *pc = ctxs->egp[egp_class], *last = pc + NNTM_EGP_CTX - 1;
    int prefix = 0;
    while (wbin(w, pc, window)) { /* bin k: EgpCtx[ egpClass ][ Min( k, 11 ) ] */
        if (++prefix > MAX_EG_PREFIX) return NNTM_ERR_CORRUPT;
        pc += pc != last;
    }
    uint32_t suffix = 0;
    int nctx = nntm_egs_num_ctx_bins(ctxs, prefix);
    if (nctx) {
        nntm_ctx *sc = ctxs->egs[nntm_egs_set(prefix)];
        uint32_t b0 = wbin_select(w, &sc[0], window);
        suffix = b0;
        if (nctx > 1) suffix = (suffix << 1) | wbin_select(w, &sc[1 + b0], window);
    }
    if (prefix > nctx) suffix = (suffix << (prefix - nctx)) | wbypass(w, prefix - nctx);
    *rem = (1u << prefix) + suffix - 1;
    return NNTM_OK;
}

/* Min( x, 2 ) * 3 and Min( x, 2 ) for x = Min( |level|, 64 ): sigCtx's neighbour terms. */
static const uint8_t sig_left_of[65] = {0, 3, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
                                        6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
                                        6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
                                        6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6};
static const uint8_t sig_above_of[65] = {0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                                         2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                                         2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                                         2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};

/* transform_unit_mode with win 1 (the same arguments and results).  ring 1 (a constant at
 * each call): the ring of two rows keeps Min( |level|, 64 ), all that the contexts look at,
 * instead of the level (the ring is the decoder's own: nntm_read_tensor_data,
 * nntm_read_tensor_rows). */
static inline int transform_unit_window(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                                        const nntm_kernel_params *p, int32_t *levels,
                                        int32_t *rindex, int32_t x0, int32_t y0, int32_t x1,
                                        int32_t y1, const int ring, int32_t rrow0, int32_t top) {
    /* the reader in locals: range, code and the byte pointer stay in registers */
    size_t over = r->pos > r->size ? r->pos - r->size : 0;
    wreader w = {r->range, r->code, r->data + r->pos - over, r->data + r->size, over,
                 (uint32_t)r->corrupt};
    const int dq = p->dq_enabled, num_gt = p->num_gt_flags;
    const uint32_t window = ctxs->sig[0].window;
    const size_t cols = (size_t)p->cols;
    /* per DQ state, in one word: 9 * its SigCtx set (bits 0-7), its quantizer (bit 8), its
     * next state after an even level (bits 16-23) and after an odd one (bits 24-31) */
    uint32_t dq_of[NNTM_DQ_MAX_STATES];
    const int nstates = dq ? nntm_dq_num_states(dq) : 1;
    for (int s = 0; s < nstates; s++) {
        uint32_t sig_off = (uint32_t)(NNTM_SIG_NEIGH * (dq ? nntm_dq_sig_set(dq, s) : 0));
        uint32_t q1 = (uint32_t)(dq ? nntm_dq_quantizer(dq, s) : 0);
        uint32_t n0 = (uint32_t)(dq ? nntm_dq_next(dq, s, 0) : 0);
        uint32_t n1 = (uint32_t)(dq ? nntm_dq_next(dq, s, 1) : 0);
        dq_of[s] = sig_off | q1 << 8 | n0 << 16 | n1 << 24;
    }
    const int rshift = dq ? 1 : 0;
    static const int32_t zeros[1] = {0};
    uint8_t gt_saturated[NNTM_GT_CLASSES] = {0};
    int state = ctxs->dq_state, rv = NNTM_OK;
    for (int32_t row = y0; row < y1 && rv == NNTM_OK; row++) {
        int32_t *cur = levels + (size_t)(ring ? (row & 1) : row) * cols;
        /* the row above, or none (step 0 over one zero) */
        const int32_t *above =
            row <= top ? zeros : ring ? levels + (size_t)((row - 1) & 1) * cols : cur - cols;
        const size_t astep = row <= top ? 0 : 1;
        int32_t *ri = rindex + (size_t)(row - rrow0) * cols;
        int32_t left = x0 > 0 ? cur[x0 - 1] : 0; /* (ring: x0 is 0) */
        /* the greater-than contexts of each class whose shifts have all reached the window
         * (they stay there) take the loop without the adaptation; looked at once a row */
        for (int k = 0; k < NNTM_GT_CLASSES; k++) {
            if (gt_saturated[k]) continue;
            int all = 1;
            for (int i = 0; i < num_gt; i++) all &= ctxs->gt[i][k].shift >= window;
            gt_saturated[k] = (uint8_t)all;
        }
        int32_t a_left = nntm_abs_clip(left, 64);
        int sign_idx = left == 0 ? 0 : left > 0 ? 1 : 2;
        for (int32_t c = x0; c < x1; c++) {
            int32_t a_above = above[astep * (size_t)c];
            if (!ring) a_above = nntm_abs_clip(a_above, 64);
            const uint32_t st = dq_of[state];
            int sig = sig_left_of[a_left] + sig_above_of[a_above] + (int)(st & 0xFF);
            int32_t level = 0, ridx = 0;
            uint32_t a = 0;
            if (wbin(&w, &ctxs->sig[sig], window)) {
                uint32_t negative = wbin_select(&w, &ctxs->sign[sign_idx], window);
                int gt_class = gt_class_of_sum[a_left + a_above];
                nntm_ctx *g0 = &ctxs->gt[0][gt_class], *g = g0;
                nntm_ctx *gend = g0 + (size_t)num_gt * NNTM_GT_CLASSES;
                if (gt_saturated[gt_class])
                    while (g != gend && wbin_saturated(&w, g, window)) g += NNTM_GT_CLASSES;
                else
                    while (g != gend && wbin(&w, g, window)) g += NNTM_GT_CLASSES;
                a = 1 + (uint32_t)(g - g0) / NNTM_GT_CLASSES; /* (g - g0 < 75: unsigned) */
                if (g == gend) {
                    uint32_t rem;
                    rv = wremainder(&w, ctxs, gt_class == 4, window, &rem);
                    if (rv) break;
                    if (rem > (uint32_t)NNTM_MAX_LEVEL - a) { rv = NNTM_ERR_CORRUPT; break; }
                    a += rem;
                }
                const uint32_t neg = 0u - negative;
                level = (int32_t)((a ^ neg) + negative); /* -a or a */
                /* RecIdx: 2a, or 2a - 1 in a Q1 state (DQ); a without DQ; the level's sign */
                ridx = (int32_t)((((a << rshift) - ((st >> 8) & 1u)) ^ neg) + negative);
                sign_idx = 1 + (int)negative;
            } else {
                sign_idx = 0;
            }
            if (__builtin_expect((w.over > MAX_OVERREAD) | w.corrupt, 0)) {
                rv = w.over > MAX_OVERREAD ? NNTM_ERR_TRUNCATED : NNTM_ERR_CORRUPT;
                break;
            }
            a_left = a < 64 ? (int32_t)a : 64;
            cur[c] = ring ? a_left : level;
            ri[c] = ridx;
            state = (int)((st >> (16 + 8 * (a & 1u))) & 0xFF);
        }
    }
    ctxs->dq_state = state;
    r->range = w.range;
    r->code = w.code;
    r->pos = (size_t)(w.next - r->data) + w.over;
    r->corrupt = (int)w.corrupt;
    return rv;
}

/* The two estimators in two copies of the loop (prob_window 0 or not, the same for every
 * context of the level sets: nntm_level_ctxs_init). */
static int transform_unit(nntm_bin_reader *r, nntm_level_ctxs *ctxs, const nntm_kernel_params *p,
                          int32_t *levels, int32_t *rindex, int32_t x0, int32_t y0, int32_t x1,
                          int32_t y1, int ring, int32_t top) {
    if (ctxs->sig[0].window)
        return ring ? transform_unit_window(r, ctxs, p, levels, rindex, x0, y0, x1, y1, 1, 0, top)
                    : transform_unit_window(r, ctxs, p, levels, rindex, x0, y0, x1, y1, 0, 0, top);
    return transform_unit_mode(r, ctxs, p, levels, rindex, x0, y0, x1, y1, 0, ring, 0, top);
}

int nntm_read_tensor_rows(nntm_bin_reader *r, nntm_level_ctxs *ctxs, const nntm_kernel_params *p,
                          int32_t *levels, int32_t *rindex, int32_t y0, int32_t y1, int32_t top) {
    if (ctxs->sig[0].window)
        return transform_unit_window(r, ctxs, p, levels, rindex, 0, y0, p->cols, y1, 1, y0, top);
    return transform_unit_mode(r, ctxs, p, levels, rindex, 0, y0, p->cols, y1, 0, 1, y0, top);
}

/* The row prediction syntax of row `row` >= 1 [1.5] (nntm_write_row_pred): its reference
 * row in *ref, -1 when the row is not predicted.  NNTM_OK, or NNTM_ERR_CORRUPT for a
 * reference beyond row 0 (E-D8). */
static int row_pred(nntm_bin_reader *r, nntm_level_ctxs *ctxs, int prev, int32_t row,
                    int32_t *ref) {
    *ref = -1;
    if (!nntm_decode_bin(r, &ctxs->row_pred[prev])) return NNTM_OK;
    *ref = row - 1;
    if (row > 1 && !nntm_decode_bin(r, &ctxs->row_above)) {
        uint32_t d = nntm_decode_bypass(r, nntm_row_ref_bits(row));
        if (d > (uint32_t)(row - 2)) return NNTM_ERR_CORRUPT;
        *ref = row - 2 - (int32_t)d;
    }
    return NNTM_OK;
}

int nntm_read_tensor_data(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                          const nntm_kernel_params *p, int32_t *levels, int32_t *rindex,
                          int32_t y0, int32_t y1, int ring, int32_t *row_ref) {
    if (!p->row_pred)
        return transform_unit(r, ctxs, p, levels, rindex, 0, y0, p->cols, y1, ring, y0);
    int prev = 0; /* row_pred_flag of the row above, in this substream */
    for (int32_t row = y0; row < y1; row++) {
        int32_t ref = -1;
        int rv = row > 0 ? row_pred(r, ctxs, prev, row, &ref) : NNTM_OK;
        if (rv == NNTM_OK)
            rv = transform_unit(r, ctxs, p, levels, rindex, 0, row, p->cols, row + 1, ring, y0);
        if (rv) return rv;
        row_ref[row] = ref;
        prev = ref >= 0;
    }
    return NNTM_OK;
}

int nntm_apply_row_pred(const nntm_kernel_params *p, int32_t *rindex, const int32_t *row_ref,
                        nntm_buffer *trace) {
    const int64_t max = nntm_max_rindex(p->dq_enabled);
    for (int32_t row = 1; row < p->rows; row++) {
        int32_t ref = row_ref[row];
        if (ref < 0) continue;
        int32_t *cur = rindex + (size_t)row * (size_t)p->cols;
        const int32_t *src = rindex + (size_t)ref * (size_t)p->cols;
        for (int32_t c = 0; c < p->cols; c++) {
            int64_t v = (int64_t)cur[c] + (int64_t)src[c];
            if (v > max || v < -max) return NNTM_ERR_CORRUPT;
            cur[c] = (int32_t)v;
        }
        nntm_cu_record rec = {0, row, p->cols, 1, NNTM_CU_CODED, p->qp, 0, NNTM_INTRA_COPY, 0,
                              ref - row};
        int rv = nntm_trace_append(trace, &rec);
        if (rv) return rv;
    }
    return NNTM_OK;
}

/* split_mode(): the split of a node, with the flags inferred where absent. */
static int split_mode(nntm_bin_reader *r, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                      const nntm_tree_params *t, const nntm_node *n) {
    if (nntm_can_split(t, n, NNTM_SPLIT_QT) &&
        nntm_decode_bin(r, &ctxs->split_qt[nntm_ctx_split_qt(m, n)]))
        return NNTM_SPLIT_QT;
    nntm_mtt_options o;
    nntm_mtt_options_get(t, n, &o);
    if (!o.any || !nntm_decode_bin(r, &ctxs->mtt_split[nntm_ctx_mtt_split(m, n)]))
        return NNTM_SPLIT_NONE;
    int vertical = o.can_v && o.can_h
                       ? nntm_decode_bin(r, &ctxs->mtt_vertical[nntm_ctx_mtt_vertical(n)])
                       : o.can_v;
    int bt = vertical ? o.bt_v : o.bt_h, tt = vertical ? o.tt_v : o.tt_h;
    int binary = bt && tt ? nntm_decode_bin(r, &ctxs->mtt_binary[2 * vertical + (n->mtt_depth > 0)])
                          : bt;
    if (vertical) return binary ? NNTM_SPLIT_BT_V : NNTM_SPLIT_TT_V;
    return binary ? NNTM_SPLIT_BT_H : NNTM_SPLIT_TT_H;
}

/* cu_qp_delta(); NNTM_ERR_CORRUPT beyond +-NNTM_MAX_CU_QP_DELTA. */
static int cu_qp_delta(nntm_bin_reader *r, nntm_tree_ctxs *ctxs, int *delta) {
    uint32_t a = 0;
    while (a < NNTM_QP_DELTA_PREFIX && nntm_decode_bin(r, &ctxs->qp_delta[a == 0 ? 0 : 1])) a++;
    if (a == NNTM_QP_DELTA_PREFIX) {
        int prefix = 0;
        while (nntm_decode_bypass(r, 1)) {
            if (++prefix > 8) return NNTM_ERR_CORRUPT;
        }
        a += (1u << prefix) - 1 + nntm_decode_bypass(r, prefix);
    }
    if (a > NNTM_MAX_CU_QP_DELTA) return NNTM_ERR_CORRUPT;
    int negative = a ? (int)nntm_decode_bypass(r, 1) : 0;
    *delta = negative ? -(int)a : (int)a;
    return NNTM_OK;
}

/* A signed value from Exp-Golomb order 0 bypass bins of its zigzag index;
 * NNTM_ERR_CORRUPT beyond +-NNTM_MAX_BV. */
static int se_bypass(nntm_bin_reader *r, int32_t *v) {
    int prefix = 0;
    while (nntm_decode_bypass(r, 1)) {
        if (++prefix > 16) return NNTM_ERR_CORRUPT;
    }
    uint32_t u = (1u << prefix) - 1 + nntm_decode_bypass(r, prefix);
    if (u > 2u * NNTM_MAX_BV) return NNTM_ERR_CORRUPT;
    *v = (u & 1) ? (int32_t)((u + 1) / 2) : -(int32_t)(u / 2);
    return NNTM_OK;
}

/* intra_pred(); NNTM_ERR_CORRUPT for a mode the CU may not use. */
static int intra_pred(nntm_bin_reader *r, nntm_tree_ctxs *ctxs, const nntm_cu_maps *m,
                      const nntm_tree_params *t, const nntm_node *n, int *intra, int32_t *bv_x,
                      int32_t *bv_y) {
    *intra = NNTM_INTRA_NONE;
    *bv_x = *bv_y = 0;
    if (!nntm_decode_bin(r, &ctxs->intra_flag[nntm_ctx_intra_flag(m, n)])) return NNTM_OK;
    if (nntm_decode_bin(r, &ctxs->intra_copy[0])) {
        *intra = NNTM_INTRA_COPY;
        int rv = se_bypass(r, bv_x);
        if (rv == NNTM_OK) rv = se_bypass(r, bv_y);
        if (rv) return rv;
    } else {
        *intra = nntm_decode_bin(r, &ctxs->intra_dir[0]) ? NNTM_INTRA_COL : NNTM_INTRA_ROW;
    }
    return nntm_intra_allowed_node(t, m->rows, m->cols, n, *intra, *bv_x, *bv_y) ? NNTM_OK
                                                                              : NNTM_ERR_CORRUPT;
}

typedef struct tree_reader {
    nntm_bin_reader *r;
    nntm_all_ctxs *ctxs;
    nntm_cu_maps *m;
    const nntm_kernel_params *p;
    int32_t *levels;
    int32_t *rindex;
    nntm_buffer *trace;
    int32_t *pred;  /* one CTU of predicted levels (intra prediction) */
} tree_reader;

static int coding_unit(tree_reader *tr, const nntm_node *n) {
    int32_t x0, y0, x1, y1;
    nntm_node_clip(n, tr->m->rows, tr->m->cols, &x0, &y0, &x1, &y1);
    const nntm_tree_params *t = &tr->p->tree;
    int mode = NNTM_CU_CODED, qp_delta = 0, rv, intra = NNTM_INTRA_NONE;
    int32_t bv_x = 0, bv_y = 0;
    if (t->skip_enabled && nntm_decode_bin(tr->r, &tr->ctxs->tree.cu_skip[nntm_ctx_cu_skip(tr->m, n)]))
        mode = NNTM_CU_SKIP;
    if (mode == NNTM_CU_SKIP) {
        for (int32_t y = y0; y < y1; y++)
            for (int32_t x = x0; x < x1; x++) {
                tr->levels[(int64_t)y * tr->p->cols + x] = 0;
                tr->rindex[(int64_t)y * tr->p->cols + x] = 0;
            }
    } else {
        if (t->intra_pred_enabled) {
            rv = intra_pred(tr->r, &tr->ctxs->tree, tr->m, t, n, &intra, &bv_x, &bv_y);
            if (rv) return rv;
        }
        if (t->cu_qp_delta_enabled) {
            rv = cu_qp_delta(tr->r, &tr->ctxs->tree, &qp_delta);
            if (rv) return rv;
            int32_t m_, s_;
            if (nntm_qp_to_step(tr->p->qp + qp_delta, tr->p->qp_density, &m_, &s_))
                return NNTM_ERR_CORRUPT;
        }
        rv = transform_unit(tr->r, &tr->ctxs->level, tr->p, tr->levels, tr->rindex, x0, y0, x1,
                            y1, 0, 0);
        if (rv) return rv;
        /* the levels reconstructed: prediction + coded residual */
        if (intra && nntm_intra_reconstruct(tr->rindex, tr->levels, tr->p->cols, intra, bv_x,
                                            bv_y, x0, y0, x1, y1, tr->pred))
            return NNTM_ERR_CORRUPT;
    }
    if (nntm_bin_reader_overread(tr->r) > MAX_OVERREAD) return NNTM_ERR_TRUNCATED;
    if (tr->r->corrupt) return NNTM_ERR_CORRUPT;
    nntm_cu_maps_set(tr->m, n, mode, qp_delta);
    if (intra) nntm_cu_maps_set_intra(tr->m, n, intra, bv_x, bv_y);
    return nntm_trace_cu(tr->trace, tr->m, tr->p, n);
}

static int coding_tree(tree_reader *tr, const nntm_node *n) {
    int32_t x0, y0, x1, y1;
    if (!nntm_node_clip(n, tr->m->rows, tr->m->cols, &x0, &y0, &x1, &y1)) return NNTM_OK;
    int split = split_mode(tr->r, &tr->ctxs->tree, tr->m, &tr->p->tree, n);
    if (nntm_bin_reader_overread(tr->r) > MAX_OVERREAD) return NNTM_ERR_TRUNCATED;
    if (split == NNTM_SPLIT_NONE) return coding_unit(tr, n);
    nntm_node child[4];
    int k = nntm_split_children(n, split, child);
    for (int i = 0; i < k; i++) {
        int rv = coding_tree(tr, &child[i]);
        if (rv) return rv;
    }
    return NNTM_OK;
}

int nntm_read_tree_data(nntm_bin_reader *r, nntm_all_ctxs *ctxs, nntm_cu_maps *m,
                        const nntm_kernel_params *p, int32_t *levels, int32_t *rindex,
                        nntm_buffer *trace) {
    tree_reader tr = {r, ctxs, m, p, levels, rindex, trace, NULL};
    int32_t ctu = (int32_t)1 << p->tree.log2_ctu_size;
    if (p->tree.intra_pred_enabled) {
        if (rindex == levels || !m->intra) return NNTM_ERR_ARG;
        tr.pred = malloc((size_t)ctu * (size_t)ctu * sizeof *tr.pred);
        if (!tr.pred) return NNTM_ERR_NOMEM;
    }
    int rv = NNTM_OK;
    for (int64_t y = 0; y < p->rows && !rv; y += ctu) {
        for (int64_t x = 0; x < p->cols && !rv; x += ctu) {
            nntm_node n = {(int32_t)x, (int32_t)y, ctu, ctu, 0, 0};
            rv = coding_tree(&tr, &n);
        }
    }
    free(tr.pred);
    return rv;
}
