// trainer.c — see trainer.h.
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/adamw.h"
#include "train/grad_sync.h"
#include "model/checkpoint.h"
#include "io/h5log.h"
#include "core/numerics.h"
#include "core/progress.h"
#include "core/stop.h"
#include "train/train_state.h"

// At most this many MiB of buckets in flight at once (each holds receive
// buffers of (P-1)/P of its size until its sum is done), and at most 16000
// sums: fewer than the tag pairs of the smallest tag range MPI allows (32767).
#define INFLIGHT_MB 256.0

// A device-resident run's state on the host, only while a checkpoint or the
// final files are written or read (4 copies of the weights: not kept for the
// whole run, which at SD-1.5 scale would be 14 GB of host memory per rank).
typedef struct {
    float *params, *m, *v, *ema;
} HostState;

static void host_state_alloc(HostState *h, size_t n, int moments, int ema) {
    h->params = xmalloc(n * sizeof(float));
    h->m = moments ? xmalloc(n * sizeof(float)) : NULL;
    h->v = moments ? xmalloc(n * sizeof(float)) : NULL;
    h->ema = ema ? xmalloc(n * sizeof(float)) : NULL;
}

static void host_state_free(HostState *h) {
    free(h->params), free(h->m), free(h->v), free(h->ema);
    *h = (HostState){0};
}

// Device -> host, in fresh host buffers: the weights and EMA, and with
// `moments` AdamW's moments (a checkpoint needs them, the final files do not).
static void host_state_down(HostState *h, const UNet *u, const AdamW *ad, int moments) {
    const Backend *be = u->be;
    size_t n = u->pt.total;
    host_state_alloc(h, n, moments, ad->ema != NULL);
    be->download(be->ctx, h->params, u->params, n);
    if (moments) be->download(be->ctx, h->m, ad->m, n), be->download(be->ctx, h->v, ad->v, n);
    if (ad->ema) be->download(be->ctx, h->ema, ad->ema, n);
}

static int save_checkpoint(Comm *c, const TrainerOptions *opt, UNet *u, AdamW *ad, long step, long B, long seed,
                           const char *hash, Error *e) {
    int rc = 0;
    if (c->rank == 0) {
        TrainMeta meta = {.step = step, .samples_seen = step * B, .seed = (uint64_t)seed, .ranks = c->size,
                          .config_text = opt->config_text};
        snprintf(meta.config_hash, sizeof meta.config_hash, "%s", hash);
        if (u->be->on_device) {  // the writer reads u->params: pointed at the host copy meanwhile
            HostState h;
            host_state_down(&h, u, ad, 1);
            float *keep = u->params;
            u->params = h.params;
            rc = train_state_save(opt->ckpt_dir, u, h.m, h.v, h.ema, &meta, 2, e);
            u->params = keep;
            host_state_free(&h);
        } else {
            rc = train_state_save(opt->ckpt_dir, u, ad->m, ad->v, ad->ema, &meta, 2, e);
        }
    }
    return comm_agree(c, rc, e);
}

// The newest checkpoint into u and ad (train_state_load_latest); on a device
// read into host buffers, then uploaded.
static int load_latest(const TrainerOptions *opt, UNet *u, AdamW *ad, TrainMeta *meta, char *path, size_t path_size,
                       FILE *warn, Error *e) {
    const Backend *be = u->be;
    if (!be->on_device)
        return train_state_load_latest(opt->ckpt_dir, u, ad->m, ad->v, ad->ema, meta, path, path_size, warn, e);
    size_t n = u->pt.total;
    HostState h;
    host_state_alloc(&h, n, 1, ad->ema != NULL);
    float *keep = u->params;
    u->params = h.params;
    int rc = train_state_load_latest(opt->ckpt_dir, u, h.m, h.v, h.ema, meta, path, path_size, warn, e);
    u->params = keep;
    if (rc == 0) {
        be->upload(be->ctx, u->params, h.params, n);
        be->upload(be->ctx, ad->m, h.m, n);
        be->upload(be->ctx, ad->v, h.v, n);
        if (ad->ema) be->upload(be->ctx, ad->ema, h.ema, n);
    }
    host_state_free(&h);
    return rc;
}

// The step's finiteness check (numerics.h) on the model's backend. On a device
// the gradient is summed there (its norm is finite exactly when every element
// is: squares of floats do not overflow a double), and only a failing step
// brings it to the host for check_step_finite's element report.
static int step_finite(const UNet *u, long step, double loss, Error *e) {
    const Backend *be = u->be;
    size_t n = u->pt.total;
    if (!be->on_device) return check_step_finite(step, loss, u->grads, n, e);
    double norm = BK(be, grad_norm, u->grads, n);
    if (isfinite(loss) && isfinite(norm)) return 0;
    float *g = xmalloc(n * sizeof(float));
    be->download(be->ctx, g, u->grads, n);
    int rc = check_step_finite(step, loss, g, n, e);
    free(g);
    return rc ? rc : errorf(e, "step %ld: the gradient norm is not finite", step);
}

// The /train series of a run, registered on every (re)open of the run file.
typedef struct {
    int step, loss[TRAINER_MAX_LOSSES], gnorm, lr, sps;
} Series;

static int register_series(H5Log *log, TrainTask *task, Series *s, Error *e) {
    if ((s->step = h5log_series(log, "step", "1", "optimizer steps completed", e)) < 0) return -1;
    for (int i = 0; i < task->n_losses; i++)
        if ((s->loss[i] = h5log_series(log, task->loss_names[i], "1", "mean over the global batch", e)) < 0) return -1;
    if ((s->gnorm = h5log_series(log, "grad_norm", "1", "global L2 norm of the gradient before clipping", e)) < 0) return -1;
    if ((s->lr = h5log_series(log, "lr", "1", "learning rate of the step", e)) < 0) return -1;
    if ((s->sps = h5log_series(log, "samples_per_s", "samples/s", "throughput over the last log interval, all ranks", e)) < 0)
        return -1;
    return task->log_extra ? task->log_extra(task->self, log, -1, NULL, e) : 0;
}

int trainer_run(const TrainConfig *tc, long seed, Comm *comm, UNet *u, TrainTask *task, const TrainerOptions *opt,
                Error *e) {
    const long B = tc->batch, steps = tc->steps;
    if (B % comm->size)
        return errorf(e, "train.batch = %ld is not divisible by the %d ranks", B, comm->size);
    long g0, b;
    comm_shard(B, comm->rank, comm->size, &g0, &b);
    size_t n = u->pt.total;
    // train.recompute: the trained U-Net keeps layer inputs only (bit-identical gradients)
    unet_set_keep(u, tc->recompute ? UNET_KEEP_INPUTS : UNET_KEEP_ALL);
    // the optimizer's state and updates on the model's backend: on a device, nothing leaves it per step but the losses
    const Backend *be = u->be;
    const int on_device = be->on_device;
    AdamW *ad = adamw_create_on(n, tc, be);
    adamw_ema_init(ad, u->params);
    // on a device with more than one rank: the device sums (NCCL), or else the host buffer the
    // gradient is summed in over MPI
    Comm *dev_sum = on_device && comm->size > 1 ? opt->grad_comm : NULL;
    float *host_grads = on_device && comm->size > 1 && !dev_sum ? xmalloc(n * sizeof(float)) : NULL;
    long start = 0, last_ckpt = -1;  // the step of the newest checkpoint loaded or written (-1: none)
    int rc = 0;
    H5Log *log = NULL;
    const char *cfg_text = opt->config_text;
    char hash[17] = "";
    // the bucketed gradient sum, started from backward's hook (train.overlap_comm): over MPI on
    // host buffers, or over NCCL on the device's; without NCCL a device's ranks sum a host copy
    // over MPI after backward (no overlap)
    double inflight = INFLIGHT_MB / tc->bucket_mb;
    GradSync *gs = grad_sync_create(dev_sum ? dev_sum : comm, n, tc->bucket_mb, tc->overlap_comm && !host_grads,
                                    inflight < 2 ? 2 : inflight > 16000 ? 16000 : (int)inflight);
    if (!host_grads) u->grads_final = grad_sync_final, u->grads_final_ctx = gs;

    if (comm->rank == 0 && make_dirs(opt->ckpt_dir, e)) rc = -1;
    if (comm_agree(comm, rc, e)) goto fail;
    train_state_hash(cfg_text, hash);
    int resuming = 0;
    if (opt->resume & TRAINER_RESUME_MODE) {
        char path[1200];
        TrainMeta meta;
        // every rank loads the same file; rank 0 tells of the ones it skipped
        int found = load_latest(opt, u, ad, &meta, path, sizeof path, comm->rank == 0 ? stderr : NULL, e);
        if (found > 0 && (opt->resume & TRAINER_RESUME_MODE) == TRAINER_RESUME_AUTO) {
            if (comm->rank == 0) printf("%s: --resume=auto: no checkpoint in %s, starting fresh\n", opt->stage, opt->ckpt_dir);
            found = 0;
        } else if (found > 0) {
            found = errorf(e, "--resume: no checkpoint in %s (--resume=auto starts fresh then)", opt->ckpt_dir);
        } else if (found == 0) {
            resuming = 1;
        }
        // the named settings first: they say more than the seed or batch checks below
        if (!found && resuming) {
            char *old = NULL, keys[600];
            found = train_state_job_config(path, &old, e);
            int nd = !found && old ? train_state_config_diff(old, cfg_text, keys, sizeof keys) : 0;
            if (nd && !(opt->resume & TRAINER_ALLOW_CHANGES))
                found = errorf(e, "%s: this job changes %d setting%s that matter%s for continuing the run: %s "
                                  "(pass --allow-changes to resume anyway)", path, nd, nd == 1 ? "" : "s",
                               nd == 1 ? "s" : "", keys);
            else if (nd && comm->rank == 0)
                printf("%s: --allow-changes: resuming with changed settings: %s\n", opt->stage, keys);
            free(old);
        }
        if (!found && resuming && meta.seed != (uint64_t)seed)
            found = errorf(e, "%s: written with runtime.seed = %llu, this job has %ld", path,
                           (unsigned long long)meta.seed, seed);
        else if (!found && resuming && meta.samples_seen != meta.step * B)
            found = errorf(e, "%s: %ld samples after %ld steps does not match train.batch = %ld", path,
                           meta.samples_seen, meta.step, B);
        if (comm_agree(comm, found, e)) goto fail;
        if (resuming) {
            start = last_ckpt = meta.step;
            ad->step = meta.step;
            if (comm->rank == 0) {
                printf("%s: resumed from %s at step %ld/%ld\n", opt->stage, path, start, steps);
                if (meta.ranks != comm->size)
                    printf("%s: note: the checkpoint was written by %d ranks, this run has %d: it continues the same "
                           "global batches, equal to float tolerance but not bit for bit\n", opt->stage, meta.ranks,
                           comm->size);
            }
        }
    }
    if (comm->rank == 0) {
        // run.h5 may already hold /prune from score and plan: keep it, restart /train (or trim it on resume)
        log = h5log_open(opt->run_h5, cfg_text, H5LOG_OPEN, resuming ? start : -1, e);
        if (!log) rc = -1;
    }
    if (comm_agree(comm, rc, e)) goto fail;
    Series ids;
    if (comm->rank == 0) {
        h5log_set_rows_hint(log, steps / tc->log_interval + 2);
        rc = register_series(log, task, &ids, e);
    }
    if (comm_agree(comm, rc, e)) goto fail;
    // fault injection for the tests: LAPTOP_DIFF_FAULT=nan@N makes step N's loss NaN
    long fault_nan_step = -1;
    const char *fault = getenv("LAPTOP_DIFF_FAULT");
    if (fault && !strncmp(fault, "nan@", 4)) fault_nan_step = atol(fault + 4);
    double t_last = now_s(), t_begin = t_last;
    long last_logged = start;
    double losses[TRAINER_MAX_VALUES];
    int n_values = task->n_losses + task->n_extra;
    CHECK(task->n_losses <= TRAINER_MAX_LOSSES && n_values <= TRAINER_MAX_VALUES);
    for (long s = start; s < steps; s++) {
        unet_zero_grad(u);
        memset(losses, 0, sizeof losses);
        if (!host_grads) grad_sync_begin(gs, u->grads);
        int step_rc = task->step(task->self, u, s, g0, (int)b, (int)B, losses, e);
        if (host_grads) {
            be->download(be->ctx, host_grads, u->grads, n);
            grad_sync_begin(gs, host_grads);
        }
        // every rank completes the sums, a failed one too: other ranks may have
        // started buckets from their backward, and none may be left in flight
        grad_sync_finish(gs);
        if (host_grads) be->upload(be->ctx, u->grads, host_grads, n);
        if (s == start && comm->size > 1 && comm->rank == 0 && !step_rc) {  // once: whether the overlap works
            printf("%s: gradient sums over %s: %d bucket%s of %g MiB per step, %d started while backward ran\n",
                   opt->stage, dev_sum ? "the GPUs (NCCL)" : host_grads ? "MPI from a host copy" : "MPI",
                   grad_sync_buckets(gs), grad_sync_buckets(gs) == 1 ? "" : "s", tc->bucket_mb,
                   grad_sync_started_early(gs));
            fflush(stdout);
        }
        // a failing shard (bad data) stops every rank
        if (comm_agree(comm, step_rc, e)) goto fail;
        comm->sum_f64(comm, losses, (size_t)n_values);
        if (fault_nan_step == s + 1) losses[0] = NAN;
        // every rank holds the same reduced values, so all stop together
        if (step_finite(u, s + 1, losses[0], e)) {
            char why[sizeof e->msg];
            snprintf(why, sizeof why, "%s", e->msg);
            if (comm->rank) {  // every rank sees it; one message is enough
                errorf(e, "%s", COMM_OTHER_RANK);
                e->other_rank = 1;
            } else {
                if (last_ckpt < 0)
                    errorf(e, "%s stopped at %s; no checkpoint was written yet", opt->stage, why);
                else
                    errorf(e, "%s stopped at %s; the last checkpoint (step %ld) in %s is intact", opt->stage, why,
                           last_ckpt, opt->ckpt_dir);
            }
            goto fail;
        }
        double gnorm = BK(be, grad_clip, u->grads, n, tc->grad_clip);
        double lr = adamw_lr(tc, s);
        adamw_step(ad, u->params, u->grads, lr);
        adamw_ema_update(ad, u->params);
        long done = s + 1;

        if (comm->rank == 0 && (done % tc->log_interval == 0 || done == steps)) {
            double t = now_s(), sps = (double)(done - last_logged) * B / (t - t_last);
            double vals = (double)done;
            rc |= h5log_append(log, ids.step, &vals, e);
            for (int i = 0; i < task->n_losses; i++) rc |= h5log_append(log, ids.loss[i], &losses[i], e);
            rc |= h5log_append(log, ids.gnorm, &gnorm, e);
            rc |= h5log_append(log, ids.lr, &lr, e);
            rc |= h5log_append(log, ids.sps, &sps, e);
            if (task->log_extra) rc |= task->log_extra(task->self, log, done, losses, e);
            if (!rc) rc = h5log_flush(log, e);
            char line[512];
            Progress p = {.stage = opt->stage, .step = done, .total = steps, .loss = losses[0], .lr = lr,
                          .grad_norm = gnorm, .samples_per_s = sps,
                          .eta_s = progress_eta(done, start, steps, t - t_begin), .n_terms = task->n_losses - 1,
                          .term_names = task->loss_names + 1, .terms = losses + 1};
            progress_format(line, sizeof line, &p);
            printf("%s\n", line);
            fflush(stdout);
            t_last = t, last_logged = done;
        }
        if (comm_agree(comm, rc, e)) goto fail;
        if (task->snapshot && task->snapshot_interval > 0 && (done % task->snapshot_interval == 0 || done == steps)) {
            // the run file has one writer at a time: rank 0 lets go of it for the collective write
            if (comm->rank == 0) rc = h5log_close(log, e), log = NULL;
            if (comm_agree(comm, rc, e)) goto fail;
            if (comm_agree(comm, task->snapshot(task->self, u, done, e), e)) goto fail;
            if (comm->rank == 0) {
                log = h5log_open(opt->run_h5, cfg_text, H5LOG_OPEN, H5LOG_ALL_ROWS, e);
                rc = log ? register_series(log, task, &ids, e) : -1;
            }
            if (comm_agree(comm, rc, e)) goto fail;
        }
        int stop = stop_requested() != 0;  // folded into the step's reduction: all ranks stop at this step
        comm->max_i32(comm, &stop, 1);
        if ((tc->checkpoint_interval > 0 && done % tc->checkpoint_interval == 0) || done == steps || stop) {
            if (save_checkpoint(comm, opt, u, ad, done, B, seed, hash, e)) goto fail;
            last_ckpt = done;
        }
        if (stop) {
            if (comm->rank == 0)
                printf("%s: stopped by a signal after step %ld; checkpoint written, continue with --resume\n",
                       opt->stage, done);
            Error ce;
            h5log_close(log, &ce);
            adamw_free(ad);
            free(host_grads);
            u->grads_final = NULL, grad_sync_free(gs);
            return 1;
        }
    }
    if (comm->rank == 0) {
        // the writer reads u->params: pointed at the host copy (on a device), then at the EMA weights
        float *keep = u->params, *ema = ad->ema;
        HostState h = {0};
        if (on_device) {
            host_state_down(&h, u, ad, 0);
            u->params = h.params, ema = h.ema;
        }
        rc = unet_save(u, opt->model_out, opt->meta, opt->n_meta, e);
        if (!rc && ema) {
            u->params = ema;
            rc = unet_save(u, opt->ema_out, opt->meta, opt->n_meta, e);
        }
        u->params = keep;
        host_state_free(&h);
    }
    if (comm_agree(comm, rc, e)) goto fail;
    rc = log ? h5log_close(log, e) : 0;
    log = NULL;
    if (comm_agree(comm, rc, e)) goto fail;
    adamw_free(ad);
    free(host_grads);
    u->grads_final = NULL, grad_sync_free(gs);
    return 0;
fail:
    if (log) {
        Error ce;
        h5log_close(log, &ce);
    }
    adamw_free(ad);
    free(host_grads);
    u->grads_final = NULL, grad_sync_free(gs);
    return -1;
}
