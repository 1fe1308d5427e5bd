/* libFuzzer harness for nntm_decode_kernel and the reconstruction of what it decodes.
 *
 * Build: bash fuzz/build.sh (clang -fsanitize=fuzzer,address,undefined).  The input is
 * a kernel case (fuzz/kernel_input.h): the kernel parameters, then a tensor data unit
 * payload; the seeds are the payloads of the conformance streams (fuzz/make_seeds.py).
 *
 * A bug is: any sanitizer report, a crash, a hang (-timeout), a return code that nntm.h
 * does not document, a decoded |level| above NNTM_MAX_LEVEL, or parameters that nntm.h
 * calls invalid being accepted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_input.h"

/* The caller allocates the levels and the samples (the decoder does not); keep them
 * within libFuzzer's default memory limit. */
#define MAX_FUZZ_ELEMENTS (1u << 22)

static void fail(const char *what, int rv) {
    fprintf(stderr, "fuzz_kernel: %s (rv %d)\n", what, rv);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kernel_input in;
    if (kernel_input_parse(data, size, &in)) return 0;
    in.dtype &= 3; /* the dtype comes from the caller, not from the payload */
    const nntm_kernel_params *p = &in.params;
    int valid = p->rows >= 0 && p->cols >= 0 && p->num_gt_flags >= 1 &&
                p->num_gt_flags <= NNTM_MAX_GT_FLAGS && p->qp_density >= 0 &&
                p->qp_density <= NNTM_MAX_QP_DENSITY && p->qp >= -4096 && p->qp <= 4096;
    uint64_t count = valid ? (uint64_t)p->rows * (uint64_t)p->cols : 0;
    if (count > MAX_FUZZ_ELEMENTS) return 0;
    /* one spare element, so that invalid parameters still get valid pointers */
    int32_t *levels = malloc((size_t)(count + 1) * sizeof *levels);
    void *recon = malloc((size_t)(count + 1) * 8);
    /* a copy of exactly the payload bytes, so that ASan sees any over-read */
    uint8_t *payload = malloc(in.payload_size ? in.payload_size : 1);
    if (!levels || !recon || !payload) {
        free(levels);
        free(recon);
        free(payload);
        return 0;
    }
    memcpy(payload, in.payload, in.payload_size);
    in.payload = payload;
    size_t consumed = 0;
    int rv = kernel_input_decode(&in, levels, recon, &consumed);
    if (!valid) {
        if (rv != NNTM_ERR_ARG) fail("invalid parameters accepted", rv);
    } else if (rv == NNTM_OK) {
        for (uint64_t i = 0; i < count; i++)
            if (levels[i] > NNTM_MAX_LEVEL || levels[i] < -NNTM_MAX_LEVEL)
                fail("decoded level out of range", rv);
    } else if (rv != NNTM_ERR_CORRUPT && rv != NNTM_ERR_TRUNCATED && rv != NNTM_ERR_NOMEM &&
               !(rv == NNTM_ERR_NONFINITE && in.pred_ext) && /* a NaN/Inf reference sample */
               !(rv == NNTM_ERR_ARG &&
                 (in.tree_ext || in.dq_ext || in.pred_ext || in.intra_ext || in.window_ext ||
                  in.suffix_ext || in.row_pred_ext || in.substreams_ext))) {
        /* (the tree, dq, reference and intra parameters are not range-checked here:
         * ARG is fine for them) */
        fail("undocumented return code", rv);
    }
    free(payload);
    free(recon);
    free(levels);
    return 0;
}
