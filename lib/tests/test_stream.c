/* Unit tests of the whole-stream reader: MD5 (the RFC 1321 test suite), the
 * bit reader, and small streams built here bit by bit: decoded, and refused
 * when cut, changed, out of order or above the memory budget. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/md5.h"
#include "decoder/bit_reader.h"
#include "nntm/nntm.h"
#include "nntm/nntm_stream.h"

/* ------------------------------------------------------------------ MD5 */
static void md5_hex(const void *data, size_t n, char out[33]) {
    uint8_t d[16];
    nntm_md5_digest(data, n, d);
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_md5(void) {
    static const char *const suite[][2] = { /* RFC 1321, A.5 */
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof suite / sizeof suite[0]; i++) {
        char h[33];
        md5_hex(suite[i][0], strlen(suite[i][0]), h);
        CHECK(strcmp(h, suite[i][1]) == 0);
    }
    /* pieces of every size give the digest of the whole (block boundaries 55/56/64) */
    uint8_t buf[300];
    unsigned long long seed = 7;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)test_rand(&seed);
    for (size_t n = 0; n <= sizeof buf; n += 1) {
        uint8_t whole[16], parts[16];
        nntm_md5_digest(buf, n, whole);
        nntm_md5 m;
        nntm_md5_init(&m);
        size_t split = n / 3, split2 = (2 * n) / 3;
        nntm_md5_update(&m, buf, split);
        nntm_md5_update(&m, buf + split, split2 - split);
        nntm_md5_update(&m, buf + split2, n - split2);
        nntm_md5_final(&m, parts);
        CHECK(memcmp(whole, parts, 16) == 0);
    }
}

/* ------------------------------------------------------------------ a bit writer */
typedef struct bw {
    uint8_t d[4096];
    size_t bits;
} bw;

static void wu(bw *w, int n, uint64_t v) {
    for (int i = n - 1; i >= 0; i--, w->bits++)
        if ((v >> i) & 1) w->d[w->bits >> 3] |= (uint8_t)(0x80 >> (w->bits & 7));
}

static void wue(bw *w, uint64_t v) {
    int len = 0;
    while ((v + 1) >> (len + 1)) len++;
    wu(w, len, 0);
    wu(w, len + 1, v + 1);
}

static void wse(bw *w, int64_t v) { wue(w, v > 0 ? (uint64_t)(2 * v - 1) : (uint64_t)(-2 * v)); }

static void walign(bw *w) {
    wu(w, 1, 1);
    while (w->bits & 7) wu(w, 1, 0);
}

static void wbytes(bw *w, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) wu(w, 8, ((const uint8_t *)p)[i]);
}

static void test_bits(void) {
    bw w;
    memset(&w, 0, sizeof w);
    uint64_t values[] = {0, 1, 2, 3, 6, 7, 254, 255, 65535, 0x7FFFFFFF, (1ull << 40) + 5};
    for (size_t i = 0; i < 11; i++) wue(&w, values[i]);
    int64_t svals[] = {0, 1, -1, 2, -2, 4096, -4096, -65535};
    for (size_t i = 0; i < 8; i++) wse(&w, svals[i]);
    size_t used = w.bits;
    walign(&w);
    nntm_bits b;
    nntm_bits_init(&b, w.d, w.bits / 8);
    for (size_t i = 0; i < 11; i++) {
        uint64_t v = 99;
        CHECK(nntm_bits_ue(&b, &v) == 0 && v == values[i]);
    }
    for (size_t i = 0; i < 8; i++) {
        int64_t v = 99;
        CHECK(nntm_bits_se(&b, &v) == 0 && v == svals[i]);
    }
    CHECK(b.pos == used);
    CHECK(nntm_bits_align(&b) == 0 && nntm_bits_left(&b) == 0);
    uint32_t u;
    CHECK(nntm_bits_u(&b, 1, &u) == -1); /* nothing left */
    /* a code cut short, and one with more leading zeros than any limit */
    uint8_t cut[1] = {0x01}; /* 7 zeros, a one, no suffix */
    uint64_t v;
    nntm_bits_init(&b, cut, 1);
    CHECK(nntm_bits_ue(&b, &v) == -1);
    uint8_t zeros[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0};
    nntm_bits_init(&b, zeros, 10);
    CHECK(nntm_bits_ue(&b, &v) != 0);
    uint8_t badpad[1] = {0x41}; /* 0 then 1: alignment bit 0 */
    nntm_bits_init(&b, badpad, 1);
    CHECK(nntm_bits_align(&b) == 1);
    uint8_t badzero[1] = {0xC0}; /* 1 then 1: a zero bit that is 1 */
    nntm_bits_init(&b, badzero, 1);
    CHECK(nntm_bits_align(&b) == 2);
}

/* ------------------------------------------------------------------ streams */
typedef struct stream_buf {
    uint8_t d[8192];
    size_t n;
} stream_buf;

static void unit(stream_buf *s, int type, const bw *payload) {
    size_t size = payload->bits / 8;
    s->d[s->n++] = (uint8_t)type;
    for (int k = 3; k >= 0; k--) s->d[s->n++] = (uint8_t)(size >> (8 * k));
    memcpy(s->d + s->n, payload->d, size);
    s->n += size;
}

/* A stream of one LOSSLESS uint8 tensor "t" of shape (3,) = {1, 2, 3} and a
 * QUANTIZED float32 tensor "z" of shape (2, 2), all zeros (a zero payload is
 * not valid CABAC, so "z" gets the payload the core encoder writes for zeros).
 * integrity: format 1.6 with TOOL_INTEGRITY (tps_md5, stream_md5). */
static size_t build(stream_buf *s, int integrity, int bad_md5, uint32_t tool_flags_extra) {
    memset(s, 0, sizeof *s);
    bw w;
    memset(&w, 0, sizeof w);
    wbytes(&w, "NNTM", 4);
    wu(&w, 8, 1);
    wu(&w, 8, integrity ? 6 : 0);
    wu(&w, 8, 0);
    wu(&w, 32, (integrity ? 1u << 12 : 0) | tool_flags_extra);
    wue(&w, 2);
    wu(&w, 8, 1);
    walign(&w);
    unit(s, 0, &w);
    /* the quantized tensor's payload, from the encoder */
    nntm_encoder_params ep;
    memset(&ep, 0, sizeof ep);
    ep.kernel.rows = 2;
    ep.kernel.cols = 2;
    ep.kernel.qp = -20;
    ep.kernel.qp_density = 2;
    ep.kernel.num_gt_flags = 1;
    ep.lambda_scale = 0.1;
    ep.max_abs_value = 3.4e38;
    float zero[4] = {0, 0, 0, 0}, recon[4];
    nntm_buffer payload = {0};
    CHECK(nntm_encode_kernel(&ep, zero, NULL, NNTM_DTYPE_FLOAT32, NULL, recon, NULL, &payload,
                             NULL) == NNTM_OK);
    static const uint8_t values[3] = {1, 2, 3};
    for (int id = 0; id < 2; id++) {
        size_t tps_at = s->n;
        memset(&w, 0, sizeof w);
        wue(&w, (uint64_t)id);
        wue(&w, 1);
        wbytes(&w, id ? "z" : "t", 1);
        wu(&w, 8, id ? 0 : 8); /* float32 / uint8 */
        if (id) {
            wue(&w, 2); wue(&w, 2); wue(&w, 2);
            wu(&w, 8, 0);      /* QUANTIZED */
            wu(&w, 8, 4);      /* layer_type linear */
            wu(&w, 8, 0);      /* arrangement ROWS */
            wue(&w, 2); wue(&w, 2);
            wse(&w, -20); wue(&w, 2); wue(&w, 0);
        } else {
            wue(&w, 1); wue(&w, 3);
            wu(&w, 8, 1);      /* LOSSLESS */
        }
        walign(&w);
        unit(s, 1, &w);
        uint8_t tps_md5[16];
        nntm_md5_digest(s->d + tps_at, s->n - tps_at, tps_md5);
        memset(&w, 0, sizeof w);
        wue(&w, (uint64_t)id);
        walign(&w);
        if (id) wbytes(&w, payload.data, payload.size);
        else wbytes(&w, values, 3);
        unit(s, 2, &w);
        uint8_t md5[16];
        if (id) nntm_md5_digest(zero, sizeof zero, md5);
        else nntm_md5_digest(values, 3, md5);
        if (bad_md5 && id == 0) md5[0] ^= 1;
        memset(&w, 0, sizeof w);
        wue(&w, (uint64_t)id);
        walign(&w);
        wbytes(&w, md5, 16);
        if (integrity) wbytes(&w, tps_md5, 16);
        unit(s, 3, &w);
    }
    nntm_buffer_free(&payload);
    memset(&w, 0, sizeof w);
    if (integrity) {
        uint8_t d[16];
        nntm_md5_digest(s->d, s->n, d);
        wbytes(&w, d, 16);
    }
    unit(s, 4, &w);
    return s->n;
}

static int open_code(const uint8_t *d, size_t n, const nntm_stream_settings *st) {
    nntm_stream *s = NULL;
    int rv = nntm_stream_open_memory(&s, d, n, st);
    CHECK(s != NULL);
    CHECK(rv == NNTM_OK || strlen(nntm_stream_error(s)) > 0);
    nntm_stream_close(&s);
    CHECK(s == NULL);
    return rv;
}

static void test_good_stream(int integrity) {
    stream_buf b;
    size_t n = build(&b, integrity, 0, 0);
    nntm_stream *s = NULL;
    CHECK(nntm_stream_open_memory(&s, b.d, n, NULL) == NNTM_OK);
    CHECK(nntm_stream_num_tensors(s) == 2);
    CHECK(nntm_stream_version(s) == (integrity ? 0x106 : 0x100));
    CHECK(nntm_stream_source_format(s) == 1);
    CHECK(nntm_stream_check(s, NULL) == (integrity ? 1 : -1));
    nntm_tensor_info t;
    CHECK(nntm_stream_tensor_info(s, 0, &t) == NNTM_OK);
    CHECK(strcmp(t.name, "t") == 0 && t.dtype == NNTM_TDTYPE_UINT8 && t.ndim == 1);
    CHECK(t.shape[0] == 3 && t.byte_size == 3 && t.coding_mode == NNTM_CODING_LOSSLESS);
    CHECK(t.params_ok == (integrity ? 1 : -1));
    uint8_t out[16] = {0};
    CHECK(nntm_stream_decode_tensor(s, 0, out, 2, NULL) == NNTM_ERR_ARG); /* too small */
    CHECK(nntm_stream_decode_tensor(s, 0, out, sizeof out, NULL) == NNTM_OK);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 3);
    CHECK(nntm_stream_tensor_info(s, 1, &t) == NNTM_OK);
    CHECK(strcmp(t.name, "z") == 0 && t.byte_size == 16 && t.coding_mode == NNTM_CODING_QUANTIZED);
    float z[4] = {1, 1, 1, 1};
    uint8_t md5[16];
    CHECK(nntm_stream_decode_tensor(s, 1, z, sizeof z, md5) == NNTM_OK);
    CHECK(z[0] == 0 && z[3] == 0 && memcmp(md5, t.md5, 16) == 0);
    CHECK(nntm_stream_tensor_info(s, 2, &t) == NNTM_ERR_ARG);
    nntm_stream_close(&s);

    /* every cut of the stream is refused, none crashes */
    for (size_t k = 0; k < n; k++) CHECK(open_code(b.d, k, NULL) < 0);
    /* a memory budget below the estimate, and a tensor element limit */
    nntm_stream_settings st;
    nntm_stream_default_settings(&st);
    st.max_memory = 2 * n + 10;
    CHECK(open_code(b.d, n, &st) == NNTM_ERR_BUDGET);
    nntm_stream_default_settings(&st);
    st.max_elements = 3;
    CHECK(open_code(b.d, n, &st) == NNTM_ERR_BUDGET);
    nntm_stream_default_settings(&st);
    st.max_expansion = 0;
    CHECK(open_code(b.d, n, &st) == NNTM_OK);

    /* an unknown unit type after the stream; a container unit [1.7] where none may be */
    stream_buf c = b;
    bw empty;
    memset(&empty, 0, sizeof empty);
    c.n = n;
    unit(&c, 6, &empty);
    CHECK(open_code(c.d, c.n, NULL) == NNTM_ERR_UNSUPPORTED);
    c.n = n;
    unit(&c, 5, &empty);
    CHECK(open_code(c.d, c.n, NULL) == NNTM_ERR_CORRUPT);
    /* a unit after end_of_stream */
    c.n = n;
    unit(&c, 4, &empty);
    CHECK(open_code(c.d, c.n, NULL) == NNTM_ERR_CORRUPT);
    /* a newer format minor version */
    c = b;
    c.d[10] = 9;
    CHECK(open_code(c.d, c.n, NULL) == NNTM_ERR_UNSUPPORTED);
    /* the magic */
    c = b;
    c.d[5] = 'X';
    CHECK(open_code(c.d, c.n, NULL) == NNTM_ERR_CORRUPT);
}

static void test_refused(void) {
    stream_buf b;
    size_t n = build(&b, 1, 0, 1u << 15); /* an unknown tool flag */
    CHECK(open_code(b.d, n, NULL) == NNTM_ERR_UNSUPPORTED);
    n = build(&b, 0, 0, 1u << 12);         /* TOOL_INTEGRITY in a 1.0 stream */
    CHECK(open_code(b.d, n, NULL) == NNTM_ERR_CORRUPT);

    /* a wrong tensor MD5: decoded, reported */
    n = build(&b, 0, 1, 0);
    nntm_stream *s = NULL;
    CHECK(nntm_stream_open_memory(&s, b.d, n, NULL) == NNTM_OK);
    uint8_t out[3];
    CHECK(nntm_stream_decode_tensor(s, 0, out, 3, NULL) == NNTM_ERR_HASH);
    CHECK(out[2] == 3);
    CHECK(strstr(nntm_stream_error(s), "'t'") != NULL);
    nntm_stream_close(&s);

    /* with TOOL_INTEGRITY, a changed byte of a parameter set is seen at open:
     * the tensor name 't' -> 'u' */
    n = build(&b, 1, 0, 0);
    stream_buf c = b;
    size_t tps_payload = 5 + ((size_t)c.d[3] << 8 | c.d[4]) + 5;
    c.d[tps_payload + 1] ^= 0x10; /* bits: ue(0) ue(1) then 't' from bit 4: 't' -> 'u' */
    CHECK(nntm_stream_open_memory(&s, c.d, n, NULL) == NNTM_OK);
    nntm_tensor_info t;
    CHECK(nntm_stream_tensor_info(s, 0, &t) == NNTM_OK && t.params_ok == 0);
    CHECK(nntm_stream_check(s, NULL) == 0);
    nntm_stream_close(&s);

    /* every single bit flipped: refused at open, or an MD5 reports it; never a crash */
    for (size_t bit = 0; bit < 8 * n; bit++) {
        c = b;
        c.d[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rv = nntm_stream_open_memory(&s, c.d, n, NULL);
        int caught = rv < 0 || nntm_stream_check(s, NULL) == 0;
        for (int32_t i = 0; rv == NNTM_OK && i < nntm_stream_num_tensors(s); i++) {
            uint8_t buf[64];
            nntm_stream_tensor_info(s, i, &t);
            if (t.params_ok == 0) caught = 1;
            if (t.byte_size <= sizeof buf && nntm_stream_decode_tensor(s, i, buf, sizeof buf, NULL))
                caught = 1;
        }
        CHECK(caught);
        nntm_stream_close(&s);
    }
    CHECK(nntm_stream_open_memory(NULL, b.d, n, NULL) == NNTM_ERR_ARG);
    CHECK(nntm_stream_open_file(&s, "/nonexistent/x.bit", NULL) == NNTM_ERR_IO);
    nntm_stream_close(&s);
    CHECK(strcmp(nntm_strerror(NNTM_ERR_HASH), "unknown error") != 0);
}

/* nntm_thread_budget: its arguments, and a stream that decodes under one (its peak). */
static void test_thread_budget(void) {
    nntm_thread_budget *b = NULL;
    CHECK(nntm_thread_budget_create(NULL, 2) == NNTM_ERR_ARG);
    CHECK(nntm_thread_budget_create(&b, 0) == NNTM_ERR_ARG && b == NULL);
    CHECK(nntm_thread_budget_create(&b, NNTM_MAX_THREADS + 1) == NNTM_ERR_ARG && b == NULL);
    CHECK(nntm_thread_budget_peak(NULL) == 0);
    nntm_thread_budget_destroy(NULL);
    nntm_thread_budget_destroy(&b); /* *b NULL */
    CHECK(nntm_thread_budget_create(&b, 2) == NNTM_OK && b != NULL);
    CHECK(nntm_thread_budget_peak(b) == 0);
    stream_buf sb;
    size_t n = build(&sb, 1, 0, 0);
    nntm_stream_settings st;
    nntm_stream_default_settings(&st);
    st.threads = 2;
    st.budget = b;
    nntm_stream *s = NULL;
    CHECK(nntm_stream_open_memory(&s, sb.d, n, &st) == NNTM_OK);
    uint8_t out[16];
    float z[4];
    CHECK(nntm_stream_decode_tensor(s, 0, out, sizeof out, NULL) == NNTM_OK);
    CHECK(nntm_stream_decode_tensor(s, 1, z, sizeof z, NULL) == NNTM_OK);
    CHECK(out[0] == 1 && out[2] == 3 && z[0] == 0);
    CHECK(nntm_thread_budget_peak(b) == 1); /* one caller, no substreams */
    nntm_stream_close(&s);
    nntm_thread_budget_destroy(&b);
    CHECK(b == NULL);
}

int main(void) {
    test_thread_budget();
    test_md5();
    test_bits();
    test_good_stream(0);
    test_good_stream(1);
    test_refused();
    TEST_DONE();
}
