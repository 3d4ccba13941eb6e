// checkpoint.c — see checkpoint.h.
#include "model/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/numerics.h"
#include "model/model_json.h"

// A NaN or Inf weight makes every output, score and loss NaN without a word: refuse it at load.
static int check_finite(const StFile *f, const ParamTensor *p, const float *x, Error *e) {
    size_t n = p->numel, bad = first_nonfinite(x, n);
    if (bad == n) return 0;
    return errorf(e, "%s: tensor %s holds a non-finite weight (%g at element %zu); refusing NaN/Inf weights", f->path,
                  p->name, (double)x[bad], bad);
}

int tensor_check_shape(const StFile *f, const StTensor *t, const ParamTensor *p, Error *e) {
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (same) return 0;
    char want[64] = "", got[96] = "";
    for (int d = 0; d < p->ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", d ? "," : "", p->shape[d]);
    for (int d = 0; d < t->ndim; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
    return errorf(e, "%s: tensor %s has shape [%s], the model expects [%s]", f->path, t->name, got, want);
}

int unet_check_weights(const UNet *u, const StFile *f, Error *e) {
    // shapes first: a mismatch names the tensor and both shapes
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *p = &u->pt.t[i];
        const StTensor *t = st_find(f, p->name);
        if (!t) {
            int missing = 0;
            for (int j = i; j < u->pt.n; j++) missing += st_find(f, u->pt.t[j].name) == NULL;
            return errorf(e, "%s: missing tensor %s (%d tensor%s of the model missing in all)", f->path, p->name,
                          missing, missing == 1 ? "" : "s");
        }
        if (tensor_check_shape(f, t, p, e)) return -1;
    }
    for (int i = 0; i < f->n_tensors; i++)
        if (!params_find(&u->pt, f->tensors[i].name))
            return errorf(e, "%s: unexpected tensor %s (not part of this model)", f->path, f->tensors[i].name);
    return 0;
}

int unet_load_weights(UNet *u, const StFile *f, Error *e) {
    if (unet_check_weights(u, f, e)) return -1;
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *p = &u->pt.t[i];
        if (st_read_f32(f, st_find(f, p->name), u->params + p->offset, e)) return -1;
        if (check_finite(f, p, u->params + p->offset, e)) return -1;
    }
    return 0;
}

// unet_check_weights, then the finiteness of every tensor, read one at a time (no model-sized buffer).
static int check_weights_finite(const UNet *u, const StFile *f, Error *e) {
    if (unet_check_weights(u, f, e)) return -1;
    size_t most = 0;
    for (int i = 0; i < u->pt.n; i++)
        if (u->pt.t[i].numel > most) most = u->pt.t[i].numel;
    float *buf = xmalloc((most ? most : 1) * sizeof *buf);
    int rc = 0;
    for (int i = 0; i < u->pt.n && !rc; i++) {
        const ParamTensor *p = &u->pt.t[i];
        rc = st_read_f32(f, st_find(f, p->name), buf, e) || check_finite(f, p, buf, e) ? -1 : 0;
    }
    free(buf);
    return rc;
}

char *unet_removed_names(const UNet *u) {
    size_t cap = 1;
    for (int c = 0; c < u->n_cands; c++) cap += strlen(u->cands[c].name) + 1;
    char *s = xcalloc(cap, 1);
    for (int c = 0; c < u->n_cands; c++)
        if (!u->cands[c].present) {
            if (*s) strcat(s, ",");
            strcat(s, u->cands[c].name);
        }
    return s;
}

int unet_save(const UNet *u, const char *path, const char *const *meta, int n_meta, Error *e) {
    StOut *ts = xcalloc((size_t)u->pt.n, sizeof *ts);
    st_outs_from_params(ts, &u->pt, u->params);
    char *cfg = model_config_to_json(&u->cfg), *rm = unet_removed_names(u);
    const char **kv = xcalloc((size_t)2 * (n_meta + 2), sizeof *kv);
    kv[0] = "config", kv[1] = cfg, kv[2] = "removed", kv[3] = rm;
    for (int i = 0; i < 2 * n_meta; i++) kv[4 + i] = meta[i];
    int rc = st_write(path, ts, u->pt.n, kv, n_meta + 2, e);
    free(kv);
    free(cfg);
    free(rm);
    free(ts);
    return rc;
}

int candidate_mark(const UNet *full, const char *name, uint8_t *flags, const char *what, Error *e) {
    for (int c = 0; c < full->n_cands; c++)
        if (!strcmp(full->cands[c].name, name)) {
            flags[c] = 1;
            return 0;
        }
    // the name may be one of the other granularity's: say so
    const char *hint = "";
    size_t len = strlen(name);
    if (full->gran == GRAN_LAYER && strstr(name, ".transformer_blocks."))
        hint = " at prune.granularity = \"layer\" (single BasicTransformerBlocks are candidates at \"block\")";
    for (int c = 0; c < full->n_cands && full->gran == GRAN_BLOCK && !*hint; c++)
        if (!strncmp(full->cands[c].name, name, len) && !strcmp(full->cands[c].name + len, ".transformer_blocks.0"))
            hint = " at prune.granularity = \"block\" (a Transformer2DModel of >= 2 blocks is removed block by block there)";
    return errorf(e, "%s: \"%s\" is not a removable layer of this architecture%s", what, name, hint);
}

int candidates_from_names(const UNet *full, const char *names, uint8_t *flags, const char *what, Error *e) {
    char *s = xstrdup(names), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(s, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (*tok) rc = candidate_mark(full, tok, flags, what, e);
    }
    free(s);
    return rc;
}

static char *read_text_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    if (n < 0 || n > (1 << 20)) {
        fclose(fp);
        return NULL;
    }
    char *s = xmalloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, fp);
    s[got] = 0;
    fclose(fp);
    return s;
}

int checkpoint_describe(const StFile *f, ModelConfig *cfg, uint8_t **absent, Error *e) {
    const char *meta = st_meta(f, "config");
    *absent = NULL;
    if (meta) {
        if (model_config_from_json(cfg, meta, f->path, e)) return -1;
    } else {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", f->path);
        char *slash = strrchr(dir, '/');
        if (slash) slash[1] = 0; else dir[0] = 0;
        char cj[1100];
        snprintf(cj, sizeof cj, "%sconfig.json", dir);
        char *text = read_text_file(cj);
        int rc = text ? model_config_from_json(cfg, text, cj, e) : model_config_infer(cfg, f, e);
        free(text);
        if (rc) return -1;
    }
    // a student made at block granularity names its removed blocks: its candidate list is that one
    const char *rm = st_meta(f, "removed");
    UNet *full = unet_create_at(cfg, granularity_of_names(rm), NULL, e);
    if (!full) return -1;
    *absent = xcalloc((size_t)full->n_cands + 1, 1);
    int rc = rm ? candidates_from_names(full, rm, *absent, f->path, e) : 0;
    unet_free(full);
    if (rc) {
        free(*absent);
        *absent = NULL;
    }
    return rc;
}

int checkpoint_resolve(const char *path, char *file, size_t n, Error *e) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(file, n, "%s", path);  // a file (or nothing: st_open says so)
        return 0;
    }
    // diffusers' unet/ folder: full precision first, then the fp16 variant
    static const char *const names[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"};
    size_t len = strlen(path);
    const char *sep = len && path[len - 1] == '/' ? "" : "/";
    for (int i = 0; i < 2; i++) {
        if ((size_t)snprintf(file, n, "%s%s%s", path, sep, names[i]) >= n)
            return errorf(e, "%s: path too long", path);
        if (access(file, F_OK) == 0) return 0;
    }
    // sharded: the index (st_open reads its shards)
    static const char *const index[] = {"diffusion_pytorch_model.safetensors.index.json",
                                        "diffusion_pytorch_model.safetensors.index.fp16.json",
                                        "diffusion_pytorch_model.fp16.safetensors.index.json"};
    for (int i = 0; i < 3; i++) {
        if ((size_t)snprintf(file, n, "%s%s%s", path, sep, index[i]) >= n) return errorf(e, "%s: path too long", path);
        if (access(file, F_OK) == 0) return 0;
    }
    return errorf(e, "%s: a folder without diffusion_pytorch_model.safetensors, diffusion_pytorch_model.fp16.safetensors "
                     "or a sharded diffusion_pytorch_model.safetensors.index.json (expected a diffusers unet/ folder: "
                     "config.json + weights)",
                  path);
}

// Opens, describes and builds; load_data 1 loads, 0 only checks names, shapes and
// finiteness, -1 names and shapes (the header).
static UNet *open_model(const char *path, const ModelConfig *defaults, int load_data, Error *e) {
    StFile f;
    char file[4096];
    if (checkpoint_resolve(path, file, sizeof file, e) || st_open(&f, file, e)) return NULL;
    ModelConfig cfg = *defaults;
    uint8_t *absent = NULL;
    UNet *u = NULL;
    if (checkpoint_describe(&f, &cfg, &absent, e) == 0) {
        u = unet_create_at(&cfg, granularity_of_names(st_meta(&f, "removed")), absent, e);
        if (u && (load_data > 0 ? unet_load_weights(u, &f, e)
                  : load_data == 0 ? check_weights_finite(u, &f, e)
                                   : unet_check_weights(u, &f, e))) {
            unet_free(u);
            u = NULL;
        }
    }
    free(absent);
    st_close(&f);
    return u;
}

UNet *unet_from_file(const char *path, const ModelConfig *defaults, Error *e) {
    return open_model(path, defaults, 1, e);
}

UNet *unet_describe_file(const char *path, const ModelConfig *defaults, Error *e) {
    return open_model(path, defaults, 0, e);
}

UNet *unet_shape_file(const char *path, const ModelConfig *defaults, Error *e) {
    return open_model(path, defaults, -1, e);
}

int unet_load_file(UNet *u, const char *path, Error *e) {
    StFile f;
    if (st_open(&f, path, e)) return -1;
    int rc = unet_load_weights(u, &f, e);
    st_close(&f);
    return rc;
}
