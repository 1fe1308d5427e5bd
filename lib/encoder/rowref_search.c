/* Reference rows for row prediction [1.5] (encoder only): the candidate selection and the
 * exact re-ranking of the approximate search in python/nntm/rowref.py.
 *
 * The caller gives the inner products of a block of rows with earlier rows in a
 * low-dimensional projection (one matrix product) and the projected squared norms; for
 * each row the num_cand closest earlier rows in the projection are measured again
 * exactly, in double precision in a fixed order, and the closest of them is the row's
 * hint if it is closer than the zero row.  Deterministic:
 * ties go to the lower row index, at both stages. */
#include <stdlib.h>

#include "nntm/nntm.h"

#define SCAN 16 /* candidates compared with the worst kept one at a time */

/* ||a - b||^2 in double: four partial sums over the columns c = 0, 1, 2, 3 mod 4 (in index
 * order each; independent chains of additions), then (s0 + s1) + (s2 + s3). */
static double row_distance(const float *a, const float *b, int32_t cols) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    const size_t n = (size_t)cols;
    size_t c = 0;
    for (; c + 4 <= n; c += 4) {
        const double d0 = (double)a[c] - (double)b[c], d1 = (double)a[c + 1] - (double)b[c + 1];
        const double d2 = (double)a[c + 2] - (double)b[c + 2], d3 = (double)a[c + 3] - (double)b[c + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    double d;
    if (c < n) d = (double)a[c] - (double)b[c], s0 += d * d, c++;
    if (c < n) d = (double)a[c] - (double)b[c], s1 += d * d, c++;
    if (c < n) d = (double)a[c] - (double)b[c], s2 += d * d;
    return (s0 + s1) + (s2 + s3);
}

/* Ask for the row at p (bytes of it) ahead of its use: the candidates are earlier rows
 * anywhere in the tensor, mostly out of the caches. */
static void prefetch_row(const float *p, int32_t cols) {
    const char *b = (const char *)p;
    for (size_t o = 0; o < (size_t)cols * sizeof *p; o += 64) __builtin_prefetch(b + o);
}

/* Insert (d, j) into the ascending list bd/bj of n (< cap, or == cap: the last one drops)
 * entries, after every entry of equal distance (those have lower j). */
static int32_t insert_candidate(float *bd, int32_t *bj, int32_t n, int32_t cap, float d,
                                int32_t j) {
    int32_t i = n < cap ? n : cap - 1;
    while (i > 0 && bd[i - 1] > d) {
        bd[i] = bd[i - 1];
        bj[i] = bj[i - 1];
        i--;
    }
    bd[i] = d;
    bj[i] = j;
    return n < cap ? n + 1 : cap;
}

int nntm_rowref_select(const float *weights, int32_t rows, int32_t cols, const float *gram,
                       const float *norm, int32_t start, int32_t stop, int32_t lo, int32_t window,
                       int32_t num_cand, int32_t *hint) {
    if (!weights || !gram || !norm || !hint || rows < 0 || cols <= 0 || num_cand <= 0 || window <= 0)
        return NNTM_ERR_ARG;
    if (start < 2 || stop > rows || stop <= start || lo < 0 || lo > start - 2)
        return NNTM_ERR_ARG;
    const size_t width = (size_t)(stop - 2 - lo);
    float *bd = malloc((size_t)num_cand * sizeof *bd);
    int32_t *bj = malloc((size_t)num_cand * sizeof *bj);
    if (!bd || !bj) {
        free(bd);
        free(bj);
        return NNTM_ERR_NOMEM;
    }
    for (int32_t r = start; r < stop; r++) {
        const float *grow = gram + (size_t)(r - start) * width;
        int32_t first = r - window > lo ? r - window : lo;
        int32_t n = 0;
        float worst = 0.0f; /* bd[num_cand - 1] once the list is full */
        for (int32_t j0 = first; j0 < r - 1; j0 += SCAN) {
            int32_t j1 = j0 + SCAN < r - 1 ? j0 + SCAN : r - 1;
            float d[SCAN];
            int hit = n < num_cand || j1 - j0 < SCAN;
            /* the projected squared distances less the norm of row r; a run of SCAN
             * with none below the worst kept one changes nothing */
            for (int32_t i = 0; i < j1 - j0; i++) d[i] = norm[j0 + i] - 2.0f * grow[j0 + i - lo];
            if (!hit) {
                int any = 0;
                for (int i = 0; i < SCAN; i++) any |= d[i] < worst;
                hit = any;
            }
            if (!hit) continue;
            for (int32_t j = j0; j < j1; j++) {
                if (n == num_cand && !(d[j - j0] < worst)) continue;
                n = insert_candidate(bd, bj, n, num_cand, d[j - j0], j);
                worst = bd[n - 1];
            }
        }
        const float *wr = weights + (size_t)r * (size_t)cols;
        double best = 0.0; /* ||k_r||^2, summed as row_distance() sums */
        {
            double q[4] = {0.0, 0.0, 0.0, 0.0};
            int32_t c = 0;
            for (; c + 4 <= cols; c += 4)
                for (int i = 0; i < 4; i++) q[i] += (double)wr[c + i] * (double)wr[c + i];
            for (int i = 0; c < cols; c++, i++) q[i] += (double)wr[c] * (double)wr[c];
            best = (q[0] + q[1]) + (q[2] + q[3]);
        }
        int32_t best_j = -1; /* the zero row: a hint must be closer than it */
        if (n) prefetch_row(weights + (size_t)bj[0] * (size_t)cols, cols);
        for (int32_t i = 0; i < n; i++) {
            if (i + 1 < n) prefetch_row(weights + (size_t)bj[i + 1] * (size_t)cols, cols);
            double d = row_distance(wr, weights + (size_t)bj[i] * (size_t)cols, cols);
            if (d < best || (d == best && best_j >= 0 && bj[i] < best_j)) {
                best = d;
                best_j = bj[i];
            }
        }
        hint[r] = best_j;
    }
    free(bd);
    free(bj);
    return NNTM_OK;
}
