/* nntm_encode_cluster: clustering of each subspace's points, outlier
 * detection, codebook quantization and the cluster_data() payload.
 *
 * Clustering is entropy-constrained k-means (Lloyd iterations where a point
 * goes to the entry with the least  sum_j w_j (x_j - c_j)^2 + lambda * L_k,
 * L_k = log2(points / members of k), the ideal length of the index), so the
 * encoder trades distortion against index bits with the lambda of the scalar
 * coder; entries that lose all their points are dropped.  Seeding is
 * deterministic: quantiles for scalar points, k-means++ with a fixed
 * xorshift64* generator for vector points.  A scalar codebook is sent in
 * ascending order (its indices are coded as signed distances to the entry
 * nearest zero, with neighbour contexts), a vector codebook most used first.  Scalar points are clustered on a
 * histogram (bins of half a codebook step), vectors directly.  No libm
 * function whose rounding may vary between machines is used (lengths come from
 * the integer log2 of the bit estimator), so the bytes depend on the input only.
 *
 * Outliers: before clustering, a point whose RMS distance to the mean of the
 * subspace exceeds threshold * the RMS spread of the subspace (both measured
 * without the outliers, two passes), or, with a fraction, that fraction of the
 * points farthest from the mean, is an outlier and takes no part in the
 * clustering.  With the spread rule, after clustering a point whose RMS
 * distance to its entry exceeds threshold * the entry's RMS spread is an
 * outlier too; the entries are re-estimated without the outliers and the
 * points re-assigned, twice.  Every sum runs in a
 * fixed order: the result depends on the input only. */
#include "nntm/nntm.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cluster.h"
#include "../common/quant.h"
#include "bin_writer.h"
#include "cluster_writer.h"

#define REFINE_ROUNDS 2
#define MAX_HIST_BINS (1 << 22)

typedef struct sub_in {
    const float *x; /* n x d */
    const float *w; /* n x d, or NULL: all ones */
    int32_t n, d, kmax;
    double lambda;  /* per bit */
    double step;    /* step of the tensor QP (seeds of scalar codebooks) */
    double cb_step, out_step, res_step;
    double max_abs;
    int outliers, outlier_mode, residual, max_iter;
    double threshold;
    uint64_t seed;
    uint8_t *pre;   /* n: outliers found before the clustering (or NULL) */
} sub_in;

typedef struct sub_work {
    double *c;      /* kmax x d centroids */
    double *len;    /* kmax: index length in bits */
    double *sw, *swx, *sx; /* kmax x d sums */
    double *cnt;    /* kmax members */
    double *e;      /* n: squared distance per value (outlier test) */
    int32_t k;
} sub_work;

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static double wt(const sub_in *in, size_t i) { return in->w ? (double)in->w[i] : 1.0; }

/* log2(total / count) of integer counts, with the integer log2 of the bit
 * estimator (libm's log2 may differ between machines by an ulp). */
static double index_bits(double total, double count) {
    uint32_t t = total >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)total;
    uint32_t c = count >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)count;
    if (c < 1) c = 1;
    if (t < c) t = c;
    return (double)((int64_t)nntm_log2_q16(t) - (int64_t)nntm_log2_q16(c)) / 65536.0;
}

static void set_lengths(sub_work *wk, double total) {
    for (int32_t k = 0; k < wk->k; k++)
        wk->len[k] = wk->cnt[k] > 0 ? index_bits(total, wk->cnt[k]) : 64.0;
}

/* Drop entries without members (keeping the order of the others). */
static void compact(sub_work *wk, int32_t d) {
    int32_t m = 0;
    for (int32_t k = 0; k < wk->k; k++) {
        if (wk->cnt[k] <= 0) continue;
        if (m != k) {
            memmove(wk->c + (size_t)m * d, wk->c + (size_t)k * d, (size_t)d * sizeof(double));
            wk->cnt[m] = wk->cnt[k];
            wk->len[m] = wk->len[k];
        }
        m++;
    }
    if (m == 0) m = 1; /* keep one entry (all points outliers): its value is unused */
    wk->k = m;
}

static void sums_clear(sub_work *wk, int32_t d) {
    size_t m = (size_t)wk->k * (size_t)d;
    memset(wk->sw, 0, m * sizeof(double));
    memset(wk->swx, 0, m * sizeof(double));
    memset(wk->sx, 0, m * sizeof(double));
    memset(wk->cnt, 0, (size_t)wk->k * sizeof(double));
}

/* New centroids from the sums (importance-weighted means; plain means where
 * every weight is zero); entries without members keep their value. */
static void sums_to_centroids(sub_work *wk, int32_t d) {
    for (int32_t k = 0; k < wk->k; k++) {
        if (wk->cnt[k] <= 0) continue;
        for (int32_t j = 0; j < d; j++) {
            size_t t = (size_t)k * d + j;
            wk->c[t] = wk->sw[t] > 0 ? wk->swx[t] / wk->sw[t] : wk->sx[t] / wk->cnt[k];
        }
    }
}

/* ---- assignment ---- */

/* Best entry of a scalar point among ascending centroids: exact, because the
 * distortion alone bounds the cost (lengths are >= 0). */
static int32_t best_1d(const sub_work *wk, double lambda, double x, double w, double *dist) {
    int32_t lo = 0, hi = wk->k;
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (wk->c[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    double best = DBL_MAX, bd = 0.0;
    int32_t bk = lo < wk->k ? lo : wk->k - 1;
    for (int32_t k = lo; k < wk->k; k++) {
        double dd = wk->c[k] - x, dist_k = w * dd * dd;
        if (dist_k >= best) break;
        double cost = dist_k + lambda * wk->len[k];
        if (cost < best) best = cost, bk = k, bd = dd * dd;
    }
    for (int32_t k = lo - 1; k >= 0; k--) {
        double dd = x - wk->c[k], dist_k = w * dd * dd;
        if (dist_k >= best) break;
        double cost = dist_k + lambda * wk->len[k];
        if (cost < best) best = cost, bk = k, bd = dd * dd;
    }
    *dist = bd;
    return bk;
}

static int32_t best_nd(const sub_work *wk, const sub_in *in, size_t i, double *dist) {
    const int32_t d = in->d;
    const float *x = in->x + i * (size_t)d;
    double best = DBL_MAX, bd = 0.0;
    int32_t bk = 0;
    for (int32_t k = 0; k < wk->k; k++) {
        const double *c = wk->c + (size_t)k * d;
        double cost = in->lambda * wk->len[k], plain = 0.0;
        int32_t j;
        for (j = 0; j < d; j++) {
            double dd = (double)x[j] - c[j];
            cost += wt(in, i * (size_t)d + j) * dd * dd;
            plain += dd * dd;
            if (cost >= best) break;
        }
        if (j == d && cost < best) best = cost, bk = k, bd = plain;
    }
    *dist = bd;
    return bk;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct entry_1d {
    double c, len, cnt;
} entry_1d;

static int cmp_entry(const void *a, const void *b) {
    return cmp_double(&((const entry_1d *)a)->c, &((const entry_1d *)b)->c);
}

/* Sort the centroids of scalar points ascending (with their lengths and
 * counts) and merge equal ones. */
static int sort_1d(sub_work *wk) {
    entry_1d *t = malloc((size_t)wk->k * sizeof(entry_1d));
    if (!t) return NNTM_ERR_NOMEM;
    for (int32_t k = 0; k < wk->k; k++) t[k].c = wk->c[k], t[k].len = wk->len[k], t[k].cnt = wk->cnt[k];
    qsort(t, (size_t)wk->k, sizeof(entry_1d), cmp_entry);
    int32_t m = 0;
    for (int32_t k = 0; k < wk->k; k++) {
        if (m > 0 && t[k].c == wk->c[m - 1]) {
            wk->cnt[m - 1] += t[k].cnt;
            if (t[k].len < wk->len[m - 1]) wk->len[m - 1] = t[k].len;
            continue;
        }
        wk->c[m] = t[k].c, wk->len[m] = t[k].len, wk->cnt[m] = t[k].cnt;
        m++;
    }
    wk->k = m;
    free(t);
    return NNTM_OK;
}

/* Assign every point (labels), mark outliers (-1), and accumulate the sums
 * of the inliers. */
static int assign_all(const sub_in *in, sub_work *wk, int32_t *labels, int mark_outliers) {
    const int32_t d = in->d;
    for (size_t i = 0; i < (size_t)in->n; i++) {
        double dist;
        if (in->pre && in->pre[i]) {
            labels[i] = -1;
            wk->e[i] = 0.0;
            continue;
        }
        if (d == 1)
            labels[i] = best_1d(wk, in->lambda, (double)in->x[i], wt(in, i), &dist);
        else
            labels[i] = best_nd(wk, in, i, &dist);
        wk->e[i] = dist / d;
    }
    if (mark_outliers && in->outliers && in->outlier_mode == NNTM_OUTLIER_SPREAD && wk->k > 0) {
        /* spread of each entry: mean squared distance per value of its members */
        double *spread = wk->swx; /* scratch of kmax doubles at least */
        memset(spread, 0, (size_t)wk->k * sizeof(double));
        memset(wk->cnt, 0, (size_t)wk->k * sizeof(double));
        for (size_t i = 0; i < (size_t)in->n; i++) {
            if (labels[i] < 0) continue;
            spread[labels[i]] += wk->e[i];
            wk->cnt[labels[i]] += 1.0;
        }
        for (int32_t k = 0; k < wk->k; k++) spread[k] = wk->cnt[k] > 0 ? spread[k] / wk->cnt[k] : 0;
        double limit = in->threshold * in->threshold;
        for (size_t i = 0; i < (size_t)in->n; i++) {
            if (labels[i] < 0) continue;
            double sp = spread[labels[i]];
            if (sp > 0 && wk->e[i] > limit * sp) labels[i] = -1;
        }
    }
    sums_clear(wk, d);
    for (size_t i = 0; i < (size_t)in->n; i++) {
        int32_t k = labels[i];
        if (k < 0) continue;
        wk->cnt[k] += 1.0;
        for (int32_t j = 0; j < d; j++) {
            size_t t = (size_t)k * d + j, v = i * (size_t)d + j;
            double w = wt(in, v), x = (double)in->x[v];
            wk->sw[t] += w;
            wk->swx[t] += w * x;
            wk->sx[t] += x;
        }
    }
    return NNTM_OK;
}

/* ---- clustering ---- */

/* Scalar points: Lloyd iterations on a histogram of the values. */
static int lloyd_1d(const sub_in *in, sub_work *wk) {
    double lo = DBL_MAX, hi = -DBL_MAX, n_in = 0.0;
    for (int32_t i = 0; i < in->n; i++) {
        if (in->pre && in->pre[i]) continue;
        n_in += 1.0;
        double x = in->x[i];
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    double h = in->cb_step * 0.5;
    size_t nb = (size_t)floor((hi - lo) / h) + 1;
    while (nb > MAX_HIST_BINS) {
        h *= 2;
        nb = (size_t)floor((hi - lo) / h) + 1;
    }
    double *hc = calloc(nb, sizeof(double)), *hw = calloc(nb, sizeof(double));
    double *hwx = calloc(nb, sizeof(double)), *hx = calloc(nb, sizeof(double));
    if (!hc || !hw || !hwx || !hx) {
        free(hc), free(hw), free(hwx), free(hx);
        return NNTM_ERR_NOMEM;
    }
    for (int32_t i = 0; i < in->n; i++) {
        if (in->pre && in->pre[i]) continue;
        double x = in->x[i], w = wt(in, (size_t)i);
        size_t b = (size_t)floor((x - lo) / h);
        if (b >= nb) b = nb - 1;
        hc[b] += 1.0, hw[b] += w, hwx[b] += w * x, hx[b] += x;
    }
    /* seeds: the uniform quantizer of the tensor's step (an entry at zero and
     * +-j*g), its spacing g widened when kmax entries cannot cover the values
     * between the 0.1 % and 99.9 % quantiles */
    double acc = 0.0, qlo = lo, qhi = hi;
    int have_lo = 0;
    for (size_t b = 0; b < nb; b++) {
        acc += hc[b];
        if (!have_lo && acc >= 0.001 * n_in) qlo = lo + b * h, have_lo = 1;
        if (acc >= 0.999 * n_in) {
            qhi = lo + (b + 1) * h;
            break;
        }
    }
    double reach = fabs(qlo) > fabs(qhi) ? fabs(qlo) : fabs(qhi);
    int32_t half = (in->kmax - 1) / 2;
    double g = in->step;
    if (half > 0 && reach / half > g) g = reach / half;
    int32_t k = 0;
    if (half == 0) {
        wk->c[k++] = 0.0;
        if (in->kmax > 1) wk->c[k++] = (qlo + qhi) * 0.5;
    } else {
        for (int32_t j = -half; j <= half; j++) wk->c[k++] = j * g;
        if (k < in->kmax) wk->c[k++] = (half + 1) * g; /* even kmax: one more on the right */
    }
    wk->k = k;
    for (int32_t t = 0; t < wk->k; t++) wk->len[t] = 0.0, wk->cnt[t] = 1.0;
    int rv = sort_1d(wk);
    for (int32_t t = 0; t < wk->k; t++) wk->len[t] = index_bits((double)wk->k, 1.0);
    for (int it = 0; it < in->max_iter; it++) {
        sums_clear(wk, 1);
        for (size_t i = 0; i < nb; i++) {
            if (hc[i] <= 0) continue;
            double xm = hx[i] / hc[i], wm = hw[i] / hc[i], dist;
            int32_t kk = best_1d(wk, in->lambda, xm, wm, &dist);
            wk->cnt[kk] += hc[i], wk->sw[kk] += hw[i], wk->swx[kk] += hwx[i];
            wk->sx[kk] += hx[i];
        }
        double *old = wk->e; /* scratch: n >= k values */
        memcpy(old, wk->c, (size_t)wk->k * sizeof(double));
        int32_t k0 = wk->k;
        sums_to_centroids(wk, 1);
        set_lengths(wk, n_in);
        compact(wk, 1);
        int moved = wk->k != k0;
        for (int32_t t = 0; !moved && t < wk->k; t++) moved = wk->c[t] != old[t];
        if (rv == NNTM_OK) rv = sort_1d(wk);
        if (!moved || rv) break;
    }
    free(hc), free(hw), free(hwx), free(hx);
    return rv;
}

/* Vector points: k-means++ seeding, then Lloyd iterations. */
static int lloyd_nd(const sub_in *in, sub_work *wk, int32_t *labels) {
    const int32_t d = in->d;
    uint64_t rng = in->seed | 1;
    double *mind = wk->e;
    int32_t n_in = 0;
    for (int32_t i = 0; i < in->n; i++) n_in += !(in->pre && in->pre[i]);
    int32_t first = (int32_t)(rng_next(&rng) % (uint64_t)n_in);
    for (int32_t i = 0; i < in->n; i++) { /* the first-th inlier */
        if (in->pre && in->pre[i]) continue;
        if (first-- == 0) {
            first = i;
            break;
        }
    }
    for (int32_t j = 0; j < d; j++) wk->c[j] = in->x[(size_t)first * d + j];
    wk->k = 1;
    for (int32_t i = 0; i < in->n; i++) mind[i] = DBL_MAX;
    while (wk->k < in->kmax) {
        const double *c = wk->c + (size_t)(wk->k - 1) * d;
        double total = 0.0;
        for (int32_t i = 0; i < in->n; i++) {
            double s = 0.0;
            if (in->pre && in->pre[i]) {
                mind[i] = 0.0; /* outliers are never seeds */
                continue;
            }
            for (int32_t j = 0; j < d; j++) {
                double dd = (double)in->x[(size_t)i * d + j] - c[j];
                s += dd * dd;
            }
            if (s < mind[i]) mind[i] = s;
            total += mind[i];
        }
        if (!(total > 0)) break; /* every point sits on a centroid */
        double r = (double)(rng_next(&rng) >> 11) / 9007199254740992.0 * total, run = 0.0;
        int32_t pick = in->n - 1;
        for (int32_t i = 0; i < in->n; i++) {
            run += mind[i];
            if (run > r && mind[i] > 0) {
                pick = i;
                break;
            }
        }
        for (int32_t j = 0; j < d; j++) wk->c[(size_t)wk->k * d + j] = in->x[(size_t)pick * d + j];
        wk->k++;
    }
    for (int32_t t = 0; t < wk->k; t++) wk->len[t] = index_bits((double)wk->k, 1.0);
    for (int it = 0; it < in->max_iter; it++) {
        int32_t k0 = wk->k;
        int rv = assign_all(in, wk, labels, 0);
        if (rv) return rv;
        double *old = malloc((size_t)wk->k * d * sizeof(double));
        if (!old) return NNTM_ERR_NOMEM;
        memcpy(old, wk->c, (size_t)wk->k * d * sizeof(double));
        sums_to_centroids(wk, d);
        set_lengths(wk, (double)n_in);
        int moved = memcmp(old, wk->c, (size_t)wk->k * d * sizeof(double)) != 0;
        free(old);
        compact(wk, d);
        if (!moved && wk->k == k0) break;
    }
    return NNTM_OK;
}

/* Centroids onto the codebook grid (nearest integer multiple of the step). */
static int quantize_centroids(const sub_in *in, sub_work *wk) {
    for (size_t t = 0; t < (size_t)wk->k * in->d; t++) {
        double q = floor(wk->c[t] / in->cb_step + 0.5);
        if (fabs(q) > (double)NNTM_MAX_LEVEL) return NNTM_ERR_RANGE;
        while (fabs(q * in->cb_step) > in->max_abs && q != 0) q += q > 0 ? -1 : 1;
        wk->c[t] = q * in->cb_step;
    }
    return in->d == 1 ? sort_1d(wk) : NNTM_OK;
}

typedef struct order_item {
    double cnt;
    int32_t k;
} order_item;

static int cmp_order(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    if (x->cnt != y->cnt) return x->cnt > y->cnt ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

/* Scalar codebooks: ascending values (the centroids are sorted already). */
static int cmp_order_value(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    return (x->k > y->k) - (x->k < y->k);
}

static int32_t level_of(double v, double step, double max_abs, int *range) {
    double q = floor(fabs(v) / step + 0.5);
    while (q > 0 && q * step > max_abs) q -= 1;
    if (q > (double)NNTM_MAX_LEVEL) {
        *range = 1;
        q = NNTM_MAX_LEVEL;
    }
    return v < 0 ? -(int32_t)q : (int32_t)q;
}

/* Outliers before the clustering (in->pre): far from the subspace's mean. */
static int find_outliers(const sub_in *in, double *dist) {
    const int32_t d = in->d;
    memset(in->pre, 0, (size_t)in->n);
    double *mean = malloc((size_t)d * sizeof(double));
    if (!mean) return NNTM_ERR_NOMEM;
    int passes = in->outlier_mode == NNTM_OUTLIER_SPREAD ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        double cnt = 0.0, var = 0.0;
        memset(mean, 0, (size_t)d * sizeof(double));
        for (size_t i = 0; i < (size_t)in->n; i++) {
            if (in->pre[i]) continue;
            cnt += 1.0;
            for (int32_t j = 0; j < d; j++) mean[j] += in->x[i * (size_t)d + j];
        }
        if (cnt == 0) break;
        for (int32_t j = 0; j < d; j++) mean[j] /= cnt;
        for (size_t i = 0; i < (size_t)in->n; i++) {
            double s = 0.0;
            for (int32_t j = 0; j < d; j++) {
                double dd = (double)in->x[i * (size_t)d + j] - mean[j];
                s += dd * dd;
            }
            dist[i] = s / d;
            if (!in->pre[i]) var += dist[i];
        }
        var /= cnt;
        if (in->outlier_mode == NNTM_OUTLIER_SPREAD) {
            double limit = in->threshold * in->threshold * var;
            for (size_t i = 0; i < (size_t)in->n; i++) in->pre[i] = var > 0 && dist[i] > limit;
        } else {
            size_t num = (size_t)floor(in->threshold * in->n);
            if (num == 0) break;
            double *r = malloc((size_t)in->n * sizeof(double));
            if (!r) {
                free(mean);
                return NNTM_ERR_NOMEM;
            }
            memcpy(r, dist, (size_t)in->n * sizeof(double));
            qsort(r, (size_t)in->n, sizeof(double), cmp_double);
            double limit = r[(size_t)in->n - num];
            free(r);
            size_t marked = 0; /* exactly num points: the farthest, ties by position */
            for (size_t i = 0; i < (size_t)in->n && marked < num; i++)
                if (dist[i] > limit) in->pre[i] = 1, marked++;
            for (size_t i = 0; i < (size_t)in->n && marked < num; i++)
                if (dist[i] == limit) in->pre[i] = 1, marked++;
        }
    }
    free(mean);
    return NNTM_OK;
}

/* Cluster one subspace: codebook integers, labels, levels. */
static int cluster_subspace(const sub_in *in, int32_t *k_out, int32_t *codebook, int32_t *labels,
                            int32_t *levels) {
    const int32_t d = in->d;
    size_t kd = (size_t)in->kmax * d;
    sub_work wk = {0};
    wk.c = malloc(kd * sizeof(double));
    wk.sw = malloc(kd * sizeof(double));
    wk.swx = malloc((kd > (size_t)in->kmax ? kd : (size_t)in->kmax) * sizeof(double));
    wk.sx = malloc(kd * sizeof(double));
    wk.len = malloc((size_t)in->kmax * sizeof(double));
    wk.cnt = malloc((size_t)in->kmax * sizeof(double));
    wk.e = malloc(((size_t)in->n > (size_t)in->kmax ? (size_t)in->n : (size_t)in->kmax) *
                  sizeof(double));
    int rv = NNTM_OK;
    if (!wk.c || !wk.sw || !wk.swx || !wk.sx || !wk.len || !wk.cnt || !wk.e) {
        rv = NNTM_ERR_NOMEM;
        goto done;
    }
    if (in->n == 0) {
        *k_out = 1;
        memset(codebook, 0, (size_t)d * sizeof(int32_t));
        goto done;
    }
    if (in->outliers) {
        rv = find_outliers(in, wk.e);
        if (rv) goto done;
    }
    int32_t inliers_n = 0;
    for (int32_t i = 0; i < in->n; i++) inliers_n += !(in->pre && in->pre[i]);
    if (inliers_n == 0) { /* every point an outlier */
        wk.k = 1;
        wk.c[0] = 0.0;
        for (int32_t j = 1; j < d; j++) wk.c[j] = 0.0;
    } else {
        rv = d == 1 ? lloyd_1d(in, &wk) : lloyd_nd(in, &wk, labels);
    }
    /* refinement with outliers, on the codebook grid */
    for (int round = 0; rv == NNTM_OK && round <= REFINE_ROUNDS; round++) {
        rv = quantize_centroids(in, &wk);
        if (rv == NNTM_OK) rv = assign_all(in, &wk, labels, 1);
        if (rv || round == REFINE_ROUNDS) break;
        double inliers = 0;
        for (int32_t k = 0; k < wk.k; k++) inliers += wk.cnt[k];
        sums_to_centroids(&wk, d);
        set_lengths(&wk, inliers > 0 ? inliers : 1);
    }
    if (rv) goto done;
    /* final codebook: entries with members, most used first */
    order_item *ord = malloc((size_t)wk.k * sizeof(order_item));
    int32_t *remap = malloc((size_t)wk.k * sizeof(int32_t));
    if (!ord || !remap) {
        free(ord), free(remap);
        rv = NNTM_ERR_NOMEM;
        goto done;
    }
    int32_t m = 0;
    for (int32_t k = 0; k < wk.k; k++) {
        remap[k] = -1;
        if (wk.cnt[k] > 0) ord[m].cnt = wk.cnt[k], ord[m].k = k, m++;
    }
    qsort(ord, (size_t)m, sizeof(order_item), d == 1 ? cmp_order_value : cmp_order);
    if (m == 0) { /* every point an outlier */
        memset(codebook, 0, (size_t)d * sizeof(int32_t));
        m = 1;
    }
    for (int32_t t = 0; t < m && ord[t].cnt > 0; t++) {
        remap[ord[t].k] = t;
        for (int32_t j = 0; j < d; j++)
            codebook[(size_t)t * d + j] =
                (int32_t)floor(wk.c[(size_t)ord[t].k * d + j] / in->cb_step + 0.5);
    }
    *k_out = m;
    int range = 0;
    for (size_t i = 0; i < (size_t)in->n; i++) {
        int32_t k = labels[i];
        const float *x = in->x + i * (size_t)d;
        int32_t *lv = levels + i * (size_t)d;
        if (k < 0) {
            for (int32_t j = 0; j < d; j++) lv[j] = level_of(x[j], in->out_step, in->max_abs, &range);
            continue;
        }
        labels[i] = remap[k];
        for (int32_t j = 0; j < d; j++) {
            double c = (double)codebook[(size_t)labels[i] * d + j] * in->cb_step;
            lv[j] = in->residual ? level_of((double)x[j] - c, in->res_step, in->max_abs, &range) : 0;
        }
    }
    free(ord), free(remap);
    if (range) rv = NNTM_ERR_RANGE;
done:
    free(wk.c), free(wk.sw), free(wk.swx), free(wk.sx), free(wk.len), free(wk.cnt), free(wk.e);
    return rv;
}

int nntm_encode_cluster(const nntm_cluster_encoder_params *params, const float *points,
                        const float *importance, int32_t dtype, int32_t *codebook_size_out,
                        int32_t *codebooks, int32_t *labels_out, void *recon, nntm_buffer *out) {
    if (!params || !out || !codebook_size_out) return NNTM_ERR_ARG;
    out->data = NULL;
    out->size = out->capacity = 0;
    nntm_cluster_steps st;
    const nntm_cluster_params *cp = &params->cluster;
    int rv = nntm_check_cluster_params(cp, &st);
    if (rv) return rv;
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    if (!(params->lambda_scale >= 0.0) || params->lambda_scale > 1e6) return NNTM_ERR_ARG;
    if (!(params->max_abs_value > 0.0)) return NNTM_ERR_ARG;
    if (params->max_iterations < 1 || params->max_iterations > 1000) return NNTM_ERR_ARG;
    if (params->outlier_mode == NNTM_OUTLIER_SPREAD) {
        if (!(params->outlier_threshold > 0.0) || params->outlier_threshold > 1e6) return NNTM_ERR_ARG;
    } else if (params->outlier_mode == NNTM_OUTLIER_FRACTION) {
        if (!(params->outlier_threshold >= 0.0) || params->outlier_threshold > 0.5) return NNTM_ERR_ARG;
    } else {
        return NNTM_ERR_ARG;
    }
    int32_t m, s;
    if (nntm_qp_to_step(params->qp, cp->qp_density, &m, &s)) return NNTM_ERR_ARG;
    if (s < -1000 || s > 1000 || st.cb_shift < -1000 || st.cb_shift > 1000 ||
        st.out_shift < -1000 || st.out_shift > 1000 || st.res_shift < -1000 || st.res_shift > 1000)
        return NNTM_ERR_ARG;
    size_t count, npoints, ncb;
    rv = nntm_cluster_counts(cp, &count, &npoints, &ncb);
    if (rv) return rv;
    if (count && (!points || !recon || !codebooks)) return NNTM_ERR_ARG;
    for (size_t i = 0; i < count; i++)
        if (!isfinite(points[i])) return NNTM_ERR_NONFINITE;
    if (importance)
        for (size_t i = 0; i < count; i++)
            if (!(importance[i] >= 0.0f) || !isfinite(importance[i])) return NNTM_ERR_ARG;
    double step = ldexp((double)m, s);
    int32_t *labels = labels_out ? labels_out : malloc((npoints ? npoints : 1) * sizeof(int32_t));
    int32_t *levels = malloc((count ? count : 1) * sizeof(int32_t));
    nntm_cluster_ctxs *ctxs = malloc(sizeof *ctxs);
    uint8_t *pre = malloc(npoints ? npoints : 1);
    nntm_cluster_params used = *cp;
    if (!labels || !levels || !ctxs || !pre) {
        rv = NNTM_ERR_NOMEM;
        goto done;
    }
    size_t v = 0, pt = 0, cb = 0;
    for (int32_t sp = 0; sp < cp->num_subspaces && rv == NNTM_OK; sp++) {
        sub_in in = {points + v, importance ? importance + v : NULL, cp->num_points[sp],
                     cp->dims[sp], cp->codebook_size[sp], params->lambda_scale * step * step, step,
                     ldexp((double)st.cb_mant, st.cb_shift), ldexp((double)st.out_mant, st.out_shift),
                     ldexp((double)st.res_mant, st.res_shift), params->max_abs_value,
                     cp->outliers_enabled, params->outlier_mode, cp->residual_enabled,
                     params->max_iterations, params->outlier_threshold,
                     0x9E3779B97F4A7C15ULL ^ ((uint64_t)(sp + 1) * 0xBF58476D1CE4E5B9ULL),
                     cp->outliers_enabled ? pre : NULL};
        if (in.kmax > in.n && in.n > 0) in.kmax = in.n;
        rv = cluster_subspace(&in, &used.codebook_size[sp], codebooks + cb, labels + pt,
                              levels + v);
        codebook_size_out[sp] = used.codebook_size[sp];
        v += (size_t)in.n * (size_t)in.d;
        pt += (size_t)in.n;
        cb += (size_t)used.codebook_size[sp] * (size_t)in.d;
    }
    if (rv == NNTM_OK && count) {
        int32_t *delta = malloc(npoints * sizeof(int32_t));
        nntm_arith_encoder enc;
        nntm_arith_encoder_init(&enc, out);
        if (delta) nntm_write_cluster_data(&enc.w, ctxs, &used, codebooks, labels, levels, delta);
        rv = delta ? nntm_arith_encoder_finish(&enc) : NNTM_ERR_NOMEM;
        free(delta);
    }
    if (rv == NNTM_OK)
        rv = nntm_cluster_reconstruct(&used, &st, codebooks, labels, levels, dtype, recon);
done:
    free(pre);
    free(ctxs);
    free(levels);
    if (!labels_out) free(labels);
    if (rv) nntm_buffer_free(out);
    return rv;
}
