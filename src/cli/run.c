// run.c — see run.h.
#include "cli/run.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/memstat.h"
#include "io/h5err.h"
#include "io/h5log.h"
#include "model/checkpoint.h"
#include "train/trainer.h"

int run_ctx_init(RunCtx *r, const JobConfig *cfg, Comm *comm, const H5Access *h5, Error *e) {
    memset(r, 0, sizeof *r);
    r->cfg = cfg, r->comm = comm, r->h5 = h5;
    return rundir_init(&r->dir, cfg->output.dir, e);
}

int run_ctx_lock(RunCtx *r, const char *command, Error *e) {
    int rc = 0;
    if (r->comm->rank == 0) {
        char note[RUNDIR_PATH + 512];
        rc = rundir_lock(&r->dir, command, note, sizeof note, e);
        r->locked = rc == 0;
        if (!rc && note[0]) printf("note: %s\n", note);
    }
    return comm_agree(r->comm, rc, e);
}

Backend *run_device(const RunCtx *r) { return r->device; }

// Whether two ranks of a node sit on one physical GPU (their PCI bus ids, so
// it holds whatever CUDA_VISIBLE_DEVICES each rank was given): NCCL refuses
// that. Collective; rank 0 gets the reason in why ("" where none do).
static void shared_gpu(RunCtx *r, char *why, size_t n) {
    Comm *c = r->comm;
    typedef struct {
        int node;
        char id[64];
    } GpuId;
    GpuId mine;
    memset(&mine, 0, sizeof mine);
    mine.node = c->node;
    r->gpu->device_id(r->device, mine.id, sizeof mine.id);
    GpuId *all = c->rank == 0 ? xmalloc((size_t)c->size * sizeof *all) : NULL;
    size_t *counts = c->rank == 0 ? xmalloc((size_t)c->size * sizeof *counts) : NULL;
    for (int i = 0; c->rank == 0 && i < c->size; i++) counts[i] = sizeof *all;
    c->gatherv_bytes(c, &mine, sizeof mine, all, counts, 0);
    for (int i = 0; all && i < c->size && !why[0]; i++)
        for (int j = i + 1; j < c->size && !why[0]; j++)
            if (all[i].node == all[j].node && !strcmp(all[i].id, all[j].id))
                snprintf(why, n, "ranks %d and %d share the GPU at %s, and NCCL needs a GPU of its own per rank", i, j,
                         all[i].id);
    free(all), free(counts);
}

int run_grad_comm(RunCtx *r, Comm **out, Error *e) {
    *out = r->grad_comm;
    if (r->grad_comm_asked) return 0;
    r->grad_comm_asked = 1;
    Comm *c = r->comm;
    GpuComm want = r->cfg->runtime.gpu_comm;
    if (!r->device || c->size == 1 || want == GPU_COMM_MPI) {
        if (r->device && c->size > 1 && c->rank == 0)
            printf("gradients: the GPUs sum them through host memory over MPI (runtime.gpu_comm = \"mpi\")\n");
        return 0;
    }
    // why NCCL cannot serve ("" where it can): rank 0 decides for all
    char why[300] = "";
    if (!r->gpu || !r->gpu->sum_comm)
        snprintf(why, sizeof why, "this build has no NCCL (an LD_CUDA build finds it in the CUDA toolkit; LD_NCCL=ON)");
    else
        shared_gpu(r, why, sizeof why);
    c->bcast(c, why, sizeof why, 0);
    int cannot = why[0] != 0;
    if (cannot) {
        if (want == GPU_COMM_NCCL) return errorf(e, "runtime.gpu_comm = \"nccl\": %s", why);  // alike on every rank
        if (c->rank == 0)
            printf("gradients: the GPUs sum them through host memory over MPI (runtime.gpu_comm = \"auto\": %s)\n", why);
        return 0;
    }
    Comm *g = r->gpu->sum_comm(r->device, c, e);
    if (comm_agree(c, g ? 0 : -1, e)) {
        if (g) r->gpu->sum_comm_free(g);
        if (!e->other_rank) {
            char inner[sizeof e->msg];
            snprintf(inner, sizeof inner, "%s", e->msg);
            errorf(e, "%s (runtime.gpu_comm = \"mpi\" sums through host memory instead)", inner);
        }
        return -1;
    }
    r->grad_comm = *out = g;
    if (c->rank == 0) {
        char v[160];
        r->gpu->sum_comm_describe(v, sizeof v);
        printf("gradients: the %d GPUs sum them over %s, device to device, in train.bucket_mb buckets\n", c->size, v);
    }
    return 0;
}

void run_ctx_free(RunCtx *r) {
    if (r->locked) rundir_unlock(&r->dir);
    r->locked = 0;
    if (r->have_calib) calib_free(&r->calib);
    unet_free(r->teacher);
    comm_node_shared_free(r->comm, &r->teacher_mem);  // after the model that borrowed it
    r->teacher = NULL, r->have_calib = 0;
    if (r->grad_comm) r->gpu->sum_comm_free(r->grad_comm);  // before the device it runs on
    r->grad_comm = NULL, r->grad_comm_asked = 0;
    backend_free(r->device);
    r->device = NULL;
}

// One teacher per node (run.h): header on every rank, weights by the node's
// leader into node-shared memory, then sealed read-only.
static UNet *teacher_shared(RunCtx *r, Error *e) {
    Comm *c = r->comm;
    UNet *u = unet_shape_file(r->cfg->weights, &r->cfg->model, e);
    if (comm_agree(c, u ? 0 : -1, e)) goto fail;
    // node_alloc fails alike on every rank of a node, so a node either holds
    // a buffer on all its ranks (freed collectively below) or on none
    if (comm_agree(c, comm_node_shared_alloc(c, u->pt.total * sizeof(float), &r->teacher_mem, e), e)) goto fail;
    unet_adopt_params(u, r->teacher_mem.ptr);
    int rc = c->local_rank == 0 ? unet_load_file(u, r->cfg->weights, e) : 0;
    comm_node_shared_seal(c, &r->teacher_mem);  // every rank of the node, also after a failed load
    if (comm_agree(c, rc, e)) goto fail;
    return u;
fail:
    unet_free(u);
    comm_node_shared_free(c, &r->teacher_mem);
    return NULL;
}

UNet *run_teacher(RunCtx *r, Error *e) {
    if (r->teacher) return r->teacher;
    UNet *u = NULL;
    if (!r->cfg->weights[0]) {
        errorf(e, "model.weights is empty: score, plan, distill and eval need the teacher's weights (.safetensors)");
    } else if (r->cfg->runtime.share_teacher) {
        return r->teacher = teacher_shared(r, e);
    } else {
        u = unet_from_file(r->cfg->weights, &r->cfg->model, e);
    }
    if (comm_agree(r->comm, u ? 0 : -1, e)) {
        unet_free(u);
        return NULL;
    }
    return r->teacher = u;
}

H5Log *run_open_h5(const RunCtx *r, Error *e) {
    if (rundir_make(&r->dir, e)) return NULL;
    char *text = job_config_text(r->cfg);
    H5Log *log = h5log_open(r->dir.run_h5, text, H5LOG_OPEN, H5LOG_ALL_ROWS, e);
    free(text);
    return log;
}

// Per rank, gathered by rank 0: VmHWM, teacher pages shared with another
// process, node index (-1 in the first field: /proc unreadable there).
enum { MEM_PEAK, MEM_SHARED, MEM_NODE, MEM_FIELDS };

static int write_memory(RunCtx *r, const char *stage, const long long *all, const long long *node_peak, int n_nodes,
                        const char *since, Error *e) {
    H5Log *log = run_open_h5(r, e);
    if (!log) return -1;
    int n = r->comm->size, rc = 0;
    long long *col = xcalloc((size_t)n, sizeof *col);
    static const char *const names[MEM_FIELDS] = {"peak_rss_bytes", "teacher_shared_bytes", "node"};
    static const char *const units[MEM_FIELDS] = {"bytes", "bytes", "1"};
    static const char *const docs[MEM_FIELDS] = {
        "per rank: peak resident set (VmHWM of /proc/self/status); pages shared with other ranks count in each",
        "per rank: resident teacher parameter pages this rank maps that another process maps too (smaps "
        "Shared_Clean + Shared_Dirty): about the teacher's size when the node's ranks share one copy, 0 when each holds its own",
        "per rank: the node it ran on (0 .. nodes-1)"};
    char path[160], group[128];
    snprintf(group, sizeof group, "/memory/%s", stage);
    for (int f = 0; f < MEM_FIELDS && !rc; f++) {
        for (int k = 0; k < n; k++) col[k] = all[(size_t)k * MEM_FIELDS + f];
        snprintf(path, sizeof path, "%s/%s", group, names[f]);
        long long dims[1] = {n};
        rc = h5log_write_i64(log, path, col, 1, dims, units[f], docs[f], e);
    }
    snprintf(path, sizeof path, "%s/node_peak_bytes", group);
    long long nd[1] = {n_nodes};
    if (!rc)
        rc = h5log_write_i64(log, path, node_peak, 1, nd, "bytes",
                             "per node: sum over its ranks of (peak_rss_bytes - teacher_shared_bytes) plus the largest "
                             "teacher_shared_bytes once; the ranks' peaks need not coincide, so an upper bound of the "
                             "node's peak", e);
    if (!rc) rc = h5log_attr_str(log, group, "peak_since", since, e);
    if (!rc) rc = h5log_attr_i64(log, group, "share_teacher", r->cfg->runtime.share_teacher, e);
    if (!rc) rc = h5log_attr_i64(log, group, "teacher_bytes", r->teacher ? (long long)(r->teacher->pt.total * sizeof(float)) : 0, e);
    free(col);
    if (h5log_close(log, e)) rc = -1;
    return rc;
}

int run_report_memory(RunCtx *r, const char *stage, Error *e) {
    Comm *c = r->comm;
    MemStat m;
    Error me = {0};
    const UNet *t = r->teacher;
    long long mine[MEM_FIELDS] = {-1, 0, c->node};
    if (memstat_read(&m, t ? t->params : NULL, t ? t->pt.total * sizeof(float) : 0, &me) == 0) {
        // in run, a stage's peak is its own; the whole job's is the highest of them
        mine[MEM_PEAK] = !strcmp(stage, "run") && r->peak_prior > m.peak_rss ? r->peak_prior : m.peak_rss;
        mine[MEM_SHARED] = m.region_shared;
    }
    size_t rec = sizeof mine;
    long long *all = c->rank == 0 ? xcalloc((size_t)c->size * MEM_FIELDS, sizeof *all) : NULL;
    size_t *counts = c->rank == 0 ? xcalloc((size_t)c->size, sizeof *counts) : NULL;
    for (int k = 0; c->rank == 0 && k < c->size; k++) counts[k] = rec;
    c->gatherv_bytes(c, mine, rec, all, counts, 0);
    int rc = 0;
    if (c->rank == 0) {
        int unknown = 0, n_nodes = c->n_nodes > 0 ? c->n_nodes : 1;
        for (int k = 0; k < c->size; k++) unknown |= all[(size_t)k * MEM_FIELDS + MEM_PEAK] < 0;
        if (unknown) {
            printf("memory (%s): not reported: %s\n", stage, me.msg[0] ? me.msg : "another rank could not read /proc");
        } else {
            long long *node_peak = xcalloc((size_t)n_nodes, sizeof *node_peak);
            long long *node_shared = xcalloc((size_t)n_nodes, sizeof *node_shared);
            int *ranks = xcalloc((size_t)n_nodes, sizeof *ranks);
            const double M = 1024.0 * 1024.0;  // MiB
            const char *since = strcmp(stage, "run") && r->peak_reset ? "stage start" : "process start";
            printf("memory (%s): peak resident set since %s, teacher %s\n", stage, since,
                   r->cfg->runtime.share_teacher ? "shared per node" : "per rank");
            for (int k = 0; k < c->size; k++) {
                const long long *a = all + (size_t)k * MEM_FIELDS;
                int nd = (int)a[MEM_NODE];
                node_peak[nd] += a[MEM_PEAK] - a[MEM_SHARED];
                if (a[MEM_SHARED] > node_shared[nd]) node_shared[nd] = a[MEM_SHARED];
                ranks[nd]++;
                printf("  rank %d (node %d): peak RSS %.1f MiB, of it teacher pages shared with other ranks %.1f MiB\n",
                       k, nd, a[MEM_PEAK] / M, a[MEM_SHARED] / M);
            }
            for (int nd = 0; nd < n_nodes; nd++) {
                node_peak[nd] += node_shared[nd];
                printf("  node %d (%d rank%s): peak %.1f MiB (each rank's private memory + the shared teacher once: "
                       "%.1f MiB)\n", nd, ranks[nd], ranks[nd] == 1 ? "" : "s", node_peak[nd] / M, node_shared[nd] / M);
            }
            fflush(stdout);
            rc = write_memory(r, stage, all, node_peak, n_nodes, since, e);
            free(node_peak), free(node_shared), free(ranks);
        }
    }
    free(all), free(counts);
    return comm_agree(c, rc, e);
}

Calib *run_calib(RunCtx *r, UNet *on, Calib *on_set, Error *e) {
    if (r->have_calib) {
        if (on) calib_on(on_set, &r->calib, on->be);
        return &r->calib;
    }
    UNet *t = on ? on : run_teacher(r, e);
    if (!t) return NULL;
    const JobConfig *c = r->cfg;
    int rc = calib_build(&r->calib, &c->prune, &c->data, &c->diffusion, &c->model, c->runtime.seed, e);
    if (!rc) rc = on ? calib_teacher_on(on, &r->calib, on_set, e) : calib_teacher(t, &r->calib, e);
    if (comm_agree(r->comm, rc, e)) {
        calib_free(&r->calib);
        return NULL;
    }
    r->have_calib = 1;
    return &r->calib;
}

// Rank 0: which pruning stages run.h5 and the run directory show complete:
// bit 0 score (/prune/scores/<c> for every configured criterion), bit 1 plan
// (/prune/plan and student_init.safetensors).
static int stages_done(const RunCtx *r) {
    if (access(r->dir.run_h5, R_OK) != 0) return 0;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    int done = 0;
    H5E_BEGIN_TRY {
        hid_t f = H5Fopen(r->dir.run_h5, H5F_ACC_RDONLY, fapl);
        if (f >= 0) {
            int score = 1;
            for (int k = 0; k < r->cfg->prune.n_criteria; k++) {
                char ds[128];
                snprintf(ds, sizeof ds, "/prune/scores/%s", criterion_name(r->cfg->prune.criterion[k]));
                score = score && h5_path_exists(f, ds);
            }
            done = score | (h5_path_exists(f, "/prune/plan") && access(r->dir.student_init, R_OK) == 0) << 1;
            H5Fclose(f);
        }
    }
    H5E_END_TRY;
    H5Pclose(fapl);
    return done;
}

int run_main(RunCtx *r, int resume, Error *e) {
    double t0 = now_s();
    const char *names[4] = {"score", "plan", "distill", "eval"};
    // A resumed run skips the pruning stages that are complete on disk and
    // continues distill from its checkpoint (or starts it if it has none).
    int done = 0, distill_resume = TRAINER_RESUME_NO;
    if (resume & TRAINER_RESUME_MODE) {
        if (r->comm->rank == 0) done = stages_done(r);
        r->comm->bcast(r->comm, &done, sizeof done, 0);
        if (!(done & 1)) done = 0;  // new scores make a new plan
        if (done & 2) distill_resume = TRAINER_RESUME_AUTO | (resume & TRAINER_ALLOW_CHANGES);
    }
    for (int k = 0; k < 4; k++) {
        if (k < 2 && done >> k & 1) {
            if (r->comm->rank == 0)
                printf(k == 0 ? "== run: resume: skipping score, complete: %s has /prune/scores for every prune.criterion\n"
                              : "== run: resume: skipping plan, complete: %s has /prune/plan and student_init.safetensors is there\n",
                       r->dir.run_h5);
            continue;
        }
        if (r->comm->rank == 0) {
            if (k == 2 && (resume & TRAINER_RESUME_MODE) && !distill_resume)
                printf("== run: resume: %s, so distill starts fresh\n",
                       done & 1 ? "plan was not complete" : "score was not complete");
            printf("== run: %s (%.0f s so far)\n", names[k], now_s() - t0);
            fflush(stdout);
        }
        // each stage's peak memory is its own (run_report_memory)
        if (k == 0 || k == 2) {
            MemStat m;
            Error me = {0};
            if (memstat_read(&m, NULL, 0, &me) == 0 && m.peak_rss > r->peak_prior) r->peak_prior = m.peak_rss;
            r->peak_reset = memstat_reset_peak() == 0;
        }
        int rc = k == 0 ? score_main(r, e)
                 : k == 1 ? plan_main(r, e)
                 : k == 2 ? distill_main(r, distill_resume, e)
                          : eval_main(r, e);
        if (!rc && (k == 0 || k == 2)) rc = run_report_memory(r, names[k], e);
        if (rc) return rc;
        // distill and eval need no calibration set: give its memory back
        if (k == 1 && r->have_calib) calib_free(&r->calib), r->have_calib = 0;
    }
    if (r->comm->rank == 0) printf("== run: done in %.0f s; results in %s\n", now_s() - t0, r->dir.dir);
    return 0;
}
