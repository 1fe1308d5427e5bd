/* Syntax writer for the tensor data unit payload. */
#include "syntax_writer.h"

/* abs_remainder: Exp-Golomb order 0, prefix bins context coded, suffix bypass. */
static void abs_remainder(nntm_bin_writer *w, nntm_level_ctxs *ctxs, int egp_class,
                          uint32_t rem) {
    uint32_t v = rem + 1;
    int prefix = 0;
    while ((v >> (prefix + 1)) != 0) prefix++;
    nntm_ctx *pc = ctxs->egp[egp_class];
    for (int i = 0; i < prefix; i++)
        w->encode_bin(w, &pc[i < NNTM_EGP_CTX ? i : NNTM_EGP_CTX - 1], 1);
    w->encode_bin(w, &pc[prefix < NNTM_EGP_CTX ? prefix : NNTM_EGP_CTX - 1], 0);
    w->encode_bypass(w, v - (1u << prefix), prefix);
}

void nntm_write_level_coding(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                             const nntm_level_ctx_idx *ci, int32_t level, int num_gt_flags) {
    w->encode_bin(w, &ctxs->sig[ci->sig], level != 0);
    if (level == 0) return;
    w->encode_bin(w, &ctxs->sign[ci->sign], level < 0);
    uint32_t a = level < 0 ? (uint32_t)(-(int64_t)level) : (uint32_t)level;
    for (int i = 0; i < num_gt_flags; i++) {
        int gt = a > (uint32_t)(i + 1);
        w->encode_bin(w, &ctxs->gt[i][ci->gt_class], gt);
        if (!gt) return;
    }
    abs_remainder(w, ctxs, ci->egp_class, a - (uint32_t)num_gt_flags - 1);
}

void nntm_write_tensor_data(nntm_bin_writer *w, nntm_level_ctxs *ctxs,
                            const nntm_kernel_params *p, const int32_t *levels) {
    nntm_level_ctx_idx ci;
    for (int32_t r = 0; r < p->rows; r++) {
        for (int32_t c = 0; c < p->cols; c++) {
            nntm_level_ctx_derive(levels, p->cols, r, c, &ci);
            nntm_write_level_coding(w, ctxs, &ci, levels[(int64_t)r * p->cols + c],
                                    p->num_gt_flags);
        }
    }
}
