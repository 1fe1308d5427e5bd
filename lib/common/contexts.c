/* Initial values of the named context sets. */
#include "contexts.h"

/* One initial probability per context set (P(bin == 1), 15 bits). */
#define NNTM_INIT_SIG 12288u  /* P(sig_flag == 1) = 0.375 */
#define NNTM_INIT_SIGN 16384u
#define NNTM_INIT_GT 16384u
#define NNTM_INIT_EGP 16384u
#define NNTM_INIT_EGS 16384u
#define NNTM_INIT_ROW_PRED 8192u
#define NNTM_INIT_ROW_ABOVE 16384u

void nntm_ctx_fill(nntm_ctx *c, int n, uint16_t p, int window) {
    for (int i = 0; i < n; i++) {
        if (window) {
            c[i].p = (uint32_t)p << (NNTM_WIN_BITS - NNTM_PROB_BITS);
        } else {
            c[i].p_fast = p;
            c[i].p_slow = p;
        }
        c[i].count = 0;
        c[i].shift = 1;
        c[i].window = (uint8_t)window;
    }
}

void nntm_level_ctxs_init(nntm_level_ctxs *c, int window, int suffix_ctx) {
    c->dq_state = 0;
    c->suffix_ctx = suffix_ctx;
    nntm_ctx_fill(c->sig, NNTM_SIG_CTX, NNTM_INIT_SIG, window);
    nntm_ctx_fill(c->sign, NNTM_SIGN_CTX, NNTM_INIT_SIGN, window);
    nntm_ctx_fill(&c->gt[0][0], NNTM_MAX_GT_FLAGS * NNTM_GT_CLASSES, NNTM_INIT_GT, window);
    nntm_ctx_fill(&c->egp[0][0], NNTM_EGP_CLASSES * NNTM_EGP_CTX, NNTM_INIT_EGP, window);
    nntm_ctx_fill(&c->egs[0][0], NNTM_EGS_K * NNTM_EGS_NODES, NNTM_INIT_EGS, window);
    nntm_ctx_fill(c->row_pred, NNTM_ROW_PRED_CTX, NNTM_INIT_ROW_PRED, window);
    nntm_ctx_fill(&c->row_above, 1, NNTM_INIT_ROW_ABOVE, window);
}
