// forward.c — the `forward` command (commands.h): the U-Net's prediction for
// the samples, timesteps and contexts of an HDF5 file, what a user runs to
// check a converted or pruned checkpoint against PyTorch. One process; the
// batch runs in chunks of FORWARD_CHUNK rows, read and written as hyperslabs,
// so memory stays bounded whatever B is. The output file appears only complete
// (written as OUT.tmp, renamed at the end).
#include "cli/commands.h"

#include <errno.h>
#include <hdf5.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/numerics.h"
#include "io/h5err.h"
#include "io/h5read.h"
#include "model/checkpoint.h"
#include "model/unet.h"

enum { FORWARD_CHUNK = 4 };  // rows per U-Net pass

// Rows [r0, r0+k) of ds (rank rank, dims) as float32 into dst (HDF5 converts
// float64 and integers), then a finiteness check naming the first bad element.
static int read_rows(hid_t ds, const char *path, const char *name, int rank, const hsize_t *dims, hsize_t r0,
                     hsize_t k, float *dst, Error *e) {
    hsize_t start[4] = {r0, 0, 0, 0}, count[4] = {k, 0, 0, 0};
    size_t per = 1;
    for (int i = 1; i < rank; i++) count[i] = dims[i], per *= dims[i];
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(rank, count, NULL);
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (rc >= 0) rc = H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, dst);
    H5Sclose(ms), H5Sclose(fs);
    if (rc < 0) {
        char stack[400];
        h5err_suffix(stack, sizeof stack);
        return errorf(e, "%s: reading %s rows %llu..%llu failed%s", path, name, (unsigned long long)r0,
                      (unsigned long long)(r0 + k - 1), stack);
    }
    size_t n = (size_t)k * per, bad = first_nonfinite(dst, n);
    if (bad < n)
        return errorf(e, "%s: %s row %llu holds a non-finite value (%g, element %zu of the row; float64 values "
                      "beyond float32's range become infinite)", path, name, (unsigned long long)(r0 + bad / per),
                      dst[bad], bad % per);
    return 0;
}

// A [B, dims...] float32 dataset in the output file (an extra group level
// for /taps/<name> is made by the link-creation property).
static hid_t create_output(hid_t f, const char *name, int rank, const hsize_t *dims) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl), H5Sclose(sp);
    return ds;
}

static herr_t write_rows(hid_t ds, hsize_t r0, hsize_t k, int C, int H, int W, const float *src) {
    hsize_t start[4] = {r0, 0, 0, 0}, count[4] = {k, (hsize_t)C, (hsize_t)H, (hsize_t)W};
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(4, count, NULL);
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (rc >= 0) rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, src);
    H5Sclose(ms), H5Sclose(fs);
    return rc;
}

static herr_t write_attr(hid_t obj, const char *key, const char *val) {
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, strlen(val) + 1);
    hid_t as = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, key, st, as, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, st, val);
    if (a >= 0) H5Aclose(a);
    H5Sclose(as), H5Tclose(st);
    return rc;
}

typedef struct {
    const char *path;
    hid_t file, sample, timestep, context, pooled, time_ids;  // the last two: text_time models only
    hsize_t sd[4], td[1], cd[3], pd[2], id[2];
} Inputs;

static void inputs_close(Inputs *in) {
    if (in->sample >= 0) H5Dclose(in->sample);
    if (in->timestep >= 0) H5Dclose(in->timestep);
    if (in->context >= 0) H5Dclose(in->context);
    if (in->pooled >= 0) H5Dclose(in->pooled);
    if (in->time_ids >= 0) H5Dclose(in->time_ids);
    if (in->file >= 0) H5Fclose(in->file);
}

// Opens the three inputs and checks them against each other and the model.
static int inputs_open(Inputs *in, const char *path, const UNet *u, const char *model, Error *e) {
    *in = (Inputs){.path = path, .file = -1, .sample = -1, .timestep = -1, .context = -1, .pooled = -1, .time_ids = -1};
    if (access(path, R_OK) != 0) return errorf(e, "%s: cannot open the inputs: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0) return errorf(e, "%s: not an HDF5 file (--inputs needs /sample, /timestep, /context)", path);
    in->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in->file < 0) return errorf(e, "%s: HDF5 cannot open the file (corrupt, or locked)", path);
    const ModelConfig *m = &u->cfg;
    in->sample = h5_open_float(in->file, path, "/sample", 4, 0, 0, "the noisy samples [B,C,H,W]", in->sd, e);
    if (in->sample < 0) return -1;
    in->timestep = h5_open_float(in->file, path, "/timestep", 1, 1, 0, "the diffusion timesteps [B]", in->td, e);
    if (in->timestep < 0) return -1;
    in->context = h5_open_float(in->file, path, "/context", 3, 0, 0, "the conditioning [B,L,D]", in->cd, e);
    if (in->context < 0) return -1;
    char ss[200], ts[80], cs[200];
    h5_shape_str(ss, sizeof ss, in->sd, 4), h5_shape_str(ts, sizeof ts, in->td, 1), h5_shape_str(cs, sizeof cs, in->cd, 3);
    unsigned long long B = in->sd[0];
    if (in->td[0] != B)
        return errorf(e, "%s: /timestep is %s but /sample is %s: expected one timestep per sample, [%llu]", path, ts,
                      ss, B);
    if (in->cd[0] != B)
        return errorf(e, "%s: /context is %s but /sample is %s: expected one context per sample, [%llu,L,D]", path, cs,
                      ss, B);
    if (in->sd[1] != (hsize_t)m->in_channels)
        return errorf(e, "%s: /sample is %s but the model %s takes in_channels = %d: expected [B,%d,H,W]", path, ss,
                      model, m->in_channels, m->in_channels);
    int f = 1 << (m->n_blocks - 1);
    if (in->sd[2] % f || in->sd[3] % f)
        return errorf(e, "%s: /sample is %s but the model %s downsamples %d times: H and W must be multiples of %d",
                      path, ss, model, m->n_blocks - 1, f);
    if (in->cd[2] != (hsize_t)m->cross_attention_dim)
        return errorf(e, "%s: /context is %s but the model %s has cross_attention_dim = %d: expected [B,L,%d]", path,
                      cs, model, m->cross_attention_dim, m->cross_attention_dim);
    if (u->pooled_dim > 0) {  // SDXL: the added conditioning is required; other models ignore it
        const char *why = "(the model has addition_embed_type \"text_time\")";
        char what[200];
        snprintf(what, sizeof what, "the pooled text embeddings [B,%d] %s", u->pooled_dim, why);
        in->pooled = h5_open_float(in->file, path, "/pooled", 2, 0, 0, what, in->pd, e);
        if (in->pooled < 0) return -1;
        snprintf(what, sizeof what, "the micro-conditioning time ids [B,%d] %s", LD_TIME_IDS, why);
        in->time_ids = h5_open_float(in->file, path, "/time_ids", 2, 1, 0, what, in->id, e);
        if (in->time_ids < 0) return -1;
        char ps[200], is[200];
        h5_shape_str(ps, sizeof ps, in->pd, 2), h5_shape_str(is, sizeof is, in->id, 2);
        if (in->pd[0] != B || in->pd[1] != (hsize_t)u->pooled_dim)
            return errorf(e, "%s: /pooled is %s but /sample is %s and the model %s takes %d pooled features: expected "
                          "[%llu,%d]", path, ps, ss, model, u->pooled_dim, B, u->pooled_dim);
        if (in->id[0] != B || in->id[1] != LD_TIME_IDS)
            return errorf(e, "%s: /time_ids is %s but /sample is %s: expected [%llu,%d]", path, is, ss, B, LD_TIME_IDS);
    }
    return 0;
}

// A diffusers unet/ folder holds diffusion_pytorch_model.safetensors beside
// its config.json (which checkpoint_describe reads); a pipeline folder holds
// that unet/ folder.
static void model_file(const char *model, char *buf, size_t n) {
    struct stat st;
    if (stat(model, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(buf, n, "%s", model);
        return;
    }
    // checkpoint_resolve picks the weights file inside the unet/ folder
    const char *sep = model[0] && model[strlen(model) - 1] == '/' ? "" : "/";
    snprintf(buf, n, "%s%sunet", model, sep);
    if (stat(buf, &st) || !S_ISDIR(st.st_mode)) snprintf(buf, n, "%s", model);
}

int forward_run(FILE *log, const char *model, const char *inputs, const char *out_path, int with_taps,
                const ModelConfig *defaults, Backend *be, Error *e) {
    // --out must not replace --inputs: the rename at the end would
    struct stat si, so;
    if (!stat(inputs, &si) && !stat(out_path, &so) && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return errorf(e, "%s: --out is the --inputs file; write the outputs elsewhere", out_path);
    char dir[1100], mpath[4096];
    model_file(model, dir, sizeof dir);
    if (checkpoint_resolve(dir, mpath, sizeof mpath, e)) return -1;  // the file itself, for the log and /out's "model"
    UNet *u = unet_from_file(mpath, defaults, e);
    if (!u) return -1;
    if (be) unet_use_backend(u, backend_retain(be));
    const Backend *ub = u->be;  // the CPU's where be is NULL: the device copies below are the host buffers
    H5Quiet q = h5err_quiet();  // our Errors instead of HDF5's printed stacks
    Inputs in;
    int rc = inputs_open(&in, inputs, u, mpath, e);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    hid_t of = -1, ods = -1, tds[2 * LD_MAX_BLOCKS + 1];
    int n_tds = 0, created = 0;
    float *x = NULL, *t = NULL, *c = NULL, *y = NULL, *pl = NULL, *ti = NULL, *tap = NULL;
    // the chunk where the U-Net reads and writes it: on a device, copies of the
    // host buffers; on the CPU the host buffers themselves
    float *dev[6] = {NULL};  // x, t, c, pooled, time_ids, y
    if (rc) goto done;
    const ModelConfig *m = &u->cfg;
    int B = (int)in.sd[0], C = m->in_channels, H = (int)in.sd[2], W = (int)in.sd[3], L = (int)in.cd[1],
        D = (int)in.cd[2], Co = m->out_channels;
    errno = 0;
    of = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    created = of >= 0;
    if (of < 0) {
        rc = errorf(e, "%s: cannot create the output (as %s: %s)", out_path, tmp,
                    errno ? strerror(errno) : "HDF5 refused");
        goto done;
    }
    hsize_t od[4] = {(hsize_t)B, (hsize_t)Co, (hsize_t)H, (hsize_t)W};
    ods = create_output(of, "/out", 4, od);
    if (ods < 0 || write_attr(ods, "model", mpath) < 0 || write_attr(ods, "inputs", inputs) < 0 ||
        write_attr(ods, "layout", "[B, out_channels, H, W], row b from /sample[b], /timestep[b], /context[b]") < 0) {
        rc = errorf(e, "%s: cannot write /out", tmp);
        goto done;
    }
    int K = B < FORWARD_CHUNK ? B : FORWARD_CHUNK;
    x = xmalloc(sizeof(float) * (size_t)K * C * H * W), t = xmalloc(sizeof(float) * (size_t)K);
    c = xmalloc(sizeof(float) * (size_t)K * L * D), y = xmalloc(sizeof(float) * (size_t)K * Co * H * W);
    if (u->pooled_dim > 0)
        pl = xmalloc(sizeof(float) * (size_t)K * u->pooled_dim), ti = xmalloc(sizeof(float) * (size_t)K * LD_TIME_IDS);
    float *host[6] = {x, t, c, pl, ti, y};
    size_t per[6] = {(size_t)C * H * W, 1, (size_t)L * D, (size_t)u->pooled_dim, LD_TIME_IDS, (size_t)Co * H * W};
    for (int i = 0; i < 6; i++)
        dev[i] = ub->on_device && host[i] ? ub->mem.alloc(ub->ctx, (size_t)K * per[i]) : host[i];
    unet_set_keep(u, UNET_KEEP_NONE);  // outputs only
    double t0 = now_s();
    for (int b0 = 0; b0 < B && !rc; b0 += K) {
        int k = B - b0 < K ? B - b0 : K;
        rc = read_rows(in.sample, inputs, "/sample", 4, in.sd, (hsize_t)b0, (hsize_t)k, x, e) ||
             read_rows(in.timestep, inputs, "/timestep", 1, in.td, (hsize_t)b0, (hsize_t)k, t, e) ||
             read_rows(in.context, inputs, "/context", 3, in.cd, (hsize_t)b0, (hsize_t)k, c, e) ||
             (pl && read_rows(in.pooled, inputs, "/pooled", 2, in.pd, (hsize_t)b0, (hsize_t)k, pl, e)) ||
             (ti && read_rows(in.time_ids, inputs, "/time_ids", 2, in.id, (hsize_t)b0, (hsize_t)k, ti, e));
        if (rc) break;
        for (int i = 0; i < 5; i++)
            if (dev[i] != host[i]) ub->upload(ub->ctx, dev[i], host[i], (size_t)k * per[i]);
        UNetAdded add = {dev[3], dev[4]};
        if ((rc = unet_forward_added(u, dev[5], dev[0], dev[1], dev[2], &add, k, H, W, L, NULL, e))) break;
        if (dev[5] != y) ub->download(ub->ctx, y, dev[5], (size_t)k * per[5]);
        if (write_rows(ods, (hsize_t)b0, (hsize_t)k, Co, H, W, y) < 0) {
            rc = errorf(e, "%s: writing /out rows %d..%d failed (disk full?)", tmp, b0, b0 + k - 1);
            break;
        }
        for (int i = 0; with_taps && i < u->n_taps; i++) {
            const Tap *tp = &u->taps[i];
            char name[64];
            snprintf(name, sizeof name, "/taps/%s", tp->name);
            if (b0 == 0) {  // the taps' shapes are known after the first pass
                hsize_t td[4] = {(hsize_t)B, (hsize_t)tp->C, (hsize_t)tp->H, (hsize_t)tp->W};
                tds[n_tds] = create_output(of, name, 4, td);
                if (tds[n_tds] < 0) {
                    rc = errorf(e, "%s: cannot create %s", tmp, name);
                    break;
                }
                n_tds++;
            }
            const float *td_ = tp->data;
            if (ub->on_device) {  // down to the host for HDF5
                size_t nt = (size_t)k * tp->C * tp->H * tp->W;
                tap = xrealloc(tap, nt * sizeof(float));
                ub->download(ub->ctx, tap, tp->data, nt);
                td_ = tap;
            }
            if (write_rows(tds[i], (hsize_t)b0, (hsize_t)k, tp->C, tp->H, tp->W, td_) < 0) {
                rc = errorf(e, "%s: writing %s rows %d..%d failed (disk full?)", tmp, name, b0, b0 + k - 1);
                break;
            }
        }
    }
    if (!rc) {
        for (int i = 0; i < n_tds; i++) H5Dclose(tds[i]);
        n_tds = 0;
        herr_t cd = H5Dclose(ods);
        ods = -1;
        herr_t cf = H5Fclose(of);
        of = -1;
        if (cd < 0 || cf < 0) {
            rc = errorf(e, "%s: closing the output failed (disk full?)", tmp);
        } else if (rename(tmp, out_path) != 0) {
            rc = errorf(e, "%s: cannot rename %s into place: %s", out_path, tmp, strerror(errno));
        } else if (log) {
            fprintf(log, "forward: %d sample%s [%d,%d,%d] with %d-token contexts through %s in %.2f s -> %s "
                         "/out [%d,%d,%d,%d]%s\n",
                    B, B == 1 ? "" : "s", C, H, W, L, mpath, now_s() - t0, out_path, B, Co, H, W,
                    with_taps ? " and /taps/*" : "");
        }
    }
done:
    for (int i = 0; i < n_tds; i++) H5Dclose(tds[i]);
    if (ods >= 0) H5Dclose(ods);
    if (of >= 0) H5Fclose(of);
    if (rc && created) remove(tmp);  // never a half-written output
    inputs_close(&in);
    h5err_restore(q);
    for (int i = 0; i < 6; i++)
        if (dev[i] && ub->on_device) ub->mem.free(ub->ctx, dev[i]);
    free(x), free(t), free(c), free(y), free(pl), free(ti), free(tap);
    unet_free(u);
    return rc ? -1 : 0;
}
