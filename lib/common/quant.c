/* QP -> step size and integer reconstruction with one exact conversion. */
#include "quant.h"

#include "partition.h"

#include <math.h>
#include <string.h>

int nntm_qp_to_step(int32_t qp, int32_t qp_density, int32_t *mantissa, int32_t *shift) {
    if (qp_density < 0 || qp_density > NNTM_MAX_QP_DENSITY || qp < -4096 || qp > 4096)
        return NNTM_ERR_ARG;
    int32_t per = 1 << qp_density;
    int32_t frac = qp & (per - 1);        /* two's complement: 0..per-1 */
    int32_t whole = (qp - frac) / per;     /* exact floor(qp / per) */
    *mantissa = per + frac;
    *shift = whole - qp_density;
    return NNTM_OK;
}

double nntm_step_double(int32_t qp, int32_t qp_density) {
    int32_t m, s;
    if (nntm_qp_to_step(qp, qp_density, &m, &s)) return 0.0;
    return ldexp((double)m, s);
}

int nntm_check_kernel_params(const nntm_kernel_params *p) {
    if (!p || p->rows < 0 || p->cols < 0) return NNTM_ERR_ARG;
    if (p->num_gt_flags < 1 || p->num_gt_flags > NNTM_MAX_GT_FLAGS) return NNTM_ERR_ARG;
    int32_t m, s;
    int rv = nntm_qp_to_step(p->qp, p->qp_density, &m, &s);
    if (rv) return rv;
    if (p->dq_enabled < 0 || p->dq_enabled > 3) return NNTM_ERR_ARG;
    if (p->prob_window < 0 || p->prob_window > NNTM_MAX_PROB_WINDOW) return NNTM_ERR_ARG;
    if (p->suffix_ctx < 0 || p->suffix_ctx > 1) return NNTM_ERR_ARG;
    if (p->row_pred < 0 || p->row_pred > 1 || (p->row_pred && p->tree.enabled)) return NNTM_ERR_ARG;
    /* entry points [1.8]: raster tensors only (the coding tree keeps one substream) */
    if (p->substream_rows < 0 || (p->substream_rows && p->tree.enabled)) return NNTM_ERR_ARG;
    /* tree nodes reach up to one CTU past the tensor: keep their corners in int32 */
    if (p->tree.enabled && (p->rows > INT32_MAX - 256 || p->cols > INT32_MAX - 256))
        return NNTM_ERR_ARG;
    /* intra prediction works on CU levels in the level domain: not with DQ,
     * whose reconstruction depends on each level's parity path */
    if (p->tree.intra_pred_enabled && (!p->tree.enabled || p->dq_enabled)) return NNTM_ERR_ARG;
    return nntm_check_tree_params(&p->tree);
}

/* Index of the highest set bit of x (x > 0). */
static int msb64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return 63 - __builtin_clzll(x);
#else
    int n = 0;
    while (x >>= 1) n++;
    return n;
#endif
}

uint64_t nntm_int_to_float_bits(int64_t v, int32_t e, int mbits, int ebits) {
    uint64_t sign = v < 0 ? (uint64_t)1 << (mbits + ebits) : 0;
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (m == 0) return 0;
    int32_t bias = (1 << (ebits - 1)) - 1;
    int32_t emin = 1 - bias;
    int64_t exp = (int64_t)msb64(m) + e;          /* unbiased exponent of the value */
    int subnormal = exp < emin;
    int64_t lsb = (subnormal ? emin : exp) - mbits; /* exponent of the result's last bit */
    int64_t drop = lsb - e;                         /* bits of m below that */
    uint64_t q;
    if (drop <= 0) {
        q = m << (-drop);                           /* < 2^(mbits+1): fits */
    } else if (drop > 64) {
        q = 0;
    } else {
        uint64_t half = (uint64_t)1 << (drop - 1);
        q = drop == 64 ? 0 : m >> drop;
        uint64_t rem = drop == 64 ? m : m - (q << drop);
        if (rem > half || (rem == half && (q & 1))) q++;
    }
    if (subnormal) return sign | q; /* q == 2^mbits is the smallest normal number */
    if (q >> (mbits + 1)) {         /* rounding carried out of the mantissa */
        q >>= 1;
        exp++;
    }
    if (exp > bias) return sign | ((((uint64_t)1 << ebits) - 1) << mbits); /* infinity */
    uint64_t frac = q - ((uint64_t)1 << mbits);
    return sign | ((uint64_t)(exp + bias) << mbits) | frac;
}

/* Mantissa and exponent bits of an output format. */
static void float_format(int32_t dtype, int *mbits, int *ebits) {
    switch (dtype) {
    case NNTM_DTYPE_FLOAT32: *mbits = 23, *ebits = 8; break;
    case NNTM_DTYPE_FLOAT16: *mbits = 10, *ebits = 5; break;
    case NNTM_DTYPE_BFLOAT16: *mbits = 7, *ebits = 8; break;
    default: *mbits = 52, *ebits = 11; break; /* NNTM_DTYPE_FLOAT64, checked by the caller */
    }
}

static void store_bits(int32_t dtype, uint64_t b, void *out, size_t i) {
    if (dtype == NNTM_DTYPE_FLOAT32) {
        uint32_t v = (uint32_t)b;
        memcpy((uint8_t *)out + 4 * i, &v, 4);
    } else if (dtype == NNTM_DTYPE_FLOAT64) {
        memcpy((uint8_t *)out + 8 * i, &b, 8);
    } else {
        uint16_t v = (uint16_t)b;
        memcpy((uint8_t *)out + 2 * i, &v, 2);
    }
}

int nntm_ref_sample(int32_t dtype, const void *samples, size_t i, int64_t *m, int32_t *e) {
    int mbits, ebits;
    uint64_t bits;
    if (dtype == NNTM_DTYPE_FLOAT32) {
        uint32_t v;
        memcpy(&v, (const uint8_t *)samples + 4 * i, 4);
        bits = v;
    } else if (dtype == NNTM_DTYPE_FLOAT16 || dtype == NNTM_DTYPE_BFLOAT16) {
        uint16_t v;
        memcpy(&v, (const uint8_t *)samples + 2 * i, 2);
        bits = v;
    } else {
        return 0;
    }
    float_format(dtype, &mbits, &ebits);
    uint64_t frac = bits & (((uint64_t)1 << mbits) - 1);
    uint64_t ex = (bits >> mbits) & (((uint64_t)1 << ebits) - 1);
    int neg = (int)((bits >> (mbits + ebits)) & 1);
    int32_t bias = (1 << (ebits - 1)) - 1;
    if (ex == ((uint64_t)1 << ebits) - 1) return 0; /* infinity or NaN */
    uint64_t mag = ex ? frac | ((uint64_t)1 << mbits) : frac;
    *e = (ex ? (int32_t)ex : 1) - bias - mbits;
    *m = neg ? -(int64_t)mag : (int64_t)mag;
    return 1;
}

uint64_t nntm_sum_to_float_bits(int64_t a, int32_t ea, int64_t b, int32_t eb, int mbits,
                                int ebits) {
    if (a == 0) return nntm_int_to_float_bits(b, eb, mbits, ebits);
    if (b == 0) return nntm_int_to_float_bits(a, ea, mbits, ebits);
    if (ea < eb) { /* a has the larger exponent */
        int64_t tv = a;
        int32_t te = ea;
        a = b, ea = eb, b = tv, eb = te;
    }
    uint64_t ma = a < 0 ? (uint64_t)0 - (uint64_t)a : (uint64_t)a;
    uint64_t mb = b < 0 ? (uint64_t)0 - (uint64_t)b : (uint64_t)b;
    int t = 60 - msb64(ma);           /* shift that puts a's top bit at bit 60 (t >= 18) */
    int64_t d = (int64_t)ea - eb;
    if (d <= t) /* exact: |a| 2^d < 2^61 and |b| < 2^42 */
        return nntm_int_to_float_bits(a * ((int64_t)1 << d) + b, eb, mbits, ebits);
    /* |b| is below 2^-18 of |a| 2^d: keep b's bits above a's bit 0 and jam the rest
     * into one sticky bit, one position below (the doubling), so that the rounding,
     * at least 7 bits above, sees the same side of every tie as the exact sum. */
    int64_t r = d - t;
    uint64_t q = r >= 64 ? 0 : mb >> r;
    int lost = r >= 64 ? mb != 0 : (q << r) != mb;
    int64_t big = (int64_t)(ma << (t + 1));
    int64_t small = (int64_t)(2 * q + (uint64_t)lost);
    int64_t sum = (a < 0 ? -big : big) + (b < 0 ? -small : small);
    return nntm_int_to_float_bits(sum, (int32_t)(ea - t - 1), mbits, ebits);
}

/* Tensors of at least RECON_TABLE_MIN samples look up indices in [-HALF, HALF]. */
#define RECON_TABLE_MIN 4096
#define RECON_TABLE_HALF 255

int nntm_reconstruct_map(const nntm_kernel_params *params, const int32_t *levels,
                         const int16_t *qp_delta, size_t count, int32_t dtype,
                         const nntm_reference *ref, void *out) {
    if (!params || (count && (!levels || !out))) return NNTM_ERR_ARG;
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    if (ref && nntm_check_reference(ref, count)) return NNTM_ERR_ARG;
    int32_t mant[2 * NNTM_MAX_CU_QP_DELTA + 1], shift[2 * NNTM_MAX_CU_QP_DELTA + 1];
    for (int d = -NNTM_MAX_CU_QP_DELTA; d <= NNTM_MAX_CU_QP_DELTA; d++) {
        int k = d + NNTM_MAX_CU_QP_DELTA;
        if (nntm_qp_to_step(params->qp + d, params->qp_density, &mant[k], &shift[k])) {
            if (d == 0) return NNTM_ERR_ARG;
            mant[k] = 0; /* not a valid QP: an error only if a CU uses it */
        }
        shift[k] -= params->dq_enabled ? 1 : 0; /* DQ indices count half steps */
    }
    int mbits, ebits;
    float_format(dtype, &mbits, &ebits);
    if (!ref && !qp_delta && count >= RECON_TABLE_MIN) {
        /* one QP and no prediction: the samples of the small indices, which are nearly all
         * of them, from a table made with the same conversion (the others converted) */
        const int k = NNTM_MAX_CU_QP_DELTA;
        uint64_t table[2 * RECON_TABLE_HALF + 1];
        for (int32_t l = -RECON_TABLE_HALF; l <= RECON_TABLE_HALF; l++)
            table[l + RECON_TABLE_HALF] =
                nntm_int_to_float_bits((int64_t)l * mant[k], shift[k], mbits, ebits);
        for (size_t i = 0; i < count; i++) {
            int32_t l = levels[i];
            uint64_t bits = l >= -RECON_TABLE_HALF && l <= RECON_TABLE_HALF
                                ? table[l + RECON_TABLE_HALF]
                                : nntm_int_to_float_bits((int64_t)l * mant[k], shift[k], mbits,
                                                         ebits);
            store_bits(dtype, bits, out, i);
        }
        return NNTM_OK;
    }
    for (size_t i = 0; i < count; i++) {
        int k = NNTM_MAX_CU_QP_DELTA + (qp_delta ? qp_delta[i] : 0);
        if (k < 0 || k > 2 * NNTM_MAX_CU_QP_DELTA || mant[k] == 0) return NNTM_ERR_ARG;
        int64_t v = (int64_t)levels[i] * mant[k];
        uint64_t bits;
        if (ref) {
            int64_t m;
            int32_t e;
            if (!nntm_ref_sample(ref->dtype, ref->samples, i, &m, &e)) return NNTM_ERR_NONFINITE;
            bits = nntm_sum_to_float_bits(m * ref->scale, e - NNTM_PRED_SCALE_SHIFT, v, shift[k],
                                          mbits, ebits);
        } else {
            bits = nntm_int_to_float_bits(v, shift[k], mbits, ebits);
        }
        store_bits(dtype, bits, out, i);
    }
    return NNTM_OK;
}

int nntm_check_reference(const nntm_reference *ref, size_t count) {
    if (ref->dtype != NNTM_DTYPE_FLOAT32 && ref->dtype != NNTM_DTYPE_FLOAT16 &&
        ref->dtype != NNTM_DTYPE_BFLOAT16)
        return NNTM_ERR_ARG;
    if (ref->scale < -NNTM_MAX_PRED_SCALE || ref->scale > NNTM_MAX_PRED_SCALE) return NNTM_ERR_ARG;
    if (count && !ref->samples) return NNTM_ERR_ARG;
    return NNTM_OK;
}

int nntm_reconstruct(const nntm_kernel_params *params, const int32_t *levels, size_t count,
                     int32_t dtype, const nntm_reference *ref, void *out) {
    return nntm_reconstruct_map(params, levels, NULL, count, dtype, ref, out);
}
