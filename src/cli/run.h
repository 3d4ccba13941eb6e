// run.h — the run layer: the context every command works in, and `run`.
// A RunCtx holds the job, the ranks, the collective-HDF5 access, the run
// directory (io/rundir.h), and what stages share: the teacher (model.weights),
// loaded on first use, and the pruning calibration set with the teacher's
// outputs on it, built on first use. A single command fills only what it
// needs; `run` hands one context from score to plan to distill to eval, so the
// teacher is read and the calibration set built once per job, not per stage.
// This context is the one piece of mutable state a job has.
#ifndef LD_CLI_RUN_H
#define LD_CLI_RUN_H
#include "core/comm.h"
#include "data/calib.h"
#include "io/config.h"
#include "io/h5log.h"
#include "io/h5rows.h"
#include "io/rundir.h"
#include "model/unet.h"

typedef struct {
    const JobConfig *cfg;
    Comm *comm;
    const H5Access *h5;  // how the ranks write one HDF5 file together (parallel under MPI)
    RunDir dir;
    UNet *teacher;       // NULL until run_teacher
    CommShared teacher_mem;  // the teacher's parameters when runtime.share_teacher (one copy per node)
    long long peak_prior;    // run_main: the highest VmHWM of its earlier stages (reset between stages)
    int peak_reset;          // run_main reset VmHWM at a stage's start (memstat_reset_peak)
    Calib calib;         // valid once have_calib
    int have_calib;
    int locked;          // rank 0 holds dir.lock (released by run_ctx_free)
    Backend *device;     // the rank's GPU backend (runtime.device = "cuda" in an LD_CUDA build), else NULL; owned
    const DeviceBackend *gpu;  // the device backend the program links (NULL: none): makes grad_comm
    Comm *grad_comm;     // the GPUs' gradient sums (NCCL), made by run_grad_comm; owned
    int grad_comm_asked; // run_grad_comm has decided (grad_comm may still be NULL: host sums)
} RunCtx;

// Checks output.dir (io/rundir.h); loads nothing. Every rank calls it.
int run_ctx_init(RunCtx *r, const JobConfig *cfg, Comm *comm, const H5Access *h5, Error *e);
// Rank 0 takes output.dir's lock (rundir_lock; a stale one is taken over
// with a note on stdout); all ranks agree, so every rank stops when another
// job holds it. For the commands that write into output.dir.
int run_ctx_lock(RunCtx *r, const char *command, Error *e);

// The rank's device backend for the stages that run device-resident (train,
// distill), or NULL: they run on the CPU. The context keeps its reference; a
// model that moves there takes its own (backend_retain).
Backend *run_device(const RunCtx *r);

// What train and distill sum the gradients of the ranks' GPUs over
// (runtime.gpu_comm), decided and made on first use (collective; rank 0 says
// which on stdout): *out = a Comm over device buffers (NCCL, cuda/nccl_sum.h),
// or NULL: through host memory over MPI (one rank, the CPU, "mpi", or "auto"
// where the build has no NCCL or a node has more ranks than GPUs). -1 + e on
// every rank where "nccl" was asked for and cannot be had, or NCCL fails.
int run_grad_comm(RunCtx *r, Comm **out, Error *e);

// Frees what the context loaded and releases the lock: call it on every exit.
void run_ctx_free(RunCtx *r);

// The teacher (model.weights), loaded on first use; all ranks agree on the
// outcome. NULL + e (on every rank) on failure. With runtime.share_teacher the
// ranks of a node hold one copy: every rank builds the model from the file's
// header, the node's first rank reads the weights into node-shared memory,
// the others map the same pages, and the buffer is read-only from then on
// (the teacher's gradients, when a criterion needs them, are per rank in
// u->grads). Otherwise every rank reads its own copy.
UNet *run_teacher(RunCtx *r, Error *e);

// The memory report of a stage (collective): every rank's peak resident set
// (VmHWM; since the stage started where run_main could reset it, else since
// the process started) and, per node, the sum over its ranks of what they
// hold privately plus the teacher's shared pages once. Rank 0 prints it and
// writes /memory/<stage>/{peak_rss_bytes, teacher_shared_bytes, node,
// node_peak_bytes} to run.h5. Where /proc cannot be read it prints why and
// writes nothing (returns 0); -1 + e only when run.h5 cannot be written.
int run_report_memory(RunCtx *r, const char *stage, Error *e);

// Rank 0: run.h5, created with the run directory if need be, keeping what
// earlier stages wrote (score, plan, the memory report).
H5Log *run_open_h5(const RunCtx *r, Error *e);

// The calibration set (prune.*, data.*, runtime.seed) with the teacher's
// outputs, built on first use (loads the teacher if needed). NULL + e
// (agreed). With a device copy of the teacher `on` (NULL: none), the set's
// one teacher pass runs on it when the set is built, the outputs come back
// into the host set, and *on_set (zeroed by the caller) becomes the set in
// on's memory (calib_teacher_on / calib_on; free it with calib_free_on, also
// after a failure).
Calib *run_calib(RunCtx *r, UNet *on, Calib *on_set, Error *e);

// score -> plan -> distill -> eval on one context. resume is TRAINER_RESUME_*
// (train/trainer.h): with either mode, score is skipped when run.h5 has every
// configured criterion's scores, plan when it also has /prune/plan and
// student_init.safetensors is there (each skip is printed), and distill then
// continues from its newest checkpoint or starts fresh; eval always runs.
int run_main(RunCtx *r, int resume, Error *e);
#endif
