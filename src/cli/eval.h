// eval.h — `laptop-diff eval`: teacher and student on held-out data (the test
// split: eval.samples noisy inputs built like the calibration set): task loss
// (MSE to the true noise), output MSE to the teacher, parameters, MACs and
// seconds per sample; /eval/<model>/* in run.h5, a table on stdout, and a PNG
// with teacher and student samples side by side for the same seeds and classes.
#ifndef LD_EVAL_H
#define LD_EVAL_H
#include "core/comm.h"
#include "io/config.h"

int eval_main(const JobConfig *cfg, Comm *comm, Error *e);

// score -> plan -> distill -> eval, each stage as its own command would run it.
int run_main(const JobConfig *cfg, Comm *comm, int resume, Error *e);
#endif
