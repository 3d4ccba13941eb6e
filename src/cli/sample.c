// sample.c — the `sample` command (commands.h) and the sampling it shares
// with eval (sample.h).
#include "cli/sample.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "model/checkpoint.h"
#include "data/conditioning.h"
#include "diffusion/ddim.h"
#include "io/png_grid.h"
#include "diffusion/schedule.h"
#include "cli/commands.h"

enum { SAMPLE_CHUNK = 4 };  // samples per DDIM batch (small: the ranks get whole chunks)

// Rank r's samples of n: whole global chunks (comm_shard over the chunks).
static void shard_chunks(long n, int rank, int size, long *first, long *count) {
    long cf, cc;
    comm_shard((n + SAMPLE_CHUNK - 1) / SAMPLE_CHUNK, rank, size, &cf, &cc);
    long end = (cf + cc) * SAMPLE_CHUNK < n ? (cf + cc) * SAMPLE_CHUNK : n;
    *first = cf * SAMPLE_CHUNK < n ? cf * SAMPLE_CHUNK : n;
    *count = end - *first;
}

int sample_classes(UNet *u, const JobConfig *cfg, long first, long count, float *out, Error *e) {
    const ModelConfig *m = &u->cfg;
    int L = m->context_length, D = m->cross_attention_dim, H = m->sample_size, C = m->out_channels;
    Conditioner *cond = cond_create(L, D, (uint64_t)cfg->data.embed_seed, e);
    if (!cond) return -1;
    Schedule s;
    if (schedule_init(&s, &cfg->diffusion, e)) {
        cond_free(cond);
        return -1;
    }
    int rc = 0;
    float *cc = xmalloc((size_t)count * L * D * sizeof(float)), *cu = xmalloc((size_t)count * L * D * sizeof(float));
    for (long i = 0; i < count; i++) {
        int cls = (int)((first + i) / cfg->sample.per_class);
        cond_context(cond, cls, cc + (size_t)i * L * D);
        cond_context(cond, COND_EMPTY, cu + (size_t)i * L * D);
    }
    // in chunks: memory stays bounded and each sample's noise is keyed by its global index.
    // The chunks are the global ones ([4j, 4j+4)), whatever first is: OpenBLAS's AVX2
    // kernels round a sample differently in batches of other sizes, so this keeps a
    // sample's bits independent of how the samples are split across ranks.
    for (long i = 0, k; i < count && !rc; i += k) {
        long end = ((first + i) / SAMPLE_CHUNK + 1) * SAMPLE_CHUNK - first;
        k = (end < count ? end : count) - i;
        DdimOptions o = {.clip_x0 = 1, .first_sample = first + i};
        rc = ddim_sample_opts(u, &s, &cfg->sample, &o, cc + (size_t)i * L * D, cu + (size_t)i * L * D, (int)k, C, H, H,
                              L, out + (size_t)i * C * H * H, e);
    }
    free(cc), free(cu);
    schedule_free(&s);
    cond_free(cond);
    return rc;
}

static int write_samples_h5(const char *path, const float *x, long n, int C, int H, int per_class, const char *model,
                            Error *e) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return errorf(e, "%s: cannot create", tmp);
    hsize_t dims[4] = {(hsize_t)n, (hsize_t)C, (hsize_t)H, (hsize_t)H};
    hid_t sp = H5Screate_simple(4, dims, NULL);
    hid_t ds = H5Dcreate2(f, "/samples", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    int *labels = xmalloc((size_t)n * sizeof(int));
    for (long i = 0; i < n; i++) labels[i] = (int)(i / per_class);
    hsize_t ln = (hsize_t)n;
    hid_t lsp = H5Screate_simple(1, &ln, NULL);
    hid_t lds = H5Dcreate2(f, "/labels", H5T_STD_I32LE, lsp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w2 = H5Dwrite(lds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
    // string attributes: where the samples came from and what the axes mean
    const char *keys[] = {"model", "layout", "value_range"};
    const char *vals[] = {model, "[n, C, H, W], class-major: sample i has class i / per_class", "[-1, 1]"};
    herr_t wa = 0;
    for (int i = 0; i < 3; i++) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, strlen(vals[i]) + 1);
        hid_t as = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(ds, keys[i], st, as, H5P_DEFAULT, H5P_DEFAULT);
        wa |= H5Awrite(a, st, vals[i]);
        H5Aclose(a), H5Sclose(as), H5Tclose(st);
    }
    free(labels);
    H5Dclose(lds), H5Sclose(lsp), H5Dclose(ds), H5Sclose(sp);
    herr_t c = H5Fclose(f);
    if (w < 0 || w2 < 0 || wa < 0 || c < 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return errorf(e, "%s: writing the samples failed", path);
    }
    return 0;
}

float *sample_all(UNet *u, const JobConfig *cfg, Comm *comm, Error *e) {
    int C = u->cfg.out_channels, H = u->cfg.sample_size;
    long n = (long)COND_CLASSES * cfg->sample.per_class, first, count;
    shard_chunks(n, comm->rank, comm->size, &first, &count);
    size_t per = (size_t)C * H * H;
    float *mine = xmalloc((size_t)(count ? count : 1) * per * sizeof(float));
    int rc = sample_classes(u, cfg, first, count, mine, e);
    if (comm_agree(comm, rc, e)) {
        free(mine);
        return NULL;
    }
    // rank 0 gathers the ranks' contiguous blocks, in rank (= sample) order
    size_t *counts = xcalloc((size_t)comm->size, sizeof *counts);
    for (int r = 0; r < comm->size; r++) {
        long f, c;
        shard_chunks(n, r, comm->size, &f, &c);
        counts[r] = (size_t)c * per * sizeof(float);
    }
    float *x = xmalloc((size_t)(comm->rank == 0 ? n : 1) * per * sizeof(float));
    comm->gatherv_bytes(comm, mine, (size_t)count * per * sizeof(float), x, counts, 0);
    free(counts), free(mine);
    return x;
}

int sample_main(RunCtx *r, Error *e) {
    const JobConfig *cfg = r->cfg;
    Comm *comm = r->comm;
    const char *model = cfg->sample.model[0] ? cfg->sample.model : r->dir.model;
    UNet *u = unet_from_file(model, &cfg->model, e);
    if (comm_agree(comm, u ? 0 : -1, e)) {
        unet_free(u);
        return -1;
    }
    // on the rank's GPU the U-Net passes run there (ddim.c brings each prediction back)
    if (run_device(r)) unet_use_backend(u, backend_retain(run_device(r)));
    int C = u->cfg.out_channels, H = u->cfg.sample_size;
    long n = (long)COND_CLASSES * cfg->sample.per_class;
    float *x = sample_all(u, cfg, comm, e);
    if (!x) {
        unet_free(u);
        return -1;
    }
    int rc = 0;
    if (comm->rank == 0) {
        const char *png = r->dir.samples_png, *h5 = r->dir.samples_h5;
        rc = rundir_make(&r->dir, e);
        if (!rc) rc = png_write_grid(png, x, (int)n, C, H, H, COND_CLASSES, cfg->sample.per_class, 2, e);
        if (!rc) rc = write_samples_h5(h5, x, n, C, H, cfg->sample.per_class, model, e);
        if (!rc) {
            printf("sample: %ld samples (%d per class, %d DDIM steps, guidance %.2f) -> %s, %s\n", n,
                   cfg->sample.per_class, cfg->sample.steps, cfg->sample.guidance, png, h5);
            printf("sample: grid rows are the classes in order:");
            for (int c = 0; c < COND_CLASSES; c++) printf(" %d=\"%s\"", c, cond_caption(c));
            printf("\n");
        }
    }
    rc = comm_agree(comm, rc, e);
    free(x);
    unet_free(u);
    return rc;
}
