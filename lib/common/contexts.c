/* Initial values of the named context sets. */
#include "contexts.h"

/* One initial probability per context set (P(bin == 1), 15 bits). */
#define NNTM_INIT_SIG 12288u  /* P(sig_flag == 1) = 0.375 */
#define NNTM_INIT_SIGN 16384u
#define NNTM_INIT_GT 16384u
#define NNTM_INIT_EGP 16384u

static void ctx_set(nntm_ctx *c, int n, uint32_t p) {
    for (int i = 0; i < n; i++) {
        c[i].p_fast = (uint16_t)p;
        c[i].p_slow = (uint16_t)p;
    }
}

void nntm_level_ctxs_init(nntm_level_ctxs *c) {
    c->dq_state = 0;
    ctx_set(c->sig, NNTM_SIG_CTX, NNTM_INIT_SIG);
    ctx_set(c->sign, NNTM_SIGN_CTX, NNTM_INIT_SIGN);
    ctx_set(&c->gt[0][0], NNTM_MAX_GT_FLAGS * NNTM_GT_CLASSES, NNTM_INIT_GT);
    ctx_set(&c->egp[0][0], NNTM_EGP_CLASSES * NNTM_EGP_CTX, NNTM_INIT_EGP);
}
