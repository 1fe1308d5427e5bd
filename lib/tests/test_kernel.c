/* Kernel tensor encode/decode round trips, the coding tree, and decoder robustness. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nntm/nntm.h"

static nntm_encoder_params params(int rows, int cols, int qp, int rdoq) {
    nntm_encoder_params p;
    memset(&p, 0, sizeof p);
    p.kernel.rows = rows;
    p.kernel.cols = cols;
    p.kernel.qp = qp;
    p.kernel.qp_density = 2;
    p.kernel.num_gt_flags = 4;
    p.rdoq = rdoq;
    p.lambda_scale = 0.1;
    p.max_abs_value = 3.4028234663852886e38;
    p.search.max_depth = 4;
    return p;
}

static void enable_tree(nntm_encoder_params *p, int log2_ctu, int mtt, int mask) {
    nntm_tree_params *t = &p->kernel.tree;
    t->enabled = 1;
    t->log2_ctu_size = log2_ctu;
    t->log2_min_qt_size = 1;
    t->max_mtt_depth = mtt;
    t->log2_min_cu_size = 0;
    t->split_mask = mask;
    t->skip_enabled = 1;
    t->cu_qp_delta_enabled = 1;
    p->search.num_qp_deltas = 3;
    p->search.qp_deltas[0] = 0;
    p->search.qp_deltas[1] = -2;
    p->search.qp_deltas[2] = 3;
}

/* Gaussian-ish weights; with blocks, some 8x8 blocks are zero and others scaled. */
static void fill(float *w, int rows, int cols, unsigned long long seed, double scale, int blocks) {
    unsigned long long s = seed;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double g = test_uniform(&s) + test_uniform(&s) + test_uniform(&s) - 1.5;
            double f = 1.0;
            if (blocks) {
                int b = (r / 8 * 7 + c / 8 * 3) % 5;
                f = b == 0 ? 0.0 : b == 1 ? 8.0 : 1.0;
            }
            w[(size_t)r * cols + c] = (float)(g * scale * f);
        }
}

/* Encode, decode, compare; returns the payload size. Checks the CU trace
 * tiles the tensor exactly when the tree is on. */
static size_t roundtrip(const nntm_encoder_params *p, const float *w) {
    size_t n = (size_t)p->kernel.rows * (size_t)p->kernel.cols;
    float *rec = malloc(sizeof(float) * (n + 1)), *dec = malloc(sizeof(float) * (n + 1));
    int32_t *lev = malloc(sizeof(int32_t) * (n + 1)), *dlev = malloc(sizeof(int32_t) * (n + 1));
    uint8_t *cover = calloc(n + 1, 1);
    nntm_buffer buf = {0}, tr = {0}, dtr = {0};
    CHECK(nntm_encode_kernel(p, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, lev, &buf, &tr) == NNTM_OK);
    CHECK(nntm_decode_kernel(&p->kernel, buf.data, buf.size, NNTM_DTYPE_FLOAT32, NULL, dec, dlev, &dtr) ==
          NNTM_OK);
    CHECK(n == 0 || memcmp(rec, dec, n * sizeof(float)) == 0);
    CHECK(n == 0 || memcmp(lev, dlev, n * sizeof(int32_t)) == 0);
    CHECK(tr.size == dtr.size && (tr.size == 0 || memcmp(tr.data, dtr.data, tr.size) == 0));
    if (p->kernel.tree.enabled && n) {
        const nntm_cu_record *cu = (const nntm_cu_record *)tr.data;
        size_t ncu = tr.size / sizeof *cu;
        for (size_t i = 0; i < ncu; i++)
            for (int y = cu[i].y; y < cu[i].y + cu[i].h; y++)
                for (int x = cu[i].x; x < cu[i].x + cu[i].w; x++) {
                    CHECK(y < p->kernel.rows && x < p->kernel.cols);
                    cover[(size_t)y * p->kernel.cols + x]++;
                    if (cu[i].mode == NNTM_CU_SKIP) CHECK(lev[(size_t)y * p->kernel.cols + x] == 0);
                }
        for (size_t i = 0; i < n; i++) CHECK(cover[i] == 1);
    }
    /* every truncation is detected */
    for (size_t cut = 0; cut < buf.size; cut += 1 + buf.size / 8) {
        int rv = nntm_decode_kernel(&p->kernel, buf.data, cut, NNTM_DTYPE_FLOAT32, NULL, dec, NULL, NULL);
        CHECK(rv == NNTM_ERR_TRUNCATED || rv == NNTM_ERR_CORRUPT);
    }
    /* trailing bytes are refused */
    if (buf.size) {
        uint8_t *longer = malloc(buf.size + 1);
        memcpy(longer, buf.data, buf.size);
        longer[buf.size] = 0x80;
        CHECK(nntm_decode_kernel(&p->kernel, longer, buf.size + 1, NNTM_DTYPE_FLOAT32, NULL, dec, NULL,
                                 NULL) == NNTM_ERR_CORRUPT);
        free(longer);
    }
    /* flipped bytes: never a crash */
    for (size_t k = 0; k < buf.size && k < 48; k++) {
        buf.data[k] ^= 0x5A;
        (void)nntm_decode_kernel(&p->kernel, buf.data, buf.size, NNTM_DTYPE_FLOAT32, NULL, dec, NULL, NULL);
        buf.data[k] ^= 0x5A;
    }
    size_t size = buf.size;
    nntm_buffer_free(&buf);
    nntm_buffer_free(&tr);
    nntm_buffer_free(&dtr);
    free(rec);
    free(dec);
    free(lev);
    free(dlev);
    free(cover);
    return size;
}

static int split_used(const nntm_encoder_params *p, const float *w, int want_depth_gt) {
    size_t n = (size_t)p->kernel.rows * (size_t)p->kernel.cols;
    float *rec = malloc(sizeof(float) * n);
    nntm_buffer buf = {0}, tr = {0};
    int found = 0;
    if (nntm_encode_kernel(p, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, &tr) == NNTM_OK) {
        const nntm_cu_record *cu = (const nntm_cu_record *)tr.data;
        for (size_t i = 0; i < tr.size / sizeof *cu; i++) found |= cu[i].depth > want_depth_gt;
    }
    nntm_buffer_free(&buf);
    nntm_buffer_free(&tr);
    free(rec);
    return found;
}

int main(void) {
    int shapes[][2] = {{1, 1}, {1, 7}, {7, 1}, {3, 5}, {16, 16}, {33, 17}, {64, 300}, {0, 5}};
    unsigned long long seed = 1;
    float *w = malloc(sizeof(float) * 64 * 300);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int rows = shapes[i][0], cols = shapes[i][1];
        for (int qp = -40; qp <= 0; qp += 8) {
            fill(w, rows, cols, seed++, 0.1, 0);
            for (int mode = 0; mode <= 2; mode++) { /* nearest, RDOQ, DQ trellis */
                nntm_encoder_params p = params(rows, cols, qp, mode > 0);
                p.kernel.dq_enabled = mode == 2;
                roundtrip(&p, w);
                /* every split type alone, and all together; odd sizes exercise the border */
                int masks[] = {0, 1 << NNTM_SPLIT_BT_H, 1 << NNTM_SPLIT_BT_V, 1 << NNTM_SPLIT_TT_H,
                               1 << NNTM_SPLIT_TT_V, NNTM_SPLIT_MASK_ALL};
                if (qp % 16 != 0 && rows * cols > 600) continue; /* keep the test short */
                for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
                    nntm_encoder_params t = p;
                    enable_tree(&t, 3 + (int)(m % 3), 2, masks[m]);
                    roundtrip(&t, w);
                }
            }
        }
    }
    /* context-coded remainder suffix [1.5]: round trips with every estimator and DQ mode
     * at a fine step (long remainders), smaller than bypass on Gaussian weights, and a
     * stream of one setting does not decode as the other */
    {
        fill(w, 64, 300, 77, 0.1, 0);
        for (int mode = 0; mode <= 3; mode++) {
            nntm_encoder_params off = params(64, 300, -44, 1);
            off.kernel.dq_enabled = mode < 3 ? mode : 0;
            off.kernel.prob_window = mode == 1 ? 0 : 10;
            off.kernel.num_gt_flags = 10;
            if (mode == 3) enable_tree(&off, 5, 2, NNTM_SPLIT_MASK_ALL);
            nntm_encoder_params on = off;
            on.kernel.suffix_ctx = 1;
            size_t a = roundtrip(&off, w), b = roundtrip(&on, w);
            printf("suffix bins (mode %d): bypass %zu bytes, context coded %zu bytes\n", mode, a, b);
            CHECK(b < a);
        }
        nntm_encoder_params p = params(64, 300, -44, 1);
        p.kernel.suffix_ctx = 1;
        float rec[64 * 300];
        int32_t lev[64 * 300], lev2[64 * 300];
        nntm_buffer buf = {0};
        CHECK(nntm_encode_kernel(&p, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, lev, &buf, NULL) == NNTM_OK);
        p.kernel.suffix_ctx = 0;
        int rv = nntm_decode_kernel(&p.kernel, buf.data, buf.size, NNTM_DTYPE_FLOAT32, NULL, rec, lev2,
                                    NULL);
        CHECK(rv != NNTM_OK || memcmp(lev, lev2, sizeof lev) != 0);
        p.kernel.suffix_ctx = 2;
        CHECK(nntm_decode_kernel(&p.kernel, buf.data, buf.size, NNTM_DTYPE_FLOAT32, NULL, rec, NULL,
                                 NULL) == NNTM_ERR_ARG);
        nntm_buffer_free(&buf);
    }
    /* row prediction [1.5]: rows that continue the row above code smaller with it, every
     * DQ mode round-trips, the decoder's trace marks the predicted rows, random rows are
     * left alone, and it does not combine with the coding tree */
    {
        int rows = 40, cols = 96;
        unsigned long long s = 31;
        for (int c = 0; c < cols; c++) w[c] = (float)(test_uniform(&s) - 0.5);
        for (int r = 1; r < rows; r++)
            for (int c = 0; c < cols; c++)
                w[r * cols + c] = w[(r - 1) * cols + c] + 0.02f * (float)(test_uniform(&s) - 0.5);
        for (int dq = 0; dq <= 3; dq++) {
            nntm_encoder_params off = params(rows, cols, -28, 1);
            off.kernel.dq_enabled = dq;
            off.kernel.prob_window = dq == 1 ? 0 : 10;
            nntm_encoder_params on = off;
            on.kernel.row_pred = 1;
            size_t a = roundtrip(&off, w), b = roundtrip(&on, w);
            printf("smooth rows (dq %d): %zu bytes, with row prediction %zu bytes\n", dq, a, b);
            CHECK(2 * b < a);
        }
        nntm_encoder_params on = params(rows, cols, -28, 1);
        on.kernel.row_pred = 1;
        float rec[40 * 96];
        nntm_buffer buf = {0}, tr = {0};
        CHECK(nntm_encode_kernel(&on, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) ==
              NNTM_OK);
        CHECK(nntm_decode_kernel(&on.kernel, buf.data, buf.size, NNTM_DTYPE_FLOAT32, NULL, rec, NULL,
                                 &tr) == NNTM_OK);
        const nntm_cu_record *cu = (const nntm_cu_record *)tr.data;
        size_t ncu = tr.size / sizeof *cu;
        CHECK(ncu == (size_t)rows - 1); /* every row after the first predicted */
        for (size_t i = 0; i < ncu; i++)
            CHECK(cu[i].x == 0 && cu[i].w == cols && cu[i].h == 1 && cu[i].y == (int)i + 1 &&
                  cu[i].intra == NNTM_INTRA_COPY && cu[i].bv_x == 0 && cu[i].bv_y == -1);
        nntm_buffer_free(&buf);
        nntm_buffer_free(&tr);
        fill(w, rows, cols, 41, 0.1, 0); /* independent rows: none predicted */
        CHECK(nntm_encode_kernel(&on, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) ==
              NNTM_OK);
        CHECK(nntm_decode_kernel(&on.kernel, buf.data, buf.size, NNTM_DTYPE_FLOAT32, NULL, rec, NULL,
                                 &tr) == NNTM_OK);
        CHECK(tr.size == 0);
        nntm_buffer_free(&buf);
        nntm_buffer_free(&tr);
        /* rows 20.. repeat rows 0..19 (plus noise): with hints to them they are predicted
         * from those rows, far above (block vectors (0, -20)), and the tensor codes smaller */
        for (int r = 20; r < rows; r++)
            for (int c = 0; c < cols; c++)
                w[r * cols + c] = w[(r - 20) * cols + c] + 0.002f * (float)(test_uniform(&s) - 0.5);
        int32_t hint[40];
        for (int r = 0; r < rows; r++) hint[r] = r >= 20 ? r - 20 : -1;
        nntm_encoder_params hinted = on;
        hinted.row_hint = hint;
        size_t a = roundtrip(&on, w), b = roundtrip(&hinted, w);
        printf("repeated rows: row prediction %zu bytes, with reference hints %zu bytes\n", a, b);
        CHECK(5 * b < 3 * a);
        CHECK(nntm_encode_kernel(&hinted, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) ==
              NNTM_OK);
        CHECK(nntm_decode_kernel(&on.kernel, buf.data, buf.size, NNTM_DTYPE_FLOAT32, NULL, rec, NULL,
                                 &tr) == NNTM_OK);
        cu = (const nntm_cu_record *)tr.data;
        ncu = tr.size / sizeof *cu;
        size_t far = 0;
        for (size_t i = 0; i < ncu; i++) far += cu[i].y >= 20 && cu[i].bv_y == -20;
        CHECK(far >= 15);
        nntm_buffer_free(&buf);
        nntm_buffer_free(&tr);
        enable_tree(&on, 4, 2, NNTM_SPLIT_MASK_ALL);
        CHECK(nntm_encode_kernel(&on, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) ==
              NNTM_ERR_ARG);
    }
    /* huge and tiny value ranges */
    fill(w, 20, 20, 99, 1e3, 0);
    nntm_encoder_params big = params(20, 20, -60, 1);
    roundtrip(&big, w);
    fill(w, 20, 20, 98, 1e-6, 0);
    nntm_encoder_params tiny = params(20, 20, 0, 1);
    roundtrip(&tiny, w);
    /* blocks of zeros and of large scale: the tree (with skip) beats the raster scan,
     * and it uses splits to get there */
    {
        fill(w, 64, 256, 5, 0.05, 1);
        nntm_encoder_params flat = params(64, 256, -28, 1);
        nntm_encoder_params tree = flat;
        enable_tree(&tree, 5, 2, NNTM_SPLIT_MASK_ALL);
        size_t a = roundtrip(&flat, w), b = roundtrip(&tree, w);
        printf("pruned blocks: raster %zu bytes, tree %zu bytes\n", a, b);
        CHECK(b < a);
        CHECK(split_used(&tree, w, 0));
    }
    /* intra prediction (format 1.3): repeated tiles and constant rows code in far fewer
     * bytes; every shape and split mask round-trips; the decoder's levels are the
     * reconstructed ones (prediction + residual) */
    {
        int rows = 48, cols = 80;
        unsigned long long s = 21;
        float tile[8 * 16];
        for (int i = 0; i < 8 * 16; i++) tile[i] = (float)(test_uniform(&s) - 0.5);
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++)
                w[y * cols + x] = tile[(y % 8) * 16 + x % 16] + 0.001f * (float)(test_uniform(&s) - 0.5);
        nntm_encoder_params p = params(rows, cols, -24, 1);
        enable_tree(&p, 4, 2, NNTM_SPLIT_MASK_ALL);
        nntm_encoder_params q = p;
        q.kernel.tree.intra_pred_enabled = 1;
        q.search.intra_copy_range = 16;
        size_t a = roundtrip(&p, w), b = roundtrip(&q, w);
        printf("repeated tiles: tree %zu bytes, tree + intra %zu bytes\n", a, b);
        CHECK(2 * b < a);
        q.kernel.dq_enabled = 1; /* not with DQ */
        float rec[48 * 80];
        nntm_buffer buf = {0};
        CHECK(nntm_encode_kernel(&q, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) ==
              NNTM_ERR_ARG);
        q.kernel.dq_enabled = 0;
        q.search.intra_copy_range = NNTM_MAX_INTRA_COPY_RANGE + 1;
        CHECK(nntm_encode_kernel(&q, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) ==
              NNTM_ERR_ARG);
        int sizes[][2] = {{1, 9}, {9, 1}, {17, 33}, {40, 40}};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            fill(w, sizes[i][0], sizes[i][1], 31 + i, 0.1, 1);
            nntm_encoder_params t = params(sizes[i][0], sizes[i][1], -20, 1);
            enable_tree(&t, 3 + (int)(i % 2), 2, NNTM_SPLIT_MASK_ALL);
            t.kernel.tree.intra_pred_enabled = 1;
            t.search.intra_copy_range = 8;
            roundtrip(&t, w);
        }
    }
    /* dependent quantization: on a Gaussian source it beats RDOQ in D + lambda R
     * terms: at the same QP-offset operating point, fewer bytes or lower error */
    {
        fill(w, 64, 300, 11, 0.05, 0);
        size_t n = 64 * 300;
        float *rec = malloc(sizeof(float) * n);
        double best_gain = -1e9;
        for (int qp = -36; qp <= -24; qp += 4) {
            double d[2];
            size_t bytes[2];
            for (int dq = 0; dq <= 1; dq++) {
                nntm_encoder_params p = params(64, 300, qp + (dq ? 2 : 0), 1);
                p.kernel.dq_enabled = dq;
                nntm_buffer buf = {0};
                CHECK(nntm_encode_kernel(&p, w, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) ==
                      NNTM_OK);
                d[dq] = 0;
                for (size_t i = 0; i < n; i++) d[dq] += (double)(w[i] - rec[i]) * (w[i] - rec[i]);
                bytes[dq] = buf.size;
                nntm_buffer_free(&buf);
            }
            /* rate difference at equal distortion: ~6 dB/bit per sample, in bits */
            double gain = ((double)bytes[0] - (double)bytes[1]) * 8.0 / (double)n +
                          10.0 * log10(d[0] / d[1]) / 6.02;
            printf("QP %d: RDOQ %zu bytes %.3g, DQ %zu bytes %.3g: DQ gain %.3f bit/weight\n", qp,
                   bytes[0], d[0], bytes[1], d[1], gain);
            if (gain > best_gain) best_gain = gain;
        }
        CHECK(best_gain > 0.0);
        free(rec);
    }
    /* importance: a column with importance 16 gets a smaller error than the rest */
    {
        fill(w, 32, 64, 12, 0.05, 0);
        float *imp = malloc(sizeof(float) * 32 * 64), *rec = malloc(sizeof(float) * 32 * 64);
        for (int i = 0; i < 32 * 64; i++) imp[i] = (i % 64) < 8 ? 16.0f : 1.0f;
        nntm_encoder_params p = params(32, 64, -24, 1);
        p.lambda_scale = 0.5;
        nntm_buffer buf = {0};
        CHECK(nntm_encode_kernel(&p, w, imp, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) == NNTM_OK);
        double e_hi = 0, e_lo = 0;
        for (int i = 0; i < 32 * 64; i++) {
            double e = (double)(w[i] - rec[i]) * (w[i] - rec[i]);
            if ((i % 64) < 8) e_hi += e; else e_lo += e / 7.0;
        }
        printf("importance 16: error %.3g vs %.3g\n", e_hi, e_lo);
        CHECK(e_hi < e_lo);
        nntm_buffer_free(&buf);
        imp[5] = -1.0f;
        CHECK(nntm_encode_kernel(&p, w, imp, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) == NNTM_ERR_ARG);
        nntm_buffer_free(&buf);
        free(imp);
        free(rec);
    }
    /* a level beyond the range is refused; the dtype's range clamps */
    {
        float v[2] = {1e30f, 0.0f}, rec[2];
        nntm_encoder_params p = params(1, 2, -40, 1);
        nntm_buffer buf = {0};
        CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) == NNTM_ERR_RANGE);
        p.max_abs_value = 65504.0; /* float16 */
        v[0] = 70000.0f;
        p.kernel.qp = 40;
        uint16_t h[2];
        CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT16, NULL, h, NULL, &buf, NULL) == NNTM_OK);
        CHECK(h[0] != 0x7C00u && (h[0] & 0x7C00u) != 0x7C00u); /* finite */
        nntm_buffer_free(&buf);
        v[0] = NAN;
        CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) == NNTM_ERR_NONFINITE);
        p.kernel.num_gt_flags = 0;
        CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf, NULL) == NNTM_ERR_ARG);
    }
    /* garbage payloads never crash, with and without the tree */
    {
        unsigned long long s = 7;
        uint8_t junk[256];
        float out[40 * 40];
        nntm_encoder_params p = params(40, 40, -20, 1);
        nntm_encoder_params t = p;
        enable_tree(&t, 4, 3, NNTM_SPLIT_MASK_ALL);
        nntm_encoder_params ti = t;
        ti.kernel.tree.intra_pred_enabled = 1;
        for (int k = 0; k < 6000; k++) {
            size_t len = test_rand(&s) % sizeof junk;
            for (size_t i = 0; i < len; i++) junk[i] = (uint8_t)test_rand(&s);
            const nntm_kernel_params *kp = k % 3 == 0 ? &p.kernel : k % 3 == 1 ? &t.kernel
                                                                                  : &ti.kernel;
            int rv = nntm_decode_kernel(kp, junk, len, NNTM_DTYPE_FLOAT32, NULL, out, NULL, NULL);
            CHECK(rv == NNTM_OK || rv == NNTM_ERR_CORRUPT || rv == NNTM_ERR_TRUNCATED);
        }
    }
    CHECK(strcmp(nntm_strerror(NNTM_ERR_TRUNCATED), "truncated payload") == 0);
    { /* [1.8] the substreams coded on 1, 2 and 5 threads: the same bytes and reconstruction;
         a level out of range in a late substream is the same error on any count */
        enum { R = 120, C = 64 };
        float *v = malloc(sizeof(float) * R * C);
        float rec1[R * C], rec[R * C];
        fill(v, R, C, 21, 0.05, 0);
        nntm_buffer one = {0}, buf = {0};
        for (int dq = 0; dq <= 3; dq += 3) {
            nntm_encoder_params p = params(R, C, -24, 1);
            p.kernel.dq_enabled = dq;
            p.kernel.prob_window = 8;
            p.kernel.substream_rows = 9;
            p.threads = 1;
            CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT32, NULL, rec1, NULL, &one,
                                     NULL) == NNTM_OK);
            for (int t = 2; t <= 5; t += 3) {
                p.threads = t;
                CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf,
                                         NULL) == NNTM_OK);
                CHECK(buf.size == one.size && memcmp(buf.data, one.data, one.size) == 0);
                CHECK(memcmp(rec, rec1, sizeof rec) == 0);
                nntm_buffer_free(&buf);
            }
            nntm_buffer_free(&one);
            p.threads = NNTM_MAX_THREADS + 1;
            CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf,
                                     NULL) == NNTM_ERR_ARG);
        }
        v[100 * C + 3] = 3.0e9f;
        for (int t = 1; t <= 4; t++) {
            nntm_encoder_params p = params(R, C, -40, 1);
            p.kernel.substream_rows = 9;
            p.threads = t;
            CHECK(nntm_encode_kernel(&p, v, NULL, NNTM_DTYPE_FLOAT32, NULL, rec, NULL, &buf,
                                     NULL) == NNTM_ERR_RANGE);
            CHECK(buf.size == 0);
        }
        free(v);
    }
    { /* the decoder's own scratch memory, for a memory budget */
        nntm_kernel_params sp = {0};
        sp.rows = 100;
        sp.cols = 30;
        CHECK(nntm_decode_kernel_scratch(&sp) == 0); /* raster, no DQ: levels only */
        sp.dq_enabled = 1;
        CHECK(nntm_decode_kernel_scratch(&sp) == 3000 * 4);
        sp.tree.enabled = 1;
        CHECK(nntm_decode_kernel_scratch(&sp) == 3000 * (4 + 6));
        sp.dq_enabled = 0;
        sp.tree.intra_pred_enabled = 1;
        CHECK(nntm_decode_kernel_scratch(&sp) == 3000 * (4 + 6 + 5));
        sp.rows = -1;
        CHECK(nntm_decode_kernel_scratch(&sp) == 0 && nntm_decode_kernel_scratch(NULL) == 0);
    }
    free(w);
    TEST_DONE();
}
