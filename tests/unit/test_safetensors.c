// test_safetensors.c — safetensors reading and writing: round trip, F16/BF16
// conversion, a file from the Python reference package, and one check per
// malformed-input rule (each must fail with its own specific message).
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "testutil.h"

typedef struct {
    char dir[256];
} Tmp;

static const char *tmp_path(const Tmp *t, const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", t->dir, name);
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) FATAL("cannot create %s", path);
    if (n && fwrite(data, 1, n, fp) != n) FATAL("cannot write %s", path);
    fclose(fp);
}

// A file with header length = strlen(json) (or len_override if nonzero),
// the JSON, then data_len bytes of data (from data, or zeros).
static void write_st(const char *path, const char *json, const void *data, size_t data_len,
                     uint64_t len_override) {
    size_t jn = strlen(json);
    uint64_t hl = len_override ? len_override : jn;
    unsigned char *buf = xcalloc(8 + jn + data_len, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, json, jn);
    if (data) memcpy(buf + 8 + jn, data, data_len);
    write_bytes(path, buf, 8 + jn + data_len);
    free(buf);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// st_open must fail, name the file and say `want`.
static void expect_open_fail(const char *path, const char *want, const char *what) {
    StFile f;
    Error e = {0};
    int rc = st_open(&f, path, &e);
    EXPECT(rc == -1, "%s: st_open should fail", what);
#ifdef ST_TEST_VERBOSE
    printf("%-28s %s\n", what, e.msg);
#endif
    EXPECT(strstr(e.msg, want) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, want);
    EXPECT(strstr(e.msg, path) != NULL, "%s: message '%s' lacks the path", what, e.msg);
    EXPECT(f.fd == -1 && f.tensors == NULL && f.n_tensors == 0, "%s: state not reset", what);
    if (rc == 0) st_close(&f);
}

static void expect_open_ok(const char *path, const char *what) {
    StFile f;
    Error e = {0};
    int rc = st_open(&f, path, &e);
    EXPECT(rc == 0, "%s: st_open failed: %s", what, e.msg);
    if (rc == 0) st_close(&f);
}

// ---------------------------------------------------------------- round trip

static void test_round_trip(const Tmp *tmp) {
    char path[512];
    tmp_path(tmp, "rt.safetensors", path, sizeof path);
    TuRng rng;
    tu_rng_seed(&rng, 42);
    float conv[2 * 3 * 2 * 2], bias[3], scalar = -1.25f, big[5 * 7 * 3];
    tu_fill(&rng, conv, 24, -3, 3);
    tu_fill(&rng, bias, 3, -1, 1);
    tu_fill(&rng, big, 105, -100, 100);
    // Values that must survive bit for bit: -0, inf, NaN with payload, subnormal.
    uint32_t specials[4] = {0x80000000u, 0x7f800000u, 0x7fc12345u, 0x00000001u};
    for (int i = 0; i < 4; i++) memcpy(&big[i], &specials[i], 4);
    StOut outs[5] = {
        {"conv.weight", 4, {2, 3, 2, 2}, conv},
        {"bias", 1, {3}, bias},
        {"scalar", 0, {0}, &scalar},
        {"empty", 2, {0, 4}, NULL},
        {"blocks.0.\"odd\\name\"", 3, {5, 7, 3}, big},
    };
    const char *meta[4] = {"format", "pt", "note", "line1\nline2 \"quoted\" caf\xc3\xa9"};
    Error e = {0};
    EXPECT(st_write(path, outs, 5, meta, 2, &e) == 0, "st_write: %s", e.msg);

    char tmpname[1024];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", path, (long)getpid());
    EXPECT(!file_exists(tmpname), "temp file %s left behind", tmpname);

    StFile f;
    if (st_open(&f, path, &e) != 0) {
        EXPECT(0, "st_open of written file: %s", e.msg);
        return;
    }
    EXPECT(f.data_start % 8 == 0, "data starts at %llu, not 8-aligned",
           (unsigned long long)f.data_start);
    EXPECT(f.n_tensors == 5, "n_tensors %d", f.n_tensors);
    for (int i = 0; i < 5 && i < f.n_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        EXPECT(strcmp(t->name, outs[i].name) == 0, "order: tensor %d is %s", i, t->name);
        EXPECT(t->dtype == ST_F32 && t->ndim == outs[i].ndim, "%s dtype/ndim", t->name);
        for (int d = 0; d < t->ndim; d++)
            EXPECT(t->shape[d] == outs[i].shape[d], "%s shape[%d]", t->name, d);
        float got[105] = {0};
        EXPECT(st_read_f32(&f, t, got, &e) == 0, "read %s: %s", t->name, e.msg);
        EXPECT(t->numel == 0 || memcmp(got, outs[i].data, (size_t)t->numel * 4) == 0,
               "%s not bit-exact", t->name);
    }
    const StTensor *s = st_find(&f, "scalar");
    EXPECT(s && s->ndim == 0 && s->numel == 1, "scalar tensor: numel 1, ndim 0");
    const StTensor *em = st_find(&f, "empty");
    EXPECT(em && em->numel == 0 && em->begin == em->end, "empty tensor: numel 0");
    EXPECT(st_find(&f, "nope") == NULL, "st_find of a missing name");
    EXPECT(f.n_meta == 2, "n_meta %d", f.n_meta);
    EXPECT(st_meta(&f, "format") && strcmp(st_meta(&f, "format"), "pt") == 0, "meta format");
    EXPECT(st_meta(&f, "note") && strcmp(st_meta(&f, "note"), meta[3]) == 0, "meta note");
    EXPECT(st_meta(&f, "absent") == NULL, "st_meta of a missing key");
    st_close(&f);
    st_close(&f);  // a second close is a no-op

    // __metadata__ comes first and the header is space-padded.
    FILE *fp = fopen(path, "rb");
    char head[32] = {0};
    EXPECT(fp && fread(head, 1, 24, fp) == 24, "reread header");
    if (fp) fclose(fp);
    EXPECT(memcmp(head + 8, "{\"__metadata__\"", 15) == 0, "header starts %.16s", head + 8);

    // Overwrite: a failing write (duplicate names) leaves the old file intact.
    struct stat before, after;
    stat(path, &before);
    StOut dup[2] = {{"a", 1, {1}, &scalar}, {"a", 1, {1}, &scalar}};
    EXPECT(st_write(path, dup, 2, NULL, 0, &e) == -1, "duplicate names must fail");
    EXPECT(strstr(e.msg, "duplicate") && strstr(e.msg, path), "dup write msg: %s", e.msg);
    StOut bad_ndim = {"x", ST_MAX_DIMS + 1, {0}, &scalar};
    EXPECT(st_write(path, &bad_ndim, 1, NULL, 0, &e) == -1, "ndim 9 must fail");
    StOut bad_dim = {"x", 1, {-3}, &scalar};
    EXPECT(st_write(path, &bad_dim, 1, NULL, 0, &e) == -1, "negative dim must fail");
    StOut reserved = {"__metadata__", 1, {1}, &scalar}, one_f = {"x", 1, {1}, &scalar};
    EXPECT(st_write(path, &reserved, 1, NULL, 0, &e) == -1, "reserved name must fail");
    StOut no_data = {"x", 1, {2}, NULL};
    EXPECT(st_write(path, &no_data, 1, NULL, 0, &e) == -1 && strstr(e.msg, "NULL"),
           "NULL data must fail: %s", e.msg);
    const char *bad_meta[2] = {"k", NULL}, *bad_key[2] = {"\xff", "v"};
    EXPECT(st_write(path, &one_f, 1, bad_meta, 1, &e) == -1, "NULL metadata value must fail");
    EXPECT(st_write(path, &one_f, 1, bad_key, 1, &e) == -1, "non-UTF-8 metadata key must fail");
    const char *dup_meta[4] = {"k", "1", "k", "2"};
    EXPECT(st_write(path, &one_f, 1, dup_meta, 2, &e) == -1 && strstr(e.msg, "duplicate"),
           "duplicate metadata keys must fail: %s", e.msg);
    stat(path, &after);
    EXPECT(before.st_size == after.st_size && before.st_ino == after.st_ino,
           "failed writes must not touch the existing file");
    expect_open_ok(path, "file after failed writes");

    // A successful overwrite replaces it (no metadata: header is just tensors).
    StOut one = {"only", 1, {3}, bias};
    EXPECT(st_write(path, &one, 1, NULL, 0, &e) == 0, "overwrite: %s", e.msg);
    if (st_open(&f, path, &e) == 0) {
        EXPECT(f.n_tensors == 1 && f.n_meta == 0, "overwritten file has 1 tensor, no meta");
        st_close(&f);
    }

    // Failures at the file-system level name the path and leave no temp.
    char nodir[1024];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", tmp->dir);
    EXPECT(st_write(nodir, &one, 1, NULL, 0, &e) == -1, "write into missing dir must fail");
    EXPECT(strstr(e.msg, nodir) != NULL, "missing-dir msg names path: %s", e.msg);
    char isdir[512];
    tmp_path(tmp, "a_dir", isdir, sizeof isdir);
    mkdir(isdir, 0755);
    char inner[1024];
    snprintf(inner, sizeof inner, "%s/keep", isdir);
    write_bytes(inner, "x", 1);  // non-empty: rename over it fails
    EXPECT(st_write(isdir, &one, 1, NULL, 0, &e) == -1, "rename over a directory must fail");
    EXPECT(strstr(e.msg, isdir) != NULL, "rename msg names path: %s", e.msg);
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", isdir, (long)getpid());
    EXPECT(!file_exists(tmpname), "temp file removed after failed rename");
    unlink(inner);
    rmdir(isdir);

    // Zero tensors, zero metadata: a valid, empty file.
    EXPECT(st_write(path, NULL, 0, NULL, 0, &e) == 0, "empty write: %s", e.msg);
    if (st_open(&f, path, &e) == 0) {
        EXPECT(f.n_tensors == 0 && f.n_meta == 0 && f.data_start == 16, "empty file layout");
        st_close(&f);
    } else {
        EXPECT(0, "open empty file: %s", e.msg);
    }
    unlink(path);
}

// ---------------------------------------------------------------- F16 / BF16

static void test_half_formats(const Tmp *tmp) {
    char path[512];
    tmp_path(tmp, "half.safetensors", path, sizeof path);
    // F16: 1.0, -2.5, 65504, smallest subnormal 2^-24, largest subnormal,
    // -inf, +inf, NaN, -0.  BF16: 1.0, -2.5, 2^-133 (subnormal), inf.
    const uint16_t h16[9] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x03ff, 0xfc00, 0x7c00, 0x7e00, 0x8000};
    const float f16_want[9] = {1.0f, -2.5f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f,
                               -INFINITY, INFINITY, NAN, -0.0f};
    const uint16_t hb[4] = {0x3f80, 0xc020, 0x0001, 0x7f80};
    const float bf_want[4] = {1.0f, -2.5f, 0x1p-133f, INFINITY};
    unsigned char data[26];
    for (int i = 0; i < 9; i++) data[2 * i] = h16[i] & 0xff, data[2 * i + 1] = h16[i] >> 8;
    for (int i = 0; i < 4; i++)
        data[18 + 2 * i] = hb[i] & 0xff, data[18 + 2 * i + 1] = hb[i] >> 8;
    write_st(path,
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[3,3],\"data_offsets\":[0,18]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[18,26]}}",
             data, sizeof data, 0);
    StFile f;
    Error e = {0};
    if (st_open(&f, path, &e) != 0) {
        EXPECT(0, "open half file: %s", e.msg);
        return;
    }
    const StTensor *th = st_find(&f, "h"), *tb = st_find(&f, "b");
    EXPECT(th && th->dtype == ST_F16 && th->numel == 9, "F16 tensor parsed");
    EXPECT(tb && tb->dtype == ST_BF16 && tb->numel == 4, "BF16 tensor parsed");
    EXPECT(strcmp(st_dtype_name(ST_F16), "F16") == 0 && strcmp(st_dtype_name(ST_BF16), "BF16") == 0,
           "dtype names");
    float got[9];
    if (th && st_read_f32(&f, th, got, &e) == 0) {
        for (int i = 0; i < 9; i++) {
            int same = isnan(f16_want[i]) ? isnan(got[i]) : bits_of(got[i]) == bits_of(f16_want[i]);
            EXPECT(same, "F16 %04x -> %g, want %g", h16[i], got[i], f16_want[i]);
        }
    } else {
        EXPECT(0, "read F16: %s", e.msg);
    }
    if (tb && st_read_f32(&f, tb, got, &e) == 0) {
        for (int i = 0; i < 4; i++)
            EXPECT(bits_of(got[i]) == bits_of(bf_want[i]), "BF16 %04x -> %g, want %g", hb[i],
                   got[i], bf_want[i]);
    } else {
        EXPECT(0, "read BF16: %s", e.msg);
    }
    st_close(&f);

    // Every one of the 65536 halves: exact, checked against a double formula.
    uint16_t *all = xmalloc(65536 * 2);
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;  // host is little-endian here
    write_st(path, "{\"all\":{\"dtype\":\"F16\",\"shape\":[65536],\"data_offsets\":[0,131072]}}",
             all, 131072, 0);
    free(all);
    float *v = xmalloc(65536 * sizeof(float));
    if (st_open(&f, path, &e) == 0 && st_read_f32(&f, &f.tensors[0], v, &e) == 0) {
        int bad = 0;
        for (int i = 0; i < 65536; i++) {
            int ex = (i >> 10) & 31, man = i & 1023;
            double want = ex == 0 ? ldexp(man, -24)
                          : ex == 31 ? (man ? NAN : INFINITY)
                                     : ldexp(1024 + man, ex - 25);
            if (i & 0x8000) want = -want;
            int ok = isnan(want) ? isnan(v[i]) && (bits_of(v[i]) >> 31) == (unsigned)(i >> 15)
                                 : (double)v[i] == want && !signbit(v[i]) == !signbit(want);
            bad += !ok;
        }
        EXPECT(bad == 0, "%d of 65536 F16 values converted wrongly", bad);
    } else {
        EXPECT(0, "all-halves file: %s", e.msg);
    }
    st_close(&f);
    free(v);
    unlink(path);
}

// ---------------------------------------------------------------- Python reference file

static void test_python_fixture(void) {
    const char *path = LD_SOURCE_DIR "/tests/unit/data/py_small.safetensors";
    StFile f;
    Error e = {0};
    if (st_open(&f, path, &e) != 0) {
        EXPECT(0, "open Python fixture: %s", e.msg);
        return;
    }
    EXPECT(f.n_tensors == 10, "fixture has %d tensors", f.n_tensors);
    EXPECT(st_meta(&f, "format") && strcmp(st_meta(&f, "format"), "pt") == 0, "meta format");
    EXPECT(st_meta(&f, "producer") && strcmp(st_meta(&f, "producer"), "make_py_small.py") == 0,
           "meta producer");
    // Each half tensor against torch's own fp32 conversion, bit for bit.
    const char *halves[4] = {"f16.values", "f16.scalar", "bf16.values", "bf16.empty"};
    for (int k = 0; k < 4; k++) {
        char ename[64];
        snprintf(ename, sizeof ename, "expect.%s", halves[k]);
        const StTensor *t = st_find(&f, halves[k]), *x = st_find(&f, ename);
        if (!t || !x) {
            EXPECT(0, "fixture lacks %s or %s", halves[k], ename);
            continue;
        }
        EXPECT(t->numel == x->numel && t->ndim == x->ndim, "%s shape", halves[k]);
        float a[16] = {0}, b[16] = {0};
        EXPECT(t->numel <= 16, "%s small", halves[k]);
        if (t->numel > 16) continue;
        EXPECT(st_read_f32(&f, t, a, &e) == 0, "read %s: %s", halves[k], e.msg);
        EXPECT(st_read_f32(&f, x, b, &e) == 0, "read %s: %s", ename, e.msg);
        for (int i = 0; i < t->numel; i++)
            EXPECT(bits_of(a[i]) == bits_of(b[i]), "%s[%d]: C %08x, torch %08x", halves[k], i,
                   bits_of(a[i]), bits_of(b[i]));
    }
    const StTensor *t = st_find(&f, "f16.values");
    float v[16];
    if (t && t->dtype == ST_F16 && t->numel == 12 && st_read_f32(&f, t, v, &e) == 0) {
        EXPECT(v[0] == 1.0f && v[1] == -2.5f && v[2] == 65504.0f && v[3] == 0x1p-24f,
               "f16 hard-coded values");
        EXPECT(isinf(v[7]) && v[7] > 0 && isnan(v[9]) && v[10] == 0.0999755859375f,
               "f16 inf/nan/0.1");
    } else {
        EXPECT(0, "f16.values missing or unreadable");
    }
    t = st_find(&f, "f32.matrix");
    if (t && t->dtype == ST_F32 && t->numel == 6 && st_read_f32(&f, t, v, &e) == 0) {
        EXPECT(v[0] == 1.0f && v[1] == -2.5f && v[2] == 3.25f && v[3] == 0.1f && v[4] == 1e-40f &&
                   bits_of(v[5]) == 0x80000000u,
               "f32.matrix values");
    } else {
        EXPECT(0, "f32.matrix missing or unreadable");
    }
    t = st_find(&f, "bf16.values");
    if (t && t->dtype == ST_BF16 && t->ndim == 3 && st_read_f32(&f, t, v, &e) == 0)
        EXPECT(v[0] == 1.0f && v[1] == -2.5f && isinf(v[4]) && v[3] == 0x1p-133f, "bf16 values");
    else
        EXPECT(0, "bf16.values missing or unreadable");
    t = st_find(&f, "f32.scalar");
    EXPECT(t && t->ndim == 0 && t->numel == 1 && st_read_f32(&f, t, v, &e) == 0 && v[0] == 7.5f,
           "f32.scalar");
    st_close(&f);
}

// ---------------------------------------------------------------- malformed input

typedef struct {
    const char *what, *json;
    size_t data_len;
    const char *want;
} BadCase;

#define T(n, d, s, o) "\"" n "\":{\"dtype\":\"" d "\",\"shape\":" s ",\"data_offsets\":" o "}"

static const BadCase bad_cases[] = {
    {"not JSON", "{\"a\": ", 0, "not valid JSON"},
    {"trailing garbage", "{} x", 0, "not valid JSON"},
    {"empty header", "", 0, "not valid JSON"},
    {"control byte", "{\"a\x01\":1}", 0, "control byte"},
    {"bad UTF-8", "{\"\xff\":1}", 0, "not valid UTF-8"},
    {"overlong UTF-8", "{\"\xc0\xaf\":1}", 0, "not valid UTF-8"},
    {"UTF-8 surrogate", "{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8"},
    {"UTF-8 cut short", "{\"\xe2\x82\":1}", 0, "not valid UTF-8"},
    {"UTF-8 above U+10FFFF", "{\"\xf4\x90\x80\x80\":1}", 0, "not valid UTF-8"},
    {"array root", "[1, 2]", 0, "not a JSON object"},
    {"string root", "\"hi\"", 0, "not a JSON object"},
    {"entry not object", "{\"a\": 5}", 0, "tensor 'a' is not an object"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\""},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing \"shape\""},
    {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing \"data_offsets\""},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],"
                        "\"data_offsets\":[0,4]}}", 4, "duplicate \"dtype\""},
    {"dtype not string", "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "\"dtype\" must be a string"},
    {"unknown dtype", "{" T("a", "I64", "[1]", "[0,8]") "}", 8, "I64 is not supported (F32, F16, BF16)"},
    {"lowercase dtype", "{" T("a", "f32", "[1]", "[0,4]") "}", 4, "unknown dtype"},
    {"shape not array", "{" T("a", "F32", "\"1\"", "[0,4]") "}", 4, "\"shape\" must be an array"},
    {"shape object", "{" T("a", "F32", "{}", "[0,4]") "}", 4, "\"shape\" must be an array"},
    {"shape negative", "{" T("a", "F32", "[-1]", "[0,4]") "}", 4, "shape[0] must be a non-negative integer"},
    {"shape fraction", "{" T("a", "F32", "[1,1.5]", "[0,4]") "}", 4, "shape[1] must be a non-negative integer"},
    {"shape string", "{" T("a", "F32", "[\"1\"]", "[0,4]") "}", 4, "shape[0] must be a non-negative integer"},
    {"shape null", "{" T("a", "F32", "[null]", "[0,4]") "}", 4, "shape[0] must be a non-negative integer"},
    {"shape huge", "{" T("a", "F32", "[1e300]", "[0,4]") "}", 4, "shape[0] must be a non-negative integer"},
    {"too many dims", "{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "too many dims"},
    {"numel overflow", "{" T("a", "F32", "[4294967296,4294967296,4]", "[0,4]") "}", 4, "overflow"},
    {"numel 2^63", "{" T("a", "F32", "[2147483648,2147483648,2]", "[0,4]") "}", 4, "overflow"},
    {"bytes overflow", "{" T("a", "F32", "[2147483648,2147483648]", "[0,4]") "}", 4, "overflow"},
    {"dim above 2^53", "{" T("a", "F32", "[18014398509481984]", "[0,4]") "}", 4, "non-negative integer"},
    {"offsets not array", "{" T("a", "F32", "[1]", "4") "}", 4, "must be an array of 2"},
    {"offsets 1 elem", "{" T("a", "F32", "[1]", "[4]") "}", 4, "must be an array of 2"},
    {"offsets 3 elems", "{" T("a", "F32", "[1]", "[0,4,8]") "}", 8, "must be an array of 2"},
    {"offset negative", "{" T("a", "F32", "[1]", "[-4,0]") "}", 4, "non-negative integers"},
    {"offset fraction", "{" T("a", "F32", "[1]", "[0,4.5]") "}", 8, "non-negative integers"},
    {"offset string", "{" T("a", "F32", "[1]", "[\"0\",4]") "}", 4, "non-negative integers"},
    {"end < begin", "{" T("a", "F32", "[0]", "[8,4]") "}", 8, "end < begin"},
    {"beyond data", "{" T("a", "F32", "[4]", "[0,16]") "}", 8, "beyond the data section"},
    {"beyond data far", "{" T("a", "F32", "[1]", "[1000000,1000004]") "}", 8, "beyond the data section"},
    {"size mismatch", "{" T("a", "F32", "[2]", "[0,12]") "}", 12, "needs 8"},
    {"size mismatch f16", "{" T("a", "F16", "[2,2]", "[0,4]") "}", 12, "needs 8"},
    {"scalar mismatch", "{" T("a", "BF16", "[]", "[0,4]") "}", 4, "needs 2"},
    {"overlap", "{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[4,12]") "}", 12, "overlap"},
    {"overlap same", "{" T("a", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[0,4]") "}", 4, "overlap"},
    {"overlap nested", "{" T("a", "F32", "[4]", "[0,16]") "," T("c", "F32", "[1]", "[20,24]") ","
                       T("b", "F32", "[1]", "[4,8]") "}", 24, "overlap"},
    {"meta not object", "{\"__metadata__\":[\"a\"]}", 0, "\"__metadata__\" must be an object"},
    {"meta string", "{\"__metadata__\":\"x\"}", 0, "\"__metadata__\" must be an object"},
    {"meta value number", "{\"__metadata__\":{\"k\":1}}", 0, "value for 'k' must be a string"},
    {"meta value object", "{\"__metadata__\":{\"k\":{}}}", 0, "value for 'k' must be a string"},
    {"meta duplicate key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate __metadata__ key 'k'"},
    {"duplicate metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate \"__metadata__\""},
    {"duplicate name", "{" T("a", "F32", "[1]", "[0,4]") "," T("a", "F32", "[1]", "[4,8]") "}", 8,
     "duplicate tensor name 'a'"},
    {"duplicate name far", "{" T("x", "F32", "[1]", "[0,4]") "," T("y", "F32", "[1]", "[4,8]") ","
                           T("x", "F32", "[0]", "[8,8]") "}", 8, "duplicate tensor name 'x'"},
};

static const struct {
    const char *what, *json;
    size_t data_len;
} good_cases[] = {
    {"empty object", "{}", 0},
    {"space padded", "{}      ", 0},
    {"newline padded", "{\"__metadata__\":{}}\n\t ", 0},
    {"scalar F16", "{" T("a", "F16", "[]", "[0,2]") "}", 2},
    {"zero dim", "{" T("a", "F32", "[0,5]", "[4,4]") "," T("b", "F32", "[1]", "[0,4]") "}", 4},
    {"empty tensors inside others", "{" T("a", "F32", "[2]", "[0,8]") "," T("e", "F32", "[0]", "[4,4]") "}", 8},
    {"hole between tensors", "{" T("a", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[8,12]") "}", 16},
    {"unknown field ignored", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4},
    {"8 dims", "{" T("a", "F32", "[1,1,1,1,1,1,1,2]", "[0,8]") "}", 8},
    {"UTF-8 name", "{" T("caf\xc3\xa9.\xe2\x82\xac.\xf0\x9f\x98\x80", "F32", "[1]", "[0,4]") "}", 4},
};

static void test_malformed(const Tmp *tmp) {
    char path[512];
    size_t nbad = sizeof bad_cases / sizeof bad_cases[0];
    for (size_t i = 0; i < nbad; i++) {
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        tmp_path(tmp, name, path, sizeof path);
        write_st(path, bad_cases[i].json, NULL, bad_cases[i].data_len, 0);
        expect_open_fail(path, bad_cases[i].want, bad_cases[i].what);
        unlink(path);
    }
    size_t ngood = sizeof good_cases / sizeof good_cases[0];
    for (size_t i = 0; i < ngood; i++) {
        tmp_path(tmp, "good.safetensors", path, sizeof path);
        write_st(path, good_cases[i].json, NULL, good_cases[i].data_len, 0);
        expect_open_ok(path, good_cases[i].what);
        unlink(path);
    }

    // File-level problems.
    tmp_path(tmp, "missing.safetensors", path, sizeof path);
    expect_open_fail(path, "cannot open", "missing file");
    expect_open_fail(tmp->dir, "not a regular file", "directory");
    tmp_path(tmp, "short.safetensors", path, sizeof path);
    write_bytes(path, "\x02\0\0\0\0\0\0", 7);
    expect_open_fail(path, "shorter than 8 bytes", "7-byte file");
    write_bytes(path, "", 0);
    expect_open_fail(path, "shorter than 8 bytes", "empty file");
    write_st(path, "{}", NULL, 0, 100);
    expect_open_fail(path, "beyond the end of the file", "header length past EOF");
    write_st(path, "{}", NULL, 0, 9);
    expect_open_fail(path, "beyond the end of the file", "header length one past EOF");
    write_st(path, "{}", NULL, 0, 200000000);
    expect_open_fail(path, "too large", "200 MB header length");
    write_st(path, "{}", NULL, 0, UINT64_MAX);
    expect_open_fail(path, "too large", "2^64-1 header length");
    unlink(path);
    if (getuid() != 0) {  // root reads anything
        tmp_path(tmp, "noperm.safetensors", path, sizeof path);
        write_st(path, "{}", NULL, 0, 0);
        chmod(path, 0);
        expect_open_fail(path, "cannot open", "unreadable file");
        unlink(path);
    }

    // A file truncated after st_open: the read fails cleanly.
    tmp_path(tmp, "trunc.safetensors", path, sizeof path);
    write_st(path, "{" T("a", "F32", "[4]", "[0,16]") "}", NULL, 16, 0);
    StFile f;
    Error e = {0};
    if (st_open(&f, path, &e) == 0) {
        EXPECT(truncate(path, 20) == 0, "truncate: %s", strerror(errno));
        float v[4];
        EXPECT(st_read_f32(&f, &f.tensors[0], v, &e) == -1, "read of truncated file must fail");
        EXPECT(strstr(e.msg, "ended") && strstr(e.msg, path), "truncated msg: %s", e.msg);
        // A hand-made StTensor that disagrees with itself is refused, not read.
        StTensor fake = f.tensors[0];
        fake.numel = 1000;
        EXPECT(st_read_f32(&f, &fake, v, &e) == -1 && strstr(e.msg, "inconsistent"),
               "inconsistent tensor: %s", e.msg);
        st_close(&f);
    } else {
        EXPECT(0, "open before truncate: %s", e.msg);
    }
    unlink(path);
}

int main(void) {
    Tmp tmp;
    snprintf(tmp.dir, sizeof tmp.dir, "%s/st_test_XXXXXX", LD_BINARY_DIR);
    if (!mkdtemp(tmp.dir)) FATAL("mkdtemp %s: %s", tmp.dir, strerror(errno));
    test_round_trip(&tmp);
    test_half_formats(&tmp);
    test_python_fixture();
    test_malformed(&tmp);
    rmdir(tmp.dir);
    return tu_report("test_safetensors");
}
