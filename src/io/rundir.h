// rundir.h — the run directory (output.dir): the one definition of every file
// a command reads or writes there (DESIGN §7, README "Outputs"), so no stage
// spells a file name of its own.
#ifndef LD_RUNDIR_H
#define LD_RUNDIR_H
#include "core/common.h"

// Longest output.dir accepted, and room for the longest file name below it.
#define RUNDIR_MAX 1023
#define RUNDIR_PATH (RUNDIR_MAX + 64)

typedef struct {
    char dir[RUNDIR_MAX + 1];
    char run_h5[RUNDIR_PATH];        // run.h5: every stage's results
    char checkpoints[RUNDIR_PATH];   // checkpoints/: train and distill
    char model[RUNDIR_PATH];         // model.safetensors: train
    char model_ema[RUNDIR_PATH];     // model_ema.safetensors: train with train.ema_decay > 0
    char student_init[RUNDIR_PATH];  // student_init.safetensors: plan
    char student[RUNDIR_PATH];       // student.safetensors: distill
    char student_ema[RUNDIR_PATH];   // student_ema.safetensors: distill with train.ema_decay > 0
    char samples_png[RUNDIR_PATH];   // samples.png: sample
    char samples_h5[RUNDIR_PATH];    // samples.h5: sample
    char eval_png[RUNDIR_PATH];      // teacher_vs_student.png: eval
    char lock[RUNDIR_PATH];          // .lock: "host=... pid=..." of the job writing here
} RunDir;

// Fills d for output.dir `dir`. An empty or over-long dir is an error naming
// output.dir (an empty one would put a run's files into the current or root
// directory). Nothing is created on disk.
int rundir_init(RunDir *d, const char *dir, Error *e);

// mkdir -p the run directory.
int rundir_make(const RunDir *d, Error *e);

// Makes the run directory and takes its lock, so two jobs never write one
// run: d->lock appears atomically (written complete under a temp name, then
// link(2), which fails if the name exists) holding host, pid, command and
// start time. A lock held by a live process, or by a process on another host
// (which cannot be checked from here), is an error naming the holder. A lock
// of this host whose PID is not alive is stale (a killed job): it is taken
// over and note (n bytes) says so; so is, from any host, the lock of an
// earlier run of the same Slurm job (SLURM_JOB_ID equal, SLURM_RESTART_COUNT
// lower: a requeue after a lost node). Takeovers are serialised by an flock on
// <lock>.takeover (left in place: removing it would reopen the race), so of two
// jobs that find the same stale lock one takes it and the other is refused,
// naming it. Otherwise note is "". Not for the ranks
// of one job to call each: one process (rank 0) locks for the job.
int rundir_lock(const RunDir *d, const char *command, char *note, size_t n, Error *e);

// Removes d->lock if this process holds it (best effort, also on error exits).
void rundir_unlock(const RunDir *d);
#endif
