// test_sdxl.c — SDXL's U-Net beyond the reference fixture (test_reference's
// xlt): the SDXL-base architecture's size, the text_time keys (job file,
// errors, config.json round trip), the text_time inputs through the data layer
// (/pooled and /time_ids in HDF5, their errors, shards, caption dropout,
// Fashion-MNIST's neutral values), calibration sets, batches and DDIM passing
// them on, and the error for a forward without them.
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/batch.h"
#include "data/calib.h"
#include "data/conditioning.h"
#include "data/dataset.h"
#include "data/fmnist.h"
#include "data/h5data.h"
#include "diffusion/ddim.h"
#include "io/config.h"
#include "model/checkpoint.h"
#include "model/init.h"
#include "model/model_json.h"
#include "model/unet.h"
#include "testutil.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/"

static char tmpdir[64];

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

// ------------------------------------------------------------- architecture and config

static void test_sdxl_size(void) {
    JobConfig jc;
    Error e = {0};
    CHECK(job_config_load(&jc, LD_SOURCE_DIR "/jobs/sdxl.cfg", NULL, 0, &e) == 0);
    ModelConfig want;
    model_config_sdxl(&want);
    EXPECT(!memcmp(&jc.model, &want, sizeof want), "jobs/sdxl.cfg is not model_config_sdxl");
    // diffusers 0.27.2: UNet2DConditionModel(**sdxl_base_config) has 2,567,463,684 parameters in 1,680 tensors
    UNet *u = unet_create(&want, NULL, &e);
    CHECK(u);
    EXPECT(u->pt.total == 2567463684ULL && u->pt.n == 1680, "SDXL: %zu parameters in %d tensors", u->pt.total,
           u->pt.n);
    EXPECT(u->pooled_dim == 1280, "pooled width %d", u->pooled_dim);
    unet_free(u);
    want.addition_embed_type = ADD_EMBED_NONE;  // add_embedding: 2816*1280 + 1280 + 1280*1280 + 1280
    u = unet_create(&want, NULL, &e);
    CHECK(u);
    EXPECT(u->pt.total == 2567463684ULL - 5245440 && u->pt.n == 1676, "SDXL without text_time: %zu in %d",
           u->pt.total, u->pt.n);
    unet_free(u);
}

static void expect_cfg_fail(const char *const *sets, int n, const char *want, const char *what) {
    JobConfig jc;
    Error e = {0};
    EXPECT(job_config_load(&jc, FIX "xlt.cfg", sets, n, &e) != 0, "%s: accepted", what);
    EXPECT(strstr(e.msg, want) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, want);
}

static void test_config_keys(void) {
    const char *odd[] = {"model.addition_time_embed_dim=7"};
    expect_cfg_fail(odd, 1, "model.addition_time_embed_dim = 7", "odd time embed dim");
    const char *small[] = {"model.projection_class_embeddings_input_dim=48"};
    expect_cfg_fail(small, 1, "model.projection_class_embeddings_input_dim = 48 must exceed 6 *", "no pooled width");
    const char *bad[] = {"model.addition_embed_type=\"text\""};
    expect_cfg_fail(bad, 1, "model.addition_embed_type", "unknown type");
    // the fixture's file names its own line for the key it set
    const char *zero[] = {"model.addition_time_embed_dim=0"};
    expect_cfg_fail(zero, 1, "addition_embed_type \"text_time\" needs", "zero dim");
    const char *shift[] = {"model.freq_shift=4"};  // add_time_proj's half width is 4
    expect_cfg_fail(shift, 1, "model.freq_shift = 4 must be < model.addition_time_embed_dim / 2 = 4", "freq shift");
    JobConfig jc;
    Error e = {0};
    const char *none[] = {"model.addition_embed_type=\"none\""};
    EXPECT(job_config_load(&jc, FIX "xlt.cfg", none, 1, &e) == 0 && jc.model.addition_embed_type == ADD_EMBED_NONE,
           "\"none\": %s", e.msg);
}

// Entries past n_blocks are not part of the architecture (from_json leaves them as they were).
static int same_model(ModelConfig a, ModelConfig b) {
    for (int i = a.n_blocks; i < LD_MAX_BLOCKS; i++)
        a.block_out_channels[i] = a.down_cross[i] = a.up_cross[i] = a.heads[i] = a.transformer_layers[i] = 0;
    for (int i = b.n_blocks; i < LD_MAX_BLOCKS; i++)
        b.block_out_channels[i] = b.down_cross[i] = b.up_cross[i] = b.heads[i] = b.transformer_layers[i] = 0;
    return !memcmp(&a, &b, sizeof a);
}

static void test_json_round_trip(void) {
    ModelConfig xl, sd, back;
    model_config_sdxl(&xl);
    model_config_sd15(&sd);
    Error e = {0};
    char *j = model_config_to_json(&xl);
    back = sd;  // every key must come from the JSON
    EXPECT(model_config_from_json(&back, j, "sdxl", &e) == 0, "%s", e.msg);
    EXPECT(same_model(back, xl), "SDXL config.json round trip: %s", j);
    EXPECT(strstr(j, "\"addition_embed_type\":\"text_time\"") && strstr(j, "\"addition_time_embed_dim\":256") &&
               strstr(j, "\"projection_class_embeddings_input_dim\":2816"),
           "diffusers' keys: %s", j);
    free(j);
    j = model_config_to_json(&sd);
    back = xl;
    EXPECT(model_config_from_json(&back, j, "sd15", &e) == 0, "%s", e.msg);
    EXPECT(same_model(back, sd) && !strstr(j, "addition"), "SD-1.5 round trip (no addition keys): %s", j);
    free(j);
    back = xl;  // an old config.json without the key: diffusers' default, none
    EXPECT(model_config_from_json(&back, "{\"in_channels\": 4}", "old", &e) == 0 &&
               back.addition_embed_type == ADD_EMBED_NONE,
           "missing key");
    back = xl;  // diffusers' own config.json: null
    EXPECT(model_config_from_json(&back, "{\"addition_embed_type\": null, \"addition_time_embed_dim\": null}", "null",
                                  &e) == 0 && back.addition_embed_type == ADD_EMBED_NONE && !model_pooled_dim(&back),
           "null key: %s", e.msg);
    EXPECT(model_config_from_json(&back, "{\"addition_embed_type\": \"image\"}", "img", &e) != 0 &&
               strstr(e.msg, "img: \"addition_embed_type\""),
           "image embeds refused: %s", e.msg);
}

// ------------------------------------------------------------- data

enum { N = 6, C = 4, S = 8, L = 5, D = 12, P = 10 };
enum { F_POOL = 1, F_TIDS = 2, F_BADP = 4, F_BADT = 8 };

static void h5_put(hid_t f, const char *name, int rank, const hsize_t *dims, const float *data) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds), H5Sclose(sp);
}

// Row r: latents and context r + small offsets, pooled[r][j] = 100 r + j, time ids 1000 r + k.
static const char *make_file(const char *name, int flags) {
    const char *path = tmp(name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    static float lat[N * C * S * S], ctx[N * L * D], pool[N * (P + 1)], tids[N * 6];
    for (int i = 0; i < N * C * S * S; i++) lat[i] = 0.01f * (float)(i % 97) - 0.5f;
    for (int i = 0; i < N * L * D; i++) ctx[i] = 0.02f * (float)(i % 31) - 0.3f;
    int pw = flags & F_BADP ? P - 1 : P;
    for (int r = 0; r < N; r++) {
        for (int j = 0; j < pw; j++) pool[r * pw + j] = (float)(100 * r + j);
        for (int k = 0; k < 6; k++) tids[r * 6 + k] = (float)(1000 * r + k);
    }
    hsize_t ld[4] = {N, C, S, S}, cd[3] = {N, L, D}, pd[2] = {N, (hsize_t)pw}, td[2] = {N, flags & F_BADT ? 5 : 6};
    h5_put(f, "/latents", 4, ld, lat);
    h5_put(f, "/context", 3, cd, ctx);
    if (flags & F_POOL) h5_put(f, "/pooled", 2, pd, pool);
    if (flags & F_TIDS) h5_put(f, "/time_ids", 2, td, tids);
    H5Fclose(f);
    return path;
}

static void xlt_model(ModelConfig *m) {
    JobConfig jc;
    Error e = {0};
    if (job_config_load(&jc, FIX "xlt.cfg", NULL, 0, &e)) FATAL("%s", e.msg);
    *m = jc.model;
}

static void expect_check(const char *path, const ModelConfig *m, const char *want, const char *what) {
    Error e = {0};
    H5Data *h = h5data_open(path, "", &e);
    int rc = h ? h5data_check_model(h, m, &e) : -1;
    if (want) {
        EXPECT(rc != 0, "%s: accepted", what);
        EXPECT(strstr(e.msg, want) && strstr(e.msg, path), "%s: message '%s' lacks '%s' or the file", what, e.msg,
               want);
    } else {
        EXPECT(rc == 0, "%s: %s", what, e.msg);
    }
    h5data_close(h);
}

static void test_h5(void) {
    ModelConfig m, plain;
    xlt_model(&m);
    plain = m;
    plain.addition_embed_type = ADD_EMBED_NONE;
    char good[512];  // tmp()'s buffers are reused
    snprintf(good, sizeof good, "%s", make_file("good.h5", F_POOL | F_TIDS));
    expect_check(good, &m, NULL, "text_time file");
    expect_check(make_file("nopool.h5", F_TIDS), &m, "no dataset /pooled", "no pooled");
    expect_check(make_file("notids.h5", F_POOL), &m, "no dataset /time_ids", "no time ids");
    expect_check(make_file("badp.h5", F_POOL | F_TIDS | F_BADP), &m, "/pooled is [6,9] but the model expects [N,10]",
                 "pooled width");
    expect_check(make_file("badt.h5", F_POOL | F_TIDS | F_BADT), &m, "/time_ids is [6,5]", "time ids width");
    expect_check(tmp("nopool.h5"), &plain, NULL, "a model without text_time ignores them");

    // resident shard rows and on-demand rows agree; dropout zeroes pooled, keeps the time ids
    DataConfig dc = {.source = DATA_HDF5, .cfg_drop = 0};
    snprintf(dc.path, sizeof dc.path, "%s", good);
    Error e = {0};
    Dataset *all = dataset_open(&dc, &m, "train", &e), *sh = all ? dataset_open_shard(&dc, &m, "train", 2, 2, &e) : NULL;
    if (!all || !sh) FATAL("%s", e.msg);
    EXPECT(dataset_shape(all).P == P, "shape P %d", dataset_shape(all).P);
    int ok = 1;
    for (int r = 0; r < N; r++) {
        float p1[P], t1[6], p2[P], t2[6];
        dataset_get_added(all, r, p1, t1, 0);
        dataset_get_added(sh, r, p2, t2, 0);
        for (int j = 0; j < P; j++) ok &= p1[j] == (float)(100 * r + j) && p2[j] == p1[j];
        for (int k = 0; k < 6; k++) ok &= t1[k] == (float)(1000 * r + k) && t2[k] == t1[k];
        dataset_get_added(r % 2 ? all : sh, r, p2, t2, 1);
        for (int j = 0; j < P; j++) ok &= p2[j] == 0;
        for (int k = 0; k < 6; k++) ok &= t2[k] == t1[k];
    }
    EXPECT(ok, "dataset_get_added: rows, shard vs file, caption dropout");
    dataset_close(sh);

    // the calibration set carries each sample's own row (pooled[i][0] / 100 == time_ids[i][0] / 1000)
    JobConfig jc;
    CHECK(job_config_load(&jc, FIX "xlt.cfg", NULL, 0, &e) == 0);
    Calib cs;
    EXPECT(calib_build_from(&cs, &dc, &jc.diffusion, &m, 7, "train", 5, 2, &e) == 0, "calib: %s", e.msg);
    EXPECT(cs.P == P && cs.pooled && cs.time_ids, "calib carries the added conditioning");
    ok = 1;
    for (int i = 0; i < cs.n; i++) {
        int r = (int)(cs.time_ids[i * 6] / 1000);
        for (int j = 0; j < P; j++) ok &= cs.pooled[i * P + j] == (float)(100 * r + j);
    }
    EXPECT(ok, "calib rows: pooled and time ids of the same sample");
    // calib_run passes them: the output moves with the pooled embedding
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    unet_init_params(u, 11);
    size_t per = (size_t)cs.Co * cs.H * cs.W;
    float *o1 = xmalloc(cs.n * per * sizeof(float)), *o2 = xmalloc(cs.n * per * sizeof(float));
    EXPECT(calib_run(u, &cs, NULL, o1, NULL, &e) == 0, "calib_run: %s", e.msg);
    for (int i = 0; i < cs.n * P; i++) cs.pooled[i] += 1;
    EXPECT(calib_run(u, &cs, NULL, o2, NULL, &e) == 0, "calib_run: %s", e.msg);
    EXPECT(tu_max_rel_err(o1, o2, cs.n * per, 0) > 1e-3, "calib_run ignores pooled");
    free(o1), free(o2);
    calib_free(&cs);

    // a batch: each sample's own row, dropped captions with zero pooled
    Schedule s;
    CHECK(schedule_init(&s, &jc.diffusion, &e) == 0);
    Batch bt;
    batch_alloc(&bt, 4, (size_t)C * S * S, L * D);
    batch_alloc_added(&bt, P);
    dc.cfg_drop = 0.5;
    batch_fill(&bt, &dc, 3, all, &s, 1, 0, 4, 4);
    ok = 1;
    int n_dropped = 0;
    for (int i = 0; i < 4; i++) {
        int r = (int)(bt.time_ids[i * 6] / 1000);
        int dropped = cond_drop(3, 1, (uint64_t)i, 0.5);  // batch_fill's own draw
        n_dropped += dropped;
        for (int j = 0; j < P; j++) ok &= bt.pooled[i * P + j] == (dropped ? 0 : (float)(100 * r + j));
    }
    EXPECT(ok && n_dropped > 0 && n_dropped < 4, "batch rows (%d of 4 captions dropped)", n_dropped);
    UNetAdded a = batch_added(&bt, 2);
    EXPECT(a.pooled == bt.pooled + 2 * P && a.time_ids == bt.time_ids + 12, "batch_added offsets");
    batch_free(&bt);
    schedule_free(&s);
    dataset_close(all);
    unet_free(u);
}

// A text_time checkpoint without metadata or config.json: text_time and the
// add_embedding width come from the shapes, the time-embed width from the defaults.
static void test_infer(void) {
    ModelConfig m;
    xlt_model(&m);
    Error e = {0};
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    unet_init_params(u, 9);
    StOut *ts = xcalloc((size_t)u->pt.n, sizeof *ts);
    st_outs_from_params(ts, &u->pt, u->params);
    const char *path = tmp("bare.safetensors");
    CHECK(st_write(path, ts, u->pt.n, NULL, 0, &e) == 0);
    free(ts);
    ModelConfig def = m;  // the job's section, as a user would have it, but without text_time
    def.addition_embed_type = ADD_EMBED_NONE, def.projection_class_embeddings_input_dim = 0;
    UNet *v = unet_from_file(path, &def, &e);
    EXPECT(v && v->pooled_dim == P && v->cfg.projection_class_embeddings_input_dim == 58 &&
               v->cfg.transformer_layers[2] == 3 && v->pt.total == u->pt.total,
           "inferred text_time: %s", v ? "" : e.msg);
    if (v) EXPECT(!memcmp(v->params, u->params, u->pt.total * sizeof(float)), "weights");
    unet_free(v);
    def.addition_time_embed_dim = 0;
    v = unet_from_file(path, &def, &e);
    EXPECT(!v && strstr(e.msg, "add_embedding.linear_1.weight takes 58 inputs") &&
               strstr(e.msg, "model.addition_time_embed_dim"),
           "no split without the time-embed width: %s", e.msg);
    unet_free(v);
    unlink(path);
    unet_free(u);
}

// A sharded checkpoint: the xlt weights over two shards and an index, loaded
// as one file; broken indexes are errors (and leak nothing, under ASan).
static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    CHECK(fp && fputs(text, fp) >= 0 && fclose(fp) == 0);
}

static void test_sharded(void) {
    ModelConfig m;
    xlt_model(&m);
    Error e = {0};
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    unet_init_params(u, 13);
    StOut *ts = xcalloc((size_t)u->pt.n, sizeof *ts);
    st_outs_from_params(ts, &u->pt, u->params);
    int half = u->pt.n / 2;
    char dir[512], a[600], b[600], idx[600];
    snprintf(dir, sizeof dir, "%s", tmp("unet_sharded"));
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(a, sizeof a, "%s/a.safetensors", dir), snprintf(b, sizeof b, "%s/b.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
    CHECK(st_write(a, ts, half, NULL, 0, &e) == 0 && st_write(b, ts + half, u->pt.n - half, NULL, 0, &e) == 0);
    // the index: every tensor mapped to its shard (a JSON object built by hand)
    size_t cap = 64 + (size_t)u->pt.n * (LD_NAME_MAX + 32), len = 0;
    char *json = xmalloc(cap);
    len += (size_t)snprintf(json + len, cap - len, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < u->pt.n; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s\"%s\": \"%s\"", i ? ", " : "", u->pt.t[i].name,
                                i < half ? "a.safetensors" : "b.safetensors");
    snprintf(json + len, cap - len, "}}");
    write_text(idx, json);
    char cj[600];
    snprintf(cj, sizeof cj, "%s/config.json", dir);
    char *cfg = model_config_to_json(&m);
    write_text(cj, cfg);
    free(cfg);
    UNet *v = unet_from_file(dir, &m, &e);  // the folder: checkpoint_resolve finds the index
    EXPECT(v && v->pt.total == u->pt.total && !memcmp(v->params, u->params, u->pt.total * sizeof(float)),
           "sharded folder loads the same weights: %s", v ? "" : e.msg);
    unet_free(v);
    // broken indexes
    struct { const char *from, *to, *want; } brk[] = {
        {"\"b.safetensors\"}}", "\"c.safetensors\"}}", "c.safetensors: cannot open"},  // last tensor in a missing shard
        {"\"a.safetensors\", \"", "\"b.safetensors\", \"", "which does not hold it"},  // first tensor in the wrong shard
        {"\"weight_map\"", "\"weights\"", "no \"weight_map\" object"},
    };
    for (size_t k = 0; k < sizeof brk / sizeof *brk; k++) {
        char *p = strstr(json, brk[k].from);
        CHECK(p);
        size_t nf = strlen(brk[k].from), nt = strlen(brk[k].to);
        char *bad = xmalloc(strlen(json) + nt + 1);
        memcpy(bad, json, (size_t)(p - json));
        strcpy(bad + (p - json), brk[k].to);
        strcat(bad, p + nf);
        write_text(idx, bad);
        free(bad);
        v = unet_from_file(dir, &m, &e);
        EXPECT(!v && strstr(e.msg, brk[k].want), "broken index %zu: %s", k, v ? "loaded" : e.msg);
        unet_free(v);
    }
    // a shard tensor the map leaves out: drop the last entry
    char *last = strrchr(json, ',');
    CHECK(last);
    strcpy(last, "}}");
    write_text(idx, json);
    v = unet_from_file(dir, &m, &e);
    EXPECT(!v && strstr(e.msg, "which weight_map does not name"), "unmapped tensor: %s", v ? "loaded" : e.msg);
    unet_free(v);
    free(json), free(ts);
    unlink(a), unlink(b), unlink(idx), unlink(cj), rmdir(dir);
    unet_free(u);
}

static void test_fmnist_neutral(void) {
    ModelConfig m;
    xlt_model(&m);
    m.in_channels = m.out_channels = 1;
    m.context_length = 8;
    DataConfig dc = {.source = DATA_FASHION_MNIST, .embed_seed = 5};
    snprintf(dc.path, sizeof dc.path, "%s", FMNIST_DEFAULT_DIR);
    Error e = {0};
    Dataset *d = dataset_open(&dc, &m, "test", &e);
    if (!d) {
        EXPECT(0, "fashion-mnist: %s", e.msg);
        return;
    }
    float p[P], t[6];
    memset(p, 0xff, sizeof p);
    dataset_get_added(d, 17, p, t, 0);
    int ok = 1;
    for (int j = 0; j < P; j++) ok &= p[j] == 0;
    const float want[6] = {32, 32, 0, 0, 32, 32};
    EXPECT(ok && !memcmp(t, want, sizeof want), "neutral: pooled zeros, time ids (32,32,0,0,32,32)");
    dataset_close(d);
}

// ------------------------------------------------------------- forward and sampling

static void test_forward_and_ddim(void) {
    ModelConfig m;
    xlt_model(&m);
    Error e = {0};
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    unet_init_params(u, 5);
    enum { B = 2 };
    float x[B * C * 16 * 16], ctx[B * L * D], t[B] = {10, 900}, out[B * C * 16 * 16];
    TuRng r;
    tu_rng_seed(&r, 3);
    tu_fill(&r, x, sizeof x / sizeof *x, -1, 1);
    tu_fill(&r, ctx, sizeof ctx / sizeof *ctx, -1, 1);
    EXPECT(unet_forward(u, out, x, t, ctx, B, 16, 16, L, NULL, &e) != 0 &&
               strstr(e.msg, "needs the pooled text embedding [B,10] and the time ids [B,6]"),
           "a text_time forward without pooled/time ids: %s", e.msg);

    // DDIM: neutral values when none are given = explicit zeros and (H,W,0,0,H,W)
    Schedule s;
    JobConfig jc;
    CHECK(job_config_load(&jc, FIX "xlt.cfg", NULL, 0, &e) == 0 && schedule_init(&s, &jc.diffusion, &e) == 0);
    SampleConfig sc = jc.sample;
    sc.steps = 2, sc.guidance = 2;
    float s1[B * C * 16 * 16], s2[B * C * 16 * 16], s3[B * C * 16 * 16];
    float pz[B * P] = {0}, tid[B * 6], pc[B * P];
    for (int b = 0; b < B; b++) unet_neutral_time_ids(tid + 6 * b, 16, 16);
    tu_fill(&r, pc, B * P, -1, 1);
    DdimOptions o = {.clip_x0 = 0};
    EXPECT(ddim_sample_opts(u, &s, &sc, &o, ctx, ctx, B, C, 16, 16, L, s1, &e) == 0, "ddim: %s", e.msg);
    DdimOptions o2 = {.clip_x0 = 0, .pooled_cond = pz, .pooled_uncond = pz, .time_ids = tid};
    EXPECT(ddim_sample_opts(u, &s, &sc, &o2, ctx, ctx, B, C, 16, 16, L, s2, &e) == 0, "ddim: %s", e.msg);
    EXPECT(!memcmp(s1, s2, sizeof s1), "ddim's neutral values are zeros and (H,W,0,0,H,W)");
    DdimOptions o3 = {.clip_x0 = 0, .pooled_cond = pc, .pooled_uncond = pz, .time_ids = tid};
    EXPECT(ddim_sample_opts(u, &s, &sc, &o3, ctx, ctx, B, C, 16, 16, L, s3, &e) == 0, "ddim: %s", e.msg);
    EXPECT(tu_max_rel_err(s3, s1, sizeof s1 / sizeof *s1, 0) > 1e-4, "ddim passes pooled_cond on");
    schedule_free(&s);
    unet_free(u);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ld_test_sdxl_XXXXXX");
    CHECK(mkdtemp(tmpdir));
    tu_set_threads(1);
    test_sdxl_size();
    test_config_keys();
    test_json_round_trip();
    test_infer();
    test_sharded();
    test_h5();
    test_fmnist_neutral();
    test_forward_and_ddim();
    const char *files[] = {"good.h5", "nopool.h5", "notids.h5", "badp.h5", "badt.h5"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(tmp(files[i]));
    rmdir(tmpdir);
    return tu_report("test_sdxl");
}
