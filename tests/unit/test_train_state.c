// test_train_state.c — training checkpoints: bit-exact round trip, keep-N and
// abandoned-future pruning, every kind of bad file rejected with an error that
// names it, and a save SIGKILLed at random moments never leaving a checkpoint
// that find_latest returns but load rejects; the checksum catching a flipped
// bit, load_latest falling back past a truncated or corrupted newest file,
// and the config diff naming the settings that matter.
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "testutil.h"
#include "train/train_state.h"

static char g_root[512];

static void small_config(ModelConfig *m, int base) {
    tu_tiny_model(m, 2, 2, 8, 1);
    m->block_out_channels[0] = base, m->block_out_channels[1] = 2 * base;
    m->heads[1] = 2;
    m->cross_attention_dim = 8;
}

static UNet *make_unet(int base, int heads) {
    ModelConfig m;
    small_config(&m, base);
    m.heads[0] = m.heads[1] = heads;
    Error e;
    UNet *u = unet_create(&m, NULL, &e);
    if (!u) fprintf(stderr, "unet_create: %s\n", e.msg);
    return u;
}

static void make_dir(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", g_root, name);
    mkdir(out, 0777);
}

// Files in dir that are checkpoints (temps = 0) or temp files of saves (1).
static int count_files(const char *dir, int temps) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name, *suf = ".safetensors";
        size_t len = strlen(name), sl = strlen(suf);
        if (temps) {
            n += strstr(name, ".tmp.") != NULL;
        } else if (len > 5 + sl && !strncmp(name, "ckpt_", 5) && !strcmp(name + len - sl, suf)) {
            int digits = 1;
            for (size_t i = 5; i < len - sl; i++) digits &= name[i] >= '0' && name[i] <= '9';
            n += digits;
        }
    }
    closedir(d);
    return n;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Values a save at `step` writes (the kill test checks them bit for bit).
static void pattern(float *x, size_t n, long step, int which) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u + (size_t)which * 97) % 1000) * 1e-3f + (float)step;
}

typedef struct {
    UNet *u;
    float *m, *v, *ema;
    size_t n;
} State;

static State state_new(int base) {
    State s = {make_unet(base, 2), NULL, NULL, NULL, 0};
    if (s.u) {
        s.n = s.u->pt.total;
        s.m = calloc(s.n, 4), s.v = calloc(s.n, 4), s.ema = calloc(s.n, 4);
    }
    return s;
}

static void state_free(State *s) {
    unet_free(s->u);
    free(s->m), free(s->v), free(s->ema);
}

static void state_fill(State *s, long step) {
    pattern(s->u->params, s->n, step, 0);
    pattern(s->m, s->n, step, 1);
    pattern(s->v, s->n, step, 2);
    pattern(s->ema, s->n, step, 3);
}

static TrainMeta meta_of(long step) {
    TrainMeta t;
    memset(&t, 0, sizeof t);
    t.step = step;
    t.samples_seen = step * 64;
    t.seed = 0xfedcba9876543210ULL;
    t.ranks = 2;
    train_state_hash("train = { steps = 100; };", t.config_hash);
    return t;
}

static void test_round_trip(void) {
    char dir[600], path[700];
    make_dir(dir, sizeof dir, "roundtrip");
    State a = state_new(8), b = state_new(8);
    if (!a.u || !b.u) return;
    TuRng r;
    tu_rng_seed(&r, 7);
    tu_fill(&r, a.u->params, a.n, -2, 2);
    tu_fill(&r, a.m, a.n, -1, 1);
    tu_fill(&r, a.v, a.n, 0, 1);
    tu_fill(&r, a.ema, a.n, -2, 2);
    // values that a lossy path would change
    a.u->params[0] = -0.0f, a.u->params[1] = 1e-40f, a.u->params[2] = FLT_MAX, a.m[3] = -FLT_MIN;
    TrainMeta tm = meta_of(1234), got;
    tm.seed = UINT64_MAX;
    Error e = {0};
    EXPECT(train_state_save(dir, a.u, a.m, a.v, a.ema, &tm, 2, &e) == 0, "save: %s", e.msg);
    EXPECT(train_state_find_latest(dir, path, sizeof path, &e) == 0, "find_latest");
    EXPECT(strstr(path, "ckpt_00001234.safetensors") != NULL, "file name %s", path);
    EXPECT(train_state_load(path, b.u, b.m, b.v, b.ema, &got, &e) == 0, "load: %s", e.msg);
    EXPECT(!memcmp(a.u->params, b.u->params, a.n * 4) && !memcmp(a.m, b.m, a.n * 4) &&
               !memcmp(a.v, b.v, a.n * 4) && !memcmp(a.ema, b.ema, a.n * 4),
           "round trip is not bit-exact");
    EXPECT(got.step == 1234 && got.samples_seen == 1234 * 64 && got.seed == UINT64_MAX && got.ranks == 2 &&
               !strcmp(got.config_hash, tm.config_hash),
           "metadata round trip: step %ld seen %ld ranks %d hash %s", got.step, got.samples_seen, got.ranks,
           got.config_hash);
    EXPECT(strlen(got.config_hash) == 16, "config hash is 16 hex digits");
    // the file says what it is
    StFile f;
    EXPECT(st_open(&f, path, &e) == 0, "st_open: %s", e.msg);
    EXPECT(st_meta(&f, "format") && !strcmp(st_meta(&f, "format"), TRAIN_STATE_FORMAT), "format metadata");
    EXPECT(st_find(&f, "conv_in.weight") && st_find(&f, "optim.m.conv_in.weight") &&
               st_find(&f, "optim.v.conv_in.weight") && st_find(&f, "ema.conv_in.weight"),
           "diffusers names with optim.m./optim.v./ema. prefixes");
    EXPECT(f.n_tensors == 4 * a.u->pt.n, "%d tensors", f.n_tensors);
    st_close(&f);

    // EMA in the file, none wanted: fine. None in the file, one wanted: error.
    EXPECT(train_state_load(path, b.u, b.m, b.v, NULL, &got, &e) == 0, "load without ema: %s", e.msg);
    tm.step = 1235;
    EXPECT(train_state_save(dir, a.u, a.m, a.v, NULL, &tm, 2, &e) == 0, "save without ema: %s", e.msg);
    train_state_path(dir, 1235, path, sizeof path);
    EXPECT(train_state_load(path, b.u, b.m, b.v, b.ema, &got, &e) == -1 && strstr(e.msg, path) &&
               strstr(e.msg, "EMA"),
           "EMA wanted but absent: %s", e.msg);
    EXPECT(train_state_load(path, b.u, b.m, b.v, NULL, &got, &e) == 0 && got.step == 1235, "load: %s", e.msg);
    state_free(&a);
    state_free(&b);
}

static void test_keep_and_latest(void) {
    char dir[600], path[700], missing[700];
    make_dir(dir, sizeof dir, "keep");
    snprintf(missing, sizeof missing, "%s/does-not-exist", g_root);
    Error e = {0};
    EXPECT(train_state_find_latest(missing, path, sizeof path, &e) == 1, "no directory: none");
    EXPECT(train_state_find_latest(dir, path, sizeof path, &e) == 1, "empty directory: none");
    State s = state_new(8);
    if (!s.u) return;
    // files that are not checkpoints: ignored, and left alone
    char other[700];
    snprintf(other, sizeof other, "%s/notes.txt", dir);
    fclose(fopen(other, "w"));
    snprintf(other, sizeof other, "%s/ckpt_12x.safetensors", dir);
    fclose(fopen(other, "w"));
    for (long step = 10; step <= 40; step += 10) {
        state_fill(&s, step);
        TrainMeta tm = meta_of(step);
        EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == 0, "save %ld: %s", step, e.msg);
    }
    EXPECT(count_files(dir, 0) == 2, "keep=2 leaves 2 checkpoints");
    train_state_path(dir, 30, path, sizeof path);
    EXPECT(exists(path), "step 30 kept");
    train_state_path(dir, 20, path, sizeof path);
    EXPECT(!exists(path), "step 20 deleted");
    EXPECT(train_state_find_latest(dir, path, sizeof path, &e) == 0 && strstr(path, "ckpt_00000040"), "latest %s",
           path);
    // a killed save's temp file: ignored by find_latest, removed by the next save
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s/ckpt_00000050.safetensors.tmp.99999", dir);
    FILE *fp = fopen(tmp, "w");
    fputs("half a checkpoint", fp);
    fclose(fp);
    EXPECT(train_state_find_latest(dir, path, sizeof path, &e) == 0 && strstr(path, "ckpt_00000040"),
           "temp files are not checkpoints");
    // resumed from 30 and saving 35: the abandoned step 40 must go
    state_fill(&s, 35);
    TrainMeta tm = meta_of(35);
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == 0, "save 35: %s", e.msg);
    EXPECT(!exists(tmp), "stale temp file removed");
    train_state_path(dir, 40, path, sizeof path);
    EXPECT(!exists(path), "a checkpoint newer than the one saved is removed");
    EXPECT(train_state_find_latest(dir, path, sizeof path, &e) == 0 && strstr(path, "ckpt_00000035"), "latest %s",
           path);
    train_state_path(dir, 30, path, sizeof path);
    EXPECT(exists(path), "step 30 still kept (keep=2)");
    snprintf(other, sizeof other, "%s/notes.txt", dir);
    EXPECT(exists(other), "other files untouched");
    // keep=1
    state_fill(&s, 36);
    tm = meta_of(36);
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 1, &e) == 0, "save 36: %s", e.msg);
    EXPECT(count_files(dir, 0) == 1, "keep=1 leaves one");
    // a diverged run never replaces the good checkpoint
    s.v[5] = NAN;
    tm = meta_of(37);
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == -1 && strstr(e.msg, "step 37") &&
               strstr(e.msg, "NaN"),
           "NaN refused: %s", e.msg);
    s.v[5] = 0;
    s.u->params[7] = INFINITY;
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == -1, "Inf refused");
    EXPECT(train_state_find_latest(dir, path, sizeof path, &e) == 0 && strstr(path, "ckpt_00000036"),
           "the last good checkpoint is still the latest: %s", path);
    State t = state_new(8);
    TrainMeta got;
    EXPECT(t.u && train_state_load(path, t.u, t.m, t.v, t.ema, &got, &e) == 0 && got.step == 36, "loads: %s",
           e.msg);
    state_free(&t);
    state_free(&s);
}

// ---- bad files ---------------------------------------------------------------

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

// A copy of src with `from` replaced by `to` (same length) in the header.
static int patched_copy(const char *src, const char *dst, const char *from, const char *to) {
    size_t n;
    char *b = slurp(src, &n);
    if (!b || strlen(from) != strlen(to)) return -1;
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)(unsigned char)b[i] << (8 * i);
    char *hit = NULL;
    for (size_t i = 8; i + strlen(from) <= 8 + hl && !hit; i++)
        if (!memcmp(b + i, from, strlen(from))) hit = b + i;
    if (hit) memcpy(hit, to, strlen(to));
    spit(dst, b, n);
    free(b);
    return hit ? 0 : -1;
}

static void expect_rejected(const char *path, State *s, const char *needle, const char *what) {
    Error e = {0};
    TrainMeta got;
    int rc = train_state_load(path, s->u, s->m, s->v, NULL, &got, &e);
    EXPECT(rc == -1, "%s: accepted", what);
    EXPECT(rc == -1 && strstr(e.msg, path), "%s: error does not name the file: %s", what, e.msg);
    EXPECT(rc == -1 && (!needle || strstr(e.msg, needle)), "%s: error lacks '%s': %s", what, needle, e.msg);
}

static void test_bad_files(void) {
    char dir[600], good[700], bad[700];
    make_dir(dir, sizeof dir, "bad");
    State s = state_new(8);
    if (!s.u) return;
    state_fill(&s, 10);
    TrainMeta tm = meta_of(10);
    Error e = {0};
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == 0, "save: %s", e.msg);
    train_state_path(dir, 10, good, sizeof good);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);

    size_t n;
    char *b = slurp(good, &n);
    spit(bad, b, n / 2);
    expect_rejected(bad, &s, NULL, "truncated file");
    spit(bad, b, 5);
    expect_rejected(bad, &s, NULL, "5-byte file");
    memcpy(b + 8, "{\"x\":[1,2", 9);
    spit(bad, b, n);
    expect_rejected(bad, &s, NULL, "corrupted header");
    free(b);

    EXPECT(!patched_copy(good, bad, "\"step\":\"10\"", "\"step\":\"1x\""), "patch");
    expect_rejected(bad, &s, "'step'", "non-numeric step");
    EXPECT(!patched_copy(good, bad, "\"step\":\"10\"", "\"step\":\"-1\""), "patch");
    expect_rejected(bad, &s, "'step'", "negative step");
    EXPECT(!patched_copy(good, bad, "\"seed\":", "\"sees\":"), "patch");
    expect_rejected(bad, &s, "'seed'", "missing seed");
    EXPECT(!patched_copy(good, bad, "\"ranks\":\"2\"", "\"ranks\":\"0\""), "patch");
    expect_rejected(bad, &s, "'ranks'", "zero ranks");
    EXPECT(!patched_copy(good, bad, "\"samples_seen\":", "\"samples_sean\":"), "patch");
    expect_rejected(bad, &s, "'samples_seen'", "missing data position");
    EXPECT(!patched_copy(good, bad, "\"format_version\":\"2\"", "\"format_version\":\"3\""), "patch");
    expect_rejected(bad, &s, "format_version 3", "newer format");
    EXPECT(!patched_copy(good, bad, "\"checksum\":", "\"checksun\":"), "patch");
    expect_rejected(bad, &s, "'checksum'", "missing checksum");
    EXPECT(!patched_copy(good, bad, "laptop-diff-train-state", "laptop-diff-train-stat_"), "patch");
    expect_rejected(bad, &s, "not a laptop-diff training checkpoint", "other format");
    EXPECT(!patched_copy(good, bad, "\"optim.v.conv_in.weight\"", "\"optim.w.conv_in.weight\""), "patch");
    expect_rejected(bad, &s, "optim.w.conv_in.weight", "unknown tensor");
    EXPECT(!patched_copy(good, bad, "\"config_hash\":", "\"config_hasp\":"), "patch");
    expect_rejected(bad, &s, "config_hash", "missing config hash");

    // a plain model file (weights only) is not a training checkpoint
    EXPECT(unet_save(s.u, bad, NULL, 0, &e) == 0, "unet_save: %s", e.msg);
    expect_rejected(bad, &s, "not a laptop-diff training checkpoint", "weights-only file");

    // all metadata right but AdamW's v missing
    {
        int np = s.u->pt.n;
        StOut *ts = calloc((size_t)(2 * np), sizeof *ts);
        char **names = calloc((size_t)np, sizeof *names);
        for (int i = 0; i < np; i++) {
            const ParamTensor *p = &s.u->pt.t[i];
            names[i] = malloc(strlen(p->name) + 16);
            sprintf(names[i], "optim.m.%s", p->name);
            for (int g = 0; g < 2; g++) {
                ts[g * np + i].name = g ? names[i] : p->name;
                ts[g * np + i].ndim = p->ndim;
                for (int d = 0; d < p->ndim; d++) ts[g * np + i].shape[d] = p->shape[d];
                ts[g * np + i].data = (g ? s.m : s.u->params) + p->offset;
            }
        }
        StFile f;
        st_open(&f, good, &e);
        const char **kv = calloc((size_t)(2 * f.n_meta), sizeof *kv);
        for (int i = 0; i < f.n_meta; i++) kv[2 * i] = f.meta_keys[i], kv[2 * i + 1] = f.meta_vals[i];
        EXPECT(st_write(bad, ts, 2 * np, kv, f.n_meta, &e) == 0, "st_write: %s", e.msg);
        st_close(&f);
        expect_rejected(bad, &s, "missing tensor optim.v.", "no second moments");
        for (int i = 0; i < np; i++) free(names[i]);
        free(names), free(ts), free(kv);
    }

    // a NaN inside the data
    b = slurp(good, &n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)(unsigned char)b[i] << (8 * i);
    uint32_t qnan = 0x7fc00000u;
    memcpy(b + 8 + hl + 4 * 3, &qnan, 4);
    spit(bad, b, n);
    free(b);
    expect_rejected(bad, &s, "NaN", "NaN in the data");

    // another model: different shapes, or same shapes but other head counts
    State other = state_new(16);
    if (other.u) {
        TrainMeta got;
        int rc = train_state_load(good, other.u, other.m, other.v, NULL, &got, &e);
        EXPECT(rc == -1 && strstr(e.msg, good), "another model's shapes: %s", e.msg);
    }
    state_free(&other);
    UNet *heads = make_unet(8, 4);
    if (heads) {
        float *m = calloc(heads->pt.total, 4), *v = calloc(heads->pt.total, 4);
        TrainMeta got;
        int rc = train_state_load(good, heads, m, v, NULL, &got, &e);
        EXPECT(rc == -1 && strstr(e.msg, "architecture"), "other head counts: %s", e.msg);
        free(m), free(v);
        unet_free(heads);
    }
    // the good file is still fine after all that
    TrainMeta got;
    EXPECT(train_state_load(good, s.u, s.m, s.v, s.ema, &got, &e) == 0 && got.step == 10, "good file: %s", e.msg);
    state_free(&s);
}

// ---- SIGKILL during saves ------------------------------------------------------

// Flips one bit of byte `at` from the end of the file (inside the tensor data).
static void flip_bit(const char *src, const char *dst, size_t at, int bit) {
    size_t n;
    char *b = slurp(src, &n);
    if (!b) return;
    b[n - at] ^= (char)(1 << bit);
    spit(dst, b, n);
    free(b);
}

// One flipped bit anywhere in the data is caught by the checksum, not only
// those that make a value NaN/Inf; a file without the checksum (format 1)
// still loads.
static void test_checksum(void) {
    char dir[600], good[700], bad[700];
    make_dir(dir, sizeof dir, "checksum");
    State s = state_new(8);
    if (!s.u) return;
    state_fill(&s, 5);
    TrainMeta tm = meta_of(5), got;
    Error e = {0};
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == 0, "save: %s", e.msg);
    train_state_path(dir, 5, good, sizeof good);
    snprintf(bad, sizeof bad, "%s/flipped.safetensors", dir);
    // the lowest mantissa bit of the last float (EMA) and of one near the
    // middle; the load without EMA must still verify the EMA bytes
    size_t n;
    free(slurp(good, &n));
    size_t at[] = {1, n / 2, 4 * s.n + 3};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        flip_bit(good, bad, at[i], 0);
        expect_rejected(bad, &s, "checksum mismatch", "one flipped bit");
    }
    EXPECT(train_state_load(good, s.u, s.m, s.v, s.ema, &got, &e) == 0, "the good file still loads: %s", e.msg);
    // format 1: no checksum to verify
    char v1[700];
    snprintf(v1, sizeof v1, "%s/v1.safetensors", dir);
    EXPECT(!patched_copy(good, v1, "\"format_version\":\"2\"", "\"format_version\":\"1\""), "patch");
    EXPECT(!patched_copy(v1, v1, "\"checksum\":", "\"checksun\":"), "patch");
    EXPECT(train_state_load(v1, s.u, s.m, s.v, s.ema, &got, &e) == 0, "format 1 without checksum: %s", e.msg);
    state_free(&s);
}

static long load_latest_step(const char *dir, State *s, FILE *warn, char *path, int *rc, Error *e) {
    TrainMeta got = {0};
    *rc = train_state_load_latest(dir, s->u, s->m, s->v, s->ema, &got, path, 700, warn, e);
    return *rc ? -1 : got.step;
}

// The newest checkpoint truncated or bit-flipped: a warning naming it, and
// the previous one loads; both bad: an error naming the newest and why.
static void test_fallback(void) {
    char dir[600], p3[700], p6[700], path[700], warnbuf[4096];
    make_dir(dir, sizeof dir, "fallback");
    State s = state_new(8);
    if (!s.u) return;
    Error e = {0};
    int rc = 0;
    EXPECT(load_latest_step(dir, &s, NULL, path, &rc, &e) == -1 && rc == 1, "empty dir: rc %d", rc);
    for (long st = 3; st <= 6; st += 3) {
        state_fill(&s, st);
        TrainMeta tm = meta_of(st);
        EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == 0, "save: %s", e.msg);
    }
    train_state_path(dir, 3, p3, sizeof p3);
    train_state_path(dir, 6, p6, sizeof p6);
    size_t n;
    char *six = slurp(p6, &n);
    if (!six) return;
    for (int kind = 0; kind < 2; kind++) {
        if (kind == 0)
            spit(p6, six, n - 100);  // truncated
        else
            flip_bit(p6, p6, 7, 3);  // restored below, then flipped
        FILE *w = fmemopen(warnbuf, sizeof warnbuf, "w");
        long got = load_latest_step(dir, &s, w, path, &rc, &e);
        fclose(w);
        const char *why = kind == 0 ? "truncated" : "bit-flipped";
        EXPECT(rc == 0 && got == 3 && !strcmp(path, p3), "%s newest: rc %d step %ld (%s)", why, rc, got, e.msg);
        EXPECT(strstr(warnbuf, "ckpt_00000006.safetensors") && strstr(warnbuf, "previous checkpoint") &&
                   (kind == 0 || strstr(warnbuf, "checksum mismatch")),
               "%s newest: warning: %s", why, warnbuf);
        State want = state_new(8);
        if (want.u) {
            state_fill(&want, 3);
            EXPECT(!memcmp(want.u->params, s.u->params, s.n * 4) && !memcmp(want.v, s.v, s.n * 4),
                   "%s newest: the state is not step 3's", why);
            state_free(&want);
        }
        spit(p6, six, n);
    }
    EXPECT(load_latest_step(dir, &s, NULL, path, &rc, &e) == 6, "restored newest loads: %s", e.msg);
    // both bad
    flip_bit(p6, p6, 9, 1);
    char *three = slurp(p3, &n);
    if (three) spit(p3, three, n / 3), free(three);
    EXPECT(load_latest_step(dir, &s, NULL, path, &rc, &e) == -1 && rc == -1 && strstr(e.msg, "no checkpoint in") &&
               strstr(e.msg, "ckpt_00000006.safetensors") && strstr(e.msg, "checksum mismatch"),
           "none good: rc %d: %s", rc, e.msg);
    free(six);
    state_free(&s);
}

static void test_config_diff(void) {
    const char *a = "# header\ntrain = {\n  steps = 100;\n  lr = 0.001;\n  log_interval = 10;\n};\n"
                    "distill = {\n  lambda_out = 1.0;\n  feat_norm = true;\n};\noutput = {\n  dir = \"a\";\n};\n"
                    "runtime = {\n  seed = 0;\n  threads = 2;\n};\n";
    const char *b = "# header\ntrain = {\n  steps = 200;\n  lr = 0.002;\n  log_interval = 5;\n};\n"
                    "distill = {\n  lambda_out = 1.0;\n  feat_norm = false;\n};\noutput = {\n  dir = \"b\";\n};\n"
                    "runtime = {\n  seed = 0;\n  threads = 8;\n  extra = 1;\n};\n";
    char out[256];
    int nd = train_state_config_diff(a, b, out, sizeof out);
    EXPECT(nd == 3 && !strcmp(out, "train.lr, distill.feat_norm, runtime.extra"), "diff: %d: %s", nd, out);
    EXPECT(train_state_config_diff(a, a, out, sizeof out) == 0 && !*out, "same config: %s", out);
    char small[12];
    nd = train_state_config_diff(a, b, small, sizeof small);
    EXPECT(nd == 3 && strlen(small) < sizeof small && strstr(small, "..."), "truncated list: %s", small);
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

// The newest checkpoint must load and hold exactly what the save of its step
// wrote; returns its step (-1 on failure).
static long check_latest(const char *dir, State *chk, State *want, int iter) {
    char path[700];
    Error e = {0};
    if (train_state_find_latest(dir, path, sizeof path, &e) != 0) {
        EXPECT(0, "kill %d: no checkpoint found", iter);
        return -1;
    }
    TrainMeta got;
    if (train_state_load(path, chk->u, chk->m, chk->v, chk->ema, &got, &e) != 0) {
        EXPECT(0, "kill %d: find_latest returned %s but it does not load: %s", iter, path, e.msg);
        return -1;
    }
    state_fill(want, got.step);
    EXPECT(!memcmp(chk->u->params, want->u->params, want->n * 4) && !memcmp(chk->m, want->m, want->n * 4) &&
               !memcmp(chk->v, want->v, want->n * 4) && !memcmp(chk->ema, want->ema, want->n * 4),
           "kill %d: %s does not hold what step %ld saved", iter, path, got.step);
    return got.step;
}

static void test_kill_during_save(void) {
    char dir[600];
    make_dir(dir, sizeof dir, "killed");
    State s = state_new(40), chk = state_new(40), want = state_new(40);
    if (!s.u || !chk.u || !want.u) return;
    Error e = {0};
    state_fill(&s, 1);
    TrainMeta tm = meta_of(1);
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == 0, "first save: %s", e.msg);
    // how long a child takes to save, start to exit (step 1 again: no change)
    fflush(NULL);
    double t0 = now_s();
    pid_t cal = fork();
    if (cal == 0) {
        omp_set_num_threads(1);  // libgomp's thread pool does not survive fork
        Error ce;
        _exit(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &ce) == 0 ? 0 : 3);
    }
    waitpid(cal, NULL, 0);
    double save_s = now_s() - t0;
    TuRng r;
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
    tu_rng_seed(&r, seed);
    int kills = getenv("LD_CKPT_KILLS") ? atoi(getenv("LD_CKPT_KILLS")) : 16, completed = 0, interrupted = 0;
    long last = 1;
    for (int it = 0; it < kills; it++) {
        long step = it + 2;
        state_fill(&s, step);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            omp_set_num_threads(1);
            TrainMeta t = meta_of(step);
            Error ce;
            _exit(train_state_save(dir, s.u, s.m, s.v, s.ema, &t, 2, &ce) == 0 ? 0 : 3);
        }
        // anywhere from before the write starts to after it ends
        sleep_s(tu_uniform(&r, 0, 1) * 1.3 * save_s);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        EXPECT(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
               "kill %d: the save failed on its own (status %d)", it, status);
        long got = check_latest(dir, &chk, &want, it);
        EXPECT(got == last || got == step, "kill %d: latest is step %ld, expected %ld or %ld", it, got, last, step);
        completed += got == step;
        interrupted += got == last;
        // the one before stays loadable too
        if (got == step) {
            char prev[700];
            TrainMeta pm;
            train_state_path(dir, last, prev, sizeof prev);
            EXPECT(train_state_load(prev, chk.u, chk.m, chk.v, chk.ema, &pm, &e) == 0 && pm.step == last,
                   "kill %d: the previous checkpoint %s does not load: %s", it, prev, e.msg);
            last = step;
        }
        if (got < 0) break;
    }
    // a clean save afterwards cleans up and keeps exactly 2
    state_fill(&s, 1000);
    tm = meta_of(1000);
    EXPECT(train_state_save(dir, s.u, s.m, s.v, s.ema, &tm, 2, &e) == 0, "final save: %s", e.msg);
    EXPECT(count_files(dir, 1) == 0, "temp files left after a clean save");
    EXPECT(count_files(dir, 0) == 2, "two checkpoints after a clean save");
    printf("kill test: %d saves killed (%.1f MB, %.0f ms each; seed %llu): %d completed, %d interrupted\n", kills,
           (double)s.n * 16 / 1e6, save_s * 1e3, (unsigned long long)seed, completed, interrupted);
    state_free(&s);
    state_free(&chk);
    state_free(&want);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "%s/test_train_state_XXXXXX", LD_BINARY_DIR);
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_keep_and_latest();
    test_bad_files();
    test_checksum();
    test_fallback();
    test_config_diff();
    test_kill_during_save();
    if (tu_failures == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
    } else {
        fprintf(stderr, "files kept in %s\n", g_root);
    }
    return tu_report("test_train_state");
}
