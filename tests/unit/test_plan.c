// test_plan.c — from scores to a plan and a student: the plan meets the budget
// and reports its predicted loss (optimality itself is test_knapsack's), handcrafted
// plans and infeasible ratios give clear results, additivity sets cover the
// requested range, and the saved student_init computes exactly what the teacher
// computes with the same layers removed.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "io/config.h"
#include "model/init.h"
#include "prune/plan.h"
#include "testutil.h"

static UNet *tiny_teacher(JobConfig *jc) {
    Error e;
    CHECK(job_config_load(jc, LD_SOURCE_DIR "/tests/reference/fixtures/conv.cfg", NULL, 0, &e) == 0);
    UNet *u = unet_create(&jc->model, NULL, &e);
    CHECK(u);
    unet_init_params(u, 11);
    return u;
}

static void plan_is_optimal(void) {
    JobConfig jc;
    UNet *u = tiny_teacher(&jc);
    int n = u->n_cands;
    double *s = xmalloc((size_t)n * sizeof(double));
    TuRng r;
    tu_rng_seed(&r, 3);
    for (int i = 0; i < n; i++) s[i] = tu_uniform(&r, 0.001f, 1.0f);
    Error e;
    for (int k = 1; k <= 4; k++) {
        jc.prune.ratio = 0.1 * k;
        Plan p;
        EXPECT(plan_make(u, s, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) == 0, "plan: %s", e.msg);
        EXPECT(p.removed_cost >= p.required && p.total == (long long)u->pt.total, "ratio %.1f: budget met", jc.prune.ratio);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += p.removed[i] ? s[i] : 0;
        EXPECT(fabs(sum - p.predicted) < 1e-12, "predicted = sum of removed scores");
        plan_free(&p);
    }
    // infeasible: more than all candidates hold
    jc.prune.ratio = 0.999;
    Plan p;
    EXPECT(plan_make(u, s, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) != 0 && strstr(e.msg, "prune.ratio = 0.999") &&
               strstr(e.msg, "largest achievable ratio"),
           "infeasible: %s", e.msg);
    plan_free(&p);
    // handcrafted
    jc.prune.ratio = 0.25;
    jc.prune.n_layers = 2;
    snprintf(jc.prune.layers[0], sizeof jc.prune.layers[0], "mid_block.attentions.0");
    snprintf(jc.prune.layers[1], sizeof jc.prune.layers[1], "up_blocks.1.resnets.1");
    EXPECT(plan_make(u, s, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) == 0 && p.n_removed == 2 && !strcmp(p.criterion, "handcrafted"),
           "handcrafted: %s", e.msg);
    plan_free(&p);
    jc.prune.n_layers = 1;
    snprintf(jc.prune.layers[0], sizeof jc.prune.layers[0], "mid_block.attentions.7");
    EXPECT(plan_make(u, s, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) != 0 && strstr(e.msg, "prune.layers") &&
               strstr(e.msg, "mid_block.attentions.7"),
           "unknown handcrafted layer: %s", e.msg);
    plan_free(&p);
    // negative scores are refused
    s[2] = -1;
    jc.prune.n_layers = 0;
    EXPECT(plan_make(u, s, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) != 0 && strstr(e.msg, "finite and >= 0"), "%s", e.msg);
    plan_free(&p);
    free(s);
    unet_free(u);
}

static void additivity_ranges(void) {
    JobConfig jc;
    UNet *u = tiny_teacher(&jc);
    int K = 12, n = u->n_cands;
    uint8_t *sets = additivity_sets(u, K, 0.6, 0, 5), *again = additivity_sets(u, K, 0.6, 0, 5);
    EXPECT(!memcmp(sets, again, (size_t)K * n), "seeded: the same sets twice");
    for (int k = 0; k < K; k++) {
        long long got = 0;
        for (int i = 0; i < n; i++) got += sets[(size_t)k * n + i] ? u->cands[i].params : 0;
        double frac = (double)got / u->pt.total;
        EXPECT(frac >= 0.6 * (k + 1) / K - 1e-12, "set %d reaches its target (%.3f)", k, frac);
    }
    double x[4] = {1, 2, 3, 4}, y[4] = {2, 4, 6, 8.5};
    EXPECT(pearson(x, y, 4) > 0.99 && pearson(x, y, 4) <= 1.0, "pearson");
    free(sets), free(again);
    unet_free(u);
}

static void student_equals_removed_teacher(void) {
    JobConfig jc;
    UNet *t = tiny_teacher(&jc);
    int n = t->n_cands;
    uint8_t *rm = xcalloc((size_t)n, 1);
    for (int i = 0; i < n; i += 3) rm[i] = 1;
    Error e;
    UNet *s = plan_student(t, rm, &e);
    CHECK(s);
    char path[] = "/tmp/ld_student_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(unet_save(s, path, NULL, 0, &e) == 0);
    ModelConfig defaults;
    model_config_sd15(&defaults);
    UNet *loaded = unet_from_file(path, &defaults, &e);
    EXPECT(loaded != NULL, "load student: %s", e.msg);
    TuRng r;
    tu_rng_seed(&r, 8);
    int B = 2, H = 16, L = 5, C = jc.model.in_channels, D = jc.model.cross_attention_dim;
    float *x = xmalloc((size_t)B * C * H * H * 4), *ctx = xmalloc((size_t)B * L * D * 4), tt[2] = {10, 700};
    float *o1 = xmalloc((size_t)B * jc.model.out_channels * H * H * 4), *o2 = xmalloc((size_t)B * jc.model.out_channels * H * H * 4);
    tu_fill(&r, x, (size_t)B * C * H * H, -1, 1);
    tu_fill(&r, ctx, (size_t)B * L * D, -1, 1);
    CHECK(unet_forward(t, o1, x, tt, ctx, B, H, H, L, rm, &e) == 0);
    if (loaded) {
        CHECK(unet_forward(loaded, o2, x, tt, ctx, B, H, H, L, NULL, &e) == 0);
        EXPECT(!memcmp(o1, o2, (size_t)B * jc.model.out_channels * H * H * 4),
               "student_init forward == teacher forward with the plan's layers removed, bit for bit");
        EXPECT(loaded->pt.total < t->pt.total, "the student is smaller (%zu < %zu)", loaded->pt.total, t->pt.total);
    }
    unlink(path);
    free(x), free(ctx), free(o1), free(o2), free(rm);
    unet_free(loaded), unet_free(s), unet_free(t);
}

// prune.granularity = "block" on xl's layout (stacks of 1 and 2): knapsack
// plans meet either budget, handcrafted plans name blocks (a whole stack of 2
// is refused with a hint), and the student keeps which blocks were removed in
// its metadata: loaded back, it is built at block granularity and computes the
// teacher's forward with those blocks bypassed.
static void block_plans_and_students(void) {
    JobConfig jc;
    Error e;
    CHECK(job_config_load(&jc, LD_SOURCE_DIR "/tests/reference/fixtures/xl.cfg", NULL, 0, &e) == 0);
    UNet *t = unet_create_at(&jc.model, GRAN_BLOCK, NULL, &e);
    CHECK(t);
    unet_init_params(t, 11);
    int n = t->n_cands;
    double *s = xmalloc((size_t)n * sizeof(double));
    TuRng r;
    tu_rng_seed(&r, 4);
    for (int i = 0; i < n; i++) s[i] = tu_uniform(&r, 0.001f, 1.0f);
    Plan p;
    for (int b = 0; b < 2; b++) {
        jc.prune.budget = b ? BUDGET_MACS : BUDGET_PARAMS, jc.prune.ratio = 0.3;
        EXPECT(plan_make(t, s, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) == 0, "block plan: %s", e.msg);
        long long cost = 0;
        for (int i = 0; i < n; i++) cost += p.removed[i] ? (b ? t->cands[i].macs : t->cands[i].params) : 0;
        EXPECT(p.gran == GRAN_BLOCK && p.removed_cost == cost && cost >= p.required &&
                   p.total == (b ? unet_total_macs(t) : (long long)t->pt.total),
               "block plan, budget %s: removes %lld >= required %lld", b ? "macs" : "params", cost, p.required);
        plan_free(&p);
    }
    jc.prune.budget = BUDGET_PARAMS;
    jc.prune.n_layers = 1;
    snprintf(jc.prune.layers[0], sizeof jc.prune.layers[0], "mid_block.attentions.0");
    EXPECT(plan_make(t, s, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) != 0 && strstr(e.msg, "prune.layers") &&
               strstr(e.msg, "block by block"), "a stack of 2 as a whole at block granularity: %s", e.msg);
    plan_free(&p);
    jc.prune.n_layers = 3;
    snprintf(jc.prune.layers[0], sizeof jc.prune.layers[0], "mid_block.attentions.0.transformer_blocks.1");
    snprintf(jc.prune.layers[1], sizeof jc.prune.layers[1], "up_blocks.0.attentions.2.transformer_blocks.0");
    snprintf(jc.prune.layers[2], sizeof jc.prune.layers[2], "up_blocks.1.attentions.0");  // a stack of 1: whole
    EXPECT(plan_make(t, NULL, CRIT_OUTPUT_LOSS, &jc.prune, &p, &e) == 0 && p.n_removed == 3, "handcrafted blocks: %s",
           e.msg);
    UNet *st = plan_student(t, p.removed, &e);
    CHECK(st);
    char path[] = "/tmp/ld_block_student_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(unet_save(st, path, NULL, 0, &e) == 0);
    StFile f;
    CHECK(st_open(&f, path, &e) == 0);
    const char *rm = st_meta(&f, "removed");
    EXPECT(rm && !strcmp(rm, "mid_block.attentions.0.transformer_blocks.1,up_blocks.0.attentions.2.transformer_blocks.0,"
                             "up_blocks.1.attentions.0"),
           "student metadata names the removed blocks: %s", rm ? rm : "(none)");
    st_close(&f);
    ModelConfig defaults;
    model_config_sd15(&defaults);
    UNet *loaded = unet_from_file(path, &defaults, &e);
    EXPECT(loaded != NULL, "load block student: %s", e.msg);
    if (loaded) {
        EXPECT(loaded->gran == GRAN_BLOCK && loaded->n_cands == n, "loaded at block granularity (%d candidates)",
               loaded->n_cands);
        long long gone = 0;
        for (int i = 0; i < n; i++) gone += p.removed[i] ? t->cands[i].params : 0;
        EXPECT((long long)(t->pt.total - loaded->pt.total) == gone, "the student lacks exactly the removed parameters");
        int B = 2, H = 16, L = 5, C = jc.model.in_channels, D = jc.model.cross_attention_dim;
        size_t no = (size_t)B * jc.model.out_channels * H * H;
        float *x = xmalloc((size_t)B * C * H * H * 4), *ctx = xmalloc((size_t)B * L * D * 4), tt[2] = {10, 700};
        float *o1 = xmalloc(no * 4), *o2 = xmalloc(no * 4);
        tu_fill(&r, x, (size_t)B * C * H * H, -1, 1);
        tu_fill(&r, ctx, (size_t)B * L * D, -1, 1);
        CHECK(unet_forward(t, o1, x, tt, ctx, B, H, H, L, p.removed, &e) == 0);
        CHECK(unet_forward(loaded, o2, x, tt, ctx, B, H, H, L, NULL, &e) == 0);
        EXPECT(!memcmp(o1, o2, no * 4), "block student forward == teacher with those blocks bypassed, bit for bit");
        free(x), free(ctx), free(o1), free(o2);
    }
    unlink(path);
    plan_free(&p);
    free(s);
    unet_free(loaded), unet_free(st), unet_free(t);
}

int main(void) {
    plan_is_optimal();
    additivity_ranges();
    student_equals_removed_teacher();
    block_plans_and_students();
    return tu_report("test_plan");
}
