/* Syntax reader for the tensor data unit payload. */
#include "syntax_reader.h"

/* Longest Exp-Golomb prefix that keeps |level| <= NNTM_MAX_LEVEL. */
#define MAX_EG_PREFIX 29
/* The decoder reads exactly the bytes the encoder wrote: reading past the end
 * means the payload was cut short. */
#define MAX_OVERREAD 0

static int abs_remainder(nntm_bin_reader *r, nntm_level_ctxs *ctxs, int egp_class,
                         uint32_t *rem) {
    nntm_ctx *pc = ctxs->egp[egp_class];
    int prefix = 0;
    while (nntm_decode_bin(r, &pc[prefix < NNTM_EGP_CTX ? prefix : NNTM_EGP_CTX - 1])) {
        if (++prefix > MAX_EG_PREFIX) return NNTM_ERR_CORRUPT;
    }
    uint32_t suffix = nntm_decode_bypass(r, prefix);
    *rem = (1u << prefix) + suffix - 1;
    return NNTM_OK;
}

int nntm_read_level_coding(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                           const nntm_level_ctx_idx *ci, int num_gt_flags, int32_t *level) {
    if (!nntm_decode_bin(r, &ctxs->sig[ci->sig])) {
        *level = 0;
        return NNTM_OK;
    }
    int negative = nntm_decode_bin(r, &ctxs->sign[ci->sign]);
    uint32_t a = 1;
    int i;
    for (i = 0; i < num_gt_flags; i++) {
        if (!nntm_decode_bin(r, &ctxs->gt[i][ci->gt_class])) break;
        a++;
    }
    if (i == num_gt_flags) {
        uint32_t rem;
        int rv = abs_remainder(r, ctxs, ci->egp_class, &rem);
        if (rv) return rv;
        if (rem > (uint32_t)NNTM_MAX_LEVEL - a) return NNTM_ERR_CORRUPT;
        a += rem;
    }
    *level = negative ? -(int32_t)a : (int32_t)a;
    return NNTM_OK;
}

int nntm_read_tensor_data(nntm_bin_reader *r, nntm_level_ctxs *ctxs,
                          const nntm_kernel_params *p, int32_t *levels) {
    nntm_level_ctx_idx ci;
    for (int32_t row = 0; row < p->rows; row++) {
        for (int32_t c = 0; c < p->cols; c++) {
            nntm_level_ctx_derive(levels, p->cols, row, c, &ci);
            int rv = nntm_read_level_coding(r, ctxs, &ci, p->num_gt_flags,
                                            &levels[(int64_t)row * p->cols + c]);
            if (rv) return rv;
            if (nntm_bin_reader_overread(r) > MAX_OVERREAD) return NNTM_ERR_TRUNCATED;
            if (r->corrupt) return NNTM_ERR_CORRUPT;
        }
    }
    return NNTM_OK;
}
