/* nntm_selftest_bins: the real coder and the estimator on the same bins. */
#include "nntm/nntm.h"

#include <stdlib.h>

#include "../decoder/bin_reader.h"
#include "bin_writer.h"

int nntm_selftest_bins(const uint8_t *bins, const uint8_t *ctx_idx, size_t n, int32_t num_ctx,
                       int32_t window, double *real_bits, double *est_bits, uint8_t *decoded) {
    if (!bins || !ctx_idx || !real_bits || !est_bits || num_ctx < 1 || num_ctx > 256 ||
        window < 0 || window > NNTM_MAX_PROB_WINDOW)
        return NNTM_ERR_ARG;
    nntm_ctx *a = malloc(sizeof(nntm_ctx) * (size_t)num_ctx * 2);
    nntm_bit_estimator *est = malloc(sizeof *est);
    if (!a || !est) {
        free(a);
        free(est);
        return NNTM_ERR_NOMEM;
    }
    nntm_ctx *b = a + num_ctx;
    nntm_ctx_fill(a, 2 * num_ctx, 16384, window);
    nntm_buffer buf = {0};
    nntm_arith_encoder enc;
    nntm_arith_encoder_init(&enc, &buf);
    nntm_bit_estimator_init(est, 1);
    int rv = NNTM_OK;
    for (size_t i = 0; i < n; i++) {
        if (ctx_idx[i] >= num_ctx) {
            rv = NNTM_ERR_ARG;
            goto done;
        }
        enc.w.encode_bin(&enc.w, &a[ctx_idx[i]], bins[i] & 1);
        est->w.encode_bin(&est->w, &b[ctx_idx[i]], bins[i] & 1);
    }
    rv = nntm_arith_encoder_finish(&enc);
    if (rv) goto done;
    *real_bits = 8.0 * (double)buf.size;
    *est_bits = (double)est->cost / (double)(1u << NNTM_COST_SHIFT);
    if (decoded) {
        nntm_bin_reader r;
        nntm_bin_reader_init(&r, buf.data, buf.size);
        nntm_ctx_fill(a, num_ctx, 16384, window);
        for (size_t i = 0; i < n; i++) decoded[i] = (uint8_t)nntm_decode_bin(&r, &a[ctx_idx[i]]);
    }
done:
    nntm_buffer_free(&buf);
    free(a);
    free(est);
    return rv;
}
