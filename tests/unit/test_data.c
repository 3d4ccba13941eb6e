// test_data.c — the data layer: the real Fashion-MNIST (counts, labels, range,
// padding, a pixel checksum), hand-made IDX files (each malformation with its
// own message), captions and contexts, caption dropout, the epoch permutation,
// and the HDF5 reader (shards, conversion, shape errors) through Dataset too.
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/conditioning.h"
#include "io/config.h"
#include "data/dataset.h"
#include "data/fmnist.h"
#include "data/h5data.h"
#include "testutil.h"

static char tmpdir[64];

static const char *tmp(const char *name) {
    static char buf[4][512];  // a few live at once (images + labels paths)
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void expect_err(const char *msg, const char *want, const char *what) {
#ifdef DATA_TEST_VERBOSE
    printf("%-28s %s\n", what, msg);
#endif
    EXPECT(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'", what, msg, want);
}

// ------------------------------------------------------------- real dataset

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void check_real_split(const char *split, int want_n, uint64_t want_hash, double want_sum) {
    Fmnist f;
    Error e = {0};
    if (fmnist_load(&f, FMNIST_DEFAULT_DIR, split, &e)) {
        EXPECT(0, "load %s: %s", split, e.msg);
        return;
    }
    EXPECT(f.n == want_n, "%s: %d images, want %d", split, f.n, want_n);
    int hist[FMNIST_CLASSES] = {0};
    for (int i = 0; i < f.n; i++) hist[f.labels[i]]++;
    for (int c = 0; c < FMNIST_CLASSES; c++)
        EXPECT(hist[c] == want_n / 10, "%s: class %d has %d images", split, c, hist[c]);
    float x[FMNIST_SIDE * FMNIST_SIDE];
    float lo = 2, hi = -2;
    double sum = 0;
    int pad_ok = 1;
    for (int i = 0; i < f.n; i++) {
        fmnist_image(&f, i, x);
        for (int r = 0; r < FMNIST_SIDE; r++)
            for (int c = 0; c < FMNIST_SIDE; c++) {
                float v = x[r * FMNIST_SIDE + c];
                int inner = r >= FMNIST_PAD && r < FMNIST_PAD + FMNIST_SRC && c >= FMNIST_PAD &&
                            c < FMNIST_PAD + FMNIST_SRC;
                if (!inner && v != -1.0f) pad_ok = 0;
                if (v < lo) lo = v;
                if (v > hi) hi = v;
                sum += v;
            }
    }
    EXPECT(lo == -1.0f && hi == 1.0f, "%s: range [%g, %g], want exactly [-1, 1]", split, lo, hi);
    EXPECT(pad_ok, "%s: padding is not all -1", split);
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, f.pixels, (size_t)f.n * 784);
    h = fnv1a(h, f.labels, (size_t)f.n);
    EXPECT(h == want_hash, "%s: pixel+label FNV-1a %016llx, want %016llx", split,
           (unsigned long long)h, (unsigned long long)want_hash);
    EXPECT(fabs(sum - want_sum) < 1e-6 * fabs(want_sum), "%s: sum of inputs %.6f, want %.6f",
           split, sum, want_sum);
    fmnist_free(&f);
}

static void test_real_fmnist(void) {
    check_real_split("train", 60000, 0x47041d1f3a1991feULL, -34529300.216855);
    check_real_split("test", 10000, 0x7625417625bda6cfULL, -5742203.207848);
    EXPECT(!strcmp(fmnist_class_name(0), "T-shirt/top") &&
               !strcmp(fmnist_class_name(9), "Ankle boot"),
           "official class names");
}

// ------------------------------------------------------------ made IDX files

// IDX bytes: images [n, rows, cols] (value (i*7 + k) % 256) or labels.
static uint8_t *idx_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t *len) {
    *len = 16 + (size_t)n * rows * cols;
    uint8_t *b = xmalloc(*len);
    uint32_t h[4] = {magic, n, rows, cols};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) b[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
    for (size_t k = 16; k < *len; k++) b[k] = (uint8_t)((k - 16) * 7 % 256);
    return b;
}

static uint8_t *idx_labels(uint32_t magic, uint32_t n, const uint8_t *labels, size_t *len) {
    *len = 8 + n;
    uint8_t *b = xmalloc(*len);
    uint32_t h[2] = {magic, n};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) b[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
    memcpy(b + 8, labels, n);
    return b;
}

static void write_raw(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(p, 1, n, fp) == n);
    fclose(fp);
}

static void write_gz(const char *path, const void *p, size_t n) {
    gzFile g = gzopen(path, "wb");
    CHECK(g && gzwrite(g, p, (unsigned)n) == (int)n);
    gzclose(g);
}

static uint8_t *read_raw(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    CHECK(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = xmalloc(*n);
    CHECK(fread(b, 1, *n, fp) == *n);
    fclose(fp);
    return b;
}

#define IMG "train-images-idx3-ubyte.gz"
#define LBL "train-labels-idx1-ubyte.gz"

// Writes a good 3-image train split into tmpdir.
static void write_good(void) {
    static const uint8_t labels[3] = {0, 9, 5};
    size_t n;
    uint8_t *b = idx_images(0x803, 3, 28, 28, &n);
    write_gz(tmp(IMG), b, n);
    free(b);
    b = idx_labels(0x801, 3, labels, &n);
    write_gz(tmp(LBL), b, n);
    free(b);
}

static void expect_load_fail(const char *want, const char *file, const char *what) {
    Fmnist f;
    Error e = {0};
    int rc = fmnist_load(&f, tmpdir, "train", &e);
    EXPECT(rc == -1, "%s: load should fail", what);
    expect_err(e.msg, want, what);
    expect_err(e.msg, file, what);
    EXPECT(f.pixels == NULL && f.labels == NULL, "%s: left data behind", what);
    if (!rc) fmnist_free(&f);
}

static void test_made_idx(void) {
    Fmnist f;
    Error e = {0};
    size_t n;
    write_good();
    EXPECT(fmnist_load(&f, tmpdir, "train", &e) == 0, "good file: %s", e.msg);
    if (f.n == 3) {
        EXPECT(f.labels[0] == 0 && f.labels[1] == 9 && f.labels[2] == 5, "labels");
        float x[1024];
        fmnist_image(&f, 1, x);
        // image 1, stored pixel (r=3, c=4) is byte 784 + 3*28 + 4 of the data
        uint8_t p = (uint8_t)((784 + 3 * 28 + 4) * 7 % 256);
        EXPECT(x[(3 + 2) * 32 + 4 + 2] == (float)p / 127.5f - 1.0f, "pixel value and offset");
        EXPECT(x[0] == -1.0f && x[1023] == -1.0f && x[33] == -1.0f, "padding");
        fmnist_free(&f);
    }
    EXPECT(fmnist_load(&f, tmpdir, "valid", &e) == -1, "bad split");
    expect_err(e.msg, "\"train\" or \"test\"", "bad split");

    // test split files absent: a clear "cannot open" naming the file
    EXPECT(fmnist_load(&f, tmpdir, "test", &e) == -1, "missing test split");
    expect_err(e.msg, "t10k-images-idx3-ubyte.gz: cannot open", "missing file");
    expect_err(e.msg, "dataset-fashion-mnist", "missing file hint");

    uint8_t *b = idx_images(0x804, 3, 28, 28, &n);
    write_gz(tmp(IMG), b, n);
    free(b);
    expect_load_fail("bad IDX magic 0x00000804; expected 0x00000803", IMG, "wrong magic");

    b = idx_images(0x803, 3, 27, 28, &n);
    write_gz(tmp(IMG), b, n);
    free(b);
    expect_load_fail("images are 27x28; expected 28x28", IMG, "wrong dims");

    b = idx_images(0x803, 3, 28, 28, &n);
    write_raw(tmp(IMG), b, n);
    expect_load_fail("not a gzip file", IMG, "not gzip");

    // truncated: the first half of the compressed stream; then the stream
    // without its 8-byte trailer; then a flipped CRC byte (corrupt)
    write_gz(tmp(IMG), b, n);
    size_t gn;
    uint8_t *gz = read_raw(tmp(IMG), &gn);
    write_raw(tmp(IMG), gz, gn / 2);
    expect_load_fail("truncated", IMG, "truncated half");
    write_raw(tmp(IMG), gz, gn - 8);
    expect_load_fail("truncated", IMG, "truncated trailer");
    gz[gn - 6] ^= 0x40;
    write_raw(tmp(IMG), gz, gn);
    expect_load_fail("corrupt gzip data", IMG, "bad CRC");
    free(gz);

    // header says 4 images, 3 present: truncated; says 2 with 3 present: extra data
    b[7] = 4;
    write_gz(tmp(IMG), b, n);
    expect_load_fail("truncated", IMG, "fewer images than declared");
    b[7] = 2;
    write_gz(tmp(IMG), b, n);
    expect_load_fail("more data than the header's 2 images", IMG, "extra data");
    b[7] = 3;
    write_gz(tmp(IMG), b, n);
    free(b);

    static const uint8_t two[2] = {1, 2}, bad[3] = {1, 10, 2};
    b = idx_labels(0x801, 2, two, &n);
    write_gz(tmp(LBL), b, n);
    free(b);
    expect_load_fail("2 labels, but", LBL, "count mismatch");

    b = idx_labels(0x801, 3, bad, &n);
    write_gz(tmp(LBL), b, n);
    free(b);
    expect_load_fail("label 10 at index 1 is out of range 0..9", LBL, "label 10");

    b = idx_labels(0x803, 3, bad, &n);
    write_gz(tmp(LBL), b, n);
    free(b);
    expect_load_fail("bad IDX magic 0x00000803; expected 0x00000801", LBL, "labels magic");
    write_good();
}

// ------------------------------------------------------------- conditioning

static void test_conditioning(void) {
    enum { L = 8, D = 16 };
    Error e = {0};
    Conditioner *a = cond_create(L, D, 7, &e), *b = cond_create(L, D, 7, &e),
                *o = cond_create(L, D, 8, &e);
    if (!a || !b || !o) {
        EXPECT(0, "cond_create: %s", e.msg);
        return;
    }
    EXPECT(!strcmp(cond_caption(7), "a photo of a sneaker"), "caption 7: %s", cond_caption(7));
    EXPECT(!strcmp(cond_caption(COND_EMPTY), ""), "empty caption");
    EXPECT(cond_max_tokens() == 7, "max tokens %d", cond_max_tokens());

    // sorted vocabulary after the pad token: fixed ids
    static const char *const want_vocab[] = {
        "<pad>", "a",     "an",       "ankle",    "bag",    "boot",  "coat",    "dress", "of",
        "pair",  "photo", "pullover", "sandal",   "shirt",  "sneaker", "t-shirt", "trousers"};
    int nv = cond_vocab_size(a);
    EXPECT(nv == 17, "vocab size %d", nv);
    for (int i = 0; i < nv && i < 17; i++)
        EXPECT(!strcmp(cond_vocab_word(a, i), want_vocab[i]), "vocab[%d] = %s", i,
               cond_vocab_word(a, i));
    int ids[8];
    int nt = cond_tokenize(a, cond_caption(7), ids, 8, &e);
    int want_ids[5] = {1, 10, 8, 1, 14};
    EXPECT(nt == 5 && !memcmp(ids, want_ids, sizeof want_ids), "tokens of caption 7");
    EXPECT(cond_tokenize(a, "a photo of a cat", ids, 8, &e) == -1, "unknown word");
    expect_err(e.msg, "word \"cat\" is not in the vocabulary", "unknown word");
    EXPECT(cond_tokenize(a, "a photo of a pair of trousers", ids, 6, &e) == -1, "too many tokens");
    expect_err(e.msg, "more than 6 tokens", "too many tokens");

    float ca[COND_CLASSES + 1][L * D], cb[L * D];
    double ss = 0;
    for (int k = 0; k <= COND_CLASSES; k++) {
        int cls = k < COND_CLASSES ? k : COND_EMPTY;
        cond_context(a, cls, ca[k]);
        cond_context(b, cls, cb);
        EXPECT(!memcmp(ca[k], cb, sizeof cb), "class %d: same seed, different context", cls);
        cond_context(o, cls, cb);
        EXPECT(memcmp(ca[k], cb, sizeof cb) != 0, "class %d: seed ignored", cls);
        for (int i = 0; i < L * D; i++) ss += (double)ca[k][i] * ca[k][i];
    }
    double rms = sqrt(ss / ((COND_CLASSES + 1) * L * D));
    EXPECT(rms > 0.6 && rms < 1.5, "context RMS %g, want O(1)", rms);
    for (int i = 0; i <= COND_CLASSES; i++)
        for (int j = i + 1; j <= COND_CLASSES; j++)
            EXPECT(memcmp(ca[i], ca[j], sizeof cb) != 0, "contexts %d and %d equal", i, j);
    // row = embedding[token] + position: "a" at row 0 is the same in every
    // caption, "a" at row 3 differs from "a" at row 0 (word order matters),
    // and padding rows equal the empty caption's rows
    size_t row = D * sizeof(float);
    EXPECT(!memcmp(ca[0], ca[7], row) && !memcmp(ca[0] + 3 * D, ca[7] + 3 * D, row),
           "shared token rows");
    EXPECT(memcmp(ca[7], ca[7] + 3 * D, row) != 0, "position ignored");
    EXPECT(!memcmp(ca[7] + 5 * D, ca[COND_CLASSES] + 5 * D, 3 * row), "padding rows");
    EXPECT(memcmp(ca[COND_CLASSES], ca[COND_CLASSES] + D, row) != 0, "pad rows differ by position");

    int labels[3] = {2, 9, 4};
    uint8_t drop[3] = {0, 1, 0};
    float batch[3 * L * D];
    cond_batch(a, labels, 3, drop, batch);
    EXPECT(!memcmp(batch, ca[2], sizeof cb) &&
               !memcmp(batch + L * D, ca[COND_CLASSES], sizeof cb) &&
               !memcmp(batch + 2 * L * D, ca[4], sizeof cb),
           "cond_batch with drop");
    cond_batch(a, labels, 3, NULL, batch);
    EXPECT(!memcmp(batch + L * D, ca[9], sizeof cb), "cond_batch without drop");
    cond_free(a);
    cond_free(b);
    cond_free(o);

    EXPECT(cond_create(6, D, 7, &e) == NULL, "context_length 6 < 7 tokens");
    expect_err(e.msg, "\"a photo of a pair of trousers\" has 7 tokens", "L too small");
    expect_err(e.msg, "context_length", "L too small");

    // dropout: the fraction, the edges, and a fresh pattern per step
    int n01 = 0, n0 = 0, n1 = 0, same = 0;
    for (int i = 0; i < 10000; i++) {
        n01 += cond_drop(1234, 5, (uint64_t)i, 0.1);
        n0 += cond_drop(1234, 5, (uint64_t)i, 0.0);
        n1 += cond_drop(1234, 5, (uint64_t)i, 1.0);
        same += cond_drop(1234, 5, (uint64_t)i, 0.5) == cond_drop(1234, 6, (uint64_t)i, 0.5);
    }
    EXPECT(n01 > 850 && n01 < 1150, "drop 0.1: %d of 10000", n01);
    EXPECT(n0 == 0 && n1 == 10000, "drop 0 / 1: %d, %d", n0, n1);
    EXPECT(same > 4700 && same < 5300, "steps 5 and 6 agree on %d of 10000", same);
}

// ------------------------------------------------------------- epoch order

static void test_order(void) {
    static const int64_t ns[] = {1, 2, 7, 1000, 60000, 65537};
    uint8_t *seen = xmalloc(65537);
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        for (int64_t ep = 0; ep < 2; ep++) {
            memset(seen, 0, (size_t)n);
            int ok = 1;
            for (int64_t p = 0; p < n; p++) {
                int64_t v = dataset_order(99, ep, n, p);
                if (v < 0 || v >= n || seen[v]) ok = 0;
                else seen[v] = 1;
            }
            EXPECT(ok, "n=%lld epoch %lld: not a permutation", (long long)n, (long long)ep);
        }
        if (n >= 7) {
            int64_t diff = 0, fixed = 0;
            for (int64_t p = 0; p < n; p++) {
                diff += dataset_order(99, 0, n, p) != dataset_order(99, 1, n, p);
                fixed += dataset_order(99, 0, n, p) == p;
            }
            EXPECT(diff > 0, "n=%lld: epochs 0 and 1 have the same order", (long long)n);
            EXPECT(n < 1000 || (diff > n / 2 && fixed < 20), "n=%lld: %lld differ, %lld fixed",
                   (long long)n, (long long)diff, (long long)fixed);
        }
    }
    // stateless: querying backwards gives the same answers; another seed another order
    int64_t fwd[1000], other = 0;
    for (int64_t p = 0; p < 1000; p++) fwd[p] = dataset_order(99, 3, 1000, p);
    int same = 1;
    for (int64_t p = 999; p >= 0; p--) same &= dataset_order(99, 3, 1000, p) == fwd[p];
    for (int64_t p = 0; p < 1000; p++) other += dataset_order(100, 3, 1000, p) != fwd[p];
    EXPECT(same, "query order changes the permutation");
    EXPECT(other > 500, "seed ignored: %lld differ", (long long)other);
    free(seen);

    // shards cover [0, n) once, in order, sizes within one
    static const int64_t sn[] = {0, 1, 10, 11, 12};
    for (size_t t = 0; t < sizeof sn / sizeof sn[0]; t++)
        for (int size = 1; size <= 4; size++) {
            int64_t next = 0, lo = sn[t], hi = 0;
            for (int r = 0; r < size; r++) {
                int64_t s, c;
                dataset_shard_range(sn[t], r, size, &s, &c);
                EXPECT(s == next, "n=%lld size %d rank %d starts at %lld", (long long)sn[t], size,
                       r, (long long)s);
                next = s + c;
                if (c < lo) lo = c;
                if (c > hi) hi = c;
            }
            EXPECT(next == sn[t] && hi - lo <= 1, "n=%lld size %d: shards", (long long)sn[t], size);
        }
}

// --------------------------------------------------------------------- HDF5

enum { HN = 10, HC = 4, HH = 8, HW = 8, HL = 5, HD = 12 };

static float lat_val(int64_t i) { return (float)(i % 977) * 0.25f - 100.0f; }
static double ctx_val(int64_t i) { return (double)(i % 1009) / 64.0 - 7.0; }

static void h5_write(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank,
                     const hsize_t *dims, const void *data) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, name, ftype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(ds >= 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(sp);
}

// A dataset file: latents [nl,C,H,W] float32 (or float16), context [nc,L,D]
// float64 (or with ctx_rank 2: [nc, L*D]); flags pick the parts present.
enum { H_LAT = 1, H_CTX = 2, H_UNC = 4, H_TEST = 8, H_F16 = 16, H_INTCTX = 32 };

static const char *make_h5(const char *name, int nl, int nc, int ctx_rank, int flags) {
    const char *path = tmp(name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    float *lat = xmalloc((size_t)HN * HC * HH * HW * sizeof(float));
    double *ctx = xmalloc((size_t)HN * HL * HD * sizeof(double));
    int *ictx = xmalloc((size_t)HN * HL * HD * sizeof(int));
    for (int64_t i = 0; i < (int64_t)HN * HC * HH * HW; i++) lat[i] = lat_val(i);
    for (int64_t i = 0; i < (int64_t)HN * HL * HD; i++) ctx[i] = ctx_val(i), ictx[i] = (int)i;
    hsize_t ld[4] = {(hsize_t)nl, HC, HH, HW}, cd3[3] = {(hsize_t)nc, HL, HD},
            cd2[2] = {(hsize_t)nc, HL * HD}, ud[2] = {HL, HD};
    hid_t f16 = H5Tcopy(H5T_IEEE_F32LE);  // IEEE half, as h5py writes numpy float16
    H5Tset_fields(f16, 15, 10, 5, 0, 10);
    H5Tset_size(f16, 2);
    H5Tset_ebias(f16, 15);
    for (int t = 0; t < 2; t++) {
        const char *pre = t ? "/test" : "";
        if (t && !(flags & H_TEST)) break;
        char nm[64];
        snprintf(nm, sizeof nm, "%s/latents", pre);
        if (flags & H_LAT)
            h5_write(f, nm, flags & H_F16 ? f16 : H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, ld, lat);
        snprintf(nm, sizeof nm, "%s/context", pre);
        if ((flags & H_CTX) && (flags & H_INTCTX))
            h5_write(f, nm, H5T_STD_I32LE, H5T_NATIVE_INT, ctx_rank, ctx_rank == 3 ? cd3 : cd2,
                     ictx);
        else if (flags & H_CTX)
            h5_write(f, nm, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, ctx_rank, ctx_rank == 3 ? cd3 : cd2,
                     ctx);
        snprintf(nm, sizeof nm, "%s/uncond_context", pre);
        if (flags & H_UNC) h5_write(f, nm, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, ud, ctx + 7);
    }
    H5Tclose(f16);
    H5Fclose(f);
    free(lat);
    free(ctx);
    free(ictx);
    return path;
}

static void model_for_h5(ModelConfig *m) {
    model_config_sd15(m);  // 4 blocks: H and W multiples of 8
    m->context_length = HL;
    m->cross_attention_dim = HD;
}

static void expect_h5_fail(const char *path, const char *want, const char *what) {
    Error e = {0};
    H5Data *h = h5data_open(path, "", &e);
    EXPECT(h == NULL, "%s: open should fail", what);
    expect_err(e.msg, want, what);
    expect_err(e.msg, path, what);
    h5data_close(h);
}

static void expect_model_fail(H5Data *h, const ModelConfig *m, const char *want, const char *what) {
    Error e = {0};
    EXPECT(h5data_check_model(h, m, &e) == -1, "%s: check should fail", what);
    expect_err(e.msg, want, what);
}

static void test_h5(void) {
    const size_t xn = HC * HH * HW, cn = HL * HD;
    char good[512], full[512];  // tmp() reuses its buffers
    snprintf(good, sizeof good, "%s", make_h5("good.h5", HN, HN, 3, H_LAT | H_CTX));
    Error e = {0};
    H5Data *h = h5data_open(good, "", &e);
    if (!h) {
        EXPECT(0, "open good.h5: %s", e.msg);
        return;
    }
    H5Shape s = h5data_shape(h);
    EXPECT(s.n == HN && s.C == HC && s.H == HH && s.W == HW && s.L == HL && s.D == HD &&
               !s.has_uncond,
           "shape");
    ModelConfig m;
    model_for_h5(&m);
    EXPECT(h5data_check_model(h, &m, &e) == 0, "model check: %s", e.msg);

    // three ranks' shards cover every row exactly once, values as written
    float *lat = xmalloc(HN * xn * sizeof(float)), *ctx = xmalloc(HN * cn * sizeof(float));
    for (size_t i = 0; i < HN * xn; i++) lat[i] = NAN;
    for (size_t i = 0; i < HN * cn; i++) ctx[i] = NAN;
    for (int r = 0; r < 3; r++) {
        int64_t st, ct;
        dataset_shard_range(HN, r, 3, &st, &ct);
        EXPECT(h5data_read(h, st, ct, lat + st * xn, ctx + st * cn, &e) == 0, "shard %d: %s", r,
               e.msg);
    }
    int ok = 1;
    for (size_t i = 0; i < HN * xn; i++) ok &= lat[i] == lat_val((int64_t)i);
    for (size_t i = 0; i < HN * cn; i++) ok &= ctx[i] == (float)ctx_val((int64_t)i);
    EXPECT(ok, "shard reads differ from the written values");
    EXPECT(h5data_read(h, 8, 3, lat, ctx, &e) == -1, "read past the end");
    expect_err(e.msg, "rows [8, 11) are outside [0, 10)", "read past the end");
    EXPECT(h5data_read_uncond(h, ctx, &e) == -1, "no uncond");
    expect_err(e.msg, "no dataset /uncond_context", "no uncond");

    // shape mismatches against the model
    ModelConfig bad = m;
    bad.in_channels = 3;
    expect_model_fail(h, &bad, "/latents is [10,4,8,8] but the model takes 3 input channels", "C");
    bad = m;
    bad.context_length = 6;
    expect_model_fail(h, &bad, "/context is [10,5,12] but the model expects [N,6,12]", "L");
    bad = m;
    bad.cross_attention_dim = 768;
    expect_model_fail(h, &bad, "/context is [10,5,12] but the model expects [N,5,768]", "D");
    bad = m;
    bad.n_blocks = 5;
    expect_model_fail(h, &bad, "multiples of 16", "H, W");
    h5data_close(h);

    // structural errors
    expect_h5_fail(tmp("absent.h5"), "cannot open", "missing file");
    write_raw(tmp("text.h5"), "not hdf5 at all\n", 16);
    expect_h5_fail(tmp("text.h5"), "not an HDF5 file", "not HDF5");
    expect_h5_fail(make_h5("noctx.h5", HN, HN, 3, H_LAT), "no dataset /context", "no context");
    expect_h5_fail(make_h5("nolat.h5", HN, HN, 3, H_CTX), "no dataset /latents", "no latents");
    expect_h5_fail(make_h5("nmis.h5", HN, HN - 1, 3, H_LAT | H_CTX),
                   "/latents is [10,4,8,8] but /context is [9,5,12]", "N mismatch");
    expect_h5_fail(make_h5("rank.h5", HN, HN, 2, H_LAT | H_CTX),
                   "/context has shape [10,60], rank 2; expected rank 3", "rank");
    expect_h5_fail(make_h5("int.h5", HN, HN, 3, H_LAT | H_CTX | H_INTCTX),
                   "/context [10,5,12] is not floating point", "integer data");
    h = h5data_open(good, "/test", &e);
    EXPECT(h == NULL, "no test split");
    expect_err(e.msg, "no dataset /test/latents", "no test split");

    // float16 latents convert; /test split; uncond context
    snprintf(full, sizeof full, "%s",
             make_h5("full.h5", HN, HN, 3, H_LAT | H_CTX | H_UNC | H_TEST | H_F16));
    h = h5data_open(full, "/test", &e);
    EXPECT(h != NULL, "open full.h5 /test: %s", e.msg);
    if (h) {
        EXPECT(h5data_shape(h).has_uncond, "uncond present");
        EXPECT(h5data_read(h, 0, HN, lat, NULL, &e) == 0, "read f16: %s", e.msg);
        ok = 1;  // |values| <= 144 in steps of 0.25: exact in float16 up to 128, 0.5 above
        for (size_t i = 0; i < HN * xn; i++) ok &= fabsf(lat[i] - lat_val((int64_t)i)) <= 0.125f;
        EXPECT(ok, "float16 latents");
        h5data_close(h);
    }

    // through Dataset: whole file, a shard with on-demand rows, drop -> uncond
    JobConfig jc;
    job_config_defaults(&jc);
    jc.model = m;
    jc.data.source = DATA_HDF5;
    snprintf(jc.data.path, sizeof jc.data.path, "%s", full);
    Dataset *all = dataset_open(&jc.data, &jc.model, "train", &e);
    Dataset *sh = all ? dataset_open_shard(&jc.data, &jc.model, "train", 3, 4, &e) : NULL;
    EXPECT(all && sh, "dataset_open hdf5: %s", e.msg);
    if (all && sh) {
        DatasetShape ds = dataset_shape(all);
        EXPECT(dataset_size(all) == HN && ds.C == HC && ds.H == HH && ds.L == HL && ds.D == HD,
               "dataset shape");
        float x1[HC * HH * HW], c1[HL * HD], x2[HC * HH * HW], c2[HL * HD];
        ok = 1;
        for (int64_t i = 0; i < HN; i++) {
            int l1 = 0, l2 = 0;
            dataset_get(all, i, x1, c1, &l1, 0);
            dataset_get(sh, i, x2, c2, &l2, 0);
            ok &= l1 == -1 && l2 == -1 && !memcmp(x1, x2, sizeof x1) && !memcmp(c1, c2, sizeof c1);
            for (size_t k = 0; k < cn; k++)
                ok &= c1[k] == (float)ctx_val(i * (int64_t)cn + (int64_t)k);
        }
        EXPECT(ok, "dataset_get: whole file vs shard + on-demand rows");
        dataset_get(sh, 1, NULL, c1, NULL, 1);
        ok = 1;
        for (size_t k = 0; k < cn; k++) ok &= c1[k] == (float)ctx_val(7 + (int64_t)k);
        EXPECT(ok, "dropped caption gives /uncond_context");
    }
    dataset_close(all);
    dataset_close(sh);
    snprintf(jc.data.path, sizeof jc.data.path, "%s", good);
    all = dataset_open(&jc.data, &jc.model, "train", &e);
    EXPECT(all != NULL, "open good.h5: %s", e.msg);
    if (all) {
        float c1[HL * HD];
        dataset_get(all, 2, NULL, c1, NULL, 1);
        ok = 1;
        for (size_t k = 0; k < cn; k++) ok &= c1[k] == 0.0f;
        EXPECT(ok, "no /uncond_context: the unconditional context is zeros");
        dataset_close(all);
    }
    EXPECT(dataset_open_shard(&jc.data, &jc.model, "train", 8, 3, &e) == NULL, "shard past the end");
    expect_err(e.msg, "shard [8, 11) is outside the file's 10 rows", "shard past the end");
    jc.model.context_length = 77;
    EXPECT(dataset_open(&jc.data, &jc.model, "train", &e) == NULL, "model mismatch through dataset_open");
    expect_err(e.msg, "but the model expects [N,77,12]", "dataset_open model mismatch");
    free(lat);
    free(ctx);

    static const char *const names[] = {"good.h5", "text.h5", "noctx.h5", "nolat.h5", "nmis.h5",
                                        "rank.h5", "int.h5",  "full.h5"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp(names[i]));
}

// --------------------------------------------------- Dataset, fashion-mnist

static void test_dataset_fmnist(void) {
    JobConfig jc;
    job_config_defaults(&jc);  // SD-1.5: 4 latent channels, not Fashion-MNIST's 1
    Error e = {0};
    EXPECT(dataset_open(&jc.data, &jc.model, "test", &e) == NULL, "fashion-mnist with in_channels 4");
    expect_err(e.msg, "model.in_channels is 4", "in_channels");
    jc.model.in_channels = jc.model.out_channels = 1;
    jc.model.context_length = 8;
    jc.model.cross_attention_dim = 16;
    Dataset *d = dataset_open(&jc.data, &jc.model, "test", &e);
    if (!d) {
        EXPECT(0, "dataset_open fashion-mnist: %s", e.msg);
        return;
    }
    DatasetShape s = dataset_shape(d);
    EXPECT(s.n == 10000 && s.C == 1 && s.H == 32 && s.W == 32 && s.L == 8 && s.D == 16,
           "fashion-mnist shape");
    Conditioner *c = cond_create(8, 16, (uint64_t)jc.data.embed_seed, &e);
    float x[1024], ctx[8 * 16], want[8 * 16];
    int label = -2;
    dataset_get(d, 123, x, ctx, &label, 0);
    cond_context(c, label, want);
    EXPECT(label >= 0 && label <= 9 && !memcmp(ctx, want, sizeof ctx), "ctx of the label");
    dataset_get(d, 123, NULL, ctx, NULL, 1);
    cond_context(c, COND_EMPTY, want);
    EXPECT(!memcmp(ctx, want, sizeof ctx), "dropped caption");
    dataset_uncond(d, ctx);
    EXPECT(!memcmp(ctx, want, sizeof ctx), "dataset_uncond");
    cond_free(c);
    dataset_close(d);
    jc.model.context_length = 6;
    EXPECT(dataset_open(&jc.data, &jc.model, "test", &e) == NULL, "context_length 6");
    expect_err(e.msg, "set context_length >= 7", "context_length 6");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ld_test_data_XXXXXX");
    CHECK(mkdtemp(tmpdir));
    test_real_fmnist();
    test_made_idx();
    test_conditioning();
    test_order();
    test_h5();
    test_dataset_fmnist();
    unlink(tmp(IMG));
    unlink(tmp(LBL));
    rmdir(tmpdir);
    return tu_report("test_data");
}
