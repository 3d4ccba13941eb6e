// bench_args.h — the command line bench_conv, bench_libs and bench_libs_conv
// share: [REPEATS (5)] [THREADS (1)] [WHICH ("all")]; and --config-out's writer. Fixes OpenBLAS's
// kernels first (a restart, see runtime.h) and sets the thread count.
#ifndef LD_BENCH_ARGS_H
#define LD_BENCH_ARGS_H
#include <stdio.h>
#include <stdlib.h>

#include "kernels/runtime.h"
#include "model/model_json.h"

static inline void bench_args(int argc, char **argv, int *reps, int *threads, const char **which) {
    runtime_fix_blas_kernels(argv);
    *reps = argc > 1 ? atoi(argv[1]) : 5;
    if (*reps < 1) *reps = 1;
    *threads = runtime_set_threads(argc > 2 ? atoi(argv[2]) : 1, 1);
    *which = argc > 3 ? argv[3] : "all";
}

// --config-out (bench_step, bench_gpu): the model's diffusers config JSON into
// path, for tests/bench/bench_torch.py to build the same U-Net. 0, or 1 after
// saying why.
static inline int bench_write_config(const ModelConfig *m, const char *path, const char *who) {
    char *js = model_config_to_json(m);
    FILE *f = fopen(path, "w");
    int bad = !js || !f || fputs(js, f) < 0;
    if (f && fclose(f)) bad = 1;
    free(js);
    if (bad) fprintf(stderr, "%s: cannot write %s\n", who, path);
    return bad;
}
#endif
