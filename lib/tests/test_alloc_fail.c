/* Allocation failures in the stream decoder (dav1d style): every allocation that opening
 * and decoding a stream makes is made to fail in turn, and each time every call must
 * return what it returns without the failure or NNTM_ERR_NOMEM (at least one of them the
 * latter, with an error text), and nothing may be left allocated after nntm_stream_close.
 *
 *   test_alloc_fail STREAM.bit ...      (ctest: the conformance streams of bitstreams/)
 *
 * The allocator of this test program replaces glibc's malloc, calloc, realloc and free
 * (over __libc_malloc & co.), so it sees every allocation of the library, of the core's
 * kernel decoder and of zlib's inflate alike; it counts and fails only while armed.  The
 * library itself has no globals: the counters are this program's.  Not built with the
 * sanitizers (they bring their own allocator). */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nntm/nntm.h"
#include "nntm/nntm_stream.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);

static int armed;          /* count (and fail) allocations */
static long seen;          /* allocations while armed */
static long fail_at;       /* the allocation to fail (1-based; 0: none) */
static long failed;        /* allocations failed */
static long live;          /* allocations not yet freed (armed ones only) */

/* A header in front of each block says whether it was made while armed. */
#define HEAD 16

static int should_fail(void) {
    if (!armed) return 0;
    seen++;
    if (seen == fail_at) {
        failed++;
        return 1;
    }
    return 0;
}

static void *wrap(uint8_t *raw) {
    if (!raw) return NULL;
    raw[0] = (uint8_t)armed;
    if (armed) live++;
    return raw + HEAD;
}

void *malloc(size_t size) {
    if (should_fail() || size > SIZE_MAX - HEAD) return NULL;
    return wrap(__libc_malloc(size + HEAD));
}

void *calloc(size_t n, size_t size) {
    if (should_fail() || (size && n > (SIZE_MAX - HEAD) / size)) return NULL;
    return wrap(__libc_calloc(1, n * size + HEAD));
}

void free(void *p) {
    if (!p) return;
    uint8_t *raw = (uint8_t *)p - HEAD;
    if (raw[0]) live--;
    __libc_free(raw);
}

void *realloc(void *p, size_t size) {
    if (!p) return malloc(size);
    if (should_fail() || size > SIZE_MAX - HEAD) return NULL;
    uint8_t *raw = (uint8_t *)p - HEAD;
    int was = raw[0];
    uint8_t *n = __libc_realloc(raw, size + HEAD);
    if (!n) return NULL;
    if (was) live--;
    return wrap(n);
}

/* Other glibc entry points that hand out memory free() may see: refuse them loudly. */
void *memalign(size_t a, size_t s) { (void)a; (void)s; abort(); }
void *aligned_alloc(size_t a, size_t s) { (void)a; (void)s; abort(); }
int posix_memalign(void **p, size_t a, size_t s) { (void)p; (void)a; (void)s; abort(); }
void *valloc(size_t s) { (void)s; abort(); }
void *pvalloc(size_t s) { (void)s; abort(); }

#define MAX_TENSORS 64

typedef struct outcome {
    int open;
    int32_t n;
    int tensor[MAX_TENSORS];
    int error_text;          /* every failure had an error text */
} outcome;

/* Open (from memory or the file) and decode every tensor, armed. */
static void run(const char *path, const uint8_t *data, size_t size, int from_file, outcome *o) {
    memset(o, 0, sizeof *o);
    o->error_text = 1;
    nntm_stream *s = NULL;
    armed = 1;
    o->open = from_file ? nntm_stream_open_file(&s, path, NULL)
                        : nntm_stream_open_memory(&s, data, size, NULL);
    if (o->open < 0 && s && !nntm_stream_error(s)[0]) o->error_text = 0;
    o->n = o->open == NNTM_OK ? nntm_stream_num_tensors(s) : 0;
    if (o->n > MAX_TENSORS) o->n = MAX_TENSORS;
    for (int32_t i = o->n - 1; i >= 0; i--) { /* backwards: references decode on demand */
        nntm_tensor_info t;
        nntm_stream_tensor_info(s, i, &t);
        armed = 0;
        uint8_t *buf = __libc_malloc((size_t)t.byte_size + 1);
        armed = 1;
        o->tensor[i] = nntm_stream_decode_tensor(s, i, buf, (size_t)t.byte_size, NULL);
        if (o->tensor[i] < 0 && !nntm_stream_error(s)[0]) o->error_text = 0;
        __libc_free(buf);
    }
    nntm_stream_close(&s);
    armed = 0;
}

static int check_stream(const char *path, int from_file) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = __libc_malloc((size_t)size + 1);
    size_t got = fread(data, 1, (size_t)size, f);
    fclose(f);
    int bad = got != (size_t)size;
    outcome base, o;
    seen = failed = live = 0;
    fail_at = 0;
    run(path, data, got, from_file, &base);
    long total = seen;
    if (live) {
        fprintf(stderr, "%s: %ld allocation(s) left after close (no failure)\n", path, live);
        bad = 1;
    }
    for (long k = 1; k <= total && !bad; k++) {
        seen = failed = live = 0;
        fail_at = k;
        run(path, data, got, from_file, &o);
        int nomem = 0, ok = 1;
        if (o.open == NNTM_ERR_NOMEM) nomem = 1;
        else if (o.open != base.open || o.n != base.n) ok = 0;
        for (int32_t i = 0; ok && i < o.n; i++) {
            if (o.tensor[i] == NNTM_ERR_NOMEM) nomem = 1;
            else if (o.tensor[i] != base.tensor[i]) ok = 0;
        }
        if (!ok || (failed && !nomem) || !o.error_text || live) {
            fprintf(stderr, "%s (%s): allocation %ld of %ld failed: open %d (%d without), "
                    "%s%s%s\n", path, from_file ? "file" : "memory", k, total, o.open, base.open,
                    !ok ? "a result neither the unfailing one nor NNTM_ERR_NOMEM; " : "",
                    failed && !nomem ? "no NNTM_ERR_NOMEM; " : "",
                    live ? "memory left allocated" : (!o.error_text ? "no error text" : ""));
            bad = 1;
        }
    }
    if (!bad)
        printf("%s (%s): %ld allocation(s), each failed in turn: clean\n", path,
               from_file ? "file" : "memory", total);
    __libc_free(data);
    return bad;
}

int main(int argc, char **argv) {
    int bad = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: test_alloc_fail STREAM.bit ...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        bad |= check_stream(argv[i], 0);
        if (i == 1) bad |= check_stream(argv[i], 1);
    }
    return bad;
}
