// test_prune_score.c — candidate scores. output_loss against diffusers: the
// reference fixtures hold, for every candidate, the output MSE with only that
// layer removed (computed in float64 by tests/reference/make_fixtures.py); the
// C scores on the same inputs must agree. Also: the cost partition is a
// deterministic, balanced assignment, and the baselines behave as defined.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/checkpoint.h"
#include "io/config.h"
#include "prune/prune_score.h"
#include "testutil.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/"

static void check_fixture(const char *model) {
    char path[512];
    JobConfig jc;
    Error e;
    snprintf(path, sizeof path, FIX "%s.cfg", model);
    CHECK(job_config_load(&jc, path, NULL, 0, &e) == 0);
    UNet *u = unet_create(&jc.model, NULL, &e);
    CHECK(u);
    StFile w, io;
    snprintf(path, sizeof path, FIX "%s_weights.safetensors", model);
    CHECK(st_open(&w, path, &e) == 0 && unet_load_weights(u, &w, &e) == 0);
    st_close(&w);
    snprintf(path, sizeof path, FIX "%s_io.safetensors", model);
    CHECK(st_open(&io, path, &e) == 0);
    const StTensor *xs = st_find(&io, "sample"), *cx = st_find(&io, "context");
    Calib cs = {.n = (int)xs->shape[0], .C = (int)xs->shape[1], .H = (int)xs->shape[2], .W = (int)xs->shape[3],
                .L = (int)cx->shape[1], .D = (int)cx->shape[2], .Co = u->cfg.out_channels, .batch = 2};
    cs.xt = tu_read_tensor(&io, "sample", NULL), cs.ctx = tu_read_tensor(&io, "context", NULL);
    cs.t = tu_read_tensor(&io, "timesteps", NULL);
    cs.teacher = xmalloc((size_t)cs.n * cs.Co * cs.H * cs.W * sizeof(float));
    CHECK(calib_teacher(u, &cs, &e) == 0);
    Comm comm = comm_serial();
    double *scores = xmalloc((size_t)u->n_cands * sizeof(double));
    CHECK(score_criterion(u, &cs, CRIT_OUTPUT_LOSS, 1, &comm, scores, 0, &e) == 0);
    const char *names = st_meta(&io, "candidates");
    float *ref = tu_read_tensor(&io, "cand_score", NULL);
    CHECK(names);
    char *list = xstrdup(names), *save = NULL;
    int k = 0, matched = 0;
    double worst = 0;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save), k++) {
        int c = -1;
        for (int j = 0; j < u->n_cands; j++)
            if (!strcmp(u->cands[j].name, tok)) c = j;
        EXPECT(c >= 0, "%s: fixture candidate %s is a C candidate", model, tok);
        if (c < 0) continue;
        double rel = fabs(scores[c] - ref[k]) / ref[k];
        if (rel > worst) worst = rel;
        // worst seen 3.3e-6 (SkylakeX kernels), 1.3e-6 (Haswell, Zen), 4.9e-6 (generic)
        EXPECT(rel < 3e-5, "%s %s: output loss %.8g, diffusers %.8g", model, tok, scores[c], ref[k]);
        matched++;
    }
    EXPECT(matched == u->n_cands, "%s: every candidate scored (%d of %d)", model, matched, u->n_cands);
    printf("%-7s output_loss of %d candidates vs diffusers: worst relative error %.2e\n", model, matched, worst);
    // baselines: magnitude by hand for one layer; feature_loss positive wherever a layer exists
    CHECK(score_criterion(u, &cs, CRIT_MAGNITUDE, 1, &comm, scores, 0, &e) == 0);
    const Candidate *c0 = &u->cands[0];
    int first = c0->res ? c0->res->first_tensor : c0->attn->first_tensor;
    int end = c0->res ? c0->res->end_tensor : c0->attn->end_tensor;
    double s = 0;
    size_t cnt = 0;
    for (int t = first; t < end; t++)
        for (size_t j = 0; j < u->pt.t[t].numel; j++) s += fabs(u->params[u->pt.t[t].offset + j]), cnt++;
    EXPECT(fabs(scores[0] - s / cnt) < 1e-12, "magnitude = mean |w|");
    CHECK(score_criterion(u, &cs, CRIT_FEATURE_LOSS, 1, &comm, scores, 0, &e) == 0);
    for (int c = 0; c < u->n_cands; c++) EXPECT(scores[c] > 0 && isfinite(scores[c]), "feature_loss of %s", u->cands[c].name);
    free(list), free(ref), free(scores);
    free(cs.xt), free(cs.ctx), free(cs.t), free(cs.teacher);
    st_close(&io);
    unet_free(u);
}

static void check_partition(void) {
    JobConfig jc;
    Error e;
    CHECK(job_config_load(&jc, LD_SOURCE_DIR "/jobs/sd15.cfg", NULL, 0, &e) == 0);
    UNet *u = unet_create(&jc.model, NULL, &e);
    CHECK(u);
    for (int ranks = 1; ranks <= 5; ranks++) {
        int owner[64], owner2[64];
        score_partition(u, ranks, owner);
        score_partition(u, ranks, owner2);
        EXPECT(!memcmp(owner, owner2, sizeof(int) * u->n_cands), "partition is deterministic");
        long long load[8] = {0}, total = unet_total_macs(u), maxc = 0;
        for (int i = 0; i < u->n_cands; i++) {
            EXPECT(owner[i] >= 0 && owner[i] < ranks, "owner in range");
            long long c = total - u->cands[i].macs;
            load[owner[i]] += c;
            if (c > maxc) maxc = c;
        }
        long long lo = load[0], hi = load[0];
        for (int r = 1; r < ranks; r++) lo = load[r] < lo ? load[r] : lo, hi = load[r] > hi ? load[r] : hi;
        EXPECT(hi - lo <= maxc, "%d ranks: loads within one candidate's cost (%lld..%lld)", ranks, lo, hi);
    }
    unet_free(u);
}

int main(void) {
    // ~100 passes of the reference models: one thread (testutil.h)
    tu_set_threads(1);
    check_fixture("conv");
    check_fixture("linear");
    check_partition();
    return tu_report("test_prune_score");
}
