// test_prune_score.c — candidate scores. output_loss against diffusers: the
// reference fixtures hold, for every candidate, the output MSE with only that
// layer removed (computed in float64 by tests/reference/make_fixtures.py); the
// C scores on the same inputs must agree. Also: the calibration shards add up
// to the whole set, the cost partition is a deterministic, balanced assignment
// that leaves no rank idle while there are jobs, and the baselines behave as
// defined.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/checkpoint.h"
#include "io/config.h"
#include "prune/prune_score.h"
#include "testutil.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/"

// A reference model with its weights, *io open on its fixture, and *cs its
// inputs as a calibration set (batch 2) with the teacher's outputs filled in.
static UNet *load_fixture_at(const char *model, Granularity g, StFile *io, Calib *cs) {
    char path[512];
    JobConfig jc;
    Error e;
    snprintf(path, sizeof path, FIX "%s.cfg", model);
    CHECK(job_config_load(&jc, path, NULL, 0, &e) == 0);
    UNet *u = unet_create_at(&jc.model, g, NULL, &e);
    CHECK(u);
    StFile w;
    snprintf(path, sizeof path, FIX "%s_weights.safetensors", model);
    CHECK(st_open(&w, path, &e) == 0 && unet_load_weights(u, &w, &e) == 0);
    st_close(&w);
    snprintf(path, sizeof path, FIX "%s_io.safetensors", model);
    CHECK(st_open(io, path, &e) == 0);
    const StTensor *xs = st_find(io, "sample"), *cx = st_find(io, "context");
    *cs = (Calib){.n = (int)xs->shape[0], .C = (int)xs->shape[1], .H = (int)xs->shape[2], .W = (int)xs->shape[3],
                  .L = (int)cx->shape[1], .D = (int)cx->shape[2], .Co = u->cfg.out_channels, .batch = 2};
    cs->xt = tu_read_tensor(io, "sample", NULL), cs->ctx = tu_read_tensor(io, "context", NULL);
    cs->t = tu_read_tensor(io, "timesteps", NULL);
    cs->teacher = xmalloc((size_t)cs->n * cs->Co * cs->H * cs->W * sizeof(float));
    CHECK(calib_teacher(u, cs, &e) == 0);
    return u;
}

static UNet *load_fixture(const char *model, StFile *io, Calib *cs) { return load_fixture_at(model, GRAN_LAYER, io, cs); }

// Candidate c of u by name, -1 if none.
static int cand_index(const UNet *u, const char *name) {
    for (int j = 0; j < u->n_cands; j++)
        if (!strcmp(u->cands[j].name, name)) return j;
    return -1;
}

// Compares scores[] with the fixture's per-candidate list `names_key` /
// `score_key` (and `params_key` when given); returns how many matched.
static int match_scores(const UNet *u, const StFile *io, const double *scores, const char *model, const char *names_key,
                        const char *score_key, const char *params_key, double *worst) {
    const char *names = st_meta(io, names_key);
    CHECK(names);
    float *ref = tu_read_tensor(io, score_key, NULL), *par = params_key ? tu_read_tensor(io, params_key, NULL) : NULL;
    char *list = xstrdup(names), *save = NULL;
    int k = 0, matched = 0;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save), k++) {
        int c = cand_index(u, tok);
        EXPECT(c >= 0, "%s: fixture candidate %s is a C candidate", model, tok);
        if (c < 0) continue;
        double rel = fabs(scores[c] - ref[k]) / ref[k];
        if (rel > *worst) *worst = rel;
        // worst seen 3.3e-6 (SkylakeX kernels), 1.3e-6 (Haswell, Zen), 4.9e-6 (generic)
        EXPECT(rel < 3e-5, "%s %s: output loss %.8g, diffusers %.8g", model, tok, scores[c], ref[k]);
        if (par) EXPECT(u->cands[c].params == (long long)par[k], "%s %s: %lld parameters, diffusers %.0f", model, tok,
                        u->cands[c].params, par[k]);
        matched++;
    }
    free(list), free(ref), free(par);
    return matched;
}

// xl at prune.granularity = "block": each BasicTransformerBlock of a stack of
// 2 is a candidate (the fixture's block_candidates / block_cand_score, made by
// replacing that one block with an identity module in diffusers); the stacks
// of 1 stay whole-Transformer2DModel candidates and, with the resnets, score as
// at layer granularity (cand_score). Every criterion runs at this granularity.
static void check_block_fixture(void) {
    Error e;
    StFile io;
    Calib cs;
    UNet *u = load_fixture_at("xl", GRAN_BLOCK, &io, &cs);
    Comm comm = comm_serial();
    int n = u->n_cands, nblk = 0;
    for (int c = 0; c < n; c++) nblk += u->cands[c].kind == CAND_BLOCK;
    double *scores = xmalloc((size_t)n * sizeof(double)), worst = 0;
    CHECK(score_criterion(u, &cs, CRIT_OUTPUT_LOSS, 1, &comm, scores, 0, &e) == 0);
    int mb = match_scores(u, &io, scores, "xl", "block_candidates", "block_cand_score", "block_cand_params", &worst);
    EXPECT(mb == nblk && nblk > 0, "xl: %d block candidates, the fixture has %d", nblk, mb);
    // the layer candidates that remain at block granularity: found in the layer list, same scores
    const char *names = st_meta(&io, "candidates");
    float *ref = tu_read_tensor(&io, "cand_score", NULL);
    char *list = xstrdup(names), *save = NULL;
    int k = 0, ml = 0;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save), k++) {
        int c = cand_index(u, tok);
        if (c < 0) continue;  // a Transformer2DModel with 2 blocks: its blocks stand in for it
        double rel = fabs(scores[c] - ref[k]) / ref[k];
        worst = fmax(worst, rel);
        EXPECT(rel < 3e-5, "xl (block) %s: output loss %.8g, diffusers %.8g", tok, scores[c], ref[k]);
        ml++;
    }
    EXPECT(ml + nblk == n, "xl: %d layer + %d block candidates of %d", ml, nblk, n);
    printf("xl      output_loss at granularity block: %d blocks + %d layers vs diffusers: worst relative error %.2e\n",
           nblk, ml, worst);
    // the other criteria: magnitude of a block by hand, the rest defined and finite for every candidate
    int b0 = -1;
    for (int c = 0; c < n && b0 < 0; c++)
        if (u->cands[c].kind == CAND_BLOCK) b0 = c;
    CHECK(score_criterion(u, &cs, CRIT_MAGNITUDE, 1, &comm, scores, 0, &e) == 0);
    const TBlock *tb = &u->cands[b0].attn->blk[u->cands[b0].tblock];
    double s = 0;
    size_t cnt = 0;
    for (int t = tb->first_tensor; t < tb->end_tensor; t++)
        for (size_t j = 0; j < u->pt.t[t].numel; j++) s += fabs(u->params[u->pt.t[t].offset + j]), cnt++;
    EXPECT(cnt == (size_t)u->cands[b0].params && fabs(scores[b0] - s / cnt) < 1e-12, "magnitude of %s = mean |w|",
           u->cands[b0].name);
    // taylor's task loss compares the output with the noise; the fixture has none: a fixed pattern
    size_t nn = (size_t)cs.n * cs.C * cs.H * cs.W;
    cs.noise = xmalloc(nn * sizeof(float));
    for (size_t j = 0; j < nn; j++) cs.noise[j] = (float)sin(0.37 * (double)j);
    Criterion others[] = {CRIT_FEATURE_LOSS, CRIT_TAYLOR, CRIT_RANDOM};
    for (int q = 0; q < 3; q++) {
        CHECK(score_criterion(u, &cs, others[q], 1, &comm, scores, 0, &e) == 0);
        for (int c = 0; c < n; c++)
            EXPECT(isfinite(scores[c]) && scores[c] >= 0 && (others[q] != CRIT_FEATURE_LOSS || scores[c] > 0),
                   "%s of %s: %g", criterion_name(others[q]), u->cands[c].name, scores[c]);
    }
    free(list), free(ref), free(scores);
    calib_free(&cs);
    st_close(&io);
    unet_free(u);
}

static void check_fixture(const char *model) {
    Error e;
    StFile io;
    Calib cs;
    UNet *u = load_fixture(model, &io, &cs);
    Comm comm = comm_serial();
    double *scores = xmalloc((size_t)u->n_cands * sizeof(double));
    CHECK(score_criterion(u, &cs, CRIT_OUTPUT_LOSS, 1, &comm, scores, 0, &e) == 0);
    double worst = 0;
    int matched = match_scores(u, &io, scores, model, "candidates", "cand_score", "cand_params", &worst);
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
    free(scores);
    calib_free(&cs);
    st_close(&io);
    unet_free(u);
}

// The (set x shard) split of removal_losses adds up to the whole-set pass:
// each shard's calib_run_range is calib_run's forward on the same chunk, so
// outputs agree bit for bit and the sums differ by rounding order only.
static void check_shards(void) {
    Error e;
    StFile io;
    Calib cs;
    UNet *u = load_fixture("conv", &io, &cs);
    size_t per = (size_t)cs.Co * cs.H * cs.W;
    // an odd batch, so the last shard is short
    cs.batch = cs.n / 2 + 1;
    int n = u->n_cands, S = calib_shards(&cs);
    EXPECT(S >= 2, "the fixture set (%d samples, batch %d) gives %d shards", cs.n, cs.batch, S);
    int covered = 0;
    for (int s = 0; s < S; s++) {
        int first, count;
        calib_shard(&cs, s, &first, &count);
        EXPECT(first == covered && count >= 1 && count <= cs.batch, "shard %d is [%d, %d)", s, first, first + count);
        covered += count;
    }
    EXPECT(covered == cs.n, "the shards cover the %d samples (%d)", cs.n, covered);
    uint8_t *masks = xcalloc((size_t)(n + 1) * n, 1), live[64];
    CHECK(n + 1 <= 64);
    for (int i = 0; i < n; i++) masks[(size_t)i * n + i] = 1, live[i] = 1;
    for (int i = 0; i < n; i += 2) masks[(size_t)n * n + i] = 1;  // set n: every other candidate at once
    live[n] = 1, live[1] = 0;
    Comm comm = comm_serial();
    double *loss = xmalloc((size_t)(n + 1) * sizeof(double)), worst = 0;
    float *whole = xmalloc((size_t)cs.n * per * sizeof(float)), *part = xmalloc((size_t)cs.batch * per * sizeof(float));
    CHECK(removal_losses(u, &cs, masks, live, n + 1, &comm, NULL, "set", loss, &e) == 0);
    for (int k = 0; k <= n; k++) {
        const uint8_t *m = masks + (size_t)k * n;
        double mse;
        CHECK(calib_run(u, &cs, m, whole, &mse, &e) == 0);
        double sum = 0;
        for (int s = 0; s < S; s++) {
            int first, count;
            double sse;
            calib_shard(&cs, s, &first, &count);
            CHECK(calib_run_range(u, &cs, m, first, count, part, &sse, &e) == 0);
            EXPECT(!memcmp(part, whole + (size_t)first * per, (size_t)count * per * sizeof(float)),
                   "set %d shard %d: the outputs of the range are the whole pass's", k, s);
            sum += sse;
        }
        double rel = fabs(sum / ((double)cs.n * per) - mse) / mse;
        worst = rel > worst ? rel : worst;
        EXPECT(mse > 0 && rel < 1e-12, "set %d: shard sums / elements %.17g, whole set %.17g", k, sum / ((double)cs.n * per), mse);
        if (!live[k]) {
            EXPECT(isnan(loss[k]), "set %d not live: NaN (got %g)", k, loss[k]);
            continue;
        }
        rel = fabs(loss[k] - mse) / mse;
        worst = rel > worst ? rel : worst;
        EXPECT(rel < 1e-12, "set %d: removal_losses %.17g, calib_run %.17g", k, loss[k], mse);
    }
    printf("conv    %d shards of <= %d samples: sharded sums vs whole set, worst relative difference %.1e\n", S,
           cs.batch, worst);
    // ranges are checked: a clear error, not a read past the set
    double sse;
    EXPECT(calib_run_range(u, &cs, NULL, cs.n - 1, 2, NULL, &sse, &e) != 0 && strstr(e.msg, "outside the set"),
           "a range past the set is refused: %s", e.msg);
    free(masks), free(loss), free(whole), free(part);
    calib_free(&cs);
    st_close(&io);
    unet_free(u);
}

// The jobs of SD-1.5's output_loss (34 candidates x 4 shards of 16 samples, the
// default calibration set): the partition is deterministic and balanced, and
// up to as many ranks as jobs every rank gets work (with one job per candidate,
// ranks 35..64 of a 64-rank allocation had none).
static void check_partition(void) {
    JobConfig jc;
    Error e;
    CHECK(job_config_load(&jc, LD_SOURCE_DIR "/jobs/sd15.cfg", NULL, 0, &e) == 0);
    UNet *u = unet_create(&jc.model, NULL, &e);
    CHECK(u);
    enum { S = 4, BATCH = 16, MAXR = 160 };
    int n = u->n_cands, n_jobs = n * S;
    CHECK(n_jobs <= 256);
    long long cost[256], maxc = 0;
    uint8_t mask[64] = {0};
    CHECK(n <= 64);
    for (int i = 0; i < n; i++) {
        mask[i] = 1;
        long long m = removal_macs(u, mask);
        mask[i] = 0;
        EXPECT(m == unet_total_macs(u) - u->cands[i].macs, "removal_macs of candidate %d", i);
        for (int s = 0; s < S; s++) cost[i * S + s] = m * BATCH;
        maxc = m * BATCH > maxc ? m * BATCH : maxc;
    }
    for (int ranks = 1; ranks <= MAXR; ranks += ranks < 8 ? 1 : 8) {
        int owner[256], owner2[256], jobs[MAXR] = {0};
        long long load[MAXR] = {0};
        lpt_partition(cost, n_jobs, ranks, owner);
        lpt_partition(cost, n_jobs, ranks, owner2);
        EXPECT(!memcmp(owner, owner2, sizeof(int) * n_jobs), "partition is deterministic");
        for (int j = 0; j < n_jobs; j++) {
            EXPECT(owner[j] >= 0 && owner[j] < ranks, "owner in range");
            load[owner[j]] += cost[j], jobs[owner[j]]++;
        }
        long long lo = load[0], hi = load[0];
        int idle = 0;
        for (int r = 0; r < ranks; r++) {
            lo = load[r] < lo ? load[r] : lo, hi = load[r] > hi ? load[r] : hi;
            idle += jobs[r] == 0;
        }
        EXPECT(hi - lo <= maxc, "%d ranks: loads within one job's cost (%lld..%lld)", ranks, lo, hi);
        EXPECT(idle == (ranks > n_jobs ? ranks - n_jobs : 0), "%d ranks, %d jobs: %d ranks idle", ranks, n_jobs, idle);
        if (ranks == 64 || ranks == 8) {
            int jlo = n_jobs, jhi = 0;
            long long sum = 0;
            for (int r = 0; r < ranks; r++) jlo = jobs[r] < jlo ? jobs[r] : jlo, jhi = jobs[r] > jhi ? jobs[r] : jhi, sum += load[r];
            printf("sd15    %d jobs on %d ranks: %d..%d jobs per rank, cost max/mean %.2f\n", n_jobs, ranks, jlo, jhi,
                   (double)hi * ranks / (double)sum);
        }
    }
    unet_free(u);
}

int main(void) {
    // ~100 passes of the reference models: one thread (testutil.h)
    tu_set_threads(1);
    check_fixture("conv");
    check_fixture("linear");
    check_fixture("xl");
    check_block_fixture();
    check_shards();
    check_partition();
    return tu_report("test_prune_score");
}
