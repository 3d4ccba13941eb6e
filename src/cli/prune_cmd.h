// prune_cmd.h — the `score` and `plan` stages (DESIGN §1, §4, §7): every rank
// loads the teacher (model.weights) and builds the same calibration set; rank
// 0 writes /prune/* into OUTPUT/run.h5 and the student's initial weights.
#ifndef LD_PRUNE_CMD_H
#define LD_PRUNE_CMD_H
#include "core/comm.h"
#include "io/config.h"

int score_main(const JobConfig *cfg, Comm *comm, Error *e);
int plan_main(const JobConfig *cfg, Comm *comm, Error *e);
#endif
