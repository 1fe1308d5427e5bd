/* nntm-dec: decode an NNTM bitstream to safetensors with libnntm alone (no Python).
 *
 *   nntm-dec -b in.bit [-o out.safetensors] [--RefModel ref.safetensors] [-v]
 *            [--threads N] [--MaxMemory BYTES] [--MaxExpansion N] [--MaxTensorElements N]
 *            [--Container FILE] [--Md5File FILE]
 *
 * --Md5File writes "<md5>  <name>" a tensor (the format of the conformance .md5 files) once
 * every tensor is decoded, also when an MD5 differs from its hash unit (ConformanceApp
 * --Decoder c reads it).
 *
 * A 1.7 stream's container unit (an ONNX model's graph) is inflated and checked as
 * DecoderApp does; the tensors go to the safetensors file and the container data (the
 * onnx_container() bytes, docs/bitstream.md 3.8) to --Container FILE when asked for: nntm-dec
 * does not rebuild an ONNX file (DecoderApp -o model.onnx does).
 *
 * --threads N: at most N threads decode at once (default: every core): N tensors at once,
 * and [1.8] the substreams of a tensor with entry points on the threads the other tensors
 * leave free (one nntm_thread_budget for every worker's stream); the output and the lines
 * printed do not depend on it (but for -v's times and its Threads line, which says how many
 * threads decoded at once at most).
 *
 * One line per tensor with [MD5: <hex> OK]; exits 1 on any mismatch or error,
 * leaving no output file (the output is written to a temporary file in the
 * same folder and renamed once complete).  The safetensors file is byte for
 * byte the one DecoderApp writes. */
#define _DEFAULT_SOURCE /* sysconf(_SC_PHYS_PAGES), fsync, fileno */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nntm/nntm.h"
#include "nntm/nntm_stream.h"
#include "tools/safetensors.h"

static const char *prog = "nntm-dec";

#define MAX_THREADS 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: nntm-dec -b in.bit [-o out.safetensors] [--RefModel ref.safetensors] [-v]\n"
            "                [--threads N] [--MaxMemory BYTES|auto] [--MaxExpansion N]\n"
            "                [--MaxTensorElements N] [--Container FILE] [--Md5File FILE]\n"
            "Decode an NNTM bitstream (format 1.0 to 1.8), check every MD5 and write the model\n"
            "as safetensors (identical to DecoderApp's). Exits 1 on any mismatch or error, in\n"
            "which case no output file is written. --Container writes a 1.7 stream's container\n"
            "data (an ONNX model's graph, onnx_container()); DecoderApp -o x.onnx rebuilds the\n"
            "ONNX file.\n");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A byte count with an optional K/M/G/T suffix (powers of 1024), or auto (0). */
static int parse_size(const char *text, uint64_t *out) {
    if (!strcmp(text, "auto")) { *out = 0; return 0; }
    char *end;
    double v = strtod(text, &end);
    uint64_t unit = 1;
    if (*end == 'K' || *end == 'k') unit = 1ull << 10;
    else if (*end == 'M' || *end == 'm') unit = 1ull << 20;
    else if (*end == 'G' || *end == 'g') unit = 1ull << 30;
    else if (*end == 'T' || *end == 't') unit = 1ull << 40;
    if (unit != 1) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || end == text || !(v > 0)) return -1;
    *out = (uint64_t)(v * (double)unit);
    return *out ? 0 : -1;
}

static int parse_count(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end || end == text || errno || text[0] == '-') return -1;
    *out = v;
    return 0;
}

/* Whether a code point is a control (Cc), a line or paragraph separator (Zl, Zp) or one
 * of the format controls (Cf: bidi, zero-width, ...) that DecoderApp escapes. */
static int unsafe_code_point(uint32_t c) {
    static const uint32_t cf[][2] = {
        {0xAD, 0xAD},       {0x600, 0x605},     {0x61C, 0x61C},   {0x6DD, 0x6DD},
        {0x70F, 0x70F},     {0x890, 0x891},     {0x8E2, 0x8E2},   {0x180E, 0x180E},
        {0x200B, 0x200F},   {0x2028, 0x202E},   {0x2060, 0x2064}, {0x2066, 0x206F},
        {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
        {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
        {0xE0020, 0xE007F},
    };
    if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return 1;
    for (size_t i = 0; i < sizeof cf / sizeof cf[0]; i++)
        if (c >= cf[i][0] && c <= cf[i][1]) return 1;
    return 0;
}

/* A name for the terminal, escaped as DecoderApp does (as in a Python literal: \n, \x1b,
 * \u202e); the name is valid UTF-8 (the reader checks it). */
static void print_name(const char *name, size_t n) {
    const unsigned char *p = (const unsigned char *)name;
    for (size_t i = 0; i < n;) {
        uint32_t c = p[i];
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (i + len > n) len = 1;
        if (len > 1) {
            c &= 0x3Fu >> (len - 1);
            for (size_t k = 1; k < len; k++) c = (c << 6) | (p[i + k] & 0x3F);
        }
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (!unsafe_code_point(c)) fwrite(p + i, 1, len, stdout);
        else if (c <= 0xFF) printf("\\x%02x", (unsigned)c);
        else if (c <= 0xFFFF) printf("\\u%04x", (unsigned)c);
        else printf("\\U%08x", (unsigned)c);
        i += len;
    }
}

static void print_shape(const nntm_tensor_info *t) {
    char buf[256] = "scalar";
    size_t n = 0;
    for (int d = 0; d < t->ndim; d++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, d ? "x%lld" : "%lld", (long long)t->shape[d]);
    printf(" %16s", buf);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    if (a < b) return 0;
    for (size_t i = 0; i < b; i++) {
        char c = s[a - b + i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != suffix[i]) return 0;
    }
    return 1;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Create the missing folders of path's directory, outermost first; made[] gets those
 * created (for remove_folders).  0, or -1 with errno set. */
#define MAX_MADE 64
typedef struct made_folders {
    char *path[MAX_MADE];
    int count;
} made_folders;

static int make_folders(const char *path, made_folders *made) {
    made->count = 0;
    size_t n = strlen(path);
    char *dir = malloc(n + 1);
    if (!dir) return -1;
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = 0;
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (stat(dir, &st)) {
            if (mkdir(dir, 0777) || made->count == MAX_MADE) {
                *p = c;
                free(dir);
                return -1;
            }
            made->path[made->count] = malloc(strlen(dir) + 1);
            if (made->path[made->count]) strcpy(made->path[made->count++], dir);
        }
        *p = c;
        if (!c) break;
    }
    free(dir);
    return 0;
}

/* Remove the folders make_folders created (innermost first) when remove is set; free. */
static void release_folders(made_folders *made, int remove_them) {
    for (int i = made->count - 1; i >= 0; i--) {
        if (remove_them) rmdir(made->path[i]);
        free(made->path[i]);
    }
    made->count = 0;
}

typedef struct options {
    const char *bitstream, *output, *ref_model, *container, *md5_file;
    int verbose;
    int threads;
    nntm_stream_settings settings;
} options;

static int parse_args(int argc, char **argv, options *o) {
    nntm_stream_default_settings(&o->settings);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char *eq = strchr(a, '=');
        char key[64];
        if (a[0] == '-' && a[1] == '-' && eq && (size_t)(eq - a) < sizeof key) {
            memcpy(key, a, (size_t)(eq - a));
            key[eq - a] = 0;
            a = key;
            v = eq + 1;
        }
        int takes = !strcmp(a, "-b") || !strcmp(a, "--BitstreamFile") || !strcmp(a, "-o") ||
                    !strcmp(a, "--OutputFile") || !strcmp(a, "--RefModel") ||
                    !strcmp(a, "--MaxMemory") || !strcmp(a, "--MaxExpansion") ||
                    !strcmp(a, "--MaxTensorElements") || !strcmp(a, "--threads") ||
                    !strcmp(a, "--Container") || !strcmp(a, "--Md5File");
        if (takes && !v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: error: %s needs a value\n", prog, a);
                return -1;
            }
            v = argv[++i];
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "-v") || !strcmp(a, "--Verbose")) {
            o->verbose = 1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--BitstreamFile")) {
            o->bitstream = v;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--OutputFile")) {
            o->output = v;
        } else if (!strcmp(a, "--threads")) {
            uint64_t t;
            if (parse_count(v, &t) || t < 1 || t > MAX_THREADS) {
                fprintf(stderr, "%s: error: --threads: '%s' is not 1..%d\n", prog, v, MAX_THREADS);
                return -1;
            }
            o->threads = (int)t;
        } else if (!strcmp(a, "--Container")) {
            o->container = v;
        } else if (!strcmp(a, "--Md5File")) {
            o->md5_file = v;
        } else if (!strcmp(a, "--RefModel")) {
            o->ref_model = v;
        } else if (!strcmp(a, "--MaxMemory")) {
            if (parse_size(v, &o->settings.max_memory)) {
                fprintf(stderr, "%s: error: MaxMemory: '%s' is not a size\n", prog, v);
                return -1;
            }
        } else if (!strcmp(a, "--MaxExpansion") || !strcmp(a, "--MaxTensorElements")) {
            uint64_t *dst = a[5] == 'E' ? &o->settings.max_expansion : &o->settings.max_elements;
            if (parse_count(v, dst)) {
                fprintf(stderr, "%s: error: %s: '%s' is not a count\n", prog, a + 2, v);
                return -1;
            }
        } else {
            fprintf(stderr, "%s: error: unknown argument '%s'\n", prog, argv[i]);
            usage(stderr);
            return -1;
        }
    }
    if (!o->bitstream) {
        fprintf(stderr, "%s: error: BitstreamFile (-b) is required\n", prog);
        return -1;
    }
    if (o->output && !ends_with(o->output, ".safetensors")) {
        fprintf(stderr, "%s: error: OutputFile '%s': nntm-dec writes .safetensors only\n", prog,
                o->output);
        return -1;
    }
    if (o->output && (same_file(o->output, o->bitstream) ||
                      (o->ref_model && same_file(o->output, o->ref_model)))) {
        fprintf(stderr, "%s: error: OutputFile '%s' is the same file as an input\n", prog, o->output);
        return -1;
    }
    if (o->container && (same_file(o->container, o->bitstream) ||
                         (o->ref_model && same_file(o->container, o->ref_model)) ||
                         (o->output && (same_file(o->container, o->output) ||
                                        !strcmp(o->container, o->output))))) {
        fprintf(stderr, "%s: error: Container '%s' is the same file as another\n", prog,
                o->container);
        return -1;
    }
    if (!o->threads) { /* default: every core */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
    }
    o->settings.threads = o->threads; /* [1.8] and the substreams of one tensor */
    if (!o->settings.max_memory) { /* auto: half of this machine's memory */
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
        o->settings.max_memory = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 2
                                                       : (uint64_t)8 << 30;
    }
    return 0;
}

/* Write size bytes to path through a temporary file renamed over it: 0, or -1 (errno). */
static int write_file(const char *path, const uint8_t *data, size_t size) {
    size_t n = strlen(path) + 64;
    char *tmp = malloc(n);
    if (!tmp) return -1;
    snprintf(tmp, n, "%s.%ld.nntm-dec.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int bad = !f || (size && fwrite(data, 1, size, f) != size);
    if (f && fclose(f)) bad = 1;
    if (!bad && rename(tmp, path)) bad = 1;
    if (bad) {
        int e = errno;
        remove(tmp);
        errno = e;
    }
    free(tmp);
    return bad ? -1 : 0;
}

static void hex(const uint8_t d[16], char out[33]) {
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The tensors are decoded by workers, each with its own nntm_stream over the same file
 * (a stream object is not shared between threads), taking the next tensor index in turn
 * and writing its bytes at the tensor's offset in the output; the lines are printed in
 * tensor order afterwards, so the output does not depend on the thread count. */
typedef struct job {
    int32_t n;
    const uint64_t *offset;   /* of each tensor's bytes in the output file */
    uint64_t largest;
    int fd;                   /* output (or -1) */
    atomic_int next;
    atomic_int stop;
    int *rv;
    uint8_t (*md5)[16];
    double *seconds;
    char **error;             /* text of a failure (malloc'ed) */
} job;

typedef struct worker {
    job *j;
    nntm_stream *s;
    pthread_t thread;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    job *j = w->j;
    uint8_t *buf = malloc((size_t)j->largest + 1);
    for (;;) {
        int32_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n || atomic_load(&j->stop)) break;
        nntm_tensor_info t;
        nntm_stream_tensor_info(w->s, i, &t);
        double start = now();
        int rv = buf ? nntm_stream_decode_tensor(w->s, i, buf, (size_t)t.byte_size, j->md5[i])
                     : NNTM_ERR_NOMEM;
        j->seconds[i] = now() - start;
        j->rv[i] = rv;
        if (rv < 0 && rv != NNTM_ERR_HASH) {
            const char *e = buf ? nntm_stream_error(w->s) : "out of memory";
            j->error[i] = malloc(strlen(e) + 1);
            if (j->error[i]) strcpy(j->error[i], e);
            atomic_store(&j->stop, 1);
            continue;
        }
        uint64_t done = 0;
        while (j->fd >= 0 && done < t.byte_size) {
            ssize_t k = pwrite(j->fd, buf + done, (size_t)(t.byte_size - done),
                               (off_t)(j->offset[i] + done));
            if (k <= 0) {
                const char *e = strerror(errno);
                j->rv[i] = NNTM_ERR_IO;
                j->error[i] = malloc(strlen(e) + 40);
                if (j->error[i]) sprintf(j->error[i], "cannot write the output: %s", e);
                atomic_store(&j->stop, 1);
                break;
            }
            done += (uint64_t)k;
        }
    }
    free(buf);
    return NULL;
}

/* Decode every tensor on threads workers (streams[0..threads-1]), write each at its place
 * in fd (or -1) after header_size bytes, print the lines; 0 all OK, 1 a mismatch, -1 an
 * error (printed). */
static int decode_all(nntm_stream **streams, int threads, int fd, uint64_t header_size,
                      int verbose, FILE *md5_out) {
    nntm_stream *s = streams[0];
    int32_t n = nntm_stream_num_tensors(s);
    job j;
    memset(&j, 0, sizeof j);
    j.n = n;
    j.fd = fd;
    size_t m = n ? (size_t)n : 1;
    uint64_t *offset = malloc(m * sizeof *offset);
    j.rv = calloc(m, sizeof *j.rv);
    j.md5 = calloc(m, sizeof *j.md5);
    j.seconds = calloc(m, sizeof *j.seconds);
    j.error = calloc(m, sizeof *j.error);
    worker *w = calloc((size_t)threads, sizeof *w);
    int result = 0;
    if (!offset || !j.rv || !j.md5 || !j.seconds || !j.error || !w) {
        fprintf(stderr, "%s: error: out of memory\n", prog);
        result = -1;
        goto done;
    }
    uint64_t pos = header_size;
    for (int32_t i = 0; i < n; i++) {
        nntm_tensor_info t;
        nntm_stream_tensor_info(s, i, &t);
        offset[i] = pos;
        pos += t.byte_size;
        if (t.byte_size > j.largest) j.largest = t.byte_size;
        j.rv[i] = 1; /* not decoded */
    }
    j.offset = offset;
    atomic_init(&j.next, 0);
    atomic_init(&j.stop, 0);
    int started = 0;
    for (int k = 0; k < threads; k++) {
        w[k].j = &j;
        w[k].s = streams[k];
        if (k > 0 && pthread_create(&w[k].thread, NULL, work, &w[k]) == 0) started = k;
    }
    work(&w[0]);
    for (int k = 1; k <= started; k++) pthread_join(w[k].thread, NULL);
    for (int32_t i = 0; i < n; i++) {
        nntm_tensor_info t;
        nntm_stream_tensor_info(s, i, &t);
        int rv = j.rv[i];
        if (rv < 0 && rv != NNTM_ERR_HASH) {
            fprintf(stderr, "%s: error: %s\n", prog, j.error[i] ? j.error[i] : "out of memory");
            result = -1;
            break;
        }
        if (rv > 0) { /* not decoded: a worker stopped after an error before this one */
            result = -1;
            break;
        }
        char h[33];
        hex(j.md5[i], h);
        print_name(t.name, t.name_size);
        print_shape(&t);
        printf(" %9s", nntm_tensor_dtype_name(t.dtype));
        if (verbose) printf(" %7.3f s", j.seconds[i]);
        printf("  [MD5: %s %s%s]\n", h, rv == NNTM_OK ? "OK" : "MISMATCH",
               t.params_ok == 0 ? ", parameter set MISMATCH" : "");
        if (md5_out) {
            fprintf(md5_out, "%s  ", h);
            fwrite(t.name, 1, t.name_size, md5_out);
            fputc('\n', md5_out);
        }
        if (rv != NNTM_OK || t.params_ok == 0) result = 1;
    }
done:
    for (int32_t i = 0; j.error && i < n; i++) free(j.error[i]);
    free(offset);
    free(j.rv);
    free(j.md5);
    free(j.seconds);
    free(j.error);
    free(w);
    return result;
}

int main(int argc, char **argv) {
    options o;
    memset(&o, 0, sizeof o);
    if (parse_args(argc, argv, &o)) return 2;
    double start = now();
    nntm_st_model ref;
    memset(&ref, 0, sizeof ref);
    if (o.ref_model) {
        char err[512];
        if (nntm_st_open(&ref, o.ref_model, err, sizeof err)) {
            fprintf(stderr, "%s: error: %s\n", prog, err);
            return 1;
        }
        o.settings.ref_lookup = nntm_st_lookup;
        o.settings.ref_cookie = &ref;
    }
    /* every stream (one a worker) takes its threads from one budget: at most o.threads
     * decode at once, the substreams of a tensor [1.8] on the slots idle workers leave */
    nntm_thread_budget *budget = NULL;
    if (nntm_thread_budget_create(&budget, o.threads) < 0) {
        fprintf(stderr, "%s: error: out of memory\n", prog);
        nntm_st_close(&ref);
        nntm_thread_budget_destroy(&budget);
        return 1;
    }
    o.settings.budget = budget;
    nntm_stream *s = NULL;
    int rv = nntm_stream_open_file(&s, o.bitstream, &o.settings);
    if (rv < 0) {
        fprintf(stderr, "%s: error: %s\n", prog, s ? nntm_stream_error(s) : nntm_strerror(rv));
        nntm_stream_close(&s);
        nntm_st_close(&ref);
        nntm_thread_budget_destroy(&budget);
        return 1;
    }
    int32_t version = nntm_stream_version(s);
    if (o.verbose)
        printf("NNTM nntm-dec  %s: %d tensors, format %d.%d\n", o.bitstream,
               nntm_stream_num_tensors(s), version >> 8, version & 255);
    FILE *f = NULL;
    char *tmp = NULL;
    made_folders made = {{0}, 0};
    uint64_t header_bytes = 0;
    if (o.output) {
        size_t n = strlen(o.output) + 64;
        tmp = malloc(n);
        uint8_t *header = NULL;
        size_t header_size = 0;
        if (tmp) snprintf(tmp, n, "%s.%ld.nntm-dec.tmp", o.output, (long)getpid());
        if (!tmp || nntm_st_header(s, &header, &header_size)) {
            fprintf(stderr, "%s: error: out of memory\n", prog);
            free(tmp);
            nntm_stream_close(&s);
            nntm_st_close(&ref);
            nntm_thread_budget_destroy(&budget);
            return 1;
        }
        f = make_folders(o.output, &made) ? NULL : fopen(tmp, "wb");
        if (!f || fwrite(header, 1, header_size, f) != header_size) {
            fprintf(stderr, "%s: error: cannot write '%s': %s\n", prog, o.output, strerror(errno));
            if (f) fclose(f);
            if (f) remove(tmp);
            release_folders(&made, 1);
            free(header);
            free(tmp);
            nntm_stream_close(&s);
            nntm_st_close(&ref);
            nntm_thread_budget_destroy(&budget);
            return 1;
        }
        free(header);
        header_bytes = header_size;
    }
    int threads = o.threads;
    if (threads > nntm_stream_num_tensors(s)) threads = nntm_stream_num_tensors(s);
    if (threads < 1) threads = 1;
    nntm_stream *streams[MAX_THREADS] = {s};
    nntm_stream_settings worker = o.settings;
    worker.skip_stream_md5 = 1; /* streams[0] checks the stream MD5: hashed once */
    for (int k = 1; k < threads; k++) { /* one stream object a worker */
        if (nntm_stream_open_file(&streams[k], o.bitstream, &worker) < 0) {
            nntm_stream_close(&streams[k]);
            threads = k;
            break;
        }
    }
    int result = f && fflush(f) ? -1 : 0;
    FILE *md5_out = NULL;
    char *md5_tmp = NULL;
    if (result == 0 && o.md5_file) {
        size_t n = strlen(o.md5_file) + 64;
        md5_tmp = malloc(n);
        if (md5_tmp) snprintf(md5_tmp, n, "%s.%ld.nntm-dec.tmp", o.md5_file, (long)getpid());
        md5_out = md5_tmp ? fopen(md5_tmp, "w") : NULL;
        if (!md5_out) {
            fprintf(stderr, "%s: error: cannot write '%s'\n", prog, o.md5_file);
            result = -1;
        }
    }
    if (result == 0)
        result = decode_all(streams, threads, f ? fileno(f) : -1, header_bytes, o.verbose,
                            md5_out);
    if (md5_out) { /* every tensor decoded (0, or 1: a mismatch): keep the list */
        int bad = fclose(md5_out) != 0 || result < 0;
        if (!bad && rename(md5_tmp, o.md5_file)) bad = 1;
        if (bad) remove(md5_tmp);
    }
    free(md5_tmp);
    for (int k = 1; k < threads; k++) nntm_stream_close(&streams[k]);
    uint8_t digest[16];
    int stream_ok = nntm_stream_check(s, digest);
    if (o.verbose) {
        char h[33];
        hex(digest, h);
        if (stream_ok < 0)
            printf("Checks        : tensor data MD5 only (this stream carries no parameter set or "
                   "stream MD5)\n");
        else
            printf("Checks        : tensor data MD5, tensor parameter set MD5, stream MD5 "
                   "[stream MD5: %s %s]\n", h, stream_ok ? "OK" : "MISMATCH");
    }
    if (result == 0 && stream_ok == 0) {
        fprintf(stderr, "%s: error: stream MD5 mismatch (a unit of the stream was changed)\n", prog);
        result = 1;
    } else if (result == 1) {
        fprintf(stderr, "%s: error: MD5 mismatch; no output written\n", prog);
    }
    int32_t cformat = 0;
    const uint8_t *cdata = NULL;
    size_t csize = 0;
    if (nntm_stream_container(s, &cformat, &cdata, &csize) && result == 0) {
        if (o.container && write_file(o.container, cdata, csize)) {
            fprintf(stderr, "%s: error: cannot write '%s': %s\n", prog, o.container,
                    strerror(errno));
            result = -1;
        } else if (o.verbose) {
            printf("Container     : %s, %zu bytes (%s)\n", cformat == 3 ? "ONNX" : "?", csize,
                   o.container ? "written to --Container" : "checked, not written: DecoderApp "
                   "-o model.onnx rebuilds the file");
        }
    } else if (o.container && result == 0 && o.verbose) {
        printf("Container     : none (no container unit; --Container not written)\n");
    }
    if (f) {
        int bad = result != 0;
        if (!bad && (fflush(f) || fsync(fileno(f)))) bad = 1;
        if (fclose(f)) bad = 1;
        if (!bad && rename(tmp, o.output)) {
            fprintf(stderr, "%s: error: cannot write '%s': %s\n", prog, o.output, strerror(errno));
            bad = 1;
            result = -1;
        }
        if (bad) remove(tmp);
        release_folders(&made, bad);
    }
    if (o.verbose && result == 0)
        printf("Threads       : %d tensors at once, at most %d threads decoding at once\n",
               threads, (int)nntm_thread_budget_peak(budget));
    if (o.verbose && result == 0)
        printf("Decode time   : %.3f s; all %d MD5s OK%s%s\n", now() - start,
               nntm_stream_num_tensors(s), o.output ? "; wrote " : "", o.output ? o.output : "");
    free(tmp);
    nntm_stream_close(&s);
    nntm_st_close(&ref);
    nntm_thread_budget_destroy(&budget);
    return result == 0 ? 0 : 1;
}
