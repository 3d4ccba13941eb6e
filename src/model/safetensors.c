// safetensors.c — see safetensors.h.
// Reading trusts nothing in the file: every size, offset and JSON type is
// checked before it is used, so a hostile file is an Error, never a crash or
// an out-of-bounds read. Only the header is read at open; tensor bytes are
// read on demand with pread (checkpoints are gigabytes).
#define _FILE_OFFSET_BITS 64  // 64-bit off_t for pread on 32-bit hosts too
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The reference implementation refuses headers above 100 MB; so do we.
#define ST_MAX_HEADER 100000000ULL
// JSON numbers reach us as doubles: integers are exact only up to 2^53.
#define ST_MAX_JSON_INT 9007199254740992.0
#define ST_NAME_FMT "%.200s"  // bound names in messages (Error.msg is 1 KB)

static size_t dtype_size(StDtype d) {
    switch (d) {
        case ST_F32: return 4;
        case ST_F16:
        case ST_BF16: return 2;
    }
    return 0;
}

const char *st_dtype_name(StDtype d) {
    switch (d) {
        case ST_F32: return "F32";
        case ST_F16: return "F16";
        case ST_BF16: return "BF16";
    }
    return "?";
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

// ---------------------------------------------------------------- low-level I/O

// Reads n bytes at off, retrying short reads. Returns bytes read (< n only at
// end of file) or -1 with errno set.
static int64_t pread_all(int fd, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

static int write_all(int fd, const void *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, (const char *)buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

// ---------------------------------------------------------------- conversions

// Exact F16 -> F32: every half (subnormals, inf, NaN payloads) is a float.
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);  // rebias 15 -> 127
    } else if (man == 0) {
        bits = sign;
    } else {
        // Subnormal man * 2^-24: shift until the implicit bit appears.
        uint32_t e = 113;  // biased exponent of 2^-14
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// ---------------------------------------------------------------- validation helpers

// Returns the offset of the first byte that breaks UTF-8 (overlong forms,
// surrogates and code points above U+10FFFF included), or -1 if valid.
static int64_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return (int64_t)i;
        }
        if (n - i < len) return (int64_t)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return (int64_t)i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return (int64_t)i;
        i += len;
    }
    return -1;
}

// A JSON number that is a non-negative integer representable exactly.
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= ST_MAX_JSON_INT)) return 0;  // also rejects NaN
    uint64_t u = (uint64_t)v;
    if ((double)u != v) return 0;
    *out = u;
    return 1;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Returns a name that occurs twice in names[0..n), or NULL. Sorting keeps this
// O(n log n) even for huge hostile headers.
static const char *find_duplicate(char *const *names, int n) {
    if (n < 2) return NULL;
    char **s = xmalloc((size_t)n * sizeof *s);
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str_ptr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) dup = s[i];
    free(s);
    return dup;
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

// Product of dims, or -1 when it does not fit in int64 (a 0 dim wins).
static int64_t checked_numel(const int64_t *shape, int ndim) {
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

// ---------------------------------------------------------------- reading

static int parse_dtype(const char *s, StDtype *d) {
    if (strcmp(s, "F32") == 0) *d = ST_F32;
    else if (strcmp(s, "F16") == 0) *d = ST_F16;
    else if (strcmp(s, "BF16") == 0) *d = ST_BF16;
    else return 0;
    return 1;
}

// Fills t (except name) from one header entry, checked against the data size.
static int parse_tensor(const char *path, const char *name, const cJSON *j, uint64_t data_size,
                        StTensor *t, Error *e) {
    if (!cJSON_IsObject(j))
        return errorf(e, "%s: tensor '" ST_NAME_FMT "' is not an object", path, name);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        // cJSON keeps duplicate keys; a repeated field would be ambiguous.
        const cJSON **slot = NULL;
        if (!c->string) continue;
        if (strcmp(c->string, "dtype") == 0) slot = &dtype;
        else if (strcmp(c->string, "shape") == 0) slot = &shape;
        else if (strcmp(c->string, "data_offsets") == 0) slot = &offs;
        if (!slot) continue;  // unknown fields are ignored, as the reference does
        if (*slot)
            return errorf(e, "%s: tensor '" ST_NAME_FMT "': duplicate \"%s\"", path, name,
                          c->string);
        *slot = c;
    }
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *found[3] = {dtype, shape, offs};
    for (int i = 0; i < 3; i++)
        if (!found[i])
            return errorf(e, "%s: tensor '" ST_NAME_FMT "': missing \"%s\"", path, name,
                          fields[i]);

    if (!cJSON_IsString(dtype) || !dtype->valuestring)
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': \"dtype\" must be a string", path, name);
    if (!parse_dtype(dtype->valuestring, &t->dtype))
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': unknown dtype: %.40s is not supported "
                      "(F32, F16, BF16)", path, name, dtype->valuestring);

    if (!cJSON_IsArray(shape))
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': \"shape\" must be an array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': shape has too many dims (%d > %d)", path,
                      name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    int k = 0;
    cJSON_ArrayForEach(c, shape) {
        uint64_t d;
        if (!json_uint(c, &d))
            return errorf(e, "%s: tensor '" ST_NAME_FMT "': shape[%d] must be a non-negative "
                          "integer", path, name, k);
        t->shape[k++] = (int64_t)d;
    }
    t->numel = checked_numel(t->shape, ndim);
    size_t dsize = dtype_size(t->dtype);
    if (t->numel < 0 || (uint64_t)t->numel > UINT64_MAX / dsize)
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': element count overflows", path, name);

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': \"data_offsets\" must be an array of 2 "
                      "integers", path, name);
    if (!json_uint(offs->child, &t->begin) || !json_uint(offs->child->next, &t->end))
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': data_offsets must be non-negative "
                      "integers", path, name);
    if (t->end < t->begin)
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': data_offsets [%" PRIu64 ", %" PRIu64
                      "] has end < begin", path, name, t->begin, t->end);
    if (t->end > data_size)
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': data_offsets [%" PRIu64 ", %" PRIu64
                      "] go beyond the data section (%" PRIu64 " bytes)", path, name, t->begin,
                      t->end, data_size);
    uint64_t need = (uint64_t)t->numel * dsize;
    if (t->end - t->begin != need) {
        char sh[200];
        shape_str(sh, sizeof sh, t->shape, ndim);
        return errorf(e, "%s: tensor '" ST_NAME_FMT "': data_offsets [%" PRIu64 ", %" PRIu64
                      "] span %" PRIu64 " bytes but shape %s of %s needs %" PRIu64, path, name,
                      t->begin, t->end, t->end - t->begin, sh, st_dtype_name(t->dtype), need);
    }
    return 0;
}

static int parse_metadata(const char *path, const cJSON *j, StFile *f, Error *e) {
    if (!cJSON_IsObject(j))
        return errorf(e, "%s: \"__metadata__\" must be an object of strings", path);
    int n = cJSON_GetArraySize(j);
    f->meta_keys = xcalloc((size_t)n, sizeof(char *));
    f->meta_vals = xcalloc((size_t)n, sizeof(char *));
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        if (!c->string || !cJSON_IsString(c) || !c->valuestring)
            return errorf(e, "%s: \"__metadata__\" value for '" ST_NAME_FMT "' must be a string",
                          path, c->string ? c->string : "?");
        f->meta_keys[f->n_meta] = xstrdup(c->string);
        f->meta_vals[f->n_meta] = xstrdup(c->valuestring);
        f->n_meta++;
    }
    const char *dup = find_duplicate(f->meta_keys, f->n_meta);
    if (dup) return errorf(e, "%s: duplicate __metadata__ key '" ST_NAME_FMT "'", path, dup);
    return 0;
}

typedef struct {
    uint64_t begin, end;
    int idx;
} Span;

static int cmp_span(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// Tensors must not share bytes (empty ones occupy none). Holes are allowed.
static int check_overlap(const char *path, const StFile *f, Error *e) {
    Span *s = xmalloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *s);
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].end > f->tensors[i].begin)
            s[n++] = (Span){f->tensors[i].begin, f->tensors[i].end, i};
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    int rc = 0;
    // Sorted by begin, the first overlap is always between neighbours.
    for (int i = 1; i < n && rc == 0; i++)
        if (s[i].begin < s[i - 1].end) {
            const StTensor *a = &f->tensors[s[i - 1].idx], *b = &f->tensors[s[i].idx];
            rc = errorf(e, "%s: tensors '" ST_NAME_FMT "' [%" PRIu64 ", %" PRIu64 ") and '"
                        ST_NAME_FMT "' [%" PRIu64 ", %" PRIu64 ") overlap", path, a->name,
                        a->begin, a->end, b->name, b->begin, b->end);
        }
    free(s);
    return rc;
}

// Parses and validates the header JSON text (n bytes) into f.
static int parse_header(const char *path, const char *text, size_t n, StFile *f, Error *e) {
    // JSON allows no raw control bytes; catching them here also stops an
    // embedded NUL from silently truncating a name.
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return errorf(e, "%s: header is not valid JSON: control byte 0x%02x at byte %zu", path,
                          c, i);
    }
    int64_t bad = utf8_invalid_at((const unsigned char *)text, n);
    if (bad >= 0)
        return errorf(e, "%s: header is not valid UTF-8 (byte %" PRId64 ")", path, bad);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = (end && end >= text && end <= text + n) ? (size_t)(end - text) : 0;
        return errorf(e, "%s: header is not valid JSON (error near byte %zu of %zu)", path, at, n);
    }
    int rc = 0;
    // Only padding whitespace may follow the object.
    for (const char *p = end; p < text + n && rc == 0; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            rc = errorf(e, "%s: header is not valid JSON: unexpected content at byte %zu", path,
                        (size_t)(p - text));
    if (rc == 0 && !cJSON_IsObject(root))
        rc = errorf(e, "%s: header is not a JSON object", path);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }

    uint64_t data_size = f->file_size - f->data_start;
    int count = cJSON_GetArraySize(root), have_meta = 0;
    f->tensors = xcalloc((size_t)count, sizeof *f->tensors);
    const cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const char *name = c->string ? c->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (have_meta) {
                rc = errorf(e, "%s: duplicate \"__metadata__\"", path);
                break;
            }
            have_meta = 1;
            if ((rc = parse_metadata(path, c, f, e))) break;
            continue;
        }
        StTensor *t = &f->tensors[f->n_tensors];
        if ((rc = parse_tensor(path, name, c, data_size, t, e))) break;
        t->name = xstrdup(name);
        f->n_tensors++;
    }
    cJSON_Delete(root);
    if (rc) return rc;

    char **names = xmalloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *names);
    for (int i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
    const char *dup = find_duplicate(names, f->n_tensors);
    if (dup) rc = errorf(e, "%s: duplicate tensor name '" ST_NAME_FMT "'", path, dup);
    free(names);
    if (rc) return rc;
    return check_overlap(path, f, e);
}

static int open_impl(StFile *f, const char *path, Error *e) {
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) return errorf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) return errorf(e, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return errorf(e, "%s: not a regular file", path);
    f->file_size = (uint64_t)sb.st_size;
    if (f->file_size < 8)
        return errorf(e, "%s: file is %" PRIu64 " bytes, shorter than 8 bytes (the header length)",
                      path, f->file_size);

    unsigned char lenb[8];
    int64_t r = pread_all(f->fd, lenb, 8, 0);
    if (r < 0) return errorf(e, "%s: cannot read: %s", path, strerror(errno));
    if (r < 8) return errorf(e, "%s: file is shorter than 8 bytes", path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lenb[i];
    if (n > ST_MAX_HEADER)
        return errorf(e, "%s: header length %" PRIu64 " is too large (limit %llu bytes)", path, n,
                      ST_MAX_HEADER);
    if (n > f->file_size - 8)
        return errorf(e, "%s: header length %" PRIu64 " goes beyond the end of the file (%" PRIu64
                      " bytes)", path, n, f->file_size);
    f->data_start = 8 + n;

    char *text = xmalloc((size_t)n + 1);
    r = pread_all(f->fd, text, (size_t)n, 8);
    int rc = 0;
    if (r < 0) rc = errorf(e, "%s: cannot read header: %s", path, strerror(errno));
    else if ((uint64_t)r < n) rc = errorf(e, "%s: file ended inside the header", path);
    else {
        text[n] = '\0';
        rc = parse_header(path, text, (size_t)n, f, e);
    }
    free(text);
    return rc;
}

static char *read_small_file(const char *path, size_t limit, Error *e) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        errorf(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *s = xmalloc(limit + 1);
    size_t n = fread(s, 1, limit + 1, fp);
    fclose(fp);
    if (n > limit) {
        free(s);
        errorf(e, "%s: larger than %zu bytes", path, limit);
        return NULL;
    }
    s[n] = 0;
    return s;
}

// diffusers' sharded form: {"metadata": {...}, "weight_map": {"tensor": "shard file", ...}}.
static int open_index(StFile *f, const char *path, Error *e) {
    char *text = read_small_file(path, 64u << 20, e);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    int rc = -1, n = cJSON_IsObject(map) ? cJSON_GetArraySize(map) : 0;
    char **files = NULL;
    if (!cJSON_IsObject(map) || n < 1) {
        errorf(e, "%s: not a sharded-checkpoint index (no \"weight_map\" object of tensor -> shard file)", path);
        goto done;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else dir[0] = 0;
    // the distinct shard files, in order of first mention
    files = xcalloc((size_t)n, sizeof *files);
    const cJSON *it;
    cJSON_ArrayForEach(it, map) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strchr(it->valuestring, '/')) {
            errorf(e, "%s: weight_map[\"" ST_NAME_FMT "\"] must name a shard file beside the index", path, it->string);
            goto done;
        }
        int k = 0;
        while (k < f->n_shards && strcmp(files[k], it->valuestring)) k++;
        if (k == f->n_shards) files[f->n_shards++] = it->valuestring;
    }
    f->shards = xcalloc((size_t)f->n_shards, sizeof *f->shards);
    int total = 0;
    for (int k = 0; k < f->n_shards; k++) {
        char sp[8192];
        snprintf(sp, sizeof sp, "%s%s", dir, files[k]);
        if (st_open(&f->shards[k], sp, e)) {
            for (int j = k + 1; j < f->n_shards; j++) f->shards[j].fd = -1;
            goto done;
        }
        total += f->shards[k].n_tensors;
    }
    f->tensors = xcalloc((size_t)n, sizeof *f->tensors);
    cJSON_ArrayForEach(it, map) {
        int k = 0;
        while (strcmp(files[k], it->valuestring)) k++;
        const StTensor *t = st_find(&f->shards[k], it->string);
        if (!t) {
            errorf(e, "%s: weight_map puts tensor " ST_NAME_FMT " in %s, which does not hold it", path, it->string,
                   f->shards[k].path);
            goto done;
        }
        StTensor *d = &f->tensors[f->n_tensors++];
        *d = *t;
        d->name = xstrdup(t->name);
        d->shard = k + 1;
    }
    char **names = xmalloc((size_t)n * sizeof *names);
    for (int i = 0; i < n; i++) names[i] = f->tensors[i].name;
    const char *dup = find_duplicate(names, n);
    if (dup) errorf(e, "%s: weight_map names tensor " ST_NAME_FMT " twice", path, dup);
    free(names);
    if (dup) goto done;
    if (total != n) {  // a tensor in a shard that the map does not name would be silently ignored
        for (int k = 0; k < f->n_shards; k++)
            for (int i = 0; i < f->shards[k].n_tensors; i++)
                if (!st_find(f, f->shards[k].tensors[i].name)) {
                    errorf(e, "%s: %s holds tensor " ST_NAME_FMT ", which weight_map does not name", path,
                           f->shards[k].path, f->shards[k].tensors[i].name);
                    goto done;
                }
        errorf(e, "%s: a tensor is in more than one shard", path);  // counts differ, every name mapped
        goto done;
    }
    rc = 0;
done:
    free(files);
    cJSON_Delete(root);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int st_open(StFile *f, const char *path, Error *e) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = xstrdup(path);
    // *.safetensors.index.json, also with a variant (*.safetensors.index.fp16.json)
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int index = ends_with(base, ".json") && strstr(base, ".safetensors.index.");
    if (index ? open_index(f, path, e) : open_impl(f, path, e)) {
        st_close(f);  // frees whatever was built so far
        return -1;
    }
    return 0;
}

void st_close(StFile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int k = 0; k < f->n_shards; k++) st_close(&f->shards[k]);
    free(f->shards);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;  // a second st_close is harmless
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int st_read_f32(const StFile *f, const StTensor *t, float *dst, Error *e) {
    if (t->shard > 0 && t->shard <= f->n_shards) return st_read_f32(&f->shards[t->shard - 1], t, dst, e);
    const char *path = f->path ? f->path : "?", *name = t->name ? t->name : "?";
    size_t dsize = dtype_size(t->dtype);
    uint64_t data_size = f->file_size >= f->data_start ? f->file_size - f->data_start : 0;
    // Re-check so a hand-built StTensor cannot make us overrun dst.
    if (dsize == 0 || t->numel < 0 || (uint64_t)t->numel > UINT64_MAX / dsize ||
        t->end < t->begin || t->end - t->begin != (uint64_t)t->numel * dsize ||
        t->end > data_size || (uint64_t)t->numel > SIZE_MAX / 4)
        return errorf(e, "%s: tensor '" ST_NAME_FMT "' has inconsistent dtype/shape/offsets", path,
                      name);
    size_t n = (size_t)t->numel, nbytes = n * dsize;
    if (n == 0) return 0;
    // 2-byte dtypes land in the back half of dst and widen front to back:
    // writing float i (bytes 4i..4i+3) never reaches the unread half i+1
    // (at 2n+2i+2), so no second buffer is needed for multi-GB tensors.
    unsigned char *raw = (unsigned char *)dst + (4 - dsize) * n;
    int64_t r = pread_all(f->fd, raw, nbytes, f->data_start + t->begin);
    if (r < 0)
        return errorf(e, "%s: cannot read tensor '" ST_NAME_FMT "': %s", path, name,
                      strerror(errno));
    if ((uint64_t)r < nbytes)
        return errorf(e, "%s: file ended while reading tensor '" ST_NAME_FMT "' (truncated?)",
                      path, name);
    if (t->dtype == ST_F32) {
        if (!host_is_little_endian())
            for (size_t i = 0; i < n; i++) {
                uint32_t b = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 |
                             (uint32_t)raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24;
                memcpy(&dst[i], &b, 4);
            }
    } else {
        int bf = t->dtype == ST_BF16;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
            dst[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
        }
    }
    return 0;
}

// ---------------------------------------------------------------- writing

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static void buf_add(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 256;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_u64(Buf *b, uint64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    buf_add(b, tmp, (size_t)n);
}

// A JSON string literal; bytes >= 0x80 pass through (callers checked UTF-8).
static void buf_json_string(Buf *b, const char *s) {
    buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p;
            buf_add(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, (const char *)p, 1);
        }
    }
    buf_add(b, "\"", 1);
}

static int valid_utf8_str(const char *s) {
    return utf8_invalid_at((const unsigned char *)s, strlen(s)) < 0;
}

// Checks the inputs and builds the padded header; data offsets follow the
// given tensor order.
void st_outs_from_params(StOut *out, const ParamTable *pt, const float *params) {
    for (int i = 0; i < pt->n; i++) {
        const ParamTensor *p = &pt->t[i];
        out[i].name = p->name;
        out[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) out[i].shape[d] = p->shape[d];
        out[i].data = params + p->offset;
    }
}

static int build_header(const char *path, const StOut *ts, int n, const char *const *meta,
                        int n_meta, Buf *hdr, Error *e) {
    if (n < 0 || n_meta < 0 || (n > 0 && !ts) || (n_meta > 0 && !meta))
        return errorf(e, "%s: bad st_write arguments (n=%d, n_meta=%d)", path, n, n_meta);
    for (int i = 0; i < 2 * n_meta; i++)
        if (!meta[i] || !valid_utf8_str(meta[i]))
            return errorf(e, "%s: metadata %s %d is NULL or not valid UTF-8", path,
                          i % 2 ? "value" : "key", i / 2);
    char **keys = xmalloc((size_t)(n_meta ? n_meta : 1) * sizeof *keys);
    for (int i = 0; i < n_meta; i++) keys[i] = (char *)meta[2 * i];
    const char *dup = find_duplicate(keys, n_meta);
    int rc = dup ? errorf(e, "%s: duplicate metadata key '" ST_NAME_FMT "'", path, dup) : 0;
    free(keys);
    if (rc) return rc;

    char **names = xmalloc((size_t)(n ? n : 1) * sizeof *names);
    for (int i = 0; i < n && rc == 0; i++) {
        const StOut *t = &ts[i];
        names[i] = (char *)t->name;
        if (!t->name || !valid_utf8_str(t->name) || strcmp(t->name, "__metadata__") == 0)
            rc = errorf(e, "%s: tensor %d has a NULL, non-UTF-8 or reserved name", path, i);
        else if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
            rc = errorf(e, "%s: tensor '" ST_NAME_FMT "': ndim %d out of range 0..%d", path,
                        t->name, t->ndim, ST_MAX_DIMS);
        else {
            // Every number we write must read back exactly (JSON ints <= 2^53).
            int64_t numel = checked_numel(t->shape, t->ndim);
            int big = 0;
            for (int d = 0; d < t->ndim; d++) big |= (double)t->shape[d] > ST_MAX_JSON_INT;
            if (numel < 0 || big || (double)numel * 4 > ST_MAX_JSON_INT)
                rc = errorf(e, "%s: tensor '" ST_NAME_FMT "': bad shape (negative or too large)",
                            path, t->name);
            else if (numel > 0 && !t->data)
                rc = errorf(e, "%s: tensor '" ST_NAME_FMT "': data is NULL", path, t->name);
        }
    }
    if (rc == 0 && (dup = find_duplicate(names, n)))
        rc = errorf(e, "%s: duplicate tensor name '" ST_NAME_FMT "'", path, dup);
    free(names);
    if (rc) return rc;

    buf_str(hdr, "{");
    if (n_meta > 0) {
        buf_str(hdr, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) buf_str(hdr, ",");
            buf_json_string(hdr, meta[2 * i]);
            buf_str(hdr, ":");
            buf_json_string(hdr, meta[2 * i + 1]);
        }
        buf_str(hdr, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const StOut *t = &ts[i];
        uint64_t bytes = (uint64_t)checked_numel(t->shape, t->ndim) * 4;
        if (i || n_meta > 0) buf_str(hdr, ",");
        buf_json_string(hdr, t->name);
        buf_str(hdr, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) buf_str(hdr, ",");
            buf_u64(hdr, (uint64_t)t->shape[d]);
        }
        buf_str(hdr, "],\"data_offsets\":[");
        buf_u64(hdr, off);
        buf_str(hdr, ",");
        if ((double)off + (double)bytes > ST_MAX_JSON_INT)
            return errorf(e, "%s: total tensor size is too large", path);
        off += bytes;
        buf_u64(hdr, off);
        buf_str(hdr, "]}");
    }
    buf_str(hdr, "}");
    // Spaces up to a multiple of 8 so the data section starts 8-byte aligned.
    while (hdr->len % 8) buf_str(hdr, " ");
    return 0;
}

static int write_tensor_data(int fd, const StOut *t) {
    size_t n = (size_t)checked_numel(t->shape, t->ndim);
    if (n == 0) return 0;
    if (host_is_little_endian()) return write_all(fd, t->data, n * 4);
    unsigned char chunk[4096];
    for (size_t i = 0; i < n;) {
        size_t m = 0;
        for (; i < n && m + 4 <= sizeof chunk; i++, m += 4) {
            uint32_t b;
            memcpy(&b, &t->data[i], 4);
            for (int k = 0; k < 4; k++) chunk[m + (size_t)k] = (unsigned char)(b >> (8 * k));
        }
        if (write_all(fd, chunk, m)) return -1;
    }
    return 0;
}

// fsync the directory holding path so the rename itself is durable.
static int sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrdup(path) : xstrdup(".");
    if (slash) dir[slash == path ? 1 : (size_t)(slash - path)] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    int saved = errno;
    free(dir);
    errno = saved;
    if (fd < 0) return -1;
    // Some filesystems cannot fsync a directory; that is not a write failure.
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) rc = -1;
    close(fd);
    return rc;
}

int st_write(const char *path, const StOut *tensors, int n, const char *const *meta, int n_meta,
             Error *e) {
    Buf hdr = {0};
    if (build_header(path, tensors, n, meta, n_meta, &hdr, e)) {
        free(hdr.p);
        return -1;
    }
    size_t tlen = strlen(path) + 32;
    char *tmp = xmalloc(tlen);
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());

    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        rc = errorf(e, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)hdr.len >> (8 * i));
    int bad = write_all(fd, lenb, 8) || write_all(fd, hdr.p, hdr.len);
    for (int i = 0; i < n && !bad; i++) bad = write_tensor_data(fd, &tensors[i]);
    if (bad) rc = errorf(e, "%s: cannot write %s: %s", path, tmp, strerror(errno));
    else if (fsync(fd) != 0) rc = errorf(e, "%s: cannot fsync %s: %s", path, tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = errorf(e, "%s: cannot close %s: %s", path, tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = errorf(e, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc) {
        unlink(tmp);  // the old file (if any) is untouched
        goto done;
    }
    if (sync_parent_dir(path) != 0)
        rc = errorf(e, "%s: written, but cannot fsync its directory: %s", path, strerror(errno));
done:
    free(tmp);
    free(hdr.p);
    return rc;
}
