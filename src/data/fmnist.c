// fmnist.c — see fmnist.h.
#include "data/fmnist.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <zlib.h>

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u

static const char *const CLASS_NAMES[FMNIST_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

const char *fmnist_class_name(int cls) {
    CHECK(cls >= 0 && cls < FMNIST_CLASSES);
    return CLASS_NAMES[cls];
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// gzread's failure as an Error: a stream that ends early is "truncated",
// anything else (bad deflate data, CRC or length mismatch) is "corrupt".
// zlib decompresses ahead, so only truncation can say where it happened.
static int gz_fail(gzFile g, const char *path, const char *what, Error *e) {
    int zerr = 0;
    const char *msg = gzerror(g, &zerr);
    size_t n = strlen(path);  // zlib prefixes its message with the path
    if (!strncmp(msg, path, n) && !strncmp(msg + n, ": ", 2)) msg += n + 2;
    if (zerr == Z_BUF_ERROR || zerr == Z_OK)
        return errorf(e, "%s: truncated: the gzip stream ends inside the %s", path, what);
    return errorf(e, "%s: corrupt gzip data (zlib: %s)", path, msg);
}

// Reads exactly n bytes (in chunks: gzread takes an unsigned int length).
static int gz_read_exact(gzFile g, const char *path, void *buf, size_t n, const char *what,
                         Error *e) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < (1u << 24) ? n - got : (1u << 24);
        int r = gzread(g, (uint8_t *)buf + got, (unsigned)want);
        if (r <= 0) return gz_fail(g, path, what, e);
        got += (size_t)r;
    }
    return 0;
}

int fmnist_read_idx(const char *path, uint32_t magic, uint8_t **data, uint32_t dims[3], Error *e) {
    *data = NULL;
    errno = 0;
    gzFile g = gzopen(path, "rb");
    if (!g)
        return errorf(e, "%s: cannot open: %s (install Debian's dataset-fashion-mnist, or set "
                      "data.path to the directory of the IDX .gz files)", path,
                      errno ? strerror(errno) : "out of memory");
    // gzread passes non-gzip input through unchanged; the files must be gzip
    if (gzdirect(g)) {
        gzclose(g);
        return errorf(e, "%s: not a gzip file (expected gzip-compressed IDX data)", path);
    }
    int rc = -1;
    uint8_t *buf = NULL;
    uint8_t hdr[16];
    const char *kind = magic == IDX_IMAGES ? "images" : "labels";
    int ndim = (int)(magic & 0xff);
    if (gz_read_exact(g, path, hdr, 4, "IDX header", e)) goto done;
    uint32_t m = be32(hdr);
    if (m != magic) {
        errorf(e, "%s: bad IDX magic 0x%08x; expected 0x%08x (u8 %s of rank %d)", path, m, magic,
               kind, ndim);
        goto done;
    }
    if (gz_read_exact(g, path, hdr + 4, 4 * (size_t)ndim, "IDX header", e)) goto done;
    size_t item = 1;
    for (int d = 0; d < ndim; d++) {
        dims[d] = be32(hdr + 4 + 4 * d);
        if (d > 0) item *= dims[d];
    }
    if (ndim == 3 && (dims[1] != FMNIST_SRC || dims[2] != FMNIST_SRC)) {
        errorf(e, "%s: images are %ux%u; expected %dx%d (Fashion-MNIST)", path, dims[1], dims[2],
               FMNIST_SRC, FMNIST_SRC);
        goto done;
    }
    if (dims[0] == 0 || dims[0] > INT_MAX / (FMNIST_SRC * FMNIST_SRC)) {
        errorf(e, "%s: header declares %u %s; expected 1..%d", path, dims[0], kind,
               INT_MAX / (FMNIST_SRC * FMNIST_SRC));
        goto done;
    }
    // grow the buffer as data arrives, so a corrupt header claiming billions
    // of items fails as truncated instead of allocating gigabytes first
    size_t total = item * dims[0], cap = total < (1u << 22) ? total : (1u << 22), got = 0;
    buf = xmalloc(cap);
    while (got < total) {
        if (got == cap) {
            cap = cap * 2 < total ? cap * 2 : total;
            buf = xrealloc(buf, cap);
        }
        size_t want = cap - got < (1u << 24) ? cap - got : (1u << 24);
        int r = gzread(g, buf + got, (unsigned)want);
        if (r <= 0) {
            char what[96];
            snprintf(what, sizeof what, "data (%zu of %zu bytes read; header declares %u %s)",
                     got, total, dims[0], kind);
            gz_fail(g, path, what, e);
            goto done;
        }
        got += (size_t)r;
    }
    // one more read verifies the gzip trailer (CRC, length) and catches extra data
    uint8_t extra;
    int r = gzread(g, &extra, 1);
    if (r > 0) {
        errorf(e, "%s: more data than the header's %u %s", path, dims[0], kind);
        goto done;
    }
    int zerr = Z_OK;
    gzerror(g, &zerr);
    if (r < 0 || zerr != Z_OK) {  // a missing trailer reads as 0 bytes plus Z_BUF_ERROR
        gz_fail(g, path, "gzip trailer", e);
        goto done;
    }
    *data = buf;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    gzclose(g);
    return rc;
}

static void join(char *out, size_t cap, const char *dir, const char *name) {
    size_t n = strlen(dir);
    snprintf(out, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

int fmnist_load(Fmnist *f, const char *dir, const char *split, Error *e) {
    memset(f, 0, sizeof *f);
    const char *prefix;
    if (!strcmp(split, "train")) prefix = "train";
    else if (!strcmp(split, "test")) prefix = "t10k";
    else return errorf(e, "fashion-mnist: split \"%s\"; expected \"train\" or \"test\"", split);
    char ipath[1200], lpath[1200], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    join(ipath, sizeof ipath, dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    join(lpath, sizeof lpath, dir, name);

    uint32_t idims[3], ldims[3];
    uint8_t *pixels, *labels;
    if (fmnist_read_idx(ipath, IDX_IMAGES, &pixels, idims, e)) return -1;
    if (fmnist_read_idx(lpath, IDX_LABELS, &labels, ldims, e)) {
        free(pixels);
        return -1;
    }
    int rc = 0;
    if (ldims[0] != idims[0]) {
        rc = errorf(e, "%s: %u labels, but %s holds %u images", lpath, ldims[0], ipath, idims[0]);
    } else {
        for (uint32_t i = 0; i < ldims[0]; i++)
            if (labels[i] >= FMNIST_CLASSES) {
                rc = errorf(e, "%s: label %u at index %u is out of range 0..%d", lpath,
                            (unsigned)labels[i], i, FMNIST_CLASSES - 1);
                break;
            }
    }
    if (rc) {
        free(pixels);
        free(labels);
        return rc;
    }
    f->n = (int)idims[0];
    f->pixels = pixels;
    f->labels = labels;
    return 0;
}

void fmnist_free(Fmnist *f) {
    free(f->pixels);
    free(f->labels);
    memset(f, 0, sizeof *f);
}

void fmnist_image(const Fmnist *f, int i, float *x) {
    CHECK(i >= 0 && i < f->n);
    const uint8_t *p = f->pixels + (size_t)i * FMNIST_SRC * FMNIST_SRC;
    // pad with -1, the scaled value of a 0 (black background) pixel
    for (int k = 0; k < FMNIST_SIDE * FMNIST_SIDE; k++) x[k] = -1.0f;
    for (int r = 0; r < FMNIST_SRC; r++)
        for (int c = 0; c < FMNIST_SRC; c++)
            x[(r + FMNIST_PAD) * FMNIST_SIDE + c + FMNIST_PAD] =
                (float)p[r * FMNIST_SRC + c] / 127.5f - 1.0f;
}
