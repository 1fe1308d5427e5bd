/* safetensors header writing and reading for nntm-dec. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const st_codes[NNTM_TDTYPE_COUNT] = {
    "F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "BOOL"};

const char *nntm_st_dtype_code(int32_t dtype) {
    return dtype >= 0 && dtype < NNTM_TDTYPE_COUNT ? st_codes[dtype] : NULL;
}

/* ------------------------------------------------------------------ writing */
typedef struct sbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string as Python's json.dumps(ensure_ascii=False) writes it. */
static void put_json_string(sbuf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                puts_(b, esc);
            } else {
                put(b, &c, 1);
            }
        }
    }
    put(b, "\"", 1);
}

int nntm_st_header(const nntm_stream *s, uint8_t **out, size_t *size) {
    sbuf b = {0};
    char num[32];
    uint64_t offset = 0;
    put(&b, "\0\0\0\0\0\0\0\0", 8);
    put(&b, "{", 1);
    int32_t n = nntm_stream_num_tensors(s);
    for (int32_t i = 0; i < n; i++) {
        nntm_tensor_info t;
        nntm_stream_tensor_info(s, i, &t);
        if (i) put(&b, ",", 1);
        put_json_string(&b, t.name, t.name_size);
        puts_(&b, ":{\"dtype\":");
        put_json_string(&b, st_codes[t.dtype], strlen(st_codes[t.dtype]));
        puts_(&b, ",\"shape\":[");
        for (int32_t d = 0; d < t.ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t.shape[d]);
            puts_(&b, num);
        }
        snprintf(num, sizeof num, "%llu", (unsigned long long)offset);
        puts_(&b, "],\"data_offsets\":[");
        puts_(&b, num);
        offset += t.byte_size;
        snprintf(num, sizeof num, ",%llu]}", (unsigned long long)offset);
        puts_(&b, num);
    }
    put(&b, "}", 1);
    while ((b.n - 8) % 8) put(&b, " ", 1);
    if (b.oom) {
        free(b.p);
        return NNTM_ERR_NOMEM;
    }
    uint64_t len = b.n - 8;
    for (int k = 0; k < 8; k++) b.p[k] = (uint8_t)(len >> (8 * k));
    *out = b.p;
    *size = b.n;
    return NNTM_OK;
}

/* ------------------------------------------------------------------ reading */
typedef struct jp {
    const char *p, *end;
} jp;

static void ws(jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int lit(jp *j, char c) {
    ws(j);
    if (j->p < j->end && *j->p == c) { j->p++; return 1; }
    return 0;
}

static int hex4(jp *j, unsigned *v) {
    if (j->end - j->p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        *v <<= 4;
        if (c >= '0' && c <= '9') *v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') *v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') *v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    return 0;
}

static void put_utf8(sbuf *b, unsigned cp) {
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (uint8_t)(0xC0 | cp >> 6); u[1] = (uint8_t)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | cp >> 12); u[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
        u[2] = (uint8_t)(0x80 | (cp & 63)); n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | cp >> 18); u[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)); u[3] = (uint8_t)(0x80 | (cp & 63)); n = 4;
    }
    put(b, u, n);
}

/* A JSON string into *b (unescaped UTF-8); 0 or -1. */
static int jstring(jp *j, sbuf *b) {
    if (!lit(j, '"')) return -1;
    while (j->p < j->end) {
        char c = *j->p++;
        if (c == '"') return b->oom ? -1 : 0;
        if (c != '\\') { put(b, &c, 1); continue; }
        if (j->p >= j->end) return -1;
        c = *j->p++;
        unsigned cp;
        switch (c) {
        case '"': case '\\': case '/': put(b, &c, 1); break;
        case 'n': put(b, "\n", 1); break;
        case 'r': put(b, "\r", 1); break;
        case 't': put(b, "\t", 1); break;
        case 'b': put(b, "\b", 1); break;
        case 'f': put(b, "\f", 1); break;
        case 'u':
            if (hex4(j, &cp)) return -1;
            if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
                unsigned lo;
                j->p += 2;
                if (hex4(j, &lo) || lo < 0xDC00 || lo > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(b, cp);
            break;
        default: return -1;
        }
    }
    return -1;
}

static int jint(jp *j, long long *v) {
    ws(j);
    char *e;
    if (j->p >= j->end || !(*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))) return -1;
    char tmp[32];
    size_t n = 0;
    while (j->p + n < j->end && n < sizeof tmp - 1 &&
           (j->p[n] == '-' || (j->p[n] >= '0' && j->p[n] <= '9')))
        n++;
    memcpy(tmp, j->p, n);
    tmp[n] = 0;
    *v = strtoll(tmp, &e, 10);
    if (*e) return -1;
    j->p += n;
    return 0;
}

static int jskip(jp *j, int depth) {
    ws(j);
    if (j->p >= j->end || depth > 64) return -1;
    char c = *j->p;
    if (c == '"') {
        sbuf b = {0};
        int rv = jstring(j, &b);
        free(b.p);
        return rv;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (lit(j, close)) return 0;
        do {
            if (c == '{') {
                sbuf b = {0};
                int rv = jstring(j, &b);
                free(b.p);
                if (rv || !lit(j, ':')) return -1;
            }
            if (jskip(j, depth + 1)) return -1;
        } while (lit(j, ','));
        return lit(j, close) ? 0 : -1;
    }
    while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']') j->p++;
    return 0;
}

/* One tensor's entry {"dtype":..,"shape":[..],"data_offsets":[a,b]}. */
static int jentry(jp *j, nntm_ref_tensor *t, long long off[2]) {
    int have = 0;
    if (!lit(j, '{')) return -1;
    if (lit(j, '}')) return -1;
    do {
        sbuf key = {0};
        if (jstring(j, &key) || !lit(j, ':')) { free(key.p); return -1; }
        if (key.n == 5 && !memcmp(key.p, "dtype", 5)) {
            sbuf v = {0};
            if (jstring(j, &v)) { free(key.p); free(v.p); return -1; }
            t->dtype = -1;
            for (int d = 0; d < NNTM_TDTYPE_COUNT; d++)
                if (v.n == strlen(st_codes[d]) && !memcmp(v.p, st_codes[d], v.n)) t->dtype = d;
            free(v.p);
            have |= 1;
        } else if (key.n == 5 && !memcmp(key.p, "shape", 5)) {
            if (!lit(j, '[')) { free(key.p); return -1; }
            t->ndim = 0;
            if (!lit(j, ']')) {
                do {
                    long long v;
                    if (jint(j, &v) || v < 0 || t->ndim >= NNTM_STREAM_MAX_NDIM) { free(key.p); return -1; }
                    t->shape[t->ndim++] = v;
                } while (lit(j, ','));
                if (!lit(j, ']')) { free(key.p); return -1; }
            }
            have |= 2;
        } else if (key.n == 12 && !memcmp(key.p, "data_offsets", 12)) {
            if (!lit(j, '[') || jint(j, &off[0]) || !lit(j, ',') || jint(j, &off[1]) || !lit(j, ']')) {
                free(key.p);
                return -1;
            }
            have |= 4;
        } else if (jskip(j, 1)) {
            free(key.p);
            return -1;
        }
        free(key.p);
    } while (lit(j, ','));
    return lit(j, '}') && have == 7 ? 0 : -1;
}

void nntm_st_close(nntm_st_model *m) {
    for (size_t i = 0; i < m->count; i++) free(m->entries[i].name);
    free(m->entries);
    if (m->map) munmap(m->map, m->map_size);
    memset(m, 0, sizeof *m);
}

int nntm_st_open(nntm_st_model *m, const char *path, char *err, size_t err_size) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < 8) {
        if (fd >= 0) close(fd);
        snprintf(err, err_size, "cannot read model '%s'", path);
        return -1;
    }
    m->map_size = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        snprintf(err, err_size, "cannot map model '%s'", path);
        return -1;
    }
    const uint8_t *d = m->map;
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++) hlen |= (uint64_t)d[k] << (8 * k);
    if (hlen > m->map_size - 8) goto bad;
    jp j = {(const char *)d + 8, (const char *)d + 8 + hlen};
    const uint8_t *base = d + 8 + hlen;
    uint64_t data_size = m->map_size - 8 - hlen;
    size_t cap = 0;
    if (!lit(&j, '{')) goto bad;
    if (!lit(&j, '}')) {
        do {
            sbuf key = {0};
            if (jstring(&j, &key) || !lit(&j, ':')) { free(key.p); goto bad; }
            if (key.n == 12 && !memcmp(key.p, "__metadata__", 12)) {
                free(key.p);
                if (jskip(&j, 1)) goto bad;
                continue;
            }
            nntm_st_entry e;
            memset(&e, 0, sizeof e);
            long long off[2];
            if (jentry(&j, &e.tensor, off) || e.tensor.dtype < 0 || off[0] < 0 || off[1] < off[0] ||
                (uint64_t)off[1] > data_size) {
                free(key.p);
                goto bad;
            }
            put(&key, "", 1); /* NUL */
            if (key.oom) goto bad;
            e.name = (char *)key.p;
            e.name_size = key.n - 1;
            e.tensor.data = base + off[0];
            e.tensor.byte_size = (uint64_t)(off[1] - off[0]);
            if (m->count == cap) {
                cap = cap ? 2 * cap : 64;
                nntm_st_entry *p = realloc(m->entries, cap * sizeof *p);
                if (!p) { free(e.name); goto bad; }
                m->entries = p;
            }
            m->entries[m->count++] = e;
        } while (lit(&j, ','));
        if (!lit(&j, '}')) goto bad;
    }
    return 0;
bad:
    snprintf(err, err_size, "model '%s' is not a readable safetensors file", path);
    nntm_st_close(m);
    return -1;
}

int nntm_st_lookup(void *cookie, const char *name, size_t name_size, nntm_ref_tensor *out) {
    const nntm_st_model *m = cookie;
    for (size_t i = 0; i < m->count; i++)
        if (m->entries[i].name_size == name_size && !memcmp(m->entries[i].name, name, name_size)) {
            *out = m->entries[i].tensor;
            return 0;
        }
    return -1;
}
