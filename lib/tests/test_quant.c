/* QP -> step size and the exact integer-to-float conversion. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "common/quant.h"
#include "nntm/nntm.h"

int main(void) {
    int32_t m, s;
    CHECK(nntm_qp_to_step(0, 2, &m, &s) == NNTM_OK && ldexp(m, s) == 1.0);
    CHECK(nntm_qp_to_step(-4, 2, &m, &s) == NNTM_OK && ldexp(m, s) == 0.5);
    CHECK(nntm_qp_to_step(-1, 2, &m, &s) == NNTM_OK && ldexp(m, s) == 0.875);
    CHECK(nntm_qp_to_step(5, 2, &m, &s) == NNTM_OK && ldexp(m, s) == 2.5);
    CHECK(nntm_qp_to_step(0, 7, &m, &s) == NNTM_ERR_ARG);
    /* step grows strictly with QP */
    double prev = 0;
    for (int qp = -100; qp <= 100; qp++) {
        nntm_qp_to_step(qp, 3, &m, &s);
        CHECK(ldexp(m, s) > prev);
        prev = ldexp(m, s);
    }
    /* float32 and float64 conversions agree with the hardware's single rounding */
    unsigned long long st = 3;
    for (int t = 0; t < 200000; t++) {
        int64_t v = (int64_t)(test_rand(&st) >> (11 + test_rand(&st) % 52));
        if (test_rand(&st) & 1) v = -v;
        int32_t e = (int32_t)(test_rand(&st) % 400) - 200;
        double exact = ldexp((double)v, e); /* exact: |v| < 2^53, no underflow here */
        float f = (float)exact;
        uint32_t fb;
        memcpy(&fb, &f, 4);
        CHECK((uint32_t)nntm_int_to_float_bits(v, e, 23, 8) == (v == 0 ? 0u : fb));
        uint64_t db;
        memcpy(&db, &exact, 8);
        CHECK(nntm_int_to_float_bits(v, e, 52, 11) == (v == 0 ? 0u : db));
    }
    /* float32 subnormals and overflow */
    CHECK(nntm_int_to_float_bits(1, -149, 23, 8) == 1u);
    CHECK(nntm_int_to_float_bits(1, -150, 23, 8) == 0u);   /* tie to even: 0 */
    CHECK(nntm_int_to_float_bits(3, -151, 23, 8) == 1u);   /* 0.75 ulp rounds up */
    CHECK(nntm_int_to_float_bits(1, 128, 23, 8) == 0x7F800000u);
    CHECK(nntm_int_to_float_bits(-1, 128, 23, 8) == 0xFF800000u);
    CHECK(nntm_int_to_float_bits(1, 0, 10, 5) == 0x3C00u);  /* float16 1.0 */
    CHECK(nntm_int_to_float_bits(1, 0, 7, 8) == 0x3F80u);   /* bfloat16 1.0 */
    TEST_DONE();
}
