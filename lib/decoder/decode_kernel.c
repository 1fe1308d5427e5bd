/* nntm_decode_kernel: parse and reconstruct one tensor data unit payload; [1.8] the
 * substreams of a tensor with entry points on several threads. */
#include "nntm/nntm.h"

#include <stdlib.h>
#include <string.h>

#include "../common/partition.h"
#include "../common/quant.h"
#include "../common/threads.h"
#include "bit_reader.h"
#include "syntax_reader.h"

size_t nntm_decode_kernel_scratch(const nntm_kernel_params *params) {
    if (!params || params->rows < 0 || params->cols < 0) return 0;
    size_t count = (size_t)params->rows * (size_t)params->cols;
    int intra = params->tree.enabled && params->tree.intra_pred_enabled;
    size_t per = 0;
    if (params->dq_enabled || intra || params->row_pred) per += sizeof(int32_t); /* rindex */
    if (params->tree.enabled) per += 4 + sizeof(int16_t);     /* CU maps: 4 bytes, qp_delta */
    if (intra) per += 1 + 2 * sizeof(int16_t);                /* intra mode, block vector */
    size_t extra = 0;
    if (params->row_pred) extra += (size_t)params->rows * sizeof(int32_t); /* row_ref */
    int64_t nsub = nntm_num_substreams(params);
    if (nsub > 1) /* the substream table, and a ring of two rows of levels per substream */
        extra += (size_t)nsub * (3 * sizeof(size_t) + 2 * (size_t)params->cols * sizeof(int32_t));
    return count * per + extra;
}

/* Tensors of more than BAND_ELEMENTS samples without the tree, row prediction or a
 * reference, whose levels the caller does not want, are decoded and reconstructed a band of
 * about BAND_ELEMENTS samples at a time: the decoder then holds two rows of levels and one
 * band of indices beside the output, not 4 bytes a sample (the bits are the same: the rows
 * are decoded in the same order and each sample reconstructed alone). */
#define BAND_ELEMENTS ((size_t)1 << 16)

/* One substream [1.8] (the whole tensor data without entry points): its bytes and rows. */
typedef struct substream {
    const uint8_t *data;
    size_t size;
    int32_t y0, y1;
} substream;

/* What every substream of a tensor is decoded with. */
typedef struct kernel_job {
    const nntm_kernel_params *p;
    const substream *sub;
    int64_t nsub;
    int32_t dtype;
    int banded;           /* reconstruct band by band into recon (see BAND_ELEMENTS) */
    void *recon;
    int32_t *levels;      /* rows x cols, or NULL with ring */
    int32_t *rindex;      /* rows x cols (not banded) */
    int32_t *row_ref;     /* [1.5] per row, or NULL */
    int *rv;              /* per substream */
    nntm_items items;     /* the substreams, taken on threads */
    nntm_thread_budget *budget; /* or NULL */
} kernel_job;

/* Substream k: parsed from its own bytes with fresh contexts and DQ state 0, its first row
 * without a row above; banded: reconstructed into recon, else levels and indices filled. */
static int decode_substream(kernel_job *j, int64_t k) {
    const nntm_kernel_params *p = j->p;
    const substream *s = &j->sub[k];
    const size_t cols = (size_t)p->cols;
    nntm_bin_reader r;
    nntm_bin_reader_init(&r, s->data, s->size);
    nntm_level_ctxs ctxs;
    nntm_level_ctxs_init(&ctxs, p->prob_window, p->suffix_ctx);
    int rv = NNTM_OK;
    if (j->banded) {
        size_t rows = (size_t)(s->y1 - s->y0);
        size_t band = cols >= BAND_ELEMENTS ? 1 : BAND_ELEMENTS / cols;
        if (band > rows) band = rows;
        size_t es = j->dtype == NNTM_DTYPE_FLOAT64 ? 8 : j->dtype == NNTM_DTYPE_FLOAT32 ? 4 : 2;
        int32_t *ring = malloc(2 * cols * sizeof *ring);
        int32_t *rindex = malloc(band * cols * sizeof *rindex);
        rv = ring && rindex ? NNTM_OK : NNTM_ERR_NOMEM;
        for (size_t y = (size_t)s->y0; y < (size_t)s->y1 && rv == NNTM_OK; y += band) {
            size_t y1 = y + band < (size_t)s->y1 ? y + band : (size_t)s->y1;
            rv = nntm_read_tensor_rows(&r, &ctxs, p, ring, rindex, (int32_t)y, (int32_t)y1,
                                       s->y0);
            if (rv == NNTM_OK)
                rv = nntm_reconstruct_map(p, rindex, NULL, (y1 - y) * cols, j->dtype, NULL,
                                          (uint8_t *)j->recon + y * cols * es);
        }
        free(ring);
        free(rindex);
    } else {
        int32_t *levels = j->levels, *ring = NULL;
        if (!levels) { /* only rindex is wanted: two rows of levels */
            ring = malloc(2 * cols * sizeof *ring);
            if (!ring) return NNTM_ERR_NOMEM;
        }
        rv = nntm_read_tensor_data(&r, &ctxs, p, levels ? levels : ring, j->rindex, s->y0, s->y1,
                                   !levels, j->row_ref);
        free(ring);
    }
    if (rv == NNTM_OK && r.pos != s->size) rv = NNTM_ERR_CORRUPT; /* bytes left over */
    return rv;
}

/* Take the next substream of j and decode it: 0 when none is left, or one failed. */
static int take_substream(void *arg) {
    kernel_job *j = arg;
    int64_t k = nntm_items_claim(&j->items);
    if (k < 0) return 0;
    j->rv[k] = decode_substream(j, k);
    if (j->rv[k]) nntm_items_fail(&j->items);
    return 1;
}

static void kernel_worker(void *arg) {
    while (take_substream(arg)) {
    }
}

/* Every substream of j on up to threads threads (nntm_items_run); the code of the first
 * substream (in order) that failed.  A substream is taken in order, so every one before a
 * failing one has been taken and finishes: the result does not depend on the thread
 * count. */
static int decode_substreams(kernel_job *j, int32_t threads) {
    for (int64_t k = 0; k < j->nsub; k++) j->rv[k] = NNTM_OK;
    j->items.count = j->nsub;
    j->items.run = kernel_worker;
    j->items.take = take_substream;
    j->items.arg = j;
    nntm_items_run(&j->items, threads, j->budget);
    for (int64_t k = 0; k < j->nsub; k++)
        if (j->rv[k]) return j->rv[k];
    return NNTM_OK;
}

/* The entry points [1.8]: substream_size[ k ] (ue(v)) for every substream but the last,
 * byte_alignment(), then the substreams; each one at least 4 bytes (the arithmetic
 * decoder's first read).  NNTM_ERR_CORRUPT for sizes that do not fit the payload. */
static int split_substreams(const nntm_kernel_params *p, const uint8_t *data, size_t size,
                            substream *sub, int64_t nsub) {
    size_t pos = 0;
    if (nsub > 1) {
        nntm_bits b;
        nntm_bits_init(&b, data, size);
        uint64_t total = 0;
        for (int64_t k = 0; k + 1 < nsub; k++) {
            uint64_t v;
            int rv = nntm_bits_ue(&b, &v);
            if (rv < 0) return NNTM_ERR_TRUNCATED;
            if (rv > 0 || v < 4 || v > size) return NNTM_ERR_CORRUPT;
            sub[k].size = (size_t)v;
            total += v;
            if (total > size) return NNTM_ERR_CORRUPT;
        }
        int rv = nntm_bits_align(&b);
        if (rv) return rv < 0 ? NNTM_ERR_TRUNCATED : NNTM_ERR_CORRUPT;
        pos = (size_t)(b.pos >> 3);
        if (pos > size || total + 4 > size - pos) return NNTM_ERR_CORRUPT; /* overrun */
        sub[nsub - 1].size = size - pos - (size_t)total;
    } else {
        sub[0].size = size;
    }
    for (int64_t k = 0; k < nsub; k++) {
        sub[k].data = data + pos;
        pos += sub[k].size;
        nntm_substream_range(p, k, &sub[k].y0, &sub[k].y1);
    }
    return NNTM_OK;
}

/* A raster tensor (no coding tree): its substreams (one without entry points), then
 * [1.5] the row prediction in row order, then the reconstruction. */
static int decode_raster(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                         int32_t dtype, const nntm_reference *ref, void *recon,
                         int32_t *levels_out, nntm_buffer *cu_trace, int32_t threads,
                         nntm_thread_budget *budget) {
    const size_t count = (size_t)params->rows * (size_t)params->cols;
    int64_t nsub = nntm_num_substreams(params);
    /* every substream is at least 4 bytes: refuse a count the payload cannot carry
     * before allocating for it */
    if (nsub > 1 && (uint64_t)nsub > size / 4) return NNTM_ERR_CORRUPT;
    substream one, *sub = nsub > 1 ? malloc((size_t)nsub * sizeof *sub) : &one;
    int *rvs = nsub > 1 ? malloc((size_t)nsub * sizeof *rvs) : NULL;
    int rv_one;
    if (!sub || (nsub > 1 && !rvs)) {
        if (sub != &one) free(sub);
        free(rvs);
        return NNTM_ERR_NOMEM;
    }
    kernel_job j;
    memset(&j, 0, sizeof j);
    j.p = params;
    j.sub = sub;
    j.nsub = nsub;
    j.dtype = dtype;
    j.recon = recon;
    j.rv = rvs ? rvs : &rv_one;
    j.budget = budget;
    int rv = split_substreams(params, data, size, sub, nsub);
    j.banded = !params->row_pred && !ref && !levels_out && !cu_trace && count > BAND_ELEMENTS;
    int separate = params->dq_enabled || params->row_pred; /* rindex != levels */
    if (rv == NNTM_OK && !j.banded) {
        /* with a separate rindex and no caller wanting the levels, two rows of levels a
         * substream are enough (the contexts look at the row above only) */
        int ring = separate && !levels_out && params->rows > 2;
        j.levels = levels_out ? levels_out : ring ? NULL : malloc(count * sizeof(int32_t));
        j.rindex = separate ? malloc(count * sizeof(int32_t)) : j.levels;
        j.row_ref = params->row_pred ? malloc((size_t)params->rows * sizeof(int32_t)) : NULL;
        if ((!ring && !j.levels) || !j.rindex || (params->row_pred && !j.row_ref))
            rv = NNTM_ERR_NOMEM;
    }
    if (rv == NNTM_OK) rv = decode_substreams(&j, threads);
    if (rv == NNTM_OK && params->row_pred)
        rv = nntm_apply_row_pred(params, j.rindex, j.row_ref, cu_trace);
    if (rv == NNTM_OK && !j.banded)
        rv = nntm_reconstruct_map(params, j.rindex, NULL, count, dtype, ref, recon);
    if (j.rindex != j.levels) free(j.rindex);
    if (j.levels != levels_out) free(j.levels);
    free(j.row_ref);
    if (sub != &one) free(sub);
    free(rvs);
    return rv;
}

int nntm_decode_kernel_budget(const nntm_kernel_params *params, const uint8_t *data,
                              size_t size, int32_t dtype, const nntm_reference *ref,
                              void *recon, int32_t *levels_out, nntm_buffer *cu_trace,
                              int32_t threads, nntm_thread_budget *budget) {
    if (cu_trace) {
        cu_trace->data = NULL;
        cu_trace->size = cu_trace->capacity = 0;
    }
    int rv = nntm_check_kernel_params(params);
    if (rv) return rv;
    if (dtype < NNTM_DTYPE_FLOAT32 || dtype > NNTM_DTYPE_FLOAT64) return NNTM_ERR_ARG;
    if (threads < 0 || threads > NNTM_MAX_THREADS) return NNTM_ERR_ARG;
    if (threads == 0) threads = 1;
    size_t count = (size_t)params->rows * (size_t)params->cols;
    if ((count && !recon) || (size && !data)) return NNTM_ERR_ARG;
    if (ref && nntm_check_reference(ref, count)) return NNTM_ERR_ARG;
    if (count == 0) return size == 0 ? NNTM_OK : NNTM_ERR_CORRUPT;
    if (!params->tree.enabled) {
        rv = decode_raster(params, data, size, dtype, ref, recon, levels_out, cu_trace, threads,
                           budget);
        if (rv) nntm_buffer_free(cu_trace);
        return rv;
    }
    int intra = params->tree.intra_pred_enabled;
    int separate = params->dq_enabled || intra; /* rindex != levels */
    int32_t *levels = levels_out ? levels_out : malloc(count * sizeof(int32_t));
    int32_t *rindex = separate ? malloc(count * sizeof(int32_t)) : levels;
    if (!levels || !rindex) {
        if (!levels_out) free(levels);
        if (rindex != levels) free(rindex);
        return NNTM_ERR_NOMEM;
    }
    nntm_cu_maps maps = {0};
    nntm_bin_reader r;
    nntm_bin_reader_init(&r, data, size);
    nntm_all_ctxs ctxs;
    nntm_all_ctxs_init(&ctxs, params->prob_window, params->suffix_ctx);
    rv = nntm_cu_maps_alloc(&maps, params->rows, params->cols);
    if (rv == NNTM_OK && intra) rv = nntm_cu_maps_alloc_intra(&maps);
    if (rv == NNTM_OK) rv = nntm_read_tree_data(&r, &ctxs, &maps, params, levels, rindex, cu_trace);
    if (rv == NNTM_OK && r.pos != size) rv = NNTM_ERR_CORRUPT; /* bytes after the payload */
    if (rv == NNTM_OK)
        rv = nntm_reconstruct_map(params, rindex, maps.qp_delta, count, dtype, ref, recon);
    nntm_cu_maps_free(&maps);
    if (rv == NNTM_OK && intra && levels_out) /* report the reconstructed levels */
        memcpy(levels_out, rindex, count * sizeof(int32_t));
    if (rindex != levels) free(rindex);
    if (!levels_out) free(levels);
    if (rv) nntm_buffer_free(cu_trace);
    return rv;
}

int nntm_decode_kernel_threads(const nntm_kernel_params *params, const uint8_t *data,
                               size_t size, int32_t dtype, const nntm_reference *ref,
                               void *recon, int32_t *levels_out, nntm_buffer *cu_trace,
                               int32_t threads) {
    return nntm_decode_kernel_budget(params, data, size, dtype, ref, recon, levels_out, cu_trace,
                                     threads, NULL);
}

int nntm_decode_kernel_shared(const nntm_kernel_params *params, const uint8_t *data,
                              size_t size, int32_t dtype, const nntm_reference *ref,
                              void *recon, int32_t *levels, nntm_buffer *cu_trace,
                              int32_t threads, nntm_thread_budget *b) {
    if (!b) {
        return nntm_decode_kernel_threads(params, data, size, dtype, ref, recon, levels,
                                          cu_trace, threads);
    }
    nntm_budget_begin(b);
    int rv = nntm_decode_kernel_budget(params, data, size, dtype, ref, recon, levels, cu_trace,
                                       threads, b);
    nntm_budget_end(b);
    return rv;
}

int nntm_decode_kernel(const nntm_kernel_params *params, const uint8_t *data, size_t size,
                       int32_t dtype, const nntm_reference *ref, void *recon, int32_t *levels,
                       nntm_buffer *cu_trace) {
    return nntm_decode_kernel_threads(params, data, size, dtype, ref, recon, levels, cu_trace, 1);
}
