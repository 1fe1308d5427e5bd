/* libFuzzer harness for whole-stream decoding through the public API (nntm_stream.h).
 *
 * Build and run (clang): see fuzz/README.md, "Whole streams"; the seeds are the
 * conformance streams (the .bit files of bitstreams/).
 *
 * A bug is: any sanitizer report, a crash, a hang, a return code nntm_stream.h does not
 * document, an empty error text on failure, or a decoded tensor whose MD5 differs from
 * the one the reader reports. REF_MODEL tensors find no reference (the lookup says so).
 * Inputs of odd size decode with two threads (entry-point substreams in parallel), even
 * ones with one, so both paths of nntm_decode_kernel_threads are fuzzed; sizes of 3 mod 4
 * take their three substream threads from a thread budget of two (nntm_thread_budget), and
 * more threads than the budget's at once is a bug too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/md5.h"
#include "nntm/nntm.h"
#include "nntm/nntm_stream.h"

#define MAX_TENSOR_BYTES (1u << 24)

static int lookup(void *cookie, const char *name, size_t size, nntm_ref_tensor *out) {
    (void)cookie;
    (void)name;
    (void)size;
    memset(out, 0, sizeof *out);
    return 1; /* "no such tensor" */
}

static void fail(const char *what, int rv) {
    fprintf(stderr, "fuzz_stream: %s (rv %d)\n", what, rv);
    abort();
}

static int documented(int rv) { return rv <= 0 && rv >= NNTM_ERR_IO; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nntm_stream_settings st;
    nntm_stream_default_settings(&st);
    st.max_memory = (uint64_t)1 << 28;
    st.ref_lookup = lookup;
    st.threads = (size & 1) ? 2 : 1; /* odd sizes parse substreams on two threads */
    nntm_thread_budget *budget = NULL;
    if ((size & 3) == 3) { /* three substream threads from a budget of two */
        if (nntm_thread_budget_create(&budget, 2) != NNTM_OK) return 0;
        st.threads = 3;
        st.budget = budget;
    }
    nntm_stream *s = NULL;
    int rv = nntm_stream_open_memory(&s, data, size, &st);
    if (!documented(rv)) fail("undocumented return code of open", rv);
    if (!s) fail("no stream object", rv);
    if (rv < 0 && !nntm_stream_error(s)[0]) fail("empty error text", rv);
    int32_t n = rv == NNTM_OK ? nntm_stream_num_tensors(s) : 0;
    for (int32_t i = n - 1; i >= 0; i--) { /* backwards: the references decode on demand */
        nntm_tensor_info t;
        if (nntm_stream_tensor_info(s, i, &t)) fail("tensor_info", -1);
        if (t.byte_size > MAX_TENSOR_BYTES) continue;
        uint8_t *buf = malloc(t.byte_size + 1);
        if (!buf) continue;
        uint8_t md5[16], check[16];
        rv = nntm_stream_decode_tensor(s, i, buf, t.byte_size, md5);
        if (!documented(rv)) fail("undocumented return code of decode", rv);
        if (rv < 0 && !nntm_stream_error(s)[0]) fail("empty error text", rv);
        if (rv == NNTM_OK || rv == NNTM_ERR_HASH) {
            nntm_md5_digest(buf, t.byte_size, check);
            if (memcmp(md5, check, 16)) fail("reported MD5 is not the decoded bytes'", rv);
            if ((rv == NNTM_OK) != !memcmp(md5, t.md5, 16)) fail("MD5 verdict", rv);
        }
        free(buf);
    }
    nntm_stream_close(&s);
    if (budget && nntm_thread_budget_peak(budget) > 2) fail("more threads than the budget", 3);
    nntm_thread_budget_destroy(&budget);
    return 0;
}
