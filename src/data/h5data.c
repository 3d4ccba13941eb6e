// h5data.c — see h5data.h.
#include "data/h5data.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "io/h5err.h"
#include "io/h5read.h"

struct H5Data {
    char path[1024];
    char lat_name[96], ctx_name[96], unc_name[96], pool_name[96], tid_name[96];
    hid_t file, lat, ctx, unc, pool, tid;  // unc, pool, tid < 0: not in the file
    H5Shape s;
};


H5Data *h5data_open(const char *path, const char *group, Error *e) {
    if (access(path, R_OK) != 0) {
        errorf(e, "%s: cannot open: %s (set data.path to the HDF5 dataset file)", path,
               strerror(errno));
        return NULL;
    }
    // our callers get an Error instead of HDF5's printed stack
    H5Quiet q = h5err_quiet();
    if (H5Fis_hdf5(path) <= 0) {
        h5err_restore(q);
        errorf(e, "%s: not an HDF5 file", path);
        return NULL;
    }
    H5Data *h = xcalloc(1, sizeof *h);
    h->lat = h->ctx = h->unc = h->pool = h->tid = -1;
    snprintf(h->path, sizeof h->path, "%s", path);
    snprintf(h->lat_name, sizeof h->lat_name, "%s/latents", group);
    snprintf(h->ctx_name, sizeof h->ctx_name, "%s/context", group);
    snprintf(h->unc_name, sizeof h->unc_name, "%s/uncond_context", group);
    snprintf(h->pool_name, sizeof h->pool_name, "%s/pooled", group);
    snprintf(h->tid_name, sizeof h->tid_name, "%s/time_ids", group);
    h->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (h->file < 0) {
        errorf(e, "%s: HDF5 cannot open the file (corrupt, or locked: HDF5_USE_FILE_LOCKING=FALSE "
               "helps on some parallel file systems)", path);
        goto fail;
    }
    hsize_t ld[4], cd[3], ud[2];
    h->lat = h5_open_float(h->file, h->path, h->lat_name, 4, 0, 1, "VAE latents [N,C,H,W]", ld, e);
    if (h->lat < 0) goto fail;
    h->ctx = h5_open_float(h->file, h->path, h->ctx_name, 3, 0, 1, "text-encoder states [N,L,D]", cd, e);
    if (h->ctx < 0) goto fail;
    char ls[160], cs[160];
    h5_shape_str(ls, sizeof ls, ld, 4);
    h5_shape_str(cs, sizeof cs, cd, 3);
    if (ld[0] != cd[0]) {
        errorf(e, "%s: %s is %s but %s is %s: both need the same number of rows N", path,
               h->lat_name, ls, h->ctx_name, cs);
        goto fail;
    }
    if (ld[0] == 0) {
        errorf(e, "%s: %s is %s: no rows", path, h->lat_name, ls);
        goto fail;
    }
    h->s = (H5Shape){(int64_t)ld[0], (int)ld[1], (int)ld[2], (int)ld[3], (int)cd[1], (int)cd[2], 0, 0, 0};
    if (H5Lexists(h->file, h->unc_name, H5P_DEFAULT) > 0) {
        h->unc = h5_open_float(h->file, h->path, h->unc_name, 2, 0, 1, "the empty prompt's context [L,D]", ud, e);
        if (h->unc < 0) goto fail;
        if (ud[0] != cd[1] || ud[1] != cd[2]) {
            char us[160];
            h5_shape_str(us, sizeof us, ud, 2);
            errorf(e, "%s: %s is %s but %s is %s: expected [%d,%d]", path, h->unc_name, us,
                   h->ctx_name, cs, h->s.L, h->s.D);
            goto fail;
        }
        h->s.has_uncond = 1;
    }
    // SDXL's added conditioning: opened when present, required by h5data_check_model for text_time models
    if (H5Lexists(h->file, h->pool_name, H5P_DEFAULT) > 0) {
        hsize_t pd[2];
        h->pool = h5_open_float(h->file, h->path, h->pool_name, 2, 0, 1, "pooled text embeddings [N,P]", pd, e);
        if (h->pool < 0) goto fail;
        if (pd[0] != ld[0]) {
            char ps[160];
            h5_shape_str(ps, sizeof ps, pd, 2);
            errorf(e, "%s: %s is %s but %s is %s: both need the same number of rows N", path, h->pool_name, ps,
                   h->lat_name, ls);
            goto fail;
        }
        h->s.P = (int)pd[1];
    }
    if (H5Lexists(h->file, h->tid_name, H5P_DEFAULT) > 0) {
        hsize_t td[2];
        h->tid = h5_open_float(h->file, h->path, h->tid_name, 2, 1, 1, "micro-conditioning time ids [N,6]", td, e);
        if (h->tid < 0) goto fail;
        if (td[0] != ld[0] || td[1] != LD_TIME_IDS) {
            char ts[160];
            h5_shape_str(ts, sizeof ts, td, 2);
            errorf(e, "%s: %s is %s but %s is %s: expected [%llu,%d] (original H, W, crop top, left, target H, W)",
                   path, h->tid_name, ts, h->lat_name, ls, (unsigned long long)ld[0], LD_TIME_IDS);
            goto fail;
        }
        h->s.has_time_ids = 1;
    }
    h5err_restore(q);
    return h;
fail:
    h5err_restore(q);
    h5data_close(h);
    return NULL;
}

void h5data_close(H5Data *h) {
    if (!h) return;
    if (h->unc >= 0) H5Dclose(h->unc);
    if (h->pool >= 0) H5Dclose(h->pool);
    if (h->tid >= 0) H5Dclose(h->tid);
    if (h->ctx >= 0) H5Dclose(h->ctx);
    if (h->lat >= 0) H5Dclose(h->lat);
    if (h->file >= 0) H5Fclose(h->file);
    free(h);
}

H5Shape h5data_shape(const H5Data *h) { return h->s; }

int h5data_check_model(const H5Data *h, const ModelConfig *m, Error *e) {
    const H5Shape *s = &h->s;
    int f = 1 << (m->n_blocks - 1);
    if (s->C != m->in_channels)
        return errorf(e, "%s: %s is [%" PRId64 ",%d,%d,%d] but the model takes %d input channels "
                      "([N,%d,H,W], model.in_channels)", h->path, h->lat_name, s->n, s->C, s->H,
                      s->W, m->in_channels, m->in_channels);
    if (s->H % f || s->W % f)
        return errorf(e, "%s: %s is [%" PRId64 ",%d,%d,%d] but the model (%d blocks) needs H and "
                      "W to be multiples of %d", h->path, h->lat_name, s->n, s->C, s->H, s->W,
                      m->n_blocks, f);
    if (s->L != m->context_length || s->D != m->cross_attention_dim)
        return errorf(e, "%s: %s is [%" PRId64 ",%d,%d] but the model expects [N,%d,%d] "
                      "(model.context_length, model.cross_attention_dim)", h->path, h->ctx_name,
                      s->n, s->L, s->D, m->context_length, m->cross_attention_dim);
    int P = model_pooled_dim(m);
    if (P > 0) {
        if (!s->P)
            return errorf(e, "%s: no dataset %s: the model has addition_embed_type \"text_time\" (SDXL) and needs the "
                          "pooled text embeddings [N,%d] beside %s", h->path, h->pool_name, P, h->ctx_name);
        if (s->P != P)
            return errorf(e, "%s: %s is [%" PRId64 ",%d] but the model expects [N,%d] "
                          "(model.projection_class_embeddings_input_dim - 6 * model.addition_time_embed_dim)",
                          h->path, h->pool_name, s->n, s->P, P);
        if (!s->has_time_ids)
            return errorf(e, "%s: no dataset %s: the model has addition_embed_type \"text_time\" (SDXL) and needs the "
                          "time ids [N,%d] (original H, W, crop top, left, target H, W)", h->path, h->tid_name,
                          LD_TIME_IDS);
    }
    return 0;
}

// Reads rows [start, start+count) of ds (rank-dimensional) as float32.
static int read_rows(const H5Data *h, hid_t ds, const char *name, int rank, int64_t start,
                     int64_t count, float *dst, Error *e) {
    hid_t fs = H5Dget_space(ds);
    hsize_t off[4] = {(hsize_t)start, 0, 0, 0}, cnt[4];
    H5Sget_simple_extent_dims(fs, cnt, NULL);
    cnt[0] = (hsize_t)count;
    hid_t ms = H5Screate_simple(rank, cnt, NULL);
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL);
    if (rc >= 0) rc = H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, dst);
    H5Sclose(ms);
    H5Sclose(fs);
    if (rc < 0)
        return errorf(e, "%s: reading rows %" PRId64 "..%" PRId64 " of %s failed (I/O error or "
                      "corrupt file)", h->path, start, start + count - 1, name);
    return 0;
}

static int check_rows(const H5Data *h, int64_t start, int64_t count, Error *e) {
    if (start < 0 || count < 0 || start > h->s.n || count > h->s.n - start)
        return errorf(e, "%s: rows [%" PRId64 ", %" PRId64 ") are outside [0, %" PRId64 ")",
                      h->path, start, start + count, h->s.n);
    return 0;
}

int h5data_read(const H5Data *h, int64_t start, int64_t count, float *latents, float *context,
                Error *e) {
    if (check_rows(h, start, count, e)) return -1;
    if (count == 0) return 0;
    H5Quiet q = h5err_quiet();
    int rc = 0;
    if (latents) rc = read_rows(h, h->lat, h->lat_name, 4, start, count, latents, e);
    if (!rc && context) rc = read_rows(h, h->ctx, h->ctx_name, 3, start, count, context, e);
    h5err_restore(q);
    return rc;
}

int h5data_read_added(const H5Data *h, int64_t start, int64_t count, float *pooled, float *time_ids, Error *e) {
    if (check_rows(h, start, count, e)) return -1;
    if (pooled && h->pool < 0) return errorf(e, "%s: no dataset %s", h->path, h->pool_name);
    if (time_ids && h->tid < 0) return errorf(e, "%s: no dataset %s", h->path, h->tid_name);
    if (count == 0) return 0;
    H5Quiet q = h5err_quiet();
    int rc = 0;
    if (pooled) rc = read_rows(h, h->pool, h->pool_name, 2, start, count, pooled, e);
    if (!rc && time_ids) rc = read_rows(h, h->tid, h->tid_name, 2, start, count, time_ids, e);
    h5err_restore(q);
    return rc;
}

int h5data_read_uncond(const H5Data *h, float *ctx, Error *e) {
    if (h->unc < 0) return errorf(e, "%s: no dataset %s", h->path, h->unc_name);
    H5Quiet q = h5err_quiet();
    herr_t rc = H5Dread(h->unc, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ctx);
    h5err_restore(q);
    return rc < 0 ? errorf(e, "%s: reading %s failed", h->path, h->unc_name) : 0;
}
