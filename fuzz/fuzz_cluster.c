/* libFuzzer harness for nntm_decode_cluster (clustered tensors, format 1.2).
 *
 * Build: bash fuzz/build.sh (clang -fsanitize=fuzzer,address,undefined).  The input is
 * a clustered tensor case (fuzz/cluster_input.h): the cluster parameters, the codebooks
 * and the payload; the seeds are the CLUSTERED tensors of the conformance streams
 * (fuzz/make_cluster_seeds.py).
 *
 * A bug is: any sanitizer report, a crash, a hang, a return code nntm.h does not list
 * for nntm_decode_cluster, a label beyond its codebook, a label -1 (outlier) other than
 * the outlier label or with outliers disabled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cluster_input in;
    if (cluster_input_parse(data, size, &in)) return 0;
    /* one spare element each, so that empty cases still get valid pointers */
    int32_t *cb = malloc((size_t)(in.books + 1) * sizeof(int32_t));
    int32_t *labels = malloc((size_t)(in.points + 1) * sizeof(int32_t));
    void *recon = malloc((size_t)(in.values + 1) * 8);
    /* a copy of exactly the payload bytes, so that ASan sees any over-read */
    uint8_t *payload = malloc(in.payload_size ? in.payload_size : 1);
    if (!cb || !labels || !recon || !payload) abort();
    memcpy(cb, in.codebooks, 4 * (size_t)in.books);
    memcpy(payload, in.payload, in.payload_size);
    int rv = nntm_decode_cluster(&in.params, cb, payload, in.payload_size, in.dtype, recon,
                                 labels);
    if (!cluster_input_documented(rv)) {
        fprintf(stderr, "fuzz_cluster: undocumented return code %d\n", rv);
        abort();
    }
    if (rv == NNTM_OK && cluster_input_check_labels(&in, labels)) abort();
    free(cb), free(labels), free(recon), free(payload);
    return 0;
}
