// train_classifier.c — the `train-classifier` command: the evaluator CNN
// (model/classifier.h) trained on the Fashion-MNIST train split with AdamW,
// data-parallel over the ranks (each rank its share of every global batch,
// gradients summed), deterministic from runtime.seed; the test accuracy after
// every epoch; classifier.out written atomically by rank 0 with the accuracy
// and the recipe in its metadata. See commands.h.
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/numerics.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/stop.h"
#include "data/fmnist.h"
#include "model/classifier.h"
#include "train/adamw.h"
#include "train/trainer.h"

// The evaluator's architecture from the classifier section, for images as the
// U-Net sees them (data/fmnist.h).
static ClfArch clf_arch_from_config(const ClassifierConfig *cc) {
    ClfArch a = {.in_channels = 1, .side = FMNIST_SIDE, .classes = FMNIST_CLASSES, .n_layers = cc->n_layers,
                 .groups = cc->groups};
    for (int l = 0; l < cc->n_layers; l++) a.channels[l] = cc->channels[l], a.strides[l] = cc->strides[l];
    return a;
}

// Correct predictions on test images [first, first+count), in batches.
static long count_correct(Classifier *c, const Fmnist *test, long first, long count) {
    enum { BATCH = 100 };
    size_t per = FMNIST_SIDE * FMNIST_SIDE;
    float *x = xmalloc(BATCH * per * sizeof(float));
    int pred[BATCH];
    long ok = 0;
    for (long i = 0; i < count; i += BATCH) {
        int b = count - i < BATCH ? (int)(count - i) : BATCH;
        for (int k = 0; k < b; k++) fmnist_image(test, (int)(first + i + k), x + k * per);
        clf_predict(c, x, b, BATCH, pred, NULL);
        for (int k = 0; k < b; k++) ok += pred[k] == test->labels[first + i + k];
    }
    free(x);
    return ok;
}

// Test accuracy over the first n test images, split across the ranks.
static double test_accuracy(Classifier *c, const Fmnist *test, int n, Comm *comm) {
    long first, count;
    comm_shard(n, comm->rank, comm->size, &first, &count);
    double ok = (double)count_correct(c, test, first, count);
    comm->sum_f64(comm, &ok, 1);
    return ok / n;
}

// Epoch e's order of the n training images: a Fisher-Yates shuffle keyed by (seed, e).
static void epoch_order(int *idx, int n, long seed, int epoch) {
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below((uint64_t)seed, RNG_DATA_ORDER, (uint64_t)epoch * n + i, (uint64_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
}

int train_classifier_main(RunCtx *r, Error *e) {
    const JobConfig *cfg = r->cfg;
    const ClassifierConfig *cc = &cfg->classifier;
    Comm *comm = r->comm;
    long seed = cfg->runtime.seed;
    if (cfg->data.source != DATA_FASHION_MNIST)
        return errorf(e, "train-classifier: data.source must be \"fashion-mnist\" (the evaluator is a "
                      "Fashion-MNIST classifier)");
    if (cc->batch % comm->size)
        return errorf(e, "classifier.batch = %d is not divisible by the %d ranks", cc->batch, comm->size);
    Fmnist train = {0}, test = {0};
    int rc = fmnist_load(&train, cfg->data.path, "train", e);
    if (!rc) rc = fmnist_load(&test, cfg->data.path, "test", e);
    if (!rc && cc->test_samples > test.n)
        rc = errorf(e, "classifier.test_samples = %d but the test split has %d images", cc->test_samples, test.n);
    ClfArch arch = clf_arch_from_config(cc);
    Classifier *c = rc ? NULL : clf_create(&arch, e);
    if (!c) rc = -1;
    if (comm_agree(comm, rc, e)) {
        fmnist_free(&train), fmnist_free(&test), clf_free(c);
        return -1;
    }
    clf_init(c, (uint64_t)seed);
    int B = cc->batch, spe = train.n / B;  // whole batches per epoch
    long total = (long)spe * cc->epochs;
    TrainConfig tc = cfg->train;
    tc.steps = (int)total, tc.lr = cc->lr, tc.weight_decay = cc->weight_decay, tc.warmup_steps = cc->warmup_steps;
    tc.lr_schedule = LR_COSINE, tc.ema_decay = 0;
    AdamW *opt = adamw_create(c->pt.total, &tc);
    long first, count;
    comm_shard(B, comm->rank, comm->size, &first, &count);
    size_t per = FMNIST_SIDE * FMNIST_SIDE;
    float *x = xmalloc((size_t)(count ? count : 1) * per * sizeof(float));
    int *labels = xmalloc((size_t)(count ? count : 1) * sizeof(int)), *order = xmalloc((size_t)train.n * sizeof(int));
    if (comm->rank == 0) {
        printf("train-classifier: %zu parameters, features %d-d; %d epochs x %d steps of batch %d on %d train "
               "images, %d rank%s\n",
               c->pt.total, clf_feat_dim(c), cc->epochs, spe, B, train.n, comm->size, comm->size == 1 ? "" : "s");
        fflush(stdout);
    }
    double t_begin = now_s(), t_last = t_begin, acc = 0, loss_sum = 0;
    long done = 0, last_logged = 0;
    for (int ep = 0; ep < cc->epochs && !rc; ep++) {
        epoch_order(order, train.n, seed, ep);
        for (int s = 0; s < spe && !rc; s++) {
            for (long k = 0; k < count; k++) {
                long g = (long)s * B + first + k;  // position in the epoch
                int i = order[g];
                float *xi = x + k * per;
                fmnist_image(&train, i, xi);
                labels[k] = train.labels[i];
                // a flip keyed by the global sample: the same batch for any rank count
                if (cc->flip && (rng_bits((uint64_t)seed, RNG_MISC, (uint64_t)done * B + first + k) & 1))
                    for (int y = 0; y < FMNIST_SIDE; y++)
                        for (int a = 0, b = FMNIST_SIDE - 1; a < b; a++, b--) {
                            float t = xi[y * FMNIST_SIDE + a];
                            xi[y * FMNIST_SIDE + a] = xi[y * FMNIST_SIDE + b], xi[y * FMNIST_SIDE + b] = t;
                        }
            }
            memset(c->grads, 0, c->pt.total * sizeof(float));
            double loss = 0;
            if (count) {
                loss = clf_forward(c, x, labels, (int)count) * (double)count / B;
                clf_backward(c, labels, 1.0f / B);
            }
            if (comm->size > 1) {
                comm->sum_f32(comm, c->grads, c->pt.total);
                comm->sum_f64(comm, &loss, 1);
            }
            rc = check_step_finite(done, loss, c->grads, c->pt.total, e);
            int stop = stop_requested();
            comm->max_i32(comm, &stop, 1);
            if (!rc && stop)
                rc = errorf(e, "train-classifier: stopped by signal %d at step %ld of %ld; nothing written (it "
                            "has no checkpoints: run it again)", stop, done, total);
            if (rc) break;
            double lr = adamw_lr(&tc, done), gnorm = grad_norm(c->grads, c->pt.total);
            adamw_step(opt, c->params, c->grads, lr);
            done++;
            loss_sum += loss;
            if (comm->rank == 0 && (done % cc->log_interval == 0 || done == total)) {
                double t = now_s();
                char line[512];
                Progress p = {.stage = "classifier", .step = done, .total = total, .loss = loss_sum / (done - last_logged),
                              .lr = lr, .grad_norm = gnorm, .samples_per_s = (double)(done - last_logged) * B / (t - t_last),
                              .eta_s = progress_eta(done, 0, total, t - t_begin)};
                progress_format(line, sizeof line, &p);
                printf("%s\n", line);
                fflush(stdout);
                t_last = t, last_logged = done, loss_sum = 0;
            } else if (done % cc->log_interval == 0) {
                last_logged = done, loss_sum = 0;
            }
        }
        if (rc) break;
        acc = test_accuracy(c, &test, cc->test_samples, comm);
        if (comm->rank == 0) {
            printf("train-classifier: epoch %d/%d: test accuracy %.4f on %d images (%.0f s so far)\n", ep + 1,
                   cc->epochs, acc, cc->test_samples, now_s() - t_begin);
            fflush(stdout);
        }
    }
    rc = comm_agree(comm, rc, e);
    double secs = now_s() - t_begin;
    if (!rc && comm->rank == 0) {
        char acc_s[32], n_s[32], secs_s[32], ep_s[32], seed_s[32], ranks_s[32];
        snprintf(acc_s, sizeof acc_s, "%.6f", acc);
        snprintf(n_s, sizeof n_s, "%d", cc->test_samples);
        snprintf(secs_s, sizeof secs_s, "%.1f", secs);
        snprintf(ep_s, sizeof ep_s, "%d", cc->epochs);
        snprintf(seed_s, sizeof seed_s, "%ld", seed);
        snprintf(ranks_s, sizeof ranks_s, "%d", comm->size);
        const char *meta[] = {"test_accuracy", acc_s, "test_images", n_s, "train_seconds", secs_s,
                              "epochs", ep_s, "seed", seed_s, "ranks", ranks_s};
        rc = clf_save(c, cc->out, meta, 6, e);
        if (!rc)
            printf("train-classifier: test accuracy %.4f (%d test images) after %.0f s -> %s\n", acc, cc->test_samples,
                   secs, cc->out);
    }
    rc = comm_agree(comm, rc, e);
    free(x), free(labels), free(order);
    adamw_free(opt);
    clf_free(c);
    fmnist_free(&train), fmnist_free(&test);
    return rc;
}
