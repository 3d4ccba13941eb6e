// train_state.c — see train_state.h.
#include "train/train_state.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/model_json.h"
#include "core/numerics.h"
#include "model/safetensors.h"

#define PREFIX "ckpt_"
#define SUFFIX ".safetensors"
#define TMP_MARK ".tmp."

static const char *const kGroups[] = {"", "optim.m.", "optim.v.", "ema."};
enum { G_PARAM, G_M, G_V, G_EMA, N_GROUPS };

#define CHECKSUM_KIND "fnv1a64-words:"

// FNV-1a 64 over 32-bit words: any one changed word changes the result (each
// step is a bijection of the state), at a quarter of the byte-wise cost.
static uint64_t fnv_words(uint64_t h, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &x[i], sizeof w);
        h ^= w;
        h *= 1099511628211ULL;
    }
    return h;
}

// The checksum of the groups' arrays (NULL: group absent), in file order.
static void state_checksum(const UNet *u, const float *const arrays[N_GROUPS], char out[64]) {
    uint64_t h = 1469598103934665603ULL;
    for (int g = 0; g < N_GROUPS; g++) {
        if (!arrays[g]) continue;
        for (int i = 0; i < u->pt.n; i++) h = fnv_words(h, arrays[g] + u->pt.t[i].offset, u->pt.t[i].numel);
    }
    snprintf(out, 64, CHECKSUM_KIND "%016" PRIx64, h);
}

int train_state_path(const char *dir, long step, char *out, size_t n) {
    size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    int w = snprintf(out, n, "%s%s" PREFIX "%08ld" SUFFIX, dir, sep, step);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

// Digits only, no sign, fits in a long.
static int parse_long(const char *s, size_t len, long *out) {
    if (len == 0 || len > 18) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

// "ckpt_<digits>.safetensors" -> step; anything else (temp files too) -> -1.
static int checkpoint_step(const char *name, long *step) {
    size_t n = strlen(name), p = strlen(PREFIX), s = strlen(SUFFIX);
    if (n <= p + s || strncmp(name, PREFIX, p) || strcmp(name + n - s, SUFFIX)) return -1;
    return parse_long(name + p, n - p - s, step);
}

// "ckpt_<digits>.safetensors.tmp.<digits>": what st_write leaves when killed.
static int is_stale_temp(const char *name) {
    const char *t = strstr(name, SUFFIX TMP_MARK);
    if (!t || strncmp(name, PREFIX, strlen(PREFIX))) return 0;
    long v;
    const char *pid = t + strlen(SUFFIX TMP_MARK);
    size_t head = (size_t)(t - name) + strlen(SUFFIX);
    char *base = xmalloc(head + 1);
    memcpy(base, name, head);
    base[head] = '\0';
    int ok = checkpoint_step(base, &v) == 0 && parse_long(pid, strlen(pid), &v) == 0;
    free(base);
    return ok;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s%s", dir, *dir && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return p;
}

typedef struct {
    long step;
    char *name;
} Entry;

static int cmp_entry_desc(const void *a, const void *b) {
    long x = ((const Entry *)a)->step, y = ((const Entry *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

// Checkpoints in dir, newest first; stale temp files go to *temps if asked.
static int scan_dir(const char *dir, Entry **out, int *n_out, char ***temps, int *n_temps) {
    *out = NULL, *n_out = 0;
    if (temps) *temps = NULL, *n_temps = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 1 : -1;
    int cap = 0, tcap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        long step;
        if (checkpoint_step(de->d_name, &step) == 0) {
            if (*n_out == cap) {
                cap = cap ? 2 * cap : 8;
                *out = xrealloc(*out, (size_t)cap * sizeof **out);
            }
            (*out)[*n_out].step = step;
            (*out)[(*n_out)++].name = xstrdup(de->d_name);
        } else if (temps && is_stale_temp(de->d_name)) {
            if (*n_temps == tcap) {
                tcap = tcap ? 2 * tcap : 4;
                *temps = xrealloc(*temps, (size_t)tcap * sizeof **temps);
            }
            (*temps)[(*n_temps)++] = xstrdup(de->d_name);
        }
    }
    closedir(d);
    if (*n_out > 1) qsort(*out, (size_t)*n_out, sizeof **out, cmp_entry_desc);
    return 0;
}

static void entries_free(Entry *en, int n) {
    for (int i = 0; i < n; i++) free(en[i].name);
    free(en);
}

// The checkpoints in dir, newest first: 0 (*en, *cnt to free with
// entries_free), 1 when there are none (or no directory), -1 + e.
static int list_checkpoints(const char *dir, Entry **en, int *cnt, Error *e) {
    int rc = scan_dir(dir, en, cnt, NULL, NULL);
    if (rc < 0) return errorf(e, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    if (rc == 1 || *cnt == 0) {
        entries_free(*en, *cnt);
        return 1;
    }
    return 0;
}

int train_state_find_latest(const char *dir, char *path, size_t n, Error *e) {
    Entry *en;
    int cnt;
    int rc = list_checkpoints(dir, &en, &cnt, e);
    if (rc) return rc;
    char *p = join(dir, en[0].name);
    rc = strlen(p) < n ? 0 : errorf(e, "%s: checkpoint path too long", dir);
    if (!rc) memcpy(path, p, strlen(p) + 1);
    free(p);
    entries_free(en, cnt);
    return rc;
}

static void remove_quietly(const char *dir, const char *name) {
    char *p = join(dir, name);
    unlink(p);  // best effort: a leftover file is harmless
    free(p);
}

int train_state_save(const char *dir, const UNet *u, const float *m, const float *v,
                     const float *ema, const TrainMeta *meta, int keep, Error *e) {
    if (!dir || !*dir || !u || !m || !v || !meta || meta->step < 0 || meta->samples_seen < 0 ||
        meta->ranks < 1 || !memchr(meta->config_hash, '\0', sizeof meta->config_hash))
        return errorf(e, "train_state_save: bad arguments");
    size_t total = u->pt.total;
    const float *arrays[N_GROUPS] = {u->params, m, v, ema};
    static const char *const what[N_GROUPS] = {"the parameters", "AdamW's first moments",
                                               "AdamW's second moments", "the EMA weights"};
    for (int g = 0; g < N_GROUPS; g++)
        if (arrays[g] && !all_finite(arrays[g], total))
            return errorf(e, "%s: refusing to write the checkpoint of step %ld: %s contain NaN/Inf "
                             "(the last good checkpoint is kept)", dir, meta->step, what[g]);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return errorf(e, "%s: cannot create the checkpoint directory: %s", dir, strerror(errno));

    Entry *en;
    int cnt, n_tmp;
    char **tmps;
    if (scan_dir(dir, &en, &cnt, &tmps, &n_tmp) != 0)
        return errorf(e, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    // Killed saves leave big temp files; free their space before writing.
    for (int i = 0; i < n_tmp; i++) {
        remove_quietly(dir, tmps[i]);
        free(tmps[i]);
    }
    free(tmps);
    entries_free(en, cnt);

    int ng = ema ? 4 : 3, np = u->pt.n;
    StOut *ts = xcalloc((size_t)ng * (size_t)np, sizeof *ts);
    char **names = xcalloc((size_t)ng * (size_t)np, sizeof *names);
    for (int g = 0; g < ng; g++) {
        st_outs_from_params(ts + g * np, &u->pt, arrays[g]);
        for (int i = 0; i < np; i++) {  // each group's tensors under its prefix
            size_t len = strlen(kGroups[g]) + strlen(u->pt.t[i].name) + 1;
            names[g * np + i] = xmalloc(len);
            snprintf(names[g * np + i], len, "%s%s", kGroups[g], u->pt.t[i].name);
            ts[g * np + i].name = names[g * np + i];
        }
    }
    char step[32], seen[32], seed[32], ranks[16], version[16];
    snprintf(step, sizeof step, "%ld", meta->step);
    snprintf(seen, sizeof seen, "%ld", meta->samples_seen);
    snprintf(seed, sizeof seed, "%" PRIu64, meta->seed);
    snprintf(ranks, sizeof ranks, "%d", meta->ranks);
    snprintf(version, sizeof version, "%d", TRAIN_STATE_VERSION);
    char *cfg = model_config_to_json(&u->cfg), *rm = unet_removed_names(u), sum[64];
    state_checksum(u, arrays, sum);
    const char *kv[] = {"format", TRAIN_STATE_FORMAT, "format_version", version, "step", step,
                        "samples_seen", seen, "seed", seed, "ranks", ranks,
                        "config_hash", meta->config_hash, "config", cfg, "removed", rm,
                        "checksum", sum, "job_config", meta->config_text ? meta->config_text : ""};
    char path[4096];
    int rc = train_state_path(dir, meta->step, path, sizeof path)
                 ? errorf(e, "%s: checkpoint path too long", dir)
                 : st_write(path, ts, ng * np, kv, (int)(sizeof kv / sizeof kv[0]) / 2, e);
    for (int i = 0; i < ng * np; i++) free(names[i]);
    free(names);
    free(ts);
    free(cfg);
    free(rm);
    if (rc) return rc;

    // Only now that the new file is in place: drop what it supersedes.
    if (scan_dir(dir, &en, &cnt, NULL, NULL) == 0) {
        int kept = 1;  // the file just written
        if (keep < 1) keep = 1;
        for (int i = 0; i < cnt; i++) {
            if (en[i].step == meta->step) continue;
            if (en[i].step < meta->step && kept < keep) {
                kept++;
                continue;
            }
            remove_quietly(dir, en[i].name);
        }
        entries_free(en, cnt);
    }
    return 0;
}

// ---- loading ---------------------------------------------------------------

static int meta_long(const StFile *f, const char *key, long min, long *out, Error *e) {
    const char *s = st_meta(f, key);
    if (!s) return errorf(e, "%s: metadata '%s' is missing (not a complete training checkpoint)", f->path, key);
    long v;
    if (parse_long(s, strlen(s), &v) || v < min)
        return errorf(e, "%s: metadata '%s' is \"%.40s\", expected an integer >= %ld", f->path, key, s, min);
    *out = v;
    return 0;
}

static int meta_u64(const StFile *f, const char *key, uint64_t *out, Error *e) {
    const char *s = st_meta(f, key);
    if (!s) return errorf(e, "%s: metadata '%s' is missing (not a complete training checkpoint)", f->path, key);
    uint64_t v = 0;
    int ok = *s != '\0' && strlen(s) <= 20;
    for (const char *c = s; ok && *c; c++) {
        ok = *c >= '0' && *c <= '9' && v <= (UINT64_MAX - (uint64_t)(*c - '0')) / 10;
        if (ok) v = v * 10 + (uint64_t)(*c - '0');
    }
    if (!ok) return errorf(e, "%s: metadata '%s' is \"%.40s\", expected an unsigned 64-bit integer", f->path, key, s);
    *out = v;
    return 0;
}

static int load_meta(const StFile *f, const UNet *u, TrainMeta *meta, Error *e) {
    const char *fmt = st_meta(f, "format");
    if (!fmt || strcmp(fmt, TRAIN_STATE_FORMAT))
        return errorf(e, "%s: not a laptop-diff training checkpoint (metadata 'format' is %s%.40s%s)", f->path,
                      fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
    long version, ranks;
    if (meta_long(f, "format_version", 0, &version, e)) return -1;
    if (version < 1 || version > TRAIN_STATE_VERSION)
        return errorf(e, "%s: checkpoint format_version %ld is not supported (this build reads %d)", f->path,
                      version, TRAIN_STATE_VERSION);
    memset(meta, 0, sizeof *meta);
    if (meta_long(f, "step", 0, &meta->step, e) || meta_long(f, "samples_seen", 0, &meta->samples_seen, e) ||
        meta_u64(f, "seed", &meta->seed, e) || meta_long(f, "ranks", 1, &ranks, e))
        return -1;
    if (ranks > 1 << 24) return errorf(e, "%s: metadata 'ranks' is %ld, implausibly large", f->path, ranks);
    meta->ranks = (int)ranks;
    const char *hash = st_meta(f, "config_hash");
    if (!hash) return errorf(e, "%s: metadata 'config_hash' is missing", f->path);
    if (strlen(hash) >= sizeof meta->config_hash)
        return errorf(e, "%s: metadata 'config_hash' is longer than %zu characters", f->path,
                      sizeof meta->config_hash - 1);
    memcpy(meta->config_hash, hash, strlen(hash) + 1);

    // Same architecture: compare in our own JSON form, ignoring the two
    // fields that only size MAC counts and shape checks.
    const char *cfg = st_meta(f, "config");
    if (!cfg) return errorf(e, "%s: metadata 'config' (the architecture) is missing", f->path);
    ModelConfig mc = u->cfg;
    if (model_config_from_json(&mc, cfg, f->path, e)) return -1;
    mc.sample_size = u->cfg.sample_size;
    mc.context_length = u->cfg.context_length;
    char *a = model_config_to_json(&mc), *b = model_config_to_json(&u->cfg);
    int same = strcmp(a, b) == 0;
    free(a);
    free(b);
    if (!same) return errorf(e, "%s: the checkpoint is of another architecture than this run's model", f->path);
    return 0;
}

// The group and parameter a tensor name belongs to (-1 if none).
static int classify(const UNet *u, const char *name, int *group) {
    for (int g = N_GROUPS - 1; g >= 0; g--) {
        size_t k = strlen(kGroups[g]);
        if (strncmp(name, kGroups[g], k)) continue;
        const ParamTensor *p = params_find(&u->pt, name + k);
        if (p) {
            *group = g;
            return (int)(p - u->pt.t);
        }
    }
    return -1;
}

static int check_tensors(const StFile *f, const UNet *u, int *has_ema, Error *e) {
    int n_ema = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        int g;
        if (classify(u, f->tensors[i].name, &g) < 0)
            return errorf(e, "%s: unexpected tensor %s (not a parameter, optimizer moment or EMA weight of this model)",
                          f->path, f->tensors[i].name);
        n_ema += g == G_EMA;
    }
    *has_ema = n_ema > 0;
    char name[LD_NAME_MAX + 16];
    for (int g = 0; g < (*has_ema ? N_GROUPS : G_EMA); g++)
        for (int i = 0; i < u->pt.n; i++) {
            const ParamTensor *p = &u->pt.t[i];
            snprintf(name, sizeof name, "%s%s", kGroups[g], p->name);
            const StTensor *t = st_find(f, name);
            if (!t) return errorf(e, "%s: missing tensor %s", f->path, name);
            if (tensor_check_shape(f, t, p, e)) return -1;
            if (t->dtype != ST_F32)
                return errorf(e, "%s: tensor %s is %s; a training checkpoint is F32 (bit-exact resume)", f->path,
                              name, st_dtype_name(t->dtype));
        }
    return 0;
}

int train_state_load(const char *path, UNet *u, float *m, float *v, float *ema, TrainMeta *meta,
                     Error *e) {
    StFile f;
    if (st_open(&f, path, e)) return -1;
    int has_ema = 0, rc = load_meta(&f, u, meta, e);
    if (!rc) rc = check_tensors(&f, u, &has_ema, e);
    if (!rc && ema && !has_ema)
        rc = errorf(e, "%s: the checkpoint has no EMA weights, but this run keeps an EMA", path);
    // Version 2 files carry a checksum over every tensor: the EMA weights are
    // read (into scratch) even when the caller does not want them.
    const char *want_sum = rc ? NULL : st_meta(&f, "checksum");
    long version = 0;
    if (!rc && meta_long(&f, "format_version", 1, &version, e)) rc = -1;
    if (!rc && version >= 2 && !want_sum) rc = errorf(e, "%s: metadata 'checksum' is missing", path);
    float *scratch = NULL;
    if (!rc && want_sum && has_ema && !ema) ema = scratch = xmalloc(u->pt.total * sizeof *scratch);
    if (!has_ema) ema = NULL;
    float *dst[N_GROUPS] = {u->params, m, v, ema};
    char name[LD_NAME_MAX + 16];
    for (int g = 0; g < N_GROUPS && !rc; g++) {
        if (!dst[g]) continue;
        for (int i = 0; i < u->pt.n && !rc; i++) {
            const ParamTensor *p = &u->pt.t[i];
            snprintf(name, sizeof name, "%s%s", kGroups[g], p->name);
            rc = st_read_f32(&f, st_find(&f, name), dst[g] + p->offset, e);
        }
        if (!rc && !all_finite(dst[g], u->pt.total))
            rc = errorf(e, "%s: the %s tensors contain NaN/Inf (corrupted file?)", path,
                        g == G_PARAM ? "parameter" : g == G_EMA ? "EMA" : "optimizer moment");
    }
    if (!rc && want_sum) {
        char got[64];
        state_checksum(u, (const float *const *)dst, got);
        if (strcmp(got, want_sum))
            rc = errorf(e, "%s: checksum mismatch (file says %.40s, the tensors give %s): the file is corrupted",
                        path, want_sum, got);
    }
    free(scratch);
    st_close(&f);
    return rc;
}

int train_state_load_latest(const char *dir, UNet *u, float *m, float *v, float *ema, TrainMeta *meta,
                            char *path, size_t n, FILE *warn, Error *e) {
    Entry *en;
    int cnt;
    int rc = list_checkpoints(dir, &en, &cnt, e);
    if (rc) return rc;
    Error first = {0};
    rc = -1;
    for (int i = 0; i < cnt && rc; i++) {
        char *p = join(dir, en[i].name);
        Error ei = {0};
        if (strlen(p) >= n) {
            errorf(&ei, "%s: checkpoint path too long", p);
        } else if (train_state_load(p, u, m, v, ema, meta, &ei) == 0) {
            memcpy(path, p, strlen(p) + 1);
            rc = 0;
        }
        if (rc) {
            if (i == 0) first = ei;
            if (warn)
                fprintf(warn, "warning: cannot resume from %s: %s%s\n", en[i].name, ei.msg,
                        i + 1 < cnt ? "; trying the previous checkpoint" : "");
        }
        free(p);
    }
    if (rc)
        errorf(e, "no checkpoint in %s loads (%d tried); the newest: %s", dir, cnt, first.msg);
    entries_free(en, cnt);
    return rc;
}

int train_state_job_config(const char *path, char **text, Error *e) {
    StFile f;
    *text = NULL;
    if (st_open(&f, path, e)) return -1;
    const char *s = st_meta(&f, "job_config");
    if (s && *s) *text = xstrdup(s);
    st_close(&f);
    return 0;
}

// Settings that do not change a continued run's trajectory.
static int key_is_free(const char *section, const char *key) {
    static const char *const free_keys[] = {"train.steps", "train.log_interval", "train.checkpoint_interval",
                                            "runtime.threads", "runtime.cpu_gemm", "runtime.device", "runtime.precision",
                                            "runtime.gpu_comm", "runtime.gpu_conv", "runtime.gpu_attention",
                                            "runtime.share_teacher",
                                            // bit-identical gradients either way
                                            "train.recompute", "train.overlap_comm", "train.bucket_mb"};
    static const char *const free_sections[] = {"output", "eval", "sample"};
    for (size_t i = 0; i < sizeof free_sections / sizeof *free_sections; i++)
        if (!strcmp(section, free_sections[i])) return 1;
    char full[256];
    snprintf(full, sizeof full, "%s.%s", section, key);
    for (size_t i = 0; i < sizeof free_keys / sizeof *free_keys; i++)
        if (!strcmp(full, free_keys[i])) return 1;
    return 0;
}

// The value of section.key in job_config_text's layout ("sec = {" lines,
// then "  key = value;" lines, "};"): a pointer into text and its length.
static const char *config_value(const char *text, const char *section, const char *key, size_t *len) {
    size_t sl = strlen(section), kl = strlen(key);
    int in = 0;
    for (const char *l = text; l && *l;) {
        const char *end = strchr(l, '\n');
        size_t ll = end ? (size_t)(end - l) : strlen(l);
        if (ll >= sl + 4 && !strncmp(l, section, sl) && !strncmp(l + sl, " = {", 4)) in = 1;
        else if (ll >= 2 && !strncmp(l, "};", 2)) in = 0;
        else if (in && ll > kl + 5 && !strncmp(l, "  ", 2) && !strncmp(l + 2, key, kl) && !strncmp(l + 2 + kl, " = ", 3)) {
            *len = ll - kl - 5;
            return l + kl + 5;
        }
        l = end ? end + 1 : NULL;
    }
    return NULL;
}

static void append_key(char *out, size_t n, size_t *used, const char *sec, const char *key) {
    if (*used + 1 >= n) return;
    int w = snprintf(out + *used, n - *used, "%s%s.%s", *used ? ", " : "", sec, key);
    if (w < 0 || (size_t)w >= n - *used) {
        if (n >= 4) memcpy(out + n - 4, "...", 4);
        *used = n;
        return;
    }
    *used += (size_t)w;
}

// Every key of text a against b (keys only in a count as differing).
static int diff_one_way(const char *a, const char *b, int skip_shared, char *out, size_t n, size_t *used) {
    int count = 0;
    char sec[128] = "";
    for (const char *l = a; l && *l;) {
        const char *end = strchr(l, '\n');
        size_t ll = end ? (size_t)(end - l) : strlen(l);
        const char *brace = memchr(l, '{', ll);
        if (brace && l[0] != ' ' && l[0] != '#') {
            size_t k = strcspn(l, " =");
            if (k < sizeof sec) memcpy(sec, l, k), sec[k] = '\0';
        } else if (ll > 2 && !strncmp(l, "  ", 2) && *sec) {
            char key[128];
            size_t k = strcspn(l + 2, " =");
            if (k < sizeof key) {
                memcpy(key, l + 2, k);
                key[k] = '\0';
                size_t la, lb;
                const char *va = config_value(a, sec, key, &la), *vb = config_value(b, sec, key, &lb);
                int differs = !vb ? 1 : skip_shared ? 0 : la != lb || memcmp(va, vb, la);
                if (differs && !key_is_free(sec, key)) {
                    count++;
                    append_key(out, n, used, sec, key);
                }
            }
        }
        l = end ? end + 1 : NULL;
    }
    return count;
}

int train_state_config_diff(const char *old_text, const char *new_text, char *out, size_t n) {
    size_t used = 0;
    if (n) out[0] = '\0';
    int c = diff_one_way(old_text, new_text, 0, out, n, &used);
    return c + diff_one_way(new_text, old_text, 1, out, n, &used);  // keys the old config lacks
}

void train_state_hash(const char *text, char out[17]) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        h ^= *c;
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016" PRIx64, h);
}
