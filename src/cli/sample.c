// sample.c — see sample.h.
#include "cli/sample.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "model/checkpoint.h"
#include "data/conditioning.h"
#include "diffusion/ddim.h"
#include "io/png_grid.h"
#include "diffusion/schedule.h"
#include "train/trainer.h"

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
    int bad = rc != 0;
    comm->max_i32(comm, &bad, 1);
    if (bad) {
        if (!rc) errorf(e, "%s", TRAINER_OTHER_RANK);
        free(mine);
        return NULL;
    }
    // gather to rank 0 (as doubles: the one gather the Comm interface has)
    int *counts = xcalloc((size_t)comm->size, sizeof(int));
    for (int r = 0; r < comm->size; r++) {
        long f, c;
        shard_chunks(n, r, comm->size, &f, &c);
        counts[r] = (int)(c * (long)per);
    }
    double *send = xmalloc((size_t)(count ? count : 1) * per * sizeof(double));
    for (size_t i = 0; i < (size_t)count * per; i++) send[i] = mine[i];
    double *all = comm->rank == 0 ? xmalloc((size_t)n * per * sizeof(double)) : NULL;
    comm->gatherv_f64(comm, send, (int)(count * (long)per), all, counts, 0);
    float *x = xmalloc((size_t)(comm->rank == 0 ? n : 1) * per * sizeof(float));
    if (comm->rank == 0)
        for (size_t i = 0; i < (size_t)n * per; i++) x[i] = (float)all[i];
    free(all), free(send), free(counts), free(mine);
    return x;
}

int sample_main(const JobConfig *cfg, Comm *comm, Error *e) {
    char model[1100];
    if (cfg->sample.model[0])
        snprintf(model, sizeof model, "%s", cfg->sample.model);
    else
        snprintf(model, sizeof model, "%s/model.safetensors", cfg->output.dir);
    UNet *u = unet_from_file(model, &cfg->model, e);
    if (!u) return -1;
    int C = u->cfg.out_channels, H = u->cfg.sample_size;
    long n = (long)COND_CLASSES * cfg->sample.per_class;
    float *x = sample_all(u, cfg, comm, e);
    if (!x) {
        unet_free(u);
        return -1;
    }
    int rc = 0;
    if (comm->rank == 0) {
        char png[1100], h5[1100];
        snprintf(png, sizeof png, "%s/samples.png", cfg->output.dir);
        snprintf(h5, sizeof h5, "%s/samples.h5", cfg->output.dir);
        rc = make_dirs(cfg->output.dir, e);
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
    int fail = rc != 0;
    comm->max_i32(comm, &fail, 1);
    if (fail && !rc) errorf(e, "%s", TRAINER_OTHER_RANK);
    free(x);
    unet_free(u);
    return fail ? -1 : 0;
}
