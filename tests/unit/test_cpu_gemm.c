// test_cpu_gemm.c — runtime.cpu_gemm = "auto" picks the library its rule names
// (gemm.h: oneDNN's sgemm on an Intel CPU with AVX-512 in a build with oneDNN,
// OpenBLAS otherwise), with the CPU told independently of gemm.c's compiler
// builtins: /proc/cpuinfo's vendor_id and flags. Then a second choice of the
// same library is harmless, and "openblas" is always accepted. SKIPPED where
// /proc/cpuinfo is missing or names no x86 vendor.
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "kernels/gemm.h"
#include "kernels/runtime.h"
#include "testutil.h"

// vendor_id and whether the flags list avx512f, from the first CPU's entry.
static int read_cpuinfo(char *vendor, size_t n, int *avx512f) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    char line[8192];
    int have_vendor = 0, have_flags = 0;
    *avx512f = 0;
    while (fgets(line, sizeof line, f) && !(have_vendor && have_flags)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ') v++;
        if (!have_vendor && !strncmp(line, "vendor_id", 9)) {
            snprintf(vendor, n, "%.*s", (int)strcspn(v, "\n"), v);
            have_vendor = 1;
        } else if (!have_flags && !strncmp(line, "flags", 5)) {
            for (char *tok = strtok(v, " \t\n"); tok; tok = strtok(NULL, " \t\n"))
                if (!strcmp(tok, "avx512f")) *avx512f = 1;
            have_flags = 1;
        }
    }
    fclose(f);
    return have_vendor && have_flags ? 0 : -1;
}

int main(void) {
    char vendor[64] = "";
    int avx512f = 0;
    if (read_cpuinfo(vendor, sizeof vendor, &avx512f) ||
        (strcmp(vendor, "GenuineIntel") && strcmp(vendor, "AuthenticAMD"))) {
        printf("SKIPPED: /proc/cpuinfo names no x86 vendor here (\"%s\")\n", vendor);
        return 77;
    }
#ifdef LD_HAVE_DNNL
    int want_onednn = !strcmp(vendor, "GenuineIntel") && avx512f;
#else
    int want_onednn = 0;
#endif
    const char *want = want_onednn ? "oneDNN sgemm + OpenBLAS" : "OpenBLAS";
    EXPECT(gemm_cpu_prefers_onednn() == (!strcmp(vendor, "GenuineIntel") && avx512f),
           "gemm_cpu_prefers_onednn() = %d on a %s CPU %s AVX-512", gemm_cpu_prefers_onednn(), vendor,
           avx512f ? "with" : "without");
    Error e = {0};
    char what[320] = "";
    EXPECT(runtime_select_device(DEVICE_CPU, PRECISION_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, CPU_GEMM_AUTO, 0, NULL, NULL, what,
                                 sizeof what, &e) == 0,
           "runtime.cpu_gemm \"auto\": %s", e.msg);
    EXPECT(!strcmp(gemm_cpu_library_name(), want), "runtime.cpu_gemm \"auto\" on a %s CPU %s AVX-512 chose %s, want %s",
           vendor, avx512f ? "with" : "without", gemm_cpu_library_name(), want);
    EXPECT(strstr(what, want) != NULL, "start-up description \"%s\" does not name %s", what, want);
    // the resolved library again: harmless (a retry after a failed device selection)
    EXPECT(gemm_set_cpu_library(want_onednn ? CPU_GEMM_ONEDNN : CPU_GEMM_OPENBLAS, &e) == 0, "same library again: %s",
           e.msg);
    printf("test_cpu_gemm: %s CPU %s AVX-512: runtime.cpu_gemm \"auto\" -> %s (%s)\n", vendor,
           avx512f ? "with" : "without", gemm_cpu_library_name(), what);
    return tu_report("test_cpu_gemm");
}
