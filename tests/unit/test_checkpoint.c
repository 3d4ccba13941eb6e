// test_checkpoint.c — U-Net weights <-> safetensors: round trip of a pruned
// student (architecture and removed layers travel in the metadata), strict
// loading errors (missing, unexpected, wrong-shaped tensors), and an SD-1.5
// shaped checkpoint without metadata (as diffusers writes it, F16, sparse on
// disk) whose architecture is inferred from shapes or read from config.json.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/model_json.h"
#include "testutil.h"
#include "model/unet.h"

static char tmpdir[256];

static void tiny(ModelConfig *m) {
    tu_tiny_model(m, 1, 1, 8, 2);
    m->heads[1] = 2;
}

static void round_trip(void) {
    ModelConfig m;
    tiny(&m);
    Error e;
    UNet *full = unet_create(&m, NULL, &e);
    CHECK(full);
    uint8_t absent[64] = {0};
    absent[1] = absent[full->n_cands - 2] = 1;
    UNet *s = unet_create(&m, absent, &e);
    CHECK(s);
    TuRng r;
    tu_rng_seed(&r, 5);
    tu_fill(&r, s->params, s->pt.total, -0.5f, 0.5f);
    char path[512];
    snprintf(path, sizeof path, "%s/student.safetensors", tmpdir);
    const char *meta[] = {"note", "round trip"};
    EXPECT(unet_save(s, path, meta, 1, &e) == 0, "save: %s", e.msg);
    ModelConfig defaults;
    model_config_sd15(&defaults);  // must be overridden by the file's own config
    UNet *back = unet_from_file(path, &defaults, &e);
    EXPECT(back != NULL, "load: %s", e.msg);
    if (back) {
        EXPECT(back->pt.total == s->pt.total, "same parameter count %zu vs %zu", back->pt.total, s->pt.total);
        EXPECT(!memcmp(back->params, s->params, s->pt.total * sizeof(float)), "weights bit-exact");
        for (int c = 0; c < s->n_cands; c++)
            EXPECT(back->cands[c].present == s->cands[c].present, "candidate %s presence", s->cands[c].name);
        float x[2 * 8 * 8], t[2] = {5, 900}, ctx[2 * 3 * 6], o1[2 * 64], o2[2 * 64];
        tu_fill(&r, x, 128, -1, 1);
        tu_fill(&r, ctx, 36, -1, 1);
        CHECK(unet_forward(s, o1, x, t, ctx, 2, 8, 8, 3, NULL, &e) == 0);
        CHECK(unet_forward(back, o2, x, t, ctx, 2, 8, 8, 3, NULL, &e) == 0);
        EXPECT(!memcmp(o1, o2, sizeof o1), "loaded student computes the same output bit for bit");
        unet_free(back);
    }
    // the pruned file cannot be loaded as the full architecture
    StFile f;
    CHECK(st_open(&f, path, &e) == 0);
    EXPECT(unet_load_weights(full, &f, &e) != 0 && strstr(e.msg, "missing tensor"), "strict: %s", e.msg);
    st_close(&f);
    unet_free(full);
    unet_free(s);
}

// Writes the model's tensors, with one changed by `how`: 0 drop it, 1 add a stray, 2 reshape.
static void write_broken(const UNet *u, const char *path, int victim, int how) {
    StOut *ts = xcalloc((size_t)u->pt.n + 1, sizeof *ts);
    int n = 0;
    float *stray = xcalloc(16, sizeof(float));
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *p = &u->pt.t[i];
        if (i == victim && how == 0) continue;
        ts[n].name = p->name, ts[n].ndim = p->ndim, ts[n].data = u->params + p->offset;
        for (int d = 0; d < p->ndim; d++) ts[n].shape[d] = p->shape[d];
        if (i == victim && how == 2) {  // same element count, different shape
            ts[n].ndim = 1;
            ts[n].shape[0] = (int64_t)p->numel;
        }
        n++;
    }
    if (how == 1) {
        ts[n].name = "down_blocks.0.resnets.0.extra.weight", ts[n].ndim = 1, ts[n].shape[0] = 16, ts[n].data = stray;
        n++;
    }
    Error e;
    CHECK(st_write(path, ts, n, NULL, 0, &e) == 0);
    free(ts);
    free(stray);
}

static void strict_errors(void) {
    ModelConfig m;
    tiny(&m);
    Error e;
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    const struct { int how; const char *want; } cases[] = {
        {0, "missing tensor down_blocks.0.attentions.0.proj_in.weight"},
        {1, "unexpected tensor down_blocks.0.resnets.0.extra.weight"},
        {2, "has shape [64], the model expects [8,8,1,1]"},
    };
    int victim = -1;
    for (int i = 0; i < u->pt.n; i++)
        if (!strcmp(u->pt.t[i].name, "down_blocks.0.attentions.0.proj_in.weight")) victim = i;
    CHECK(victim >= 0);
    for (int k = 0; k < 3; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/broken%d.safetensors", tmpdir, k);
        write_broken(u, path, victim, cases[k].how);
        StFile f;
        CHECK(st_open(&f, path, &e) == 0);
        int rc = unet_load_weights(u, &f, &e);
        EXPECT(rc != 0 && strstr(e.msg, cases[k].want) && strstr(e.msg, path), "case %d: got \"%s\"", k,
               rc ? e.msg : "success");
        st_close(&f);
    }
    unet_free(u);
}

// An SD-1.5-shaped F16 checkpoint as diffusers writes it (no metadata), stored
// sparse: the header is real, the data is zeros that take no disk space.
static void write_sd15_sparse(const char *path) {
    ModelConfig m;
    model_config_sd15(&m);
    Error e;
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    size_t cap = 1 << 20, len = 0;
    char *h = xmalloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    uint64_t off = 0;
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *p = &u->pt.t[i];
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[", i ? "," : "", p->name);
        for (int d = 0; d < p->ndim; d++) len += (size_t)snprintf(h + len, cap - len, "%s%d", d ? "," : "", p->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                (unsigned long long)(off + 2 * p->numel));
        off += 2 * p->numel;
        CHECK(len < cap - 256);
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    uint64_t n = len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
    CHECK(write(fd, le, 8) == 8 && write(fd, h, len) == (ssize_t)len);
    CHECK(ftruncate(fd, (off_t)(8 + len + off)) == 0);
    close(fd);
    free(h);
    unet_free(u);
}

static void sd15_checkpoint(int with_config_json) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/sd15_%d", tmpdir, with_config_json);
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    write_sd15_sparse(path);
    ModelConfig want;
    model_config_sd15(&want);
    if (with_config_json) {  // diffusers' file: heads given as attention_head_dim = 8
        char cj[600];
        snprintf(cj, sizeof cj, "%s/config.json", dir);
        FILE *f = fopen(cj, "w");
        CHECK(f);
        fprintf(f, "{\"_class_name\": \"UNet2DConditionModel\", \"act_fn\": \"silu\", \"attention_head_dim\": 8,"
                   " \"block_out_channels\": [320, 640, 1280, 1280], \"center_input_sample\": false,"
                   " \"cross_attention_dim\": 768, \"down_block_types\": [\"CrossAttnDownBlock2D\","
                   " \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"downsample_padding\": 1,"
                   " \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4, \"layers_per_block\": 2,"
                   " \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, \"norm_num_groups\": 32, \"out_channels\": 4,"
                   " \"sample_size\": 64, \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\","
                   " \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}\n");
        fclose(f);
    }
    Error e;
    StFile f;
    CHECK(st_open(&f, path, &e) == 0);
    ModelConfig got;
    memset(&got, 0, sizeof got);
    // start from values shapes cannot tell (as `info` does with the job defaults)
    got.heads[0] = got.heads[1] = got.heads[2] = got.heads[3] = 8;
    got.norm_num_groups = 32, got.norm_eps = 1e-5f, got.flip_sin_to_cos = 1, got.sample_size = 64;
    got.context_length = 77;
    uint8_t *absent = NULL;
    EXPECT(checkpoint_describe(&f, &got, &absent, &e) == 0, "describe: %s", e.msg);
    EXPECT(got.n_blocks == 4 && got.layers_per_block == 2 && got.cross_attention_dim == 768 &&
               got.in_channels == 4 && got.out_channels == 4 && !got.use_linear_projection,
           "architecture recognised (config.json: %d)", with_config_json);
    for (int i = 0; i < 4; i++)
        EXPECT(got.block_out_channels[i] == want.block_out_channels[i] && got.down_cross[i] == want.down_cross[i] &&
                   got.up_cross[i] == want.up_cross[i] && got.heads[i] == 8,
               "block %d", i);
    UNet *u = unet_create(&got, absent, &e);
    CHECK(u);
    EXPECT(u->pt.total == 859520964u && u->pt.n == 686 && u->n_cands == 34, "SD-1.5: %zu params, %d tensors, %d candidates",
           u->pt.total, u->pt.n, u->n_cands);
    EXPECT(unet_check_weights(u, &f, &e) == 0, "every name and shape matches: %s", e.msg);
    // read (F16 -> F32) the largest tensor and the last one
    const ParamTensor *big = &u->pt.t[0];
    for (int i = 0; i < u->pt.n; i++)
        if (u->pt.t[i].numel > big->numel) big = &u->pt.t[i];
    EXPECT(st_read_f32(&f, st_find(&f, big->name), u->params + big->offset, &e) == 0, "read %s: %s", big->name, e.msg);
    EXPECT(st_read_f32(&f, st_find(&f, "conv_out.bias"), u->params + u->pt.t[u->pt.n - 1].offset, &e) == 0, "read: %s", e.msg);
    unet_free(u);
    free(absent);
    st_close(&f);
    unlink(path);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ld_ckpt_XXXXXX");
    CHECK(mkdtemp(tmpdir));
    round_trip();
    strict_errors();
    sd15_checkpoint(0);
    sd15_checkpoint(1);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return tu_report("test_checkpoint");
}
