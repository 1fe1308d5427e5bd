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
    if (p->dq_enabled < 0 || p->dq_enabled > 1) return NNTM_ERR_ARG;
    /* tree nodes reach up to one CTU past the tensor: keep their corners in int32 */
    if (p->tree.enabled && (p->rows > INT32_MAX - 256 || p->cols > INT32_MAX - 256))
        return NNTM_ERR_ARG;
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

static void store_sample(int32_t dtype, int64_t v, int32_t shift, void *out, size_t i) {
    switch (dtype) {
    case NNTM_DTYPE_FLOAT32: {
        uint32_t b = (uint32_t)nntm_int_to_float_bits(v, shift, 23, 8);
        memcpy((uint8_t *)out + 4 * i, &b, 4);
        break;
    }
    case NNTM_DTYPE_FLOAT16: {
        uint16_t b = (uint16_t)nntm_int_to_float_bits(v, shift, 10, 5);
        memcpy((uint8_t *)out + 2 * i, &b, 2);
        break;
    }
    case NNTM_DTYPE_BFLOAT16: {
        uint16_t b = (uint16_t)nntm_int_to_float_bits(v, shift, 7, 8);
        memcpy((uint8_t *)out + 2 * i, &b, 2);
        break;
    }
    default: { /* NNTM_DTYPE_FLOAT64, checked by the caller */
        uint64_t b = nntm_int_to_float_bits(v, shift, 52, 11);
        memcpy((uint8_t *)out + 8 * i, &b, 8);
        break;
    }
    }
}

int nntm_reconstruct_map(const nntm_kernel_params *params, const int32_t *levels,
                         const int16_t *qp_delta, size_t count, int32_t dtype, void *out) {
    if (!params || (count && (!levels || !out))) return NNTM_ERR_ARG;
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    int32_t mant[2 * NNTM_MAX_CU_QP_DELTA + 1], shift[2 * NNTM_MAX_CU_QP_DELTA + 1];
    for (int d = -NNTM_MAX_CU_QP_DELTA; d <= NNTM_MAX_CU_QP_DELTA; d++) {
        int k = d + NNTM_MAX_CU_QP_DELTA;
        if (nntm_qp_to_step(params->qp + d, params->qp_density, &mant[k], &shift[k])) {
            if (d == 0) return NNTM_ERR_ARG;
            mant[k] = 0; /* not a valid QP: an error only if a CU uses it */
        }
        shift[k] -= params->dq_enabled; /* DQ indices count half steps */
    }
    for (size_t i = 0; i < count; i++) {
        int k = NNTM_MAX_CU_QP_DELTA + (qp_delta ? qp_delta[i] : 0);
        if (k < 0 || k > 2 * NNTM_MAX_CU_QP_DELTA || mant[k] == 0) return NNTM_ERR_ARG;
        store_sample(dtype, (int64_t)levels[i] * mant[k], shift[k], out, i);
    }
    return NNTM_OK;
}

int nntm_reconstruct(const nntm_kernel_params *params, const int32_t *levels, size_t count,
                     int32_t dtype, void *out) {
    return nntm_reconstruct_map(params, levels, NULL, count, dtype, out);
}
