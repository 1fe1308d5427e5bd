/* The public stream header compiles alone (first, twice) and beside nntm.h. */
#include "nntm/nntm_stream.h"
#include "nntm/nntm_stream.h"
#include "nntm/nntm.h"

#include <stdio.h>

int main(void) {
    nntm_stream_settings s;
    nntm_stream_default_settings(&s);
    int ok = s.max_elements == (uint64_t)1 << 28 && s.max_expansion == (uint64_t)1 << 20 &&
             nntm_tensor_dtype_size(NNTM_TDTYPE_BFLOAT16) == 2 &&
             nntm_tensor_dtype_size(NNTM_TDTYPE_COUNT) == 0 && NNTM_ERR_HASH == -8;
    nntm_stream *st = NULL;
    nntm_stream_close(&st); /* safe on NULL */
    nntm_stream_close(NULL);
    printf(ok ? "all checks passed\n" : "header check failed\n");
    return ok ? 0 : 1;
}
