/* Decode kernel cases with the C core and write the reconstructed samples.
 *
 *   kernel_check IN1 OUT1 [IN2 OUT2 ...]
 *   kernel_check --errors-ok IN1 [IN2 ...]
 *
 * Each IN is a kernel case (fuzz/kernel_input.h); OUT receives the reconstructed
 * samples (little-endian bit patterns of the case's dtype), i.e. the tensor bytes
 * whose MD5 the hash unit carries.  The payload must be consumed exactly, as the
 * Python decoder requires.  Exit status 0 when every case decodes, 1 otherwise.
 * With --errors-ok the cases are only decoded (a corpus of corrupt payloads, run
 * under the sanitizers): a documented error code is fine, nothing is written.
 * scripts/run_sanitizers.sh builds it with ASan+UBSan against build-asan/libnntm.a and
 * drives it with `ConformanceApp --kernel-tool`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_input.h"
#include "read_file.h"


/* out_path NULL: --errors-ok, decode only. */
static int check_case(const char *in_path, const char *out_path) {
    size_t size;
    uint8_t *data = read_file(in_path, &size);
    if (!data) {
        fprintf(stderr, "%s: cannot read\n", in_path);
        return 1;
    }
    kernel_input in;
    int rc = 1;
    int32_t *levels = NULL;
    uint8_t *out = NULL;
    size_t bytes = 0, count = 0;
    if (kernel_input_parse(data, size, &in)) {
        /* --errors-ok: a corpus input the fuzzer would skip too */
        if (!out_path) {
            rc = 0;
            goto done;
        }
        fprintf(stderr, "%s: shorter than its header, or parameters this library lacks\n",
                in_path);
        goto done;
    }
    if (!out_path) in.dtype &= 3; /* as the fuzzer does */
    bytes = kernel_input_sample_bytes(in.dtype);
    if (!out_path && (in.params.rows < 0 || in.params.cols < 0)) {
        size_t consumed = 0; /* the decoder must refuse them: run it on a dummy buffer */
        int32_t dummy[1];
        int rv = kernel_input_decode(&in, dummy, dummy, &consumed);
        rc = rv == NNTM_ERR_ARG ? 0 : 1;
        if (rc) fprintf(stderr, "%s: negative size accepted (%d)\n", in_path, rv);
        goto done;
    }
    if (!bytes || in.params.rows < 0 || in.params.cols < 0) {
        fprintf(stderr, "%s: bad dtype or shape\n", in_path);
        goto done;
    }
    count = (size_t)in.params.rows * (size_t)in.params.cols;
    if (!out_path && count > (1u << 22)) { /* the fuzzer's bound */
        rc = 0;
        goto done;
    }
    levels = malloc(count ? count * sizeof *levels : 1);
    out = malloc(count ? count * bytes : 1);
    if (!levels || !out) {
        fprintf(stderr, "%s: out of memory\n", in_path);
        goto done;
    }
    size_t consumed = 0;
    int rv = kernel_input_decode(&in, levels, out, &consumed);
    if (!out_path) {
        rc = rv == NNTM_OK || rv == NNTM_ERR_ARG || rv == NNTM_ERR_NOMEM ||
                     rv == NNTM_ERR_CORRUPT || rv == NNTM_ERR_TRUNCATED ||
                     (rv == NNTM_ERR_NONFINITE && in.pred_ext) /* a NaN/Inf reference */
                 ? 0
                 : 1;
        if (rc) fprintf(stderr, "%s: undocumented return code %d\n", in_path, rv);
        goto done;
    }
    if (rv != NNTM_OK) {
        fprintf(stderr, "%s: %s (%d)\n", in_path, nntm_strerror(rv), rv);
        goto done;
    }
    FILE *f = fopen(out_path, "wb");
    if (!f || fwrite(out, 1, count * bytes, f) != count * bytes) {
        fprintf(stderr, "%s: cannot write\n", out_path);
        if (f) fclose(f);
        goto done;
    }
    rc = fclose(f) ? 1 : 0;
done:
    free(out);
    free(levels);
    free(data);
    return rc;
}

int main(int argc, char **argv) {
    int failed = 0;
    if (argc >= 2 && !strcmp(argv[1], "--errors-ok")) {
        for (int i = 2; i < argc; i++) failed |= check_case(argv[i], NULL);
        return failed;
    }
    if (argc < 3 || argc % 2 == 0) {
        fprintf(stderr, "usage: %s IN1 OUT1 [IN2 OUT2 ...] | --errors-ok IN1 [IN2 ...]\n",
                argv[0]);
        return 2;
    }
    for (int i = 1; i + 1 < argc; i += 2) failed |= check_case(argv[i], argv[i + 1]);
    return failed;
}
