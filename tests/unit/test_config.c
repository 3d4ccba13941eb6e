// test_config.c — the job-file layer: defaults = SD-1.5, the shipped job files
// load, every malformed file fails naming file:line and key, --set overrides
// parse per type, and the effective-config text loads back to the same config.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/config.h"
#include "testutil.h"

#define DATA LD_SOURCE_DIR "/tests/unit/data/config/"
#define JOBS LD_SOURCE_DIR "/jobs/"

static int has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static int same_config(const JobConfig *a, const JobConfig *b) {
    // ModelConfig is all ints and floats (no padding), and loads zero its unused tails.
    int same = memcmp(&a->model, &b->model, sizeof a->model) == 0 &&
               a->runtime.threads == b->runtime.threads && a->runtime.seed == b->runtime.seed &&
               a->runtime.device == b->runtime.device && strcmp(a->output.dir, b->output.dir) == 0;
    // The enumerated keys and the lists, as stored.
    same &= a->data.source == b->data.source && a->diffusion.schedule == b->diffusion.schedule &&
            a->train.lr_schedule == b->train.lr_schedule && a->prune.budget == b->prune.budget &&
            a->distill.feat_norm == b->distill.feat_norm;
    same &= a->prune.n_criteria == b->prune.n_criteria && a->prune.n_layers == b->prune.n_layers;
    for (int i = 0; same && i < a->prune.n_criteria; i++) same &= a->prune.criterion[i] == b->prune.criterion[i];
    for (int i = 0; same && i < a->prune.n_layers; i++) same &= !strcmp(a->prune.layers[i], b->prune.layers[i]);
    // Everything else through the text, which prints every key.
    char *ta = job_config_text(a), *tb = job_config_text(b);
    same &= strcmp(ta, tb) == 0;
    free(ta), free(tb);
    return same;
}

static void test_defaults(void) {
    JobConfig jc;
    ModelConfig sd;
    job_config_defaults(&jc);
    model_config_sd15(&sd);
    EXPECT(memcmp(&jc.model, &sd, sizeof sd) == 0, "defaults differ from model_config_sd15");
    EXPECT(jc.runtime.threads == 0 && jc.runtime.seed == 1234, "threads %d seed %ld",
           jc.runtime.threads, jc.runtime.seed);
    EXPECT(jc.runtime.device == DEVICE_CPU, "device %d", (int)jc.runtime.device);
    EXPECT(strcmp(jc.output.dir, "runs/default") == 0, "dir %s", jc.output.dir);
    EXPECT(jc.path[0] == 0, "path %s", jc.path);
    // Spot checks of the SD-1.5 facts themselves, not just agreement of two sources.
    EXPECT(sd.n_blocks == 4 && sd.block_out_channels[3] == 1280 && sd.down_cross[3] == 0 &&
               sd.up_cross[0] == 0 && sd.up_cross[1] == 1 && sd.heads[2] == 8 &&
               sd.cross_attention_dim == 768 && sd.norm_eps == 1e-5f && sd.flip_sin_to_cos == 1,
           "model_config_sd15 is not SD-1.5");
}

static void test_job_files(void) {
    JobConfig jc;
    ModelConfig sd;
    Error e = {0};
    model_config_sd15(&sd);
    int rc = job_config_load(&jc, JOBS "sd15.cfg", NULL, 0, &e);
    EXPECT(rc == 0, "sd15.cfg: %s", e.msg);
    if (rc == 0) {
        EXPECT(memcmp(&jc.model, &sd, sizeof sd) == 0, "sd15.cfg is not SD-1.5");
        EXPECT(strcmp(jc.path, JOBS "sd15.cfg") == 0, "path %s", jc.path);
        EXPECT(strcmp(jc.output.dir, "runs/sd15") == 0, "dir %s", jc.output.dir);
    }
    rc = job_config_load(&jc, JOBS "tiny.cfg", NULL, 0, &e);
    EXPECT(rc == 0, "tiny.cfg: %s", e.msg);
    if (rc == 0) {
        const ModelConfig *m = &jc.model;
        EXPECT(m->n_blocks == 2 && m->block_out_channels[0] == 32 && m->block_out_channels[1] == 64,
               "tiny channels");
        EXPECT(m->down_cross[0] == 1 && m->down_cross[1] == 0 && m->up_cross[0] == 0 &&
                   m->up_cross[1] == 1 && m->mid_cross == 1,
               "tiny block types");
        EXPECT(m->heads[0] == 2 && m->heads[1] == 2 && m->transformer_layers[0] == 1 &&
                   m->transformer_layers[1] == 1,
               "tiny heads/layers broadcast");
        EXPECT(m->in_channels == 1 && m->out_channels == 1 && m->sample_size == 16 &&
                   m->layers_per_block == 2 && m->cross_attention_dim == 16 &&
                   m->norm_num_groups == 8 && m->context_length == 6,
               "tiny scalars");
        EXPECT(m->heads[2] == 0 && m->block_out_channels[2] == 0, "unused tails are zero");
    }
    // @include, resolved next to the job file.
    rc = job_config_load(&jc, DATA "ok_include.cfg", NULL, 0, &e);
    EXPECT(rc == 0, "ok_include.cfg: %s", e.msg);
    if (rc == 0)
        EXPECT(jc.model.n_blocks == 2 && jc.model.norm_num_groups == 8 && jc.runtime.seed == 99,
               "ok_include.cfg values");
    // No file at all: defaults (and overrides) only.
    const char *sets[] = {"runtime.seed=5"};
    rc = job_config_load(&jc, NULL, sets, 1, &e);
    EXPECT(rc == 0 && jc.runtime.seed == 5 && jc.model.n_blocks == 4, "NULL path: %s", e.msg);
}

// A malformed file must fail with "<path>:<line>: " and name the key (and the detail).
static void bad_file(const char *name, const char *file_in_msg, int line, const char *key,
                     const char *detail) {
    JobConfig jc, before;
    Error e = {0};
    char path[1024], at[1100];
    snprintf(path, sizeof path, DATA "%s", name);
    memset(&jc, 0x5a, sizeof jc);
    before = jc;
    int rc = job_config_load(&jc, path, NULL, 0, &e);
    EXPECT(rc == -1, "%s: expected failure", name);
    snprintf(at, sizeof at, DATA "%s:%d: ", file_in_msg ? file_in_msg : name, line);
    EXPECT(has(e.msg, at), "%s: message lacks \"%s\": %s", name, at, e.msg);
    if (key) EXPECT(has(e.msg, key), "%s: message lacks key \"%s\": %s", name, key, e.msg);
    if (detail) EXPECT(has(e.msg, detail), "%s: message lacks \"%s\": %s", name, detail, e.msg);
    EXPECT(memcmp(&jc, &before, sizeof jc) == 0, "%s: the config was written on failure", name);
}

static void test_bad_files(void) {
    bad_file("syntax.cfg", NULL, 4, NULL, "syntax error");
    bad_file("unknown_section.cfg", NULL, 3, "modle", "unknown section; did you mean model?");
    bad_file("unknown_key.cfg", NULL, 5, "model.norm_num_group:",
             "unknown key; did you mean model.norm_num_groups?");
    bad_file("top_level_key.cfg", NULL, 3, "threads", "did you mean runtime.threads");
    bad_file("not_a_section.cfg", NULL, 2, "runtime", "expected a section");
    bad_file("wrong_type.cfg", NULL, 4, "model.norm_num_groups:",
             "expected an integer >= 1, got \"abc\"");
    bad_file("out_of_range.cfg", NULL, 6, "runtime.seed:",
             "expected an integer in [0, 2147483647], got -5");
    bad_file("bad_enum.cfg", NULL, 4, "runtime.device:",
             "expected one of \"cpu\", \"cuda\", got \"gpu\"");
    bad_file("bad_enum_element.cfg", NULL, 6, "model.down_block_types[2]:",
             "got \"CrossAttnDownBlock\"");
    bad_file("wrong_length.cfg", NULL, 5, "model.down_block_types:",
             "has 3 entries but model.block_out_channels has 2");
    bad_file("groups.cfg", NULL, 4, "model.block_out_channels:",
             "model.block_out_channels[1] = 100 is not divisible by model.norm_num_groups = 8");
    bad_file("heads.cfg", NULL, 7, "model.attention_head_dim:", "is not divisible by its head count");
    bad_file("mirror.cfg", NULL, 6, "model.up_block_types:",
             "expected [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]");
    bad_file("too_many_blocks.cfg", NULL, 3, "model.block_out_channels:",
             "expected an array of 1 to 8 integers");
    bad_file("bad_layer_element.cfg", NULL, 5, "prune.layers[2]:", "expected a non-empty name without commas, got 5");
    bad_file("include_bad.cfg", "include_bad.inc", 3, "model.layers_per_block:",
             "expected an integer >= 1, got 0");

    JobConfig jc;
    Error e = {0};
    EXPECT(job_config_load(&jc, DATA "no_such_file.cfg", NULL, 0, &e) == -1 &&
               has(e.msg, DATA "no_such_file.cfg: cannot read"),
           "missing file: %s", e.msg);
}

// Loads tiny.cfg with the given overrides; returns rc, message in e.
static int load_tiny(JobConfig *jc, Error *e, int n, const char *const *sets) {
    return job_config_load(jc, JOBS "tiny.cfg", sets, n, e);
}

static void bad_set(const char *set, const char *detail) {
    JobConfig jc;
    Error e = {0};
    char prefix[600];
    const char *sets[] = {set};
    EXPECT(load_tiny(&jc, &e, 1, sets) == -1, "--set %s: expected failure", set);
    snprintf(prefix, sizeof prefix, "--set %s: ", set);
    EXPECT(strncmp(e.msg, prefix, strlen(prefix)) == 0, "--set %s: message does not start with it: %s",
           set, e.msg);
    EXPECT(has(e.msg, detail), "--set %s: message lacks \"%s\": %s", set, detail, e.msg);
}

static void test_overrides(void) {
    JobConfig jc;
    Error e = {0};
    {   // the evaluator's keys and their cross-key rules
        const char *ok[] = {"eval.fid_samples=30", "classifier.channels=[8, 16]", "classifier.strides=2",
                            "classifier.groups=4", "eval.classifier=models/x.safetensors"};
        EXPECT(job_config_load(&jc, NULL, ok, 5, &e) == 0, "classifier keys: %s", e.msg);
        EXPECT(jc.eval.fid_samples == 30 && jc.classifier.n_layers == 2 && jc.classifier.channels[1] == 16 &&
                   jc.classifier.strides[0] == 2 && jc.classifier.strides[1] == 2 &&
                   !strcmp(jc.eval.classifier, "models/x.safetensors"),
               "classifier keys stored");
        const char *fid[] = {"eval.fid_samples=25"};
        EXPECT(job_config_load(&jc, NULL, fid, 1, &e) != 0 && has(e.msg, "eval.fid_samples = 25 is not a multiple of 10"),
               "fid_samples not class-balanced: %s", e.msg);
        const char *grp[] = {"classifier.channels=[8, 12]", "classifier.strides=1", "classifier.groups=8"};
        EXPECT(job_config_load(&jc, NULL, grp, 3, &e) != 0 &&
                   has(e.msg, "classifier.channels[1] = 12 is not divisible by classifier.groups = 8"),
               "classifier groups: %s", e.msg);
        const char *str[] = {"classifier.strides=3"};
        EXPECT(job_config_load(&jc, NULL, str, 1, &e) != 0 && has(e.msg, "classifier.strides"),
               "classifier stride 3: %s", e.msg);
    }
    {
        const char *sets[] = {"model.norm_num_groups=16",        // int
                              "model.norm_eps = 1e-6",           // float, spaces
                              "model.freq_shift=1",              // int text for a float key
                              "model.use_linear_projection=true",  // bool
                              "runtime.device=cuda",             // bare enumerated string
                              "output.dir=runs/x y",             // bare string with a space
                              "runtime.seed=7", "runtime.seed=2147483647"};  // last wins
        int rc = load_tiny(&jc, &e, 8, sets);
        EXPECT(rc == 0, "scalar overrides: %s", e.msg);
        EXPECT(jc.model.norm_num_groups == 16 && jc.model.norm_eps == 1e-6f &&
                   jc.model.freq_shift == 1.0f && jc.model.use_linear_projection == 1,
               "model scalar overrides");
        EXPECT(jc.runtime.device == DEVICE_CUDA && strcmp(jc.output.dir, "runs/x y") == 0 &&
                   jc.runtime.seed == 2147483647,
               "runtime/output overrides: %d %s %ld", (int)jc.runtime.device, jc.output.dir,
               jc.runtime.seed);
        EXPECT(jc.model.n_blocks == 2 && jc.model.cross_attention_dim == 16, "file values kept");
    }
    {
        const char *sets[] = {"output.dir=\"quoted \\\"dir\\\"\"", "model.attention_head_dim=[2,4]",
                              "model.transformer_layers_per_block=[1, 3]"};
        int rc = load_tiny(&jc, &e, 3, sets);
        EXPECT(rc == 0, "quoted string / int arrays: %s", e.msg);
        EXPECT(strcmp(jc.output.dir, "quoted \"dir\"") == 0, "quoted dir: %s", jc.output.dir);
        EXPECT(jc.model.heads[0] == 2 && jc.model.heads[1] == 4 &&
                   jc.model.transformer_layers[0] == 1 && jc.model.transformer_layers[1] == 3,
               "per-block arrays");
    }
    {   // A new shape through overrides alone: arrays of ints and of strings, quoted and bare.
        const char *sets[] = {"model.block_out_channels=[64,128,128]",
                              "model.down_block_types=[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"DownBlock2D\"]",
                              "model.up_block_types=[UpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D]",
                              "model.norm_num_groups=32", "model.sample_size=32"};
        int rc = job_config_load(&jc, NULL, sets, 5, &e);
        EXPECT(rc == 0, "array overrides: %s", e.msg);
        EXPECT(jc.model.n_blocks == 3 && jc.model.block_out_channels[2] == 128 &&
                   jc.model.down_cross[1] == 1 && jc.model.down_cross[2] == 0 &&
                   jc.model.up_cross[0] == 0 && jc.model.up_cross[2] == 1 && jc.model.heads[2] == 8,
               "array overrides values");
    }
    {   // Both keys at defaults but one: the message points at the override and says so.
        const char *sets[] = {"model.block_out_channels=[32,64]"};
        EXPECT(job_config_load(&jc, NULL, sets, 1, &e) == -1 &&
                   has(e.msg, "--set model.block_out_channels=[32,64]: model.block_out_channels: "
                              "model.down_block_types has 4 entries (its default)"),
               "default-length message: %s", e.msg);
    }
    bad_set("model.norm_num_grops=16", "unknown key model.norm_num_grops; did you mean model.norm_num_groups?");
    bad_set("model.threads=3", "did you mean runtime.threads?");
    bad_set("noequals", "expected section.key=value");
    bad_set("model.norm_num_groups=abc", "model.norm_num_groups: expected an integer >= 1, got \"abc\"");
    bad_set("model.norm_num_groups=0", "model.norm_num_groups: expected an integer >= 1, got 0");
    bad_set("model.norm_num_groups=2.5", "model.norm_num_groups: expected an integer >= 1, got 2.5");
    bad_set("model.norm_eps=-1", "model.norm_eps: expected a number in (0, 1], got -1");
    bad_set("model.use_linear_projection=yes", "model.use_linear_projection: expected true or false");
    bad_set("runtime.device=gpu", "runtime.device: expected one of \"cpu\", \"cuda\", got \"gpu\"");
    bad_set("runtime.seed=3000000000", "runtime.seed: expected an integer in [0, 2147483647], got 3000000000");
    bad_set("runtime.seed=99999999999999999999999", "runtime.seed: expected an integer");
    bad_set("model.in_channels=1; model = {}", "model.in_channels: expected an integer >= 1");
    bad_set("model.attention_head_dim=[2,2,2]", "has 3 entries but model.block_out_channels has 2");
    bad_set("model.down_block_types=[DownBlock2D, Foo]", "model.down_block_types[1]: expected one of");
    bad_set("model.block_out_channels=[32,64,128]", "model.down_block_types has 2 entries but model.block_out_channels has 3");
    bad_set("model.norm_num_groups=24", "model.norm_num_groups: model.block_out_channels[0] = 32 is not divisible");
}

static void roundtrip(const char *what, const JobConfig *jc) {
    char *text = job_config_text(jc);
    char path[] = LD_BINARY_DIR "/test_config_XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0, "%s: mkstemp", what);
    if (fd < 0) {
        free(text);
        return;
    }
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    JobConfig back;
    Error e = {0};
    int rc = job_config_load(&back, path, NULL, 0, &e);
    EXPECT(rc == 0, "%s: the text does not load: %s\n%s", what, e.msg, text);
    if (rc == 0) EXPECT(same_config(jc, &back), "%s: round trip differs:\n%s", what, text);
    EXPECT(has(text, "model = {") && has(text, "runtime = {") && has(text, "output = {"),
           "%s: sections", what);
    unlink(path);
    free(text);
}

static void test_text_roundtrip(void) {
    JobConfig jc;
    Error e = {0};
    job_config_defaults(&jc);
    roundtrip("defaults", &jc);
    EXPECT(job_config_load(&jc, JOBS "sd15.cfg", NULL, 0, &e) == 0, "%s", e.msg);
    roundtrip("sd15.cfg", &jc);
    EXPECT(job_config_load(&jc, JOBS "tiny.cfg", NULL, 0, &e) == 0, "%s", e.msg);
    roundtrip("tiny.cfg", &jc);
    const char *sets[] = {"model.attention_head_dim=[2,4]", "model.norm_eps=3.3e-7",
                          "model.freq_shift=1", "model.use_linear_projection=true",
                          "model.flip_sin_to_cos=false", "runtime.seed=2147483647",
                          "runtime.threads=3", "runtime.device=cuda",
                          "output.dir=\"odd \\\"dir\\\" \\\\ with\\ttab\""};
    EXPECT(load_tiny(&jc, &e, 9, sets) == 0, "%s", e.msg);
    EXPECT(strcmp(jc.output.dir, "odd \"dir\" \\ with\ttab") == 0, "escaped dir: %s", jc.output.dir);
    roundtrip("tiny + overrides", &jc);
    char *text = job_config_text(&jc);
    EXPECT(has(text, "attention_head_dim = [2, 4];") && has(text, "transformer_layers_per_block = 1;"),
           "int-or-array keys written as the user would:\n%s", text);
    free(text);
}

static void test_reference(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    job_config_print_reference(f);
    fclose(f);
    EXPECT(strncmp(buf, "| section | key | type | default | range | meaning |\n", 52) == 0,
           "header: %.80s", buf);
    EXPECT(has(buf, "| model | norm_num_groups | int | `32` | >= 1 |"), "norm_num_groups row");
    EXPECT(has(buf, "| runtime | device | string | `\"cpu\"` | `\"cpu\"`, `\"cuda\"` |"), "device row");
    // Every key of the effective config has a row, and nothing else does.
    JobConfig jc;
    job_config_defaults(&jc);
    char *text = job_config_text(&jc);
    int keys = 0, rows = 0;
    char section[64] = "";
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128], row[256];
        if (strchr(line, '{')) {
            sscanf(line, "%63s", section);
            continue;
        }
        if (sscanf(line, " %127s =", name) != 1 || line[0] != ' ') continue;
        keys++;
        snprintf(row, sizeof row, "| %s | %s |", section, name);
        EXPECT(has(buf, row), "no reference row for %s.%s", section, name);
    }
    for (const char *p = buf; (p = strchr(p, '\n')); p++) rows++;
    EXPECT(keys >= 21 && rows == keys + 2, "%d keys, %d table lines", keys, rows);
    free(text);
    free(buf);
}

// Lists (prune.criterion, prune.layers): one string or an array, stored as a
// list (enums and names plus a count), written back as an array.
static void test_string_lists(void) {
    JobConfig jc;
    Error e = {0};
    job_config_defaults(&jc);
    EXPECT(jc.prune.n_criteria == 1 && jc.prune.criterion[0] == CRIT_OUTPUT_LOSS && jc.prune.n_layers == 0,
           "defaults: %d criteria, %d layers", jc.prune.n_criteria, jc.prune.n_layers);
    const char *one[] = {"prune.criterion=taylor", "prune.layers=mid_block.attentions.0"};
    EXPECT(load_tiny(&jc, &e, 2, one) == 0 && jc.prune.n_criteria == 1 && jc.prune.criterion[0] == CRIT_TAYLOR &&
               jc.prune.n_layers == 1 && !strcmp(jc.prune.layers[0], "mid_block.attentions.0"),
           "single: %s; %d criteria, %d layers", e.msg, jc.prune.n_criteria, jc.prune.n_layers);
    char *text = job_config_text(&jc);
    EXPECT(has(text, "  criterion = [\"taylor\"];\n") && has(text, "  layers = [\"mid_block.attentions.0\"];\n"),
           "a single value is written as a one-entry array:\n%s", text);
    free(text);
    const char *list[] = {"prune.criterion=[random, output_loss, magnitude]",
                          "prune.layers=[\"mid_block.attentions.0\", up_blocks.1.resnets.1]"};
    EXPECT(load_tiny(&jc, &e, 2, list) == 0, "list: %s", e.msg);
    EXPECT(jc.prune.n_criteria == 3 && jc.prune.criterion[0] == CRIT_RANDOM &&
               jc.prune.criterion[1] == CRIT_OUTPUT_LOSS && jc.prune.criterion[2] == CRIT_MAGNITUDE,
           "criteria in order: %d [%d %d %d]", jc.prune.n_criteria, (int)jc.prune.criterion[0],
           (int)jc.prune.criterion[1], (int)jc.prune.criterion[2]);
    EXPECT(jc.prune.n_layers == 2 && !strcmp(jc.prune.layers[0], "mid_block.attentions.0") &&
               !strcmp(jc.prune.layers[1], "up_blocks.1.resnets.1"),
           "layers: %d", jc.prune.n_layers);
    text = job_config_text(&jc);
    EXPECT(has(text, "  criterion = [\"random\", \"output_loss\", \"magnitude\"];\n") &&
               has(text, "  layers = [\"mid_block.attentions.0\", \"up_blocks.1.resnets.1\"];\n"),
           "lists in the effective config:\n%s", text);
    free(text);
    roundtrip("string lists", &jc);
    bad_set("prune.criterion=[output_loss, psychic]", "prune.criterion[1]: expected one of \"output_loss\"");
    bad_set("prune.layers=[\"a,b\"]", "prune.layers[0]: expected a non-empty name without commas, got \"a,b\"");
    bad_set("prune.criterion=7", "prune.criterion");
    bad_set("prune.criterion=[]", "prune.criterion: expected a string or an array of strings");
    bad_set("prune.criterion=[taylor, magnitude, taylor]", "prune.criterion[2]: \"taylor\" is listed twice");

    // Capacity: PRUNE_MAX_LAYERS names of up to PRUNE_LAYER_NAME - 1 characters; one more is an error naming the key.
    size_t cap = 32 + (size_t)(PRUNE_MAX_LAYERS + 1) * (PRUNE_LAYER_NAME + 4);
    char *set = xmalloc(cap);
    for (int count = PRUNE_MAX_LAYERS; count <= PRUNE_MAX_LAYERS + 1; count++) {
        size_t used = (size_t)snprintf(set, cap, "prune.layers=[");
        for (int i = 0; i < count; i++)
            used += (size_t)snprintf(set + used, cap - used, "%sl%0*d", i ? ", " : "", PRUNE_LAYER_NAME - 2, i);
        snprintf(set + used, cap - used, "]");
        const char *sets[] = {set};
        int rc = load_tiny(&jc, &e, 1, sets);
        if (count == PRUNE_MAX_LAYERS) {
            const char *last = jc.prune.layers[count - 1];
            EXPECT(rc == 0 && jc.prune.n_layers == count && strlen(last) == PRUNE_LAYER_NAME - 1 &&
                       atoi(last + 1) == count - 1,
                   "%d names of %d characters: %s", count, PRUNE_LAYER_NAME - 1, e.msg);
            if (rc == 0) roundtrip("the longest layer list", &jc);
        } else {
            EXPECT(rc == -1 && has(e.msg, "prune.layers: more than 256 entries (257 given)"), "%d names: %s", count,
                   rc ? e.msg : "accepted");
        }
    }
    char name[PRUNE_LAYER_NAME + 1];
    memset(name, 'x', PRUNE_LAYER_NAME);
    name[PRUNE_LAYER_NAME] = 0;
    snprintf(set, cap, "prune.layers=[mid_block.attentions.0, %s]", name);
    bad_set(set, "prune.layers[1]: longer than 127 characters");
    snprintf(set, cap, "prune.layers=%s", name);
    bad_set(set, "prune.layers: longer than 127 characters");
    free(set);
}

// Enumerated keys: parsed once into their enums, written back by name.
static void test_enums(void) {
    JobConfig jc;
    Error e = {0};
    job_config_defaults(&jc);
    EXPECT(jc.data.source == DATA_FASHION_MNIST && jc.diffusion.schedule == BETA_SCALED_LINEAR &&
               jc.train.lr_schedule == LR_COSINE && jc.prune.budget == BUDGET_PARAMS &&
               jc.distill.feat_norm == FEAT_NORM_L2SQ,
           "enum defaults: %d %d %d %d %d", (int)jc.data.source, (int)jc.diffusion.schedule,
           (int)jc.train.lr_schedule, (int)jc.prune.budget, (int)jc.distill.feat_norm);
    const char *sets[] = {"data.source=hdf5", "diffusion.schedule=\"linear\"", "train.lr_schedule=constant",
                          "prune.budget=macs", "distill.feat_norm=none"};
    EXPECT(load_tiny(&jc, &e, 5, sets) == 0, "enum overrides: %s", e.msg);
    EXPECT(jc.data.source == DATA_HDF5 && jc.diffusion.schedule == BETA_LINEAR && jc.train.lr_schedule == LR_CONSTANT &&
               jc.prune.budget == BUDGET_MACS && jc.distill.feat_norm == FEAT_NORM_NONE,
           "enum overrides: %d %d %d %d %d", (int)jc.data.source, (int)jc.diffusion.schedule,
           (int)jc.train.lr_schedule, (int)jc.prune.budget, (int)jc.distill.feat_norm);
    char *text = job_config_text(&jc);
    EXPECT(has(text, "  source = \"hdf5\";\n") && has(text, "  schedule = \"linear\";\n") &&
               has(text, "  lr_schedule = \"constant\";\n") && has(text, "  budget = \"macs\";\n") &&
               has(text, "  feat_norm = \"none\";\n"),
           "enums written by name:\n%s", text);
    free(text);
    roundtrip("enums", &jc);
    bad_set("data.source=mnist", "data.source: expected one of \"fashion-mnist\", \"hdf5\", got \"mnist\"");
    bad_set("diffusion.schedule=cosine", "diffusion.schedule: expected one of \"scaled_linear\", \"linear\"");
    bad_set("train.lr_schedule=linear", "train.lr_schedule: expected one of \"constant\", \"cosine\"");
    bad_set("prune.budget=flops", "prune.budget: expected one of \"params\", \"macs\"");
    bad_set("distill.feat_norm=l2", "distill.feat_norm: expected one of \"l2sq\", \"none\"");
    bad_set("distill.feat_norm=3", "distill.feat_norm: expected one of");
    // One name table: what the stages print is what the job file takes.
    const char *crit[CRIT_COUNT] = {"output_loss", "random", "magnitude", "feature_loss", "taylor"};
    for (int c = 0; c < CRIT_COUNT; c++) {
        char set[64];
        snprintf(set, sizeof set, "prune.criterion=%s", crit[c]);
        const char *one[] = {set};
        EXPECT(!strcmp(criterion_name((Criterion)c), crit[c]) && load_tiny(&jc, &e, 1, one) == 0 &&
                   jc.prune.criterion[0] == (Criterion)c,
               "criterion %d: %s", c, criterion_name((Criterion)c));
    }
    EXPECT(!strcmp(budget_name(BUDGET_PARAMS), "params") && !strcmp(budget_name(BUDGET_MACS), "macs") &&
               !strcmp(feat_norm_name(FEAT_NORM_L2SQ), "l2sq") && !strcmp(feat_norm_name(FEAT_NORM_NONE), "none"),
           "budget and feat_norm names");
}

int main(void) {
    test_defaults();
    test_enums();
    test_string_lists();
    test_job_files();
    test_bad_files();
    test_overrides();
    test_text_roundtrip();
    test_reference();
    return tu_report("test_config");
}
