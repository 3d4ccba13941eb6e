// fuzz_safetensors.c — libFuzzer harness for the safetensors reader. Any byte
// string must give either an Error or a file whose every tensor reads, whose
// invariants hold, and which survives st_write -> st_open bit for bit.
// Build: cmake -DLD_FUZZ=ON -DCMAKE_C_COMPILER=clang (see tests/fuzz/CMakeLists.txt).
#define _GNU_SOURCE  // memfd_create
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/safetensors.h"

// Process-wide scratch (a harness needs it; the library itself has none):
// the input lives in a memfd reopened by path, round trips go to a temp dir.
static int g_memfd = -1;
static char g_in_path[64];
static char g_dir[256];

static void cleanup(void) {
    if (g_dir[0]) rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    g_memfd = memfd_create("fuzz_safetensors", 0);
    if (g_memfd < 0) FATAL("memfd_create failed");
    snprintf(g_in_path, sizeof g_in_path, "/proc/self/fd/%d", g_memfd);
    // tmpfs when available: st_write fsyncs every round trip.
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/fuzz_st_XXXXXX", base);
    if (!mkdtemp(g_dir)) FATAL("mkdtemp failed");
    atexit(cleanup);
    return 0;
}

static size_t dsize(StDtype d) { return d == ST_F32 ? 4 : 2; }

static void check_file(const StFile *f) {
    uint64_t data_size = f->file_size - f->data_start;
    CHECK(f->data_start >= 8 && f->data_start <= f->file_size);
    float **vals = calloc((size_t)f->n_tensors + 1, sizeof *vals);
    StOut *outs = calloc((size_t)f->n_tensors + 1, sizeof *outs);
    CHECK(vals && outs);
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS && t->numel >= 0);
        CHECK(t->begin <= t->end && t->end <= data_size);
        CHECK(t->end - t->begin == (uint64_t)t->numel * dsize(t->dtype));
        CHECK(st_find(f, t->name) == t);  // names are unique
        // Overlap oracle independent of the library's sort (small files only).
        for (int j = 0; j < i && f->n_tensors < 256; j++) {
            const StTensor *u = &f->tensors[j];
            int empty = t->begin == t->end || u->begin == u->end;
            CHECK(empty || t->end <= u->begin || u->end <= t->begin);
        }
        vals[i] = malloc((size_t)t->numel * sizeof(float) + 1);
        CHECK(vals[i]);
        Error e;
        if (st_read_f32(f, t, vals[i], &e) != 0) FATAL("read of a validated tensor failed: %s", e.msg);
        outs[i] = (StOut){t->name, t->ndim, {0}, vals[i]};
        memcpy(outs[i].shape, t->shape, sizeof t->shape);
    }
    for (int i = 0; i < f->n_meta; i++) CHECK(st_meta(f, f->meta_keys[i]) == f->meta_vals[i]);

    // Round trip through the writer: same names, shapes, bits and metadata.
    const char **meta = calloc((size_t)f->n_meta * 2 + 1, sizeof *meta);
    CHECK(meta);
    for (int i = 0; i < f->n_meta; i++) meta[2 * i] = f->meta_keys[i], meta[2 * i + 1] = f->meta_vals[i];
    char out_path[320];
    snprintf(out_path, sizeof out_path, "%s/rt.safetensors", g_dir);
    Error e;
    if (st_write(out_path, outs, f->n_tensors, meta, f->n_meta, &e) != 0)
        FATAL("st_write of a valid file failed: %s", e.msg);
    StFile g;
    if (st_open(&g, out_path, &e) != 0) FATAL("reopen of written file failed: %s", e.msg);
    CHECK(g.n_tensors == f->n_tensors && g.n_meta == f->n_meta && g.data_start % 8 == 0);
    for (int i = 0; i < g.n_tensors; i++) {
        const StTensor *t = &g.tensors[i];
        CHECK(strcmp(t->name, f->tensors[i].name) == 0 && t->dtype == ST_F32);
        CHECK(t->ndim == f->tensors[i].ndim && t->numel == f->tensors[i].numel);
        float *v = malloc((size_t)t->numel * sizeof(float) + 1);
        CHECK(v);
        if (st_read_f32(&g, t, v, &e) != 0) FATAL("reread failed: %s", e.msg);
        CHECK(memcmp(v, vals[i], (size_t)t->numel * sizeof(float)) == 0);
        free(v);
    }
    for (int i = 0; i < g.n_meta; i++) {
        const char *v = st_meta(&g, f->meta_keys[i]);
        CHECK(v && strcmp(v, f->meta_vals[i]) == 0);
    }
    st_close(&g);
    unlink(out_path);
    for (int i = 0; i < f->n_tensors; i++) free(vals[i]);
    free(vals);
    free(outs);
    free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    CHECK(ftruncate(g_memfd, 0) == 0);
    if (size && pwrite(g_memfd, data, size, 0) != (ssize_t)size) FATAL("pwrite failed");
    StFile f;
    Error e;
    e.msg[0] = '\0';
    if (st_open(&f, g_in_path, &e) != 0) {
        // Every failure must explain itself and name the file.
        CHECK(e.msg[0] != '\0' && strstr(e.msg, g_in_path) != NULL);
        CHECK(f.fd == -1 && f.n_tensors == 0 && f.tensors == NULL);
        return 0;
    }
    check_file(&f);
    st_close(&f);
    return 0;
}
