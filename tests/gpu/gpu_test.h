// gpu_test.h — what every tests/gpu/ program does first: find a CUDA device
// (the emulator always has one) or report SKIPPED. LD_REQUIRE_GPU=1 (set by
// scripts/device_check.sh) makes a missing device a failure, so a GPU machine
// that lost its GPU cannot pass by skipping.
#ifndef LD_GPU_TEST_H
#define LD_GPU_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/dev.h"
#include "kernels/backend.h"

#define GPU_SKIP_CODE 77  // ctest's SKIP_RETURN_CODE

// 0 when a device is there; else the exit status main should return.
static inline int gpu_test_device_or_skip(void) {
    Error e = {0};
    if (dev_count(&e) > 0) return 0;
    const char *req = getenv("LD_REQUIRE_GPU");
    if (req && !strcmp(req, "1")) {
        fprintf(stderr, "FAIL: LD_REQUIRE_GPU=1 but no CUDA device (%s)\n", e.msg);
        return 1;
    }
    printf("skipped: no CUDA device (%s)\n", e.msg);
    return GPU_SKIP_CODE;
}

// A new buffer of n floats in be's memory holding host h (NULL: NULL), and back.
static inline float *gpu_up(const Backend *be, const float *h, size_t n) {
    if (!h) return NULL;
    float *d = be->mem.alloc(be->ctx, n);
    be->upload(be->ctx, d, h, n);
    return d;
}
static inline float *gpu_down(const Backend *be, const float *d, size_t n) {
    float *h = xmalloc(n * sizeof(float));
    be->download(be->ctx, h, d, n);
    return h;
}

// The start of every tests/gpu/ main: line-buffered output (a slow emulated run
// shows its progress), the device or SKIPPED, and where it runs. 0 to go on.
static inline int gpu_test_start(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = gpu_test_device_or_skip();
    if (!rc) printf("%s\n", dev_is_emulated() ? "on the host CUDA emulator: not a GPU result" : "on the GPU");
    return rc;
}
#endif
