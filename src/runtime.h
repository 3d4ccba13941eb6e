// runtime.h — per-rank compute setup: thread counts for OpenMP and OpenBLAS
// (two pools that otherwise oversubscribe the cores), and the device check.
#ifndef LD_RUNTIME_H
#define LD_RUNTIME_H
#include "common.h"
#include "config.h"

// threads = 0: the cores of this node divided among its ranks (at least 1).
// Returns the count used.
int runtime_set_threads(int threads, int ranks_on_node);

// "cuda" on a build or machine without a GPU stops here with a clear message.
int runtime_check_device(const RuntimeConfig *rt, Error *e);
#endif
