/* Intra prediction of a CU's levels (docs/bitstream.md, "Intra prediction"). */
#include "intra.h"

/* 1 when the level at (y, x) is decoded before the CU [x0,x1) x [y0,y1) of the
 * CTU whose top-left corner is (cx, cy): it lies in an earlier CTU (CTU rows
 * above, or CTUs to the left in the same CTU row), or above-left of the CU's
 * bottom-right corner inside the CTU.  Any split of the CTU codes a node's
 * left and upper parts first, so every level left of the CU in its rows and
 * above the CU (up to its right edge) comes first.  The set is closed towards
 * the top and the left, so a rectangle lies in it when its bottom-right level does. */
static int decoded_before(int32_t y, int32_t x, int32_t cx, int32_t cy, int32_t ctu, int32_t x0,
                          int32_t y0, int32_t x1, int32_t y1) {
    if (y < cy) return 1;
    if (x < cx && y < cy + ctu) return 1;
    if (y < y0 && x < x1) return 1;
    return y < y1 && x < x0;
}

int nntm_intra_allowed(int32_t log2_ctu_size, int32_t rows, int32_t cols, int32_t x0, int32_t y0,
                       int32_t x1, int32_t y1, int mode, int32_t bv_x, int32_t bv_y) {
    if (x0 < 0 || y0 < 0 || x0 >= x1 || y0 >= y1 || x1 > cols || y1 > rows) return 0;
    switch (mode) {
    case NNTM_INTRA_ROW: return x0 > 0;
    case NNTM_INTRA_COL: return y0 > 0;
    case NNTM_INTRA_COPY: {
        if (bv_x < -NNTM_MAX_BV || bv_x > NNTM_MAX_BV || bv_y < -NNTM_MAX_BV || bv_y > NNTM_MAX_BV)
            return 0;
        int64_t rx0 = (int64_t)x0 + bv_x, ry0 = (int64_t)y0 + bv_y;
        int64_t rx1 = (int64_t)x1 + bv_x, ry1 = (int64_t)y1 + bv_y;
        if (rx0 < 0 || ry0 < 0 || rx1 > cols || ry1 > rows) return 0;
        int32_t ctu = (int32_t)1 << log2_ctu_size;
        int32_t cx = x0 & ~(ctu - 1), cy = y0 & ~(ctu - 1);
        return decoded_before((int32_t)ry1 - 1, (int32_t)rx1 - 1, cx, cy, ctu, x0, y0, x1, y1);
    }
    default: return 0;
    }
}

/* Rounded mean of count levels summing to sum: floor((2 sum + count) / (2 count)). */
static int32_t rounded_mean(int64_t sum, int32_t count) {
    int64_t num = 2 * sum + count, den = 2 * (int64_t)count;
    int64_t q = num / den;
    if ((num % den != 0) && ((num < 0) != (den < 0))) q--; /* floor for negative sums */
    return (int32_t)q;
}

void nntm_intra_predict(const int32_t *rec, int32_t cols, int mode, int32_t bv_x, int32_t bv_y,
                        int32_t x0, int32_t y0, int32_t x1, int32_t y1, int32_t *pred) {
    int32_t w = x1 - x0, h = y1 - y0;
    if (mode == NNTM_INTRA_ROW) {
        int32_t span = x0 < w ? x0 : w;
        for (int32_t y = y0; y < y1; y++) {
            const int32_t *row = rec + (int64_t)y * cols;
            int64_t sum = 0;
            for (int32_t x = x0 - span; x < x0; x++) sum += row[x];
            int32_t v = rounded_mean(sum, span);
            for (int32_t x = 0; x < w; x++) pred[(int64_t)(y - y0) * w + x] = v;
        }
    } else if (mode == NNTM_INTRA_COL) {
        int32_t span = y0 < h ? y0 : h;
        for (int32_t x = x0; x < x1; x++) {
            int64_t sum = 0;
            for (int32_t y = y0 - span; y < y0; y++) sum += rec[(int64_t)y * cols + x];
            int32_t v = rounded_mean(sum, span);
            for (int32_t y = 0; y < h; y++) pred[(int64_t)y * w + (x - x0)] = v;
        }
    } else if (mode == NNTM_INTRA_COPY) {
        for (int32_t y = 0; y < h; y++) {
            const int32_t *src = rec + (int64_t)(y0 + y + bv_y) * cols + x0 + bv_x;
            for (int32_t x = 0; x < w; x++) pred[(int64_t)y * w + x] = src[x];
        }
    } else {
        for (int64_t i = 0; i < (int64_t)w * h; i++) pred[i] = 0;
    }
}

int nntm_intra_reconstruct(int32_t *rec, const int32_t *coded, int32_t cols, int mode,
                           int32_t bv_x, int32_t bv_y, int32_t x0, int32_t y0, int32_t x1,
                           int32_t y1, int32_t *pred) {
    nntm_intra_predict(rec, cols, mode, bv_x, bv_y, x0, y0, x1, y1, pred);
    const int32_t *p = pred;
    for (int32_t y = y0; y < y1; y++)
        for (int32_t x = x0; x < x1; x++, p++) {
            int64_t i = (int64_t)y * cols + x;
            int64_t v = (int64_t)coded[i] + *p;
            if (v > NNTM_MAX_LEVEL || v < -NNTM_MAX_LEVEL) return -1;
            rec[i] = (int32_t)v;
        }
    return 0;
}

int nntm_intra_predict_levels(int32_t log2_ctu_size, int32_t rows, int32_t cols,
                              const int32_t *rec, int32_t x0, int32_t y0, int32_t x1, int32_t y1,
                              int32_t mode, int32_t bv_x, int32_t bv_y, int32_t *pred) {
    if (!rec || !pred || log2_ctu_size < 1 || log2_ctu_size > NNTM_MAX_LOG2_CTU) return NNTM_ERR_ARG;
    if (!nntm_intra_allowed(log2_ctu_size, rows, cols, x0, y0, x1, y1, mode, bv_x, bv_y))
        return NNTM_ERR_ARG;
    nntm_intra_predict(rec, cols, mode, bv_x, bv_y, x0, y0, x1, y1, pred);
    return NNTM_OK;
}
