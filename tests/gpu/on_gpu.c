// on_gpu.c — linked into the `_gpu` copies of unit tests that an LD_CUDA_GEMM
// build makes (CMakeLists.txt, ctest label gpu). Before main runs, it selects
// runtime.device "cuda" the way laptop-diff does at start-up, so an unchanged
// unit test multiplies on cuBLAS, GPU 0. A constructor rather than a call in
// each test's main, so the tests' sources stay the CPU tests they are.
//
// No CUDA device (none reported, or no driver at all): "skipped: ..." and exit
// 77, which ctest reports as SKIPPED (SKIP_RETURN_CODE). LD_REQUIRE_GPU=1
// makes that a failure (scripts/device_check.sh sets it, so a GPU machine
// that lost its GPU cannot pass by skipping). CUDA present but failing: exit 1.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/gemm_cublas.h"
#include "kernels/runtime.h"

#define SKIP_CODE 77

__attribute__((constructor)) static void select_cuda(void) {
    Error e = {0};
    int ndev = gpu_device_count(&e);
    if (ndev == 0) {
        const char *req = getenv("LD_REQUIRE_GPU");
        if (req && !strcmp(req, "1")) {
            fprintf(stderr, "FAIL: LD_REQUIRE_GPU=1 but no CUDA device (%s)\n", e.msg);
            exit(1);
        }
        printf("skipped: no CUDA device (%s)\n", e.msg);
        exit(SKIP_CODE);
    }
    char what[320];
    if (runtime_select_device(DEVICE_CUDA, PRECISION_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, CPU_GEMM_OPENBLAS, 0, NULL, NULL, what,
                              sizeof what, &e)) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        exit(1);
    }
    printf("on_gpu: runtime.device \"cuda\": %s\n", what);
    fflush(stdout);
}
