// bench_args.h — the command line bench_conv, bench_libs and bench_libs_conv
// share: [REPEATS (5)] [THREADS (1)] [WHICH ("all")]. Fixes OpenBLAS's
// kernels first (a restart, see runtime.h) and sets the thread count.
#ifndef LD_BENCH_ARGS_H
#define LD_BENCH_ARGS_H
#include <stdlib.h>

#include "kernels/runtime.h"

static inline void bench_args(int argc, char **argv, int *reps, int *threads, const char **which) {
    runtime_fix_blas_kernels(argv);
    *reps = argc > 1 ? atoi(argv[1]) : 5;
    if (*reps < 1) *reps = 1;
    *threads = runtime_set_threads(argc > 2 ? atoi(argv[2]) : 1, 1);
    *which = argc > 3 ? argv[3] : "all";
}
#endif
