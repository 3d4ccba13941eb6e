// distill_cmd.h — `laptop-diff distill`: the job config's sections handed to
// the distillation stage (train/distill.h), which sees no JobConfig.
#ifndef LD_DISTILL_CMD_H
#define LD_DISTILL_CMD_H
#include "core/comm.h"
#include "io/config.h"

// Returns 0, 1 (stopped by a signal, checkpointed) or -1 + e.
int distill_cmd(const JobConfig *cfg, Comm *comm, int resume, Error *e);
#endif
