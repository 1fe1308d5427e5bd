/* Whole-stream decoding: units, parameter sets, hash checks (nntm_stream.h).
 *
 * The reader follows python/nntm/hls.py (parse_*) and codec.decode_detailed,
 * the reference: it accepts and refuses the same streams. */
#define _POSIX_C_SOURCE 200809L /* mmap, open, fstat */
#define _DEFAULT_SOURCE          /* madvise */
#include "nntm/nntm_stream.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef NNTM_HAVE_ZLIB
#include <zlib.h>
#endif

#include "../common/md5.h"
#include "../common/threads.h"
#include "bit_reader.h"
#include "nntm/nntm.h"
#include "tps_syntax.h"

/* ------------------------------------------------------------------ limits (hls.py) */
#define FORMAT_MAJOR 1
#define FORMAT_MINOR 8
#define UNIT_HEADER 5
#define MAX_NAME_BYTES 4096
#define MAX_DIM 0x7FFFFFFFull
#define MAX_TENSORS 0xFFFFFFull
#define MAX_ELEMENTS 0x7FFFFFFFull
#define MAX_SIGNAL_TYPES 255
#define MAX_TREE_TYPE 3
#define MAX_LAYER_TYPE 7
#define MAX_ARRANGEMENT 1
#define MAX_POINT_TYPE 3
#define MAX_SUBSPACE_AXIS 2
#define MAX_CODEBOOK_VALUE ((1 << 30) - 1)
#define MAX_CLUSTER_QP_OFFSET 64
#define MIN_ELEMENTS_PER_BYTE 4096           /* dual-rate estimator (clause 7.1) */
#define MIN_ELEMENTS_PER_BYTE_COUNTING 16384 /* counting estimator [1.4]: ProbOne to 32752 */
#define MAX_CONTAINER_BYTES 0x7FFFFFFFull
#define MAX_SOURCE_FORMAT 3
#define CONTAINER_FORMAT_ONNX 3
#define CONTAINER_STORED 0
#define CONTAINER_ZLIB 1

enum { UNIT_MPS = 0, UNIT_TPS = 1, UNIT_TDU = 2, UNIT_THU = 3, UNIT_EOS = 4, UNIT_CU = 5,
       UNIT_TYPES = 6 };
static const char *const unit_names[UNIT_TYPES] = {
    "model_parameter_set", "tensor_parameter_set", "tensor_data_unit", "tensor_hash_unit",
    "end_of_stream", "container_unit"};

/* tool_flags (format 1.1 ..): bit, lowest minor version that may carry it. */
#define TOOL_CODING_TREE NNTM_TOOL_CODING_TREE
#define TOOL_SIGNAL_TYPES NNTM_TOOL_SIGNAL_TYPES
#define TOOL_DEP_QUANT NNTM_TOOL_DEP_QUANT
#define TOOL_INTER_PRED NNTM_TOOL_INTER_PRED
#define TOOL_CLUSTER NNTM_TOOL_CLUSTER
#define TOOL_INTRA_PRED NNTM_TOOL_INTRA_PRED
#define TOOL_PROB_WINDOW NNTM_TOOL_PROB_WINDOW
#define TOOL_DQ_8STATES NNTM_TOOL_DQ_8STATES
#define TOOL_SUFFIX_CTX NNTM_TOOL_SUFFIX_CTX
#define TOOL_DQ_32STATES NNTM_TOOL_DQ_32STATES
#define TOOL_ROW_PRED NNTM_TOOL_ROW_PRED
#define TOOL_INTEGRITY NNTM_TOOL_INTEGRITY
#define TOOL_CONTAINER NNTM_TOOL_CONTAINER
#define TOOL_ENTRY_POINTS NNTM_TOOL_ENTRY_POINTS
static const struct { uint32_t flag; int minor; } tool_min_minor[] = {
    {TOOL_CODING_TREE, 1}, {TOOL_SIGNAL_TYPES, 1}, {TOOL_DEP_QUANT, 1}, {TOOL_INTER_PRED, 2},
    {TOOL_CLUSTER, 2},     {TOOL_INTRA_PRED, 3},   {TOOL_PROB_WINDOW, 4}, {TOOL_DQ_8STATES, 4},
    {TOOL_SUFFIX_CTX, 5},  {TOOL_DQ_32STATES, 5},  {TOOL_ROW_PRED, 5},    {TOOL_INTEGRITY, 6},
    {TOOL_CONTAINER, 7},   {TOOL_ENTRY_POINTS, 8},
};
#define NUM_TOOLS (sizeof tool_min_minor / sizeof tool_min_minor[0])

static const int32_t tree_split_mask[4] = {0, 0, (1 << 2) | (1 << 3), 0x3C};

static const int32_t dtype_sizes[NNTM_TDTYPE_COUNT] = {4, 2, 2, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1};
static const char *const dtype_names[NNTM_TDTYPE_COUNT] = {
    "float32", "float16", "bfloat16", "float64", "int8",   "int16", "int32",
    "int64",   "uint8",   "uint16",   "uint32",  "uint64", "bool"};

int32_t nntm_tensor_dtype_size(int32_t dtype) {
    return dtype >= 0 && dtype < NNTM_TDTYPE_COUNT ? dtype_sizes[dtype] : 0;
}

const char *nntm_tensor_dtype_name(int32_t dtype) {
    return dtype >= 0 && dtype < NNTM_TDTYPE_COUNT ? dtype_names[dtype] : "?";
}

static int is_float(int32_t dtype) { return dtype >= 0 && dtype <= NNTM_TDTYPE_FLOAT64; }

/* ------------------------------------------------------------------ the parsed stream */
typedef struct unit_rec {
    int32_t type;
    size_t offset;          /* of the header */
    const uint8_t *payload;
    size_t size;
} unit_rec;

typedef struct cluster_info {
    int32_t point_type, subspace_axis, num_subspaces, codebook_qp_offset;
    int32_t outliers_enabled, outlier_qp_offset, outlier_pos_mode;
    int32_t residual_enabled, residual_qp_offset;
    int32_t num_points[NNTM_CLUSTER_MAX_SUBSPACES], dims[NNTM_CLUSTER_MAX_SUBSPACES];
    int32_t row_points[NNTM_CLUSTER_MAX_SUBSPACES], codebook_size[NNTM_CLUSTER_MAX_SUBSPACES];
    int32_t *codebooks;     /* sum codebook_size * dims values */
} cluster_info;

typedef struct tps_rec {
    size_t unit;            /* index into units */
    int32_t tensor_id;
    char *name;
    size_t name_size;
    int32_t dtype, ndim;
    int64_t shape[NNTM_STREAM_MAX_NDIM];
    uint64_t count;
    int32_t coding_mode, layer_type, arrangement;
    int64_t rows, cols;
    int32_t qp, qp_density, num_gt_flags, tree_type, signal_type;
    nntm_tree_params tree;
    int32_t dq_enabled, dq_states, prob_window, suffix_ctx, row_pred, substream_rows;
    int32_t pred_mode, ref_tensor_id, ref_dtype, pred_scale;
    uint8_t ref_md5[16];
    cluster_info *cluster;
    /* from the unit order */
    const uint8_t *payload;
    size_t payload_size;
    uint8_t md5[16];
    int32_t params_ok;
    int32_t ref_index;      /* EARLIER_TENSOR: the tensor index predicted from */
    int32_t needed;         /* an EARLIER_TENSOR reference of a later tensor */
    uint8_t *kept;          /* its decoded bytes, once decoded */
} tps_rec;

struct nntm_stream {
    const uint8_t *data;
    size_t size;
    void *owned;            /* read into memory */
    void *map;              /* mmap'ed */
    size_t map_size;
    nntm_stream_settings settings;
    char error[640];
    unit_rec *units;
    size_t num_units;
    int32_t version_major, version_minor, profile_idc, source_format;
    uint32_t tool_flags;
    uint64_t num_tensors_announced;
    uint32_t num_signal_types;
    tps_rec *tps;           /* every parameter set, in unit order */
    size_t num_tps;
    int32_t *order;         /* tensor index -> tps index (hash unit order) */
    int32_t num_tensors;
    int32_t stream_ok;
    uint8_t stream_md5[16];
    int32_t container_format;   /* [1.7] 0: no container unit */
    uint8_t *container;         /* its data, inflated */
    size_t container_size;
};

static int fail(nntm_stream *s, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    return code;
}

/* "unit N (type at byte X)" of an error message. */
static const char *where(const nntm_stream *s, size_t unit, char *buf, size_t n) {
    const unit_rec *u = &s->units[unit];
    snprintf(buf, n, "unit %zu (%s at byte %zu)", unit, unit_names[u->type], u->offset);
    return buf;
}

/* A reader over one unit's payload, failing with the unit named. */
typedef struct reader {
    nntm_stream *s;
    size_t unit;
    nntm_bits b;
    int rv;                 /* first failure (0: none) */
} reader;

static void reader_init(reader *r, nntm_stream *s, size_t unit) {
    r->s = s;
    r->unit = unit;
    r->rv = 0;
    nntm_bits_init(&r->b, s->units[unit].payload, s->units[unit].size);
}

static int rfail(reader *r, int code, const char *fmt, ...) {
    if (r->rv) return r->rv;
    char w[96], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail(r->s, code, "%s: %s", where(r->s, r->unit, w, sizeof w), msg);
    r->rv = code;
    return code;
}

static uint32_t ru(reader *r, int n, const char *what) {
    uint32_t v = 0;
    if (r->rv) return 0;
    if (nntm_bits_u(&r->b, n, &v))
        rfail(r, NNTM_ERR_TRUNCATED, "payload ends inside a syntax element (%s)", what);
    return v;
}

static uint64_t rue(reader *r, uint64_t limit, const char *what) {
    uint64_t v = 0;
    if (r->rv) return 0;
    int rv = nntm_bits_ue(&r->b, &v);
    if (rv < 0) {
        rfail(r, NNTM_ERR_TRUNCATED, "payload ends inside a syntax element (%s)", what);
        return 0;
    }
    if (rv > 0 || v > limit) {
        rfail(r, NNTM_ERR_CORRUPT, "%s exceeds its limit %llu", what, (unsigned long long)limit);
        return 0;
    }
    return v;
}

static int64_t rse(reader *r, int64_t lo, int64_t hi, const char *what) {
    int64_t v = 0;
    if (r->rv) return 0;
    int rv = nntm_bits_se(&r->b, &v);
    if (rv < 0) {
        rfail(r, NNTM_ERR_TRUNCATED, "payload ends inside a syntax element (%s)", what);
        return 0;
    }
    if (rv > 0 || v < lo || v > hi) {
        rfail(r, NNTM_ERR_CORRUPT, "%s outside [%lld, %lld]", what, (long long)lo, (long long)hi);
        return 0;
    }
    return v;
}

/* n bytes at any bit position into out. */
static int rbytes(reader *r, size_t n, uint8_t *out, const char *what) {
    if (r->rv) return r->rv;
    if ((uint64_t)n * 8 > nntm_bits_left(&r->b))
        return rfail(r, NNTM_ERR_TRUNCATED, "%s: needs %zu bytes, %llu left", what, n,
                     (unsigned long long)(nntm_bits_left(&r->b) / 8));
    if ((r->b.pos & 7) == 0) {
        memcpy(out, r->b.data + (r->b.pos >> 3), n);
        r->b.pos += (uint64_t)n * 8;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t v = 0;
        nntm_bits_u(&r->b, 8, &v);
        out[i] = (uint8_t)v;
    }
    return 0;
}

static void ralign(reader *r) {
    if (r->rv) return;
    int rv = nntm_bits_align(&r->b);
    if (rv < 0) rfail(r, NNTM_ERR_TRUNCATED, "payload ends inside a syntax element (byte_alignment)");
    else if (rv > 0) /* the words of the Python reader (hls.py) */
        rfail(r, NNTM_ERR_CORRUPT, rv == 1 ? "byte_alignment(): alignment_bit_equal_to_one is 0"
                                           : "byte_alignment(): alignment_bit_equal_to_zero is 1");
}

static void rend(reader *r) {
    if (r->rv) return;
    if (nntm_bits_left(&r->b))
        rfail(r, NNTM_ERR_CORRUPT, "%llu unexpected byte(s) at the end",
              (unsigned long long)(nntm_bits_left(&r->b) / 8));
}

/* Strict UTF-8 (as Python decodes it: no overlongs, surrogates or code points past 10FFFF). */
static int valid_utf8(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += len;
    }
    return 1;
}

/* a * b, saturating at 2^62 (shapes are compared, never used, past the limits). */
static uint64_t sat_mul(uint64_t a, uint64_t b) {
    const uint64_t cap = (uint64_t)1 << 62;
    if (a == 0 || b == 0) return 0;
    if (a > cap / b) return cap;
    return a * b;
}

/* ------------------------------------------------------------------ units */
static int split_units(nntm_stream *s) {
    size_t n = 0, pos = 0, cap = 16;
    s->units = malloc(cap * sizeof *s->units);
    if (!s->units) return fail(s, NNTM_ERR_NOMEM, "out of memory");
    while (pos < s->size) {
        if (s->size - pos < UNIT_HEADER)
            return fail(s, NNTM_ERR_TRUNCATED,
                        "unit %zu at byte %zu: truncated unit header (%zu of %d bytes)", n, pos,
                        s->size - pos, UNIT_HEADER);
        uint8_t type = s->data[pos];
        if (type >= UNIT_TYPES)
            return fail(s, NNTM_ERR_UNSUPPORTED, "unit %zu at byte %zu: unknown unit_type %u", n,
                        pos, type);
        const uint8_t *h = s->data + pos + 1;
        uint64_t size = (uint64_t)h[0] << 24 | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 8 | h[3];
        size_t start = pos + UNIT_HEADER;
        if (size > s->size - start)
            return fail(s, NNTM_ERR_TRUNCATED,
                        "unit %zu (%s at byte %zu): truncated, payload size %llu but only %zu "
                        "bytes remain", n, unit_names[type], pos, (unsigned long long)size,
                        s->size - start);
        if (n == cap) {
            unit_rec *u = realloc(s->units, 2 * cap * sizeof *u);
            if (!u) return fail(s, NNTM_ERR_NOMEM, "out of memory");
            s->units = u;
            cap *= 2;
        }
        s->units[n++] = (unit_rec){type, pos, s->data + start, (size_t)size};
        pos = start + (size_t)size;
    }
    s->num_units = n;
    return NNTM_OK;
}

static int parse_mps(nntm_stream *s) {
    reader r;
    reader_init(&r, s, 0);
    uint8_t magic[4] = {0};
    if (rbytes(&r, 4, magic, "magic")) return r.rv;
    if (memcmp(magic, "NNTM", 4))
        return rfail(&r, NNTM_ERR_CORRUPT, "not an NNTM bitstream (magic is not 'NNTM')");
    s->version_major = (int32_t)ru(&r, 8, "version_major");
    s->version_minor = (int32_t)ru(&r, 8, "version_minor");
    if (r.rv) return r.rv;
    if (s->version_major > FORMAT_MAJOR ||
        (s->version_major == FORMAT_MAJOR && s->version_minor > FORMAT_MINOR))
        return rfail(&r, NNTM_ERR_UNSUPPORTED,
                     "format version %d.%d is newer than this decoder's %d.%d: use a newer NNTM",
                     s->version_major, s->version_minor, FORMAT_MAJOR, FORMAT_MINOR);
    if (s->version_major < FORMAT_MAJOR)
        return rfail(&r, NNTM_ERR_UNSUPPORTED, "format version %d.%d is not supported",
                     s->version_major, s->version_minor);
    s->profile_idc = (int32_t)ru(&r, 8, "profile_idc");
    if (!r.rv && s->profile_idc != 0)
        return rfail(&r, NNTM_ERR_UNSUPPORTED, "profile_idc %d is not supported (only 0)",
                     s->profile_idc);
    s->tool_flags = ru(&r, 32, "tool_flags");
    if (r.rv) return r.rv;
    uint32_t known = 0;
    int need = 0;
    for (size_t i = 0; i < NUM_TOOLS; i++) {
        known |= tool_min_minor[i].flag;
        if ((s->tool_flags & tool_min_minor[i].flag) && tool_min_minor[i].minor > need)
            need = tool_min_minor[i].minor;
    }
    if (s->tool_flags & ~known)
        return rfail(&r, NNTM_ERR_UNSUPPORTED,
                     "tool_flags 0x%08x use tools this decoder does not know (0x%08x)",
                     s->tool_flags, s->tool_flags & ~known);
    if (s->version_minor < need)
        return rfail(&r, NNTM_ERR_CORRUPT, "tool_flags 0x%08x need format 1.%d, the stream says %d.%d",
                     s->tool_flags, need, s->version_major, s->version_minor);
    s->num_tensors_announced = rue(&r, MAX_TENSORS, "num_tensors");
    s->source_format = (int32_t)ru(&r, 8, "source_format");
    if (!r.rv && s->source_format > MAX_SOURCE_FORMAT)
        return rfail(&r, NNTM_ERR_CORRUPT, "unknown source_format %d", s->source_format);
    s->num_signal_types = 1;
    if (s->tool_flags & TOOL_SIGNAL_TYPES) {
        uint32_t count = (uint32_t)rue(&r, MAX_SIGNAL_TYPES, "num_signal_types");
        if (!r.rv && count == 0) return rfail(&r, NNTM_ERR_CORRUPT, "num_signal_types is 0");
        uint8_t *names[MAX_SIGNAL_TYPES];
        size_t sizes[MAX_SIGNAL_TYPES];
        uint32_t got = 0;
        for (; got < count && !r.rv; got++) {
            size_t n = (size_t)rue(&r, MAX_NAME_BYTES, "signal_type_name_length");
            names[got] = malloc(n + 1);
            sizes[got] = n;
            if (!names[got]) { rfail(&r, NNTM_ERR_NOMEM, "out of memory"); break; }
            if (rbytes(&r, n, names[got], "signal_type_name")) { got++; break; }
            if (!valid_utf8(names[got], n))
                rfail(&r, NNTM_ERR_CORRUPT, "signal_type_name is not UTF-8");
        }
        for (uint32_t i = 0; i < got && !r.rv; i++) {
            if (sizes[i] == 0) rfail(&r, NNTM_ERR_CORRUPT, "signal type names must be non-empty and distinct");
            for (uint32_t j = 0; j < i && !r.rv; j++)
                if (sizes[i] == sizes[j] && !memcmp(names[i], names[j], sizes[i]))
                    rfail(&r, NNTM_ERR_CORRUPT, "signal type names must be non-empty and distinct");
        }
        for (uint32_t i = 0; i < got; i++) free(names[i]);
        s->num_signal_types = count;
    }
    ralign(&r);
    rend(&r);
    return r.rv;
}

/* Clustered point geometry (python/nntm/cluster.py geometry): 0, or -1 when it does not apply. */
static int cluster_geometry(const tps_rec *t, cluster_info *c) {
    if (t->ndim < 2) return -1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return -1;
    uint64_t rest = 1;
    for (int i = 2; i < t->ndim; i++) rest *= (uint64_t)t->shape[i]; /* <= count <= 2^31 */
    if (c->point_type == 1 && !(t->ndim >= 3 && rest > 1)) return -1;
    if (c->subspace_axis == 0 && c->num_subspaces != 1) return -1;
    int64_t channels = c->subspace_axis ? t->shape[c->subspace_axis - 1] : 1;
    int64_t most = channels < NNTM_CLUSTER_MAX_SUBSPACES ? channels : NNTM_CLUSTER_MAX_SUBSPACES;
    if (c->num_subspaces < 1 || c->num_subspaces > most) return -1;
    for (int s = 0; s < c->num_subspaces; s++) {
        int64_t lo = s * channels / c->num_subspaces, hi = (s + 1) * channels / c->num_subspaces;
        int64_t o = c->subspace_axis == 1 ? hi - lo : t->shape[0];
        int64_t i = c->subspace_axis == 2 ? hi - lo : t->shape[1];
        int64_t n, d, row;
        switch (c->point_type) {
        case 0: n = o * i * (int64_t)rest; d = 1; row = i * (int64_t)rest; break;
        case 1: n = o * i; d = (int64_t)rest; row = i; break;
        case 2: n = o; d = i * (int64_t)rest; row = 1; break;
        default: n = i; d = o * (int64_t)rest; row = 1; break;
        }
        c->num_points[s] = (int32_t)n;
        c->dims[s] = (int32_t)d;
        c->row_points[s] = row < 1 ? 1 : (int32_t)row;
    }
    return 0;
}

static void read_cluster_info(reader *r, tps_rec *t) {
    cluster_info *c = calloc(1, sizeof *c);
    if (!c) { rfail(r, NNTM_ERR_NOMEM, "out of memory"); return; }
    t->cluster = c;
    const char *name = t->name;
    c->point_type = (int32_t)ru(r, 8, "point_type");
    if (!r->rv && c->point_type > MAX_POINT_TYPE) {
        rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': unknown point_type %d", name, c->point_type);
        return;
    }
    c->subspace_axis = (int32_t)ru(r, 8, "subspace_axis");
    if (!r->rv && c->subspace_axis > MAX_SUBSPACE_AXIS) {
        rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': unknown subspace_axis %d", name, c->subspace_axis);
        return;
    }
    c->num_subspaces = (int32_t)rue(r, NNTM_CLUSTER_MAX_SUBSPACES - 1, "num_subspaces_minus1") + 1;
    c->codebook_qp_offset = (int32_t)rue(r, MAX_CLUSTER_QP_OFFSET, "codebook_qp_offset");
    c->outlier_qp_offset = 4;
    c->outliers_enabled = (int32_t)ru(r, 1, "outliers_enabled_flag");
    if (c->outliers_enabled) {
        c->outlier_qp_offset = (int32_t)rse(r, -MAX_CLUSTER_QP_OFFSET, MAX_CLUSTER_QP_OFFSET,
                                            "outlier_qp_offset");
        c->outlier_pos_mode = (int32_t)ru(r, 1, "outlier_pos_mode");
    }
    c->residual_enabled = (int32_t)ru(r, 1, "residual_enabled_flag");
    if (c->residual_enabled)
        c->residual_qp_offset = (int32_t)rse(r, -MAX_CLUSTER_QP_OFFSET, MAX_CLUSTER_QP_OFFSET,
                                             "residual_qp_offset");
    if (r->rv) return;
    if (cluster_geometry(t, c)) {
        rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': the point geometry does not apply to its shape",
              name);
        return;
    }
    size_t total = 0, cap = 0;
    for (int s = 0; s < c->num_subspaces && !r->rv; s++) {
        int32_t size = (int32_t)rue(r, NNTM_CLUSTER_MAX_CODEBOOK - 1, "codebook_size_minus1") + 1;
        if (r->rv) return;
        uint64_t values = (uint64_t)size * (uint64_t)c->dims[s];
        if (values > (1u << 24)) {
            rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': codebook of %dx%d values is too large", name,
                  size, c->dims[s]);
            return;
        }
        /* every se(v) takes at least one bit: refuse before allocating for a short payload */
        if (values > nntm_bits_left(&r->b)) {
            rfail(r, NNTM_ERR_TRUNCATED, "payload ends inside a syntax element (codebook_value)");
            return;
        }
        c->codebook_size[s] = size;
        if (total + values > cap) {
            size_t ncap = cap * 2 > total + values ? cap * 2 : total + (size_t)values;
            int32_t *p = realloc(c->codebooks, ncap * sizeof *p);
            if (!p) { rfail(r, NNTM_ERR_NOMEM, "out of memory"); return; }
            c->codebooks = p;
            cap = ncap;
        }
        for (uint64_t k = 0; k < values; k++)
            c->codebooks[total++] =
                (int32_t)rse(r, -MAX_CODEBOOK_VALUE, MAX_CODEBOOK_VALUE, "codebook_value");
    }
}

/* One element of the table in tps_syntax.h, range-checked. */
enum { DESC_U1, DESC_U4, DESC_U8, DESC_UE, DESC_SE, DESC_MD5 };
#define DESC_OF(d) DESC_##d

static void read_element(reader *r, int desc, int64_t lo, int64_t hi, const char *name,
                         const char *tensor, int64_t *out, uint8_t md5[16]) {
    int64_t v = 0;
    switch (desc) {
    case DESC_U1: v = ru(r, 1, name); break;
    case DESC_U4: v = ru(r, 4, name); break;
    case DESC_U8: v = ru(r, 8, name); break;
    case DESC_UE: {
        uint64_t u = 0;
        if (r->rv) return;
        int rv = nntm_bits_ue(&r->b, &u);
        if (rv < 0) {
            rfail(r, NNTM_ERR_TRUNCATED, "payload ends inside a syntax element (%s)", name);
            return;
        }
        if (rv > 0 || u > (uint64_t)INT64_MAX) {
            rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': %s exceeds every limit", tensor, name);
            return;
        }
        v = (int64_t)u;
        break;
    }
    case DESC_SE: {
        if (r->rv) return;
        int rv = nntm_bits_se(&r->b, &v);
        if (rv < 0) {
            rfail(r, NNTM_ERR_TRUNCATED, "payload ends inside a syntax element (%s)", name);
            return;
        }
        if (rv > 0) {
            rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': %s exceeds every limit", tensor, name);
            return;
        }
        break;
    }
    default: rbytes(r, 16, md5, name); return;
    }
    if (r->rv) return;
    if (v < lo || v > hi) {
        rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': %s = %lld outside [%lld, %lld]", tensor, name,
              (long long)v, (long long)lo, (long long)hi);
        return;
    }
    *out = v;
}

/* The QUANTIZED fields after tensor_coding_mode: the table, then what they mean. */
static void parse_quantized(reader *r, tps_rec *t, uint32_t f, int minor) {
    nntm_tps_syntax syn, *e = &syn;
    memset(e, 0, sizeof *e);
    const int64_t tensor_id = t->tensor_id, nsig = r->s->num_signal_types;
    (void)tensor_id;
    (void)nsig;
#define NNTM_TPS_READ(el, desc, min_minor, present, lo, hi)                                     \
    if (!r->rv && (present))                                                                    \
        read_element(r, DESC_OF(desc), (lo), (hi), #el, t->name, &e->el, e->ref_md5);
    NNTM_TPS_QUANTIZED(NNTM_TPS_READ)
#undef NNTM_TPS_READ
    if (r->rv) return;
    t->layer_type = (int32_t)e->layer_type;
    t->arrangement = (int32_t)e->arrangement_type;
    t->rows = e->kernel_rows;
    t->cols = e->kernel_cols;
    t->qp = (int32_t)e->qp;
    t->qp_density = (int32_t)e->qp_density;
    t->num_gt_flags = (int32_t)e->num_gt_flags_minus1 + 1;
    t->tree_type = (int32_t)e->tree_partition_type;
    if (t->tree_type) {
        int32_t min_cu = (int32_t)e->log2_min_cu_size;
        t->tree = (nntm_tree_params){1, (int32_t)e->log2_ctu_size,
                                     min_cu + (int32_t)e->log2_min_qt_size_minus_log2_min_cu_size,
                                     (int32_t)e->max_mtt_depth, min_cu,
                                     tree_split_mask[t->tree_type],
                                     (int32_t)e->cu_skip_enabled_flag,
                                     (int32_t)e->cu_qp_delta_enabled_flag,
                                     (int32_t)e->intra_pred_enabled_flag};
    }
    t->signal_type = (int32_t)e->input_signal_type;
    t->dq_enabled = (int32_t)e->dep_quant_enabled_flag;
    t->dq_states = e->dq_8_states_flag ? 8 : e->dq_32_states_flag ? 32 : 4;
    if (t->dq_enabled && t->tree.intra_pred_enabled) {
        rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': intra_pred_enabled_flag and dep_quant_enabled_flag "
              "are both set (intra prediction needs scalar quantization)", t->name);
        return;
    }
    t->prob_window = (int32_t)e->prob_window;
    t->suffix_ctx = (int32_t)e->suffix_ctx_flag;
    t->row_pred = (int32_t)e->row_pred_enabled_flag;
    t->substream_rows = (int32_t)e->substream_rows;
    t->pred_mode = (int32_t)e->pred_mode;
    t->ref_tensor_id = (int32_t)e->ref_tensor_id;
    t->ref_dtype = (int32_t)e->ref_dtype;
    t->pred_scale = NNTM_PRED_SCALE_ONE + (int32_t)e->pred_scale_minus4096;
    memcpy(t->ref_md5, e->ref_md5, 16);
    /* rows_cols(): the kernel size the arrangement gives the shape */
    uint64_t er, ec;
    if (t->arrangement == 1) {
        if (t->ndim != 4) {
            er = ec = UINT64_MAX;
        } else {
            er = sat_mul((uint64_t)t->shape[0], (uint64_t)t->shape[2]);
            ec = sat_mul((uint64_t)t->shape[1], (uint64_t)t->shape[3]);
        }
    } else if (t->ndim <= 1) {
        er = 1;
        ec = t->ndim ? (uint64_t)t->shape[0] : 1;
    } else {
        er = (uint64_t)t->shape[0];
        ec = 1;
        for (int i = 1; i < t->ndim; i++) ec = sat_mul(ec, (uint64_t)t->shape[i]);
    }
    if ((uint64_t)t->rows != er || (uint64_t)t->cols != ec)
        rfail(r, NNTM_ERR_CORRUPT, "tensor '%s': kernel %lldx%lld is not the arrangement of its shape",
              t->name, (long long)t->rows, (long long)t->cols);
}

static int parse_tps(nntm_stream *s, size_t unit, tps_rec *t) {
    reader r;
    reader_init(&r, s, unit);
    t->unit = unit;
    t->tree = (nntm_tree_params){0, 6, 3, 2, 1, 0, 0, 0, 0};
    t->num_gt_flags = 1;
    t->dq_states = 4;
    t->pred_scale = NNTM_PRED_SCALE_ONE;
    t->params_ok = -1;
    t->ref_index = -1;
    t->tensor_id = (int32_t)rue(&r, MAX_TENSORS - 1, "tensor_id");
    size_t name_len = (size_t)rue(&r, MAX_NAME_BYTES, "tensor_name_length");
    if (r.rv) return r.rv;
    if (name_len == 0) return rfail(&r, NNTM_ERR_CORRUPT, "empty tensor_name");
    t->name = malloc(name_len + 1);
    if (!t->name) return rfail(&r, NNTM_ERR_NOMEM, "out of memory");
    if (rbytes(&r, name_len, (uint8_t *)t->name, "tensor_name")) return r.rv;
    t->name[name_len] = 0;
    t->name_size = name_len;
    if (!valid_utf8((const uint8_t *)t->name, name_len))
        return rfail(&r, NNTM_ERR_CORRUPT, "tensor_name is not UTF-8");
    t->dtype = (int32_t)ru(&r, 8, "tensor_dtype");
    if (!r.rv && t->dtype >= NNTM_TDTYPE_COUNT)
        return rfail(&r, NNTM_ERR_CORRUPT, "tensor '%s': unknown tensor_dtype %d", t->name, t->dtype);
    t->ndim = (int32_t)rue(&r, NNTM_STREAM_MAX_NDIM, "tensor_ndim");
    uint64_t count = 1;
    for (int i = 0; i < t->ndim && !r.rv; i++) {
        t->shape[i] = (int64_t)rue(&r, MAX_DIM, "tensor_dim");
        count = sat_mul(count, (uint64_t)t->shape[i]);
    }
    if (r.rv) return r.rv;
    if (count > MAX_ELEMENTS)
        return rfail(&r, NNTM_ERR_CORRUPT, "tensor '%s': %llu elements exceed the limit %llu",
                     t->name, (unsigned long long)count, (unsigned long long)MAX_ELEMENTS);
    t->count = count;
    t->coding_mode = (int32_t)ru(&r, 8, "tensor_coding_mode");
    if (r.rv) return r.rv;
    if (t->coding_mode > NNTM_CODING_CLUSTERED)
        return rfail(&r, NNTM_ERR_CORRUPT, "tensor '%s': unknown tensor_coding_mode %d", t->name,
                     t->coding_mode);
    if (t->coding_mode == NNTM_CODING_CLUSTERED) {
        if (!(s->tool_flags & TOOL_CLUSTER) || s->version_minor < 2)
            return rfail(&r, NNTM_ERR_CORRUPT, "tensor '%s': tensor_coding_mode CLUSTERED needs "
                         "TOOL_CLUSTER (format 1.2)", t->name);
        if (!is_float(t->dtype))
            return rfail(&r, NNTM_ERR_CORRUPT, "tensor '%s': clustered coding of non-float dtype %s",
                         t->name, dtype_names[t->dtype]);
        t->layer_type = (int32_t)ru(&r, 8, "layer_type");
        if (!r.rv && t->layer_type > MAX_LAYER_TYPE)
            return rfail(&r, NNTM_ERR_CORRUPT, "tensor '%s': unknown layer_type %d", t->name,
                         t->layer_type);
        t->qp = (int32_t)rse(&r, -4096, 4096, "qp");
        t->qp_density = (int32_t)rue(&r, 6, "qp_density");
        t->num_gt_flags = (int32_t)rue(&r, 14, "num_gt_flags_minus1") + 1;
        if (s->tool_flags & TOOL_SIGNAL_TYPES)
            t->signal_type = (int32_t)rue(&r, s->num_signal_types - 1, "input_signal_type");
        if (!r.rv) read_cluster_info(&r, t);
    } else if (t->coding_mode == NNTM_CODING_QUANTIZED) {
        if (!is_float(t->dtype))
            return rfail(&r, NNTM_ERR_CORRUPT, "tensor '%s': quantized coding of non-float dtype %s",
                         t->name, dtype_names[t->dtype]);
        parse_quantized(&r, t, s->tool_flags, s->version_minor);
    }
    ralign(&r);
    rend(&r);
    return r.rv;
}

/* ------------------------------------------------------------------ budget (nntm.memory) */
static uint64_t working_bytes(const tps_rec *t) {
    uint64_t n = t->count, size = (uint64_t)dtype_sizes[t->dtype];
    if (t->coding_mode == NNTM_CODING_QUANTIZED) {
        nntm_kernel_params p = {0};
        p.rows = (int32_t)t->rows;
        p.cols = (int32_t)t->cols;
        p.tree = t->tree;
        p.dq_enabled = t->dq_enabled ? (t->dq_states == 8 ? 2 : t->dq_states == 32 ? 3 : 1) : 0;
        p.row_pred = t->row_pred;
        p.substream_rows = t->substream_rows;
        return n * (4 + 3 * size) + nntm_decode_kernel_scratch(&p);
    }
    return n * (2 * size + 4);
}

static int check_budget(nntm_stream *s) {
    const nntm_stream_settings *st = &s->settings;
    uint64_t held = 0, work = 0, own = 0;
    for (size_t i = 0; i < s->num_tps; i++) {
        const tps_rec *t = &s->tps[i];
        if (st->max_elements && t->count > st->max_elements) {
            char w[96];
            return fail(s, NNTM_ERR_BUDGET, "%s: tensor '%s' has %llu elements, more than this "
                        "decoder's limit of %llu", where(s, t->unit, w, sizeof w), t->name,
                        (unsigned long long)t->count, (unsigned long long)st->max_elements);
        }
    }
    for (size_t i = 0; i < s->num_tps; i++) {
        const tps_rec *t = &s->tps[i];
        uint64_t bytes = t->count * (uint64_t)dtype_sizes[t->dtype];
        uint64_t w = working_bytes(t);
        held += bytes;
        if (w > work) work = w;
        if (t->pred_mode != NNTM_PRED_REF_MODEL) own += bytes;
    }
    uint64_t need = 2 * (uint64_t)s->size + held + work;
    if (st->max_memory && need > st->max_memory)
        return fail(s, NNTM_ERR_BUDGET, "the stream's %zu tensors need about %llu bytes to decode, "
                    "more than the memory budget of %llu bytes", s->num_tps,
                    (unsigned long long)need, (unsigned long long)st->max_memory);
    uint64_t stream = s->size ? s->size : 1;
    if (st->max_expansion && st->max_expansion <= UINT64_MAX / stream &&
        own > st->max_expansion * stream)
        return fail(s, NNTM_ERR_BUDGET, "a stream of %zu bytes announces %llu bytes of tensors, "
                    "more than %llu bytes a stream byte (a decompression bomb?)", s->size,
                    (unsigned long long)own, (unsigned long long)st->max_expansion);
    return NNTM_OK;
}

/* ------------------------------------------------------------------ container unit [1.7] */
/* Inflate n bytes of a zlib stream (RFC 1950) into exactly size bytes at out (size + 1
 * bytes of room): 0, or -1 when it does not inflate, is not one whole stream ending at the
 * last byte, or holds another number of bytes (E-C4). */
#ifdef NNTM_HAVE_ZLIB
static int inflate_exact(const uint8_t *in, size_t n, uint8_t *out, size_t size) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) return -2;
    int rv = Z_OK;
    size_t done_in = 0, done_out = 0;
    const size_t chunk = (size_t)1 << 30; /* avail_in/out are 32-bit */
    while (rv == Z_OK) {
        size_t in_left = n - done_in, out_left = size + 1 - done_out;
        z.next_in = (Bytef *)(uintptr_t)(in + done_in);
        z.avail_in = (uInt)(in_left < chunk ? in_left : chunk);
        z.next_out = out + done_out;
        z.avail_out = (uInt)(out_left < chunk ? out_left : chunk);
        uInt ai = z.avail_in, ao = z.avail_out;
        rv = inflate(&z, Z_NO_FLUSH);
        done_in += ai - z.avail_in;
        done_out += ao - z.avail_out;
        if (rv == Z_BUF_ERROR && (done_in < n && done_out <= size)) rv = Z_OK; /* next chunk */
        if (rv == Z_OK && ai == z.avail_in && ao == z.avail_out) break;         /* no progress */
    }
    int mem = rv == Z_MEM_ERROR;
    inflateEnd(&z);
    if (mem) return -2;
    return rv == Z_STREAM_END && done_in == n && done_out == size ? 0 : -1;
}
#endif

/* The container unit of a TOOL_CONTAINER stream: right after the MPS (E-O13), its header
 * (E-C1 to E-C3), the budget, then its data inflated and checked (E-C4), as
 * codec._parse_container; the unit elsewhere is refused by check_order. */
static int parse_container(nntm_stream *s) {
    char w[96];
    if (!(s->tool_flags & TOOL_CONTAINER)) return NNTM_OK;
    if (s->num_units < 2 || s->units[1].type != UNIT_CU) {
        if (s->num_units < 2) snprintf(w, sizeof w, "end of stream");
        else where(s, 1, w, sizeof w);
        return fail(s, NNTM_ERR_CORRUPT, "%s: tool_flags has TOOL_CONTAINER but no container "
                    "unit follows the model parameter set", w);
    }
    reader r;
    reader_init(&r, s, 1);
    uint32_t format = ru(&r, 8, "container_format");
    if (!r.rv && format != CONTAINER_FORMAT_ONNX)
        return rfail(&r, NNTM_ERR_CORRUPT, "unknown container_format %u", format);
    uint32_t compression = ru(&r, 8, "container_compression");
    if (!r.rv && compression > CONTAINER_ZLIB)
        return rfail(&r, NNTM_ERR_CORRUPT, "unknown container_compression %u", compression);
    size_t size = (size_t)rue(&r, MAX_CONTAINER_BYTES, "container_data_size");
    ralign(&r);
    if (r.rv) return r.rv;
    uint64_t limit = MAX_CONTAINER_BYTES, stream = s->size ? s->size : 1;
    const nntm_stream_settings *st = &s->settings;
    if (st->max_expansion && st->max_expansion <= UINT64_MAX / stream &&
        st->max_expansion * stream < limit)
        limit = st->max_expansion * stream;
    if (st->max_memory && st->max_memory < limit) limit = st->max_memory;
    if (size > limit)
        return fail(s, NNTM_ERR_BUDGET, "%s: a container of %zu bytes, more than this decoder's "
                    "limit of %llu (MaxExpansion / MaxMemory)", where(s, 1, w, sizeof w), size,
                    (unsigned long long)limit);
    size_t off = (size_t)(r.b.pos / 8);
    const uint8_t *rest = s->units[1].payload + off;
    size_t rest_size = s->units[1].size - off;
    if (compression == CONTAINER_STORED && rest_size != size)
        return rfail(&r, NNTM_ERR_CORRUPT, "container_data holds %zu bytes, container_data_size "
                     "says %zu", rest_size, size);
    s->container = malloc(size + 1);
    if (!s->container) return fail(s, NNTM_ERR_NOMEM, "out of memory");
    if (compression == CONTAINER_STORED) {
        if (size) memcpy(s->container, rest, size);
    } else {
#ifdef NNTM_HAVE_ZLIB
        int rv = inflate_exact(rest, rest_size, s->container, size);
        if (rv == -2) return fail(s, NNTM_ERR_NOMEM, "out of memory");
        if (rv)
            return rfail(&r, NNTM_ERR_CORRUPT, "container_data is not one whole zlib stream of "
                         "container_data_size (%zu) bytes", size);
#else
        return rfail(&r, NNTM_ERR_UNSUPPORTED, "a zlib container: this libnntm is built "
                     "without zlib");
#endif
    }
    s->container_format = (int32_t)format;
    s->container_size = size;
    return NNTM_OK;
}

/* ------------------------------------------------------------------ unit order */
static int find_tps(const nntm_stream *s, const int32_t *by_id, uint64_t id) {
    return id < s->num_tensors_announced ? by_id[id] : -1;
}

static int parse_hash_unit(nntm_stream *s, size_t unit, uint32_t *id, uint8_t md5[16],
                           uint8_t tps_md5[16]) {
    reader r;
    reader_init(&r, s, unit);
    *id = (uint32_t)rue(&r, MAX_TENSORS - 1, "tensor_id");
    ralign(&r);
    rbytes(&r, 16, md5, "tensor_md5");
    if (s->tool_flags & TOOL_INTEGRITY) rbytes(&r, 16, tps_md5, "tps_md5");
    rend(&r);
    return r.rv;
}

/* Whether tps[k]'s name is in the open-addressing set names (slots entries, -1 free, else a
 * tps index); adds it when not. */
static int name_seen(int32_t *names, size_t slots, const tps_rec *tps, size_t k) {
    const tps_rec *t = &tps[k];
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < t->name_size; i++) h = (h ^ (uint8_t)t->name[i]) * 1099511628211ull;
    for (size_t i = (size_t)(h % slots);; i = (i + 1) % slots) {
        if (names[i] < 0) {
            names[i] = (int32_t)k;
            return 0;
        }
        const tps_rec *o = &tps[names[i]];
        if (o->name_size == t->name_size && !memcmp(o->name, t->name, t->name_size)) return 1;
    }
}

/* The MD5 of the stream's first n bytes; a mapped stream's pages are given back as they
 * are hashed (whole pages, 64 MiB at a time), so the check does not hold the whole stream. */
static void stream_digest(const nntm_stream *s, size_t n, uint8_t digest[16]) {
    const size_t chunk = (size_t)1 << 26;
    nntm_md5 m;
    nntm_md5_init(&m);
    for (size_t done = 0; done < n;) {
        size_t take = n - done < chunk ? n - done : chunk;
        nntm_md5_update(&m, s->data + done, take);
        if (s->map && take == chunk) madvise((uint8_t *)s->map + done, take, MADV_DONTNEED);
        done += take;
    }
    nntm_md5_final(&m, digest);
}

/* The unit order of codec.decode_detailed; fills payloads, MD5s, the tensor order. */
static int check_order(nntm_stream *s) {
    char w[96];
    int integrity = (s->tool_flags & TOOL_INTEGRITY) != 0;
    uint64_t nt = s->num_tensors_announced;
    /* every tensor needs its own parameter set: a stream announcing more is refused now
     * (as the reference reader refuses it at its end), before allocating per tensor */
    if (nt > s->num_tps)
        return fail(s, NNTM_ERR_CORRUPT, "model parameter set announces %llu tensors, the stream "
                    "has %zu parameter sets", (unsigned long long)nt, s->num_tps);
    /* per tensor_id: tps index, tensor index; state 0 none, 1 parameter set, 2 data, 3 hash */
    int32_t *by_id = malloc((nt ? nt : 1) * sizeof *by_id);
    int32_t *index_of = malloc((nt ? nt : 1) * sizeof *index_of);
    uint8_t *state = calloc(nt ? nt : 1, 1);
    size_t name_slots = 2 * s->num_tps + 1;
    int32_t *names = malloc(name_slots * sizeof *names);
    s->order = malloc((nt ? nt : 1) * sizeof *s->order);
    if (!by_id || !index_of || !state || !names || !s->order) {
        free(by_id);
        free(index_of);
        free(state);
        free(names);
        return fail(s, NNTM_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < name_slots; i++) names[i] = -1;
    for (uint64_t i = 0; i < nt; i++) by_id[i] = -1;
    int rv = NNTM_OK, ended = 0;
    size_t next_tps = 0, pending = 0;
    for (size_t u = s->container_format ? 2 : 1; u < s->num_units && rv == NNTM_OK; u++) {
        const unit_rec *ur = &s->units[u];
        if (ended) {
            rv = fail(s, NNTM_ERR_CORRUPT, "%s: unit after end_of_stream", where(s, u, w, sizeof w));
            break;
        }
        if (ur->type == UNIT_TPS) {
            size_t k = next_tps++;
            tps_rec *t = &s->tps[k];
            if ((uint64_t)t->tensor_id >= nt) {
                rv = fail(s, NNTM_ERR_CORRUPT, "%s: tensor_id %d but the model has %llu tensors",
                          where(s, u, w, sizeof w), t->tensor_id, (unsigned long long)nt);
                break;
            }
            int dup = by_id[t->tensor_id] >= 0 || name_seen(names, name_slots, s->tps, k);
            if (dup) {
                rv = fail(s, NNTM_ERR_CORRUPT, "%s: tensor_id %d ('%s') appears twice",
                          where(s, u, w, sizeof w), t->tensor_id, t->name);
                break;
            }
            by_id[t->tensor_id] = (int32_t)k;
            state[t->tensor_id] = 1;
            pending++;
            if (t->coding_mode == NNTM_CODING_QUANTIZED && t->pred_mode == NNTM_PRED_EARLIER_TENSOR) {
                if (state[t->ref_tensor_id] != 3) {
                    rv = fail(s, NNTM_ERR_REFERENCE, "%s, tensor '%s': predicted from tensor_id %d, "
                              "which is not decoded before it", where(s, u, w, sizeof w), t->name,
                              t->ref_tensor_id);
                    break;
                }
                tps_rec *ref = &s->tps[by_id[t->ref_tensor_id]];
                int same = ref->ndim == t->ndim && ref->dtype == t->ref_dtype;
                for (int i = 0; same && i < t->ndim; i++) same = ref->shape[i] == t->shape[i];
                if (!same) {
                    rv = fail(s, NNTM_ERR_REFERENCE, "%s, tensor '%s': tensor_id %d has another "
                              "shape or dtype than the stream needs", where(s, u, w, sizeof w),
                              t->name, t->ref_tensor_id);
                    break;
                }
                t->ref_index = index_of[t->ref_tensor_id];
                ref->needed = 1;
            }
            if (integrity) {
                uint8_t d[16];
                nntm_md5_digest(s->data + ur->offset, UNIT_HEADER + ur->size, d);
                memcpy(t->md5, d, 16); /* the parameter set's MD5, until its hash unit */
            }
        } else if (ur->type == UNIT_TDU) {
            reader r;
            reader_init(&r, s, u);
            uint32_t id = (uint32_t)rue(&r, MAX_TENSORS - 1, "tensor_id");
            ralign(&r);
            if (r.rv) { rv = r.rv; break; }
            int k = find_tps(s, by_id, id);
            if (k < 0 || state[id] != 1) {
                rv = fail(s, NNTM_ERR_CORRUPT, "%s: data for tensor_id %u without a parameter set "
                          "before it", where(s, u, w, sizeof w), id);
                break;
            }
            size_t off = (size_t)(r.b.pos / 8);
            s->tps[k].payload = ur->payload + off;
            s->tps[k].payload_size = ur->size - off;
            state[id] = 2;
        } else if (ur->type == UNIT_THU) {
            uint32_t id;
            uint8_t md5[16], tps_md5[16];
            rv = parse_hash_unit(s, u, &id, md5, tps_md5);
            if (rv) break;
            int k = find_tps(s, by_id, id);
            if (k < 0 || state[id] != 2) {
                rv = fail(s, NNTM_ERR_CORRUPT, "%s: hash for tensor_id %u without a data unit before "
                          "it, or a second one", where(s, u, w, sizeof w), id);
                break;
            }
            tps_rec *t = &s->tps[k];
            if (integrity) t->params_ok = memcmp(t->md5, tps_md5, 16) == 0;
            memcpy(t->md5, md5, 16);
            state[id] = 3;
            pending--;
            index_of[id] = s->num_tensors;
            s->order[s->num_tensors++] = k;
        } else if (ur->type == UNIT_EOS) {
            reader r;
            reader_init(&r, s, u);
            uint8_t expected[16];
            if (integrity) rbytes(&r, 16, expected, "stream_md5");
            if (!r.rv && nntm_bits_left(&r.b))
                rfail(&r, NNTM_ERR_CORRUPT, integrity ? "unexpected byte(s) at the end"
                                                      : "end_of_stream with a payload");
            if (r.rv) { rv = r.rv; break; }
            if (integrity && !s->settings.skip_stream_md5) {
                stream_digest(s, ur->offset, s->stream_md5);
                s->stream_ok = memcmp(s->stream_md5, expected, 16) == 0;
            }
            ended = 1;
        } else {
            rv = fail(s, NNTM_ERR_CORRUPT, "%s: unexpected %s", where(s, u, w, sizeof w),
                      unit_names[ur->type]);
        }
    }
    if (rv == NNTM_OK && !ended)
        rv = fail(s, NNTM_ERR_TRUNCATED, "truncated stream: no end_of_stream unit after %zu units",
                  s->num_units);
    if (rv == NNTM_OK && pending)
        rv = fail(s, NNTM_ERR_CORRUPT, "%zu tensor(s) have no data or hash unit", pending);
    if (rv == NNTM_OK && (uint64_t)s->num_tensors != nt)
        rv = fail(s, NNTM_ERR_CORRUPT, "model parameter set announces %llu tensors, stream holds %d",
                  (unsigned long long)nt, s->num_tensors);
    free(by_id);
    free(index_of);
    free(state);
    free(names);
    return rv;
}

/* ------------------------------------------------------------------ open / close */
void nntm_stream_default_settings(nntm_stream_settings *s) {
    memset(s, 0, sizeof *s);
    s->max_expansion = (uint64_t)1 << 20;
    s->max_elements = (uint64_t)1 << 28;
}

static int open_parsed(nntm_stream *s) {
    if (s->size >= UNIT_HEADER + 4 && memcmp(s->data + UNIT_HEADER, "NNTM", 4))
        return fail(s, NNTM_ERR_CORRUPT, "not an NNTM bitstream: it does not begin with a model "
                    "parameter set carrying the magic 'NNTM'");
    int rv = split_units(s);
    if (rv) return rv;
    if (!s->num_units || s->units[0].type != UNIT_MPS)
        return fail(s, NNTM_ERR_CORRUPT, "unit 0: the stream does not start with a model parameter set");
    rv = parse_mps(s);
    if (rv) return rv;
    size_t n = 0;
    for (size_t u = 0; u < s->num_units; u++) n += s->units[u].type == UNIT_TPS;
    s->tps = calloc(n ? n : 1, sizeof *s->tps);
    if (!s->tps) return fail(s, NNTM_ERR_NOMEM, "out of memory");
    for (size_t u = 0; u < s->num_units; u++) {
        if (s->units[u].type != UNIT_TPS) continue;
        rv = parse_tps(s, u, &s->tps[s->num_tps++]);
        if (rv) return rv;
    }
    rv = check_budget(s);
    if (rv) return rv;
    rv = parse_container(s);
    if (rv) return rv;
    return check_order(s);
}

int nntm_stream_open_memory(nntm_stream **out, const uint8_t *data, size_t size,
                            const nntm_stream_settings *settings) {
    if (!out) return NNTM_ERR_ARG;
    *out = NULL;
    if (size && !data) return NNTM_ERR_ARG;
    nntm_stream *s = calloc(1, sizeof *s);
    if (!s) return NNTM_ERR_NOMEM;
    *out = s;
    if (settings) s->settings = *settings;
    else nntm_stream_default_settings(&s->settings);
    if (s->settings.threads < 0 || s->settings.threads > NNTM_MAX_THREADS)
        return fail(s, NNTM_ERR_ARG, "threads %d is not 0..%d", (int)s->settings.threads,
                    NNTM_MAX_THREADS);
    s->data = data;
    s->size = size;
    s->stream_ok = -1;
    return open_parsed(s);
}

int nntm_stream_open_file(nntm_stream **out, const char *path,
                          const nntm_stream_settings *settings) {
    if (!out || !path) return NNTM_ERR_ARG;
    *out = NULL;
    nntm_stream *s = calloc(1, sizeof *s);
    if (!s) return NNTM_ERR_NOMEM;
    *out = s;
    if (settings) s->settings = *settings;
    else nntm_stream_default_settings(&s->settings);
    if (s->settings.threads < 0 || s->settings.threads > NNTM_MAX_THREADS)
        return fail(s, NNTM_ERR_ARG, "threads %d is not 0..%d", (int)s->settings.threads,
                    NNTM_MAX_THREADS);
    s->stream_ok = -1;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(s, NNTM_ERR_IO, "cannot read bitstream '%s'", path);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(s, NNTM_ERR_IO, "cannot read bitstream '%s': not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size) {
        void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            s->map = map;
            s->map_size = size;
            s->data = map;
        } else {
            s->owned = malloc(size);
            if (!s->owned) {
                close(fd);
                return fail(s, NNTM_ERR_NOMEM, "out of memory reading '%s'", path);
            }
            size_t got = 0;
            while (got < size) {
                ssize_t n = read(fd, (uint8_t *)s->owned + got, size - got);
                if (n <= 0) {
                    close(fd);
                    return fail(s, NNTM_ERR_IO, "cannot read bitstream '%s'", path);
                }
                got += (size_t)n;
            }
            s->data = s->owned;
        }
    }
    close(fd);
    s->size = size;
    int rv = open_parsed(s);
    /* the stream MD5 read every page: give them back (they come again from the page cache
     * as the tensors are decoded), so that a decode holds the payloads in work only */
    if (s->map) madvise(s->map, s->map_size, MADV_DONTNEED);
    return rv;
}

void nntm_stream_close(nntm_stream **sp) {
    if (!sp || !*sp) return;
    nntm_stream *s = *sp;
    for (size_t i = 0; i < s->num_tps; i++) {
        free(s->tps[i].name);
        free(s->tps[i].kept);
        if (s->tps[i].cluster) free(s->tps[i].cluster->codebooks);
        free(s->tps[i].cluster);
    }
    free(s->tps);
    free(s->units);
    free(s->order);
    free(s->container);
    free(s->owned);
    if (s->map) munmap(s->map, s->map_size);
    free(s);
    *sp = NULL;
}

const char *nntm_stream_error(const nntm_stream *s) { return s ? s->error : "out of memory"; }
int32_t nntm_stream_num_tensors(const nntm_stream *s) { return s ? s->num_tensors : 0; }
int32_t nntm_stream_version(const nntm_stream *s) {
    return s ? s->version_major * 256 + s->version_minor : 0;
}
uint32_t nntm_stream_tool_flags(const nntm_stream *s) { return s ? s->tool_flags : 0; }
int32_t nntm_stream_source_format(const nntm_stream *s) { return s ? s->source_format : 0; }

int nntm_stream_container(const nntm_stream *s, int32_t *format, const uint8_t **data,
                          size_t *size) {
    if (format) *format = s ? s->container_format : 0;
    if (data) *data = s && s->container_format ? s->container : NULL;
    if (size) *size = s ? s->container_size : 0;
    return s && s->container_format ? 1 : 0;
}

int nntm_stream_check(const nntm_stream *s, uint8_t digest[16]) {
    if (!s) return -1;
    if (digest) memcpy(digest, s->stream_md5, 16);
    return s->stream_ok;
}

int nntm_stream_tensor_info(const nntm_stream *s, int32_t index, nntm_tensor_info *info) {
    if (!s || !info || index < 0 || index >= s->num_tensors) return NNTM_ERR_ARG;
    const tps_rec *t = &s->tps[s->order[index]];
    memset(info, 0, sizeof *info);
    info->name = t->name;
    info->name_size = t->name_size;
    info->tensor_id = t->tensor_id;
    info->dtype = t->dtype;
    info->ndim = t->ndim;
    memcpy(info->shape, t->shape, sizeof t->shape);
    info->num_elements = t->count;
    info->byte_size = t->count * (uint64_t)dtype_sizes[t->dtype];
    info->coding_mode = t->coding_mode;
    info->pred_mode = t->coding_mode == NNTM_CODING_QUANTIZED ? t->pred_mode : NNTM_PRED_NONE;
    info->params_ok = t->params_ok;
    memcpy(info->md5, t->md5, 16);
    return NNTM_OK;
}

/* ------------------------------------------------------------------ decoding */
/* Kernel tiles (arrangement 1): tensor (o, i, y, x) <-> kernel (o*kh + y, i*kw + x). */
static void tiles(const tps_rec *t, const uint8_t *src, uint8_t *dst, int to_kernel) {
    size_t es = (size_t)dtype_sizes[t->dtype];
    size_t O = (size_t)t->shape[0], I = (size_t)t->shape[1];
    size_t kh = (size_t)t->shape[2], kw = (size_t)t->shape[3];
    for (size_t o = 0; o < O; o++)
        for (size_t i = 0; i < I; i++)
            for (size_t y = 0; y < kh; y++) {
                size_t tensor = ((o * I + i) * kh + y) * kw;
                size_t kernel = (o * kh + y) * (I * kw) + i * kw;
                if (to_kernel) memcpy(dst + kernel * es, src + tensor * es, kw * es);
                else memcpy(dst + tensor * es, src + kernel * es, kw * es);
            }
}

static int tensor_error(nntm_stream *s, const tps_rec *t, int code, const char *what) {
    char w[96];
    size_t unit = t->unit;
    /* name the data unit: the one whose payload this is */
    for (size_t u = t->unit; u < s->num_units; u++)
        if (s->units[u].type == UNIT_TDU && t->payload >= s->units[u].payload &&
            t->payload <= s->units[u].payload + s->units[u].size) {
            unit = u;
            break;
        }
    return fail(s, code, "%s, tensor '%s': %s", where(s, unit, w, sizeof w), t->name, what);
}

static int decode_into(nntm_stream *s, int32_t index, uint8_t *out);

/* The reference picture of a predicted tensor (its samples, tensor shape), checked. */
static int reference_of(nntm_stream *s, tps_rec *t, const uint8_t **samples) {
    if (t->pred_mode == NNTM_PRED_EARLIER_TENSOR) {
        tps_rec *ref = &s->tps[s->order[t->ref_index]];
        if (!ref->kept) {
            /* decode the chain of references oldest first (no recursion) */
            for (;;) {
                int32_t j = t->ref_index;
                while (s->tps[s->order[j]].pred_mode == NNTM_PRED_EARLIER_TENSOR &&
                       s->tps[s->order[j]].coding_mode == NNTM_CODING_QUANTIZED &&
                       !s->tps[s->order[s->tps[s->order[j]].ref_index]].kept)
                    j = s->tps[s->order[j]].ref_index;
                tps_rec *r = &s->tps[s->order[j]];
                r->kept = malloc(r->count * (size_t)dtype_sizes[r->dtype] + 1);
                if (!r->kept) return tensor_error(s, t, NNTM_ERR_NOMEM, "out of memory");
                int rv = decode_into(s, j, r->kept);
                if (rv < 0 && rv != NNTM_ERR_HASH) {
                    free(r->kept);
                    r->kept = NULL;
                    return rv;
                }
                if (r == ref) break;
            }
        }
        uint8_t d[16];
        nntm_md5_digest(ref->kept, ref->count * (size_t)dtype_sizes[ref->dtype], d);
        if (memcmp(d, t->ref_md5, 16))
            return tensor_error(s, t, NNTM_ERR_REFERENCE, "the earlier tensor it is predicted from "
                                "is not the one the stream was coded against");
        *samples = ref->kept;
        return NNTM_OK;
    }
    nntm_ref_tensor rt;
    memset(&rt, 0, sizeof rt);
    if (!s->settings.ref_lookup)
        return tensor_error(s, t, NNTM_ERR_REFERENCE, "predicted from a reference model; give the "
                            "model the stream was coded against (--RefModel)");
    if (s->settings.ref_lookup(s->settings.ref_cookie, t->name, t->name_size, &rt))
        return tensor_error(s, t, NNTM_ERR_REFERENCE, "the reference model has no tensor of that name");
    int same = rt.ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = rt.shape[i] == t->shape[i];
    if (!same)
        return tensor_error(s, t, NNTM_ERR_REFERENCE, "the reference model's tensor has another shape");
    if (rt.dtype != t->ref_dtype)
        return tensor_error(s, t, NNTM_ERR_REFERENCE, "the reference model's tensor has another dtype "
                            "than the stream was coded against");
    if (rt.byte_size != t->count * (uint64_t)dtype_sizes[t->ref_dtype] || (rt.byte_size && !rt.data))
        return tensor_error(s, t, NNTM_ERR_ARG, "the reference tensor's byte size is wrong");
    uint8_t d[16];
    nntm_md5_digest(rt.data, (size_t)rt.byte_size, d);
    if (memcmp(d, t->ref_md5, 16))
        return tensor_error(s, t, NNTM_ERR_REFERENCE, "the reference model's tensor is not the one "
                            "the stream was coded against: wrong reference model?");
    *samples = rt.data;
    return NNTM_OK;
}

static int decode_quantized(nntm_stream *s, tps_rec *t, uint8_t *out) {
    uint64_t per_byte = t->prob_window ? MIN_ELEMENTS_PER_BYTE_COUNTING : MIN_ELEMENTS_PER_BYTE;
    if (!t->tree.enabled && t->count > per_byte * (t->payload_size + 8))
        return tensor_error(s, t, NNTM_ERR_CORRUPT, "the payload is too short for its levels");
    nntm_kernel_params p;
    memset(&p, 0, sizeof p);
    p.rows = (int32_t)t->rows;
    p.cols = (int32_t)t->cols;
    p.qp = t->qp;
    p.qp_density = t->qp_density;
    p.num_gt_flags = t->num_gt_flags;
    p.tree = t->tree;
    p.dq_enabled = t->dq_enabled ? (t->dq_states == 8 ? 2 : t->dq_states == 32 ? 3 : 1) : 0;
    p.prob_window = t->prob_window;
    p.suffix_ctx = t->suffix_ctx;
    p.row_pred = t->row_pred;
    p.substream_rows = t->substream_rows;
    size_t es = (size_t)dtype_sizes[t->dtype], bytes = t->count * es;
    nntm_reference ref, *refp = NULL;
    uint8_t *ref_tiles = NULL, *recon = out;
    if (t->pred_mode != NNTM_PRED_NONE) {
        const uint8_t *samples = NULL;
        int rv = reference_of(s, t, &samples);
        if (rv) return rv;
        if (t->arrangement == 1) {
            size_t res = (size_t)dtype_sizes[t->ref_dtype];
            tps_rec view = *t;
            view.dtype = t->ref_dtype;
            ref_tiles = malloc(t->count * res + 1);
            if (!ref_tiles) return tensor_error(s, t, NNTM_ERR_NOMEM, "out of memory");
            tiles(&view, samples, ref_tiles, 1);
            samples = ref_tiles;
        }
        ref.samples = samples;
        ref.dtype = t->ref_dtype; /* tensor_dtype 0..2 are NNTM_DTYPE_FLOAT32..BFLOAT16 */
        ref.scale = t->pred_scale;
        refp = &ref;
    }
    if (t->arrangement == 1 && t->count) {
        recon = malloc(bytes);
        if (!recon) {
            free(ref_tiles);
            return tensor_error(s, t, NNTM_ERR_NOMEM, "out of memory");
        }
    }
    int rv = nntm_decode_kernel_budget(&p, t->payload, t->payload_size, t->dtype, refp, recon,
                                       NULL, NULL, s->settings.threads, s->settings.budget);
    if (rv == NNTM_OK && recon != out) tiles(t, recon, out, 0);
    if (recon != out) free(recon);
    free(ref_tiles);
    if (rv) {
        if (rv == NNTM_ERR_ARG) rv = NNTM_ERR_CORRUPT; /* parameters the core refuses */
        return tensor_error(s, t, rv, nntm_strerror(rv));
    }
    return NNTM_OK;
}

static int decode_clustered(nntm_stream *s, tps_rec *t, uint8_t *out) {
    const cluster_info *c = t->cluster;
    nntm_cluster_params p;
    memset(&p, 0, sizeof p);
    p.num_subspaces = c->num_subspaces;
    p.qp_density = t->qp_density;
    p.codebook_qp = t->qp - c->codebook_qp_offset;
    p.outlier_qp = t->qp - c->outlier_qp_offset;
    p.residual_qp = t->qp + c->residual_qp_offset;
    p.num_gt_flags = t->num_gt_flags;
    p.outliers_enabled = c->outliers_enabled;
    p.outlier_pos_mode = c->outlier_pos_mode;
    p.residual_enabled = c->residual_enabled;
    for (int k = 0; k < c->num_subspaces; k++) {
        p.num_points[k] = c->num_points[k];
        p.dims[k] = c->dims[k];
        p.codebook_size[k] = c->codebook_size[k];
        p.row_points[k] = c->row_points[k];
    }
    size_t es = (size_t)dtype_sizes[t->dtype];
    uint8_t *bits = malloc(t->count * es + 1);
    if (!bits) return tensor_error(s, t, NNTM_ERR_NOMEM, "out of memory");
    int rv = nntm_decode_cluster(&p, c->codebooks, t->payload, t->payload_size, t->dtype, bits, NULL);
    if (rv) {
        free(bits);
        if (rv == NNTM_ERR_ARG) rv = NNTM_ERR_CORRUPT;
        return tensor_error(s, t, rv, nntm_strerror(rv));
    }
    /* the points back to C order (python/nntm/cluster.py layout) */
    size_t O = (size_t)t->shape[0], I = (size_t)t->shape[1];
    size_t rest = (size_t)(t->count / (O * I));
    size_t channels = c->subspace_axis ? (size_t)t->shape[c->subspace_axis - 1] : 1;
    const uint8_t *src = bits;
    for (int k = 0; k < c->num_subspaces; k++) {
        size_t lo = (size_t)k * channels / (size_t)c->num_subspaces;
        size_t hi = (size_t)(k + 1) * channels / (size_t)c->num_subspaces;
        size_t o0 = c->subspace_axis == 1 ? lo : 0, o1 = c->subspace_axis == 1 ? hi : O;
        size_t i0 = c->subspace_axis == 2 ? lo : 0, i1 = c->subspace_axis == 2 ? hi : I;
        size_t run = rest * es;
        if (c->point_type == 3) {
            for (size_t i = i0; i < i1; i++)
                for (size_t o = o0; o < o1; o++, src += run)
                    memcpy(out + (o * I + i) * rest * es, src, run);
        } else {
            for (size_t o = o0; o < o1; o++)
                for (size_t i = i0; i < i1; i++, src += run)
                    memcpy(out + (o * I + i) * rest * es, src, run);
        }
    }
    free(bits);
    return NNTM_OK;
}

/* Decode tensor index into out (its byte size); NNTM_ERR_HASH on an MD5 mismatch. */
static int decode_into(nntm_stream *s, int32_t index, uint8_t *out) {
    tps_rec *t = &s->tps[s->order[index]];
    size_t bytes = t->count * (size_t)dtype_sizes[t->dtype];
    int rv = NNTM_OK;
    if (t->coding_mode == NNTM_CODING_LOSSLESS) {
        if (t->payload_size != bytes) {
            char msg[128];
            snprintf(msg, sizeof msg, "lossless payload has %zu bytes, expected %zu",
                     t->payload_size, bytes);
            return tensor_error(s, t, NNTM_ERR_CORRUPT, msg);
        }
        if (t->dtype == NNTM_TDTYPE_BOOL)
            for (size_t i = 0; i < bytes; i++)
                if (t->payload[i] > 1)
                    return tensor_error(s, t, NNTM_ERR_CORRUPT,
                                        "bool tensor with bytes other than 0 and 1");
        if (bytes) memcpy(out, t->payload, bytes);
    } else if (t->coding_mode == NNTM_CODING_CLUSTERED) {
        rv = decode_clustered(s, t, out);
    } else {
        rv = decode_quantized(s, t, out);
    }
    if (rv) return rv;
    return NNTM_OK;
}

/* Give back the mapped pages of a decoded tensor's payload (a file stream): they are read
 * again from the file if ever needed, so that a decode holds the payloads it works on
 * rather than the whole stream (the resident size stays about the largest tensor). */
static void release_payload(const nntm_stream *s, const tps_rec *t) {
    if (!s->map || t->payload_size == 0) return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    uintptr_t base = (uintptr_t)s->map, lo = (uintptr_t)t->payload - base;
    uintptr_t hi = lo + t->payload_size, p = (uintptr_t)page;
    lo = (lo + p - 1) / p * p; /* whole pages inside the payload only */
    hi = hi / p * p;
    if (hi > lo) madvise((void *)(base + lo), hi - lo, MADV_DONTNEED);
}

int nntm_stream_decode_tensor(nntm_stream *s, int32_t index, void *out, size_t out_size,
                              uint8_t md5[16]) {
    if (!s || index < 0 || index >= s->num_tensors) return NNTM_ERR_ARG;
    tps_rec *t = &s->tps[s->order[index]];
    size_t bytes = t->count * (size_t)dtype_sizes[t->dtype];
    if (out_size < bytes || (bytes && !out)) return NNTM_ERR_ARG;
    nntm_thread_budget *budget = s->settings.budget;
    /* this thread's slot: wait while other tensors' substreams hold them all */
    if (budget) nntm_budget_begin(budget);
    int rv = decode_into(s, index, out);
    if (budget) nntm_budget_end(budget);
    release_payload(s, t);
    if (rv) return rv;
    uint8_t d[16];
    nntm_md5_digest(out, bytes, d);
    if (md5) memcpy(md5, d, 16);
    if (t->needed && !t->kept) {
        t->kept = malloc(bytes + 1);
        if (!t->kept) return tensor_error(s, t, NNTM_ERR_NOMEM, "out of memory");
        memcpy(t->kept, out, bytes);
    }
    if (memcmp(d, t->md5, 16)) {
        char w[96];
        return fail(s, NNTM_ERR_HASH, "tensor '%s': MD5 mismatch (%s)", t->name,
                    where(s, t->unit, w, sizeof w));
    }
    return NNTM_OK;
}
