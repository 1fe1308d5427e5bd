/* Decode clustered tensor cases with the C core (nntm_decode_cluster).
 *
 *   cluster_check IN1 [IN2 ...]
 *   cluster_check --errors-ok IN1 [IN2 ...]
 *
 * Each IN is a clustered tensor case (fuzz/cluster_input.h).  Without --errors-ok
 * every case must decode (NNTM_OK, the payload consumed exactly, valid labels): the
 * seeds cut from the conformance streams.  With --errors-ok (a corpus of corrupt
 * payloads, run under the sanitizers) a documented error code is fine too, and a case
 * the fuzzer would skip (too short, too large) is skipped.  Exit status 0 when every
 * case passes, 1 otherwise.  scripts/run_sanitizers.sh builds it with ASan+UBSan
 * against build-asan/libnntm.a and runs it on fuzz/corpus/cluster/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_input.h"
#include "read_file.h"


static int check_case(const char *path, int errors_ok) {
    size_t size;
    uint8_t *data = read_file(path, &size);
    if (!data) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    cluster_input in;
    if (cluster_input_parse(data, size, &in)) {
        free(data);
        if (errors_ok) return 0; /* an input the fuzzer skips too */
        fprintf(stderr, "%s: shorter than its header and codebooks, or too large\n", path);
        return 1;
    }
    int32_t *cb = malloc((size_t)(in.books + 1) * sizeof(int32_t));
    int32_t *labels = malloc((size_t)(in.points + 1) * sizeof(int32_t));
    void *recon = malloc((size_t)(in.values + 1) * 8);
    uint8_t *payload = malloc(in.payload_size ? in.payload_size : 1);
    int rc = 1;
    if (!cb || !labels || !recon || !payload) {
        fprintf(stderr, "%s: out of memory\n", path);
        goto done;
    }
    memcpy(cb, in.codebooks, 4 * (size_t)in.books);
    memcpy(payload, in.payload, in.payload_size);
    int rv = nntm_decode_cluster(&in.params, cb, payload, in.payload_size, in.dtype, recon,
                                 labels);
    if (!cluster_input_documented(rv)) {
        fprintf(stderr, "%s: undocumented return code %d\n", path, rv);
    } else if (rv == NNTM_OK) {
        rc = cluster_input_check_labels(&in, labels) ? 1 : 0;
        if (rc) fprintf(stderr, "%s: bad label\n", path);
    } else if (errors_ok) {
        rc = 0;
    } else {
        fprintf(stderr, "%s: %s (%d)\n", path, nntm_strerror(rv), rv);
    }
done:
    free(cb), free(labels), free(recon), free(payload), free(data);
    return rc;
}

int main(int argc, char **argv) {
    int errors_ok = argc >= 2 && !strcmp(argv[1], "--errors-ok");
    if (argc < 2 + errors_ok) {
        fprintf(stderr, "usage: %s [--errors-ok] IN1 [IN2 ...]\n", argv[0]);
        return 2;
    }
    int failed = 0;
    for (int i = 1 + errors_ok; i < argc; i++) failed |= check_case(argv[i], errors_ok);
    return failed;
}
