// test_shared_teacher.c — the pieces of "one teacher per node" that one
// process can check: the serial node-shared buffer (page-aligned, read-only
// once sealed), memstat's peak and shared-page counts (a forked child maps
// pages its parent touched: shared; a private buffer: not), and a teacher
// loaded into an adopted buffer equal to one loaded the usual way. The MPI
// window itself is checked by tests/cli/test_share_teacher.sh.
#define _DEFAULT_SOURCE  // MAP_ANONYMOUS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/comm.h"
#include "core/memstat.h"
#include "model/checkpoint.h"
#include "model/init.h"
#include "testutil.h"

static void test_serial_shared(void) {
    Comm c = comm_serial();
    Error e = {0};
    size_t bytes = 3 * (size_t)sysconf(_SC_PAGESIZE) + 12;
    CommShared s;
    EXPECT(comm_node_shared_alloc(&c, bytes, &s, &e) == 0, "alloc: %s", e.msg);
    EXPECT(((size_t)s.ptr % (size_t)sysconf(_SC_PAGESIZE)) == 0, "not page-aligned: %p", (void *)s.ptr);
    for (size_t i = 0; i < bytes / sizeof(float); i++) s.ptr[i] = (float)i;
    comm_node_shared_seal(&c, &s);
    EXPECT(s.ptr[7] == 7.0f, "sealed buffer lost its contents");
    // a write into the sealed pages must fault (in a child, so the test survives it)
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);  // not ASan's handler: the plain fault is what is checked
        ((volatile float *)s.ptr)[1] = 42.0f;
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT(WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS),
           "a write into a sealed node-shared buffer did not fault (status %d)", st);
    comm_node_shared_free(&c, &s);
    EXPECT(s.ptr == NULL && s.handle == NULL, "free left the handle");
    comm_node_shared_free(&c, &s);  // a zeroed one is a no-op
}

static void test_memstat(void) {
    Error e = {0};
    MemStat m0, m1;
    EXPECT(memstat_read(&m0, NULL, 0, &e) == 0, "%s", e.msg);
    EXPECT(m0.peak_rss >= m0.rss && m0.rss > 0, "peak %lld rss %lld", m0.peak_rss, m0.rss);
    size_t bytes = (size_t)64 << 20;
    // private: touched pages are resident, none shared
    char *priv = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(priv, 1, bytes);
    EXPECT(memstat_read(&m1, priv, bytes, &e) == 0, "%s", e.msg);
    EXPECT(m1.region_rss >= (long long)bytes, "private region resident %lld < %zu", m1.region_rss, bytes);
    EXPECT(m1.region_shared == 0, "private region reported shared: %lld", m1.region_shared);
    EXPECT(m1.peak_rss >= m0.rss + (long long)bytes * 9 / 10, "peak %lld did not grow by the 64 MiB touched",
           m1.peak_rss);
    munmap(priv, bytes);
    // after a reset the peak is the current RSS again (the 64 MiB are gone)
    if (memstat_reset_peak() == 0) {
        MemStat m2;
        memstat_read(&m2, NULL, 0, &e);
        EXPECT(m2.peak_rss < m1.peak_rss - (long long)bytes / 2, "reset peak %lld, before %lld", m2.peak_rss,
               m1.peak_rss);
    } else {
        printf("note: /proc/self/clear_refs refused here: the peak reset is not checked\n");
    }
    // shared: a child maps the pages its parent touched; both count them shared
    char *sh = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 2, bytes);
    int pfd[2];
    EXPECT(pipe(pfd) == 0, "pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        volatile long sum = 0;
        for (size_t i = 0; i < bytes; i += 4096) sum += sh[i];  // maps every page
        MemStat mc;
        Error ce = {0};
        long long v[2] = {-1, -1};
        if (memstat_read(&mc, sh, bytes, &ce) == 0) v[0] = mc.region_shared, v[1] = mc.region_rss;
        if (write(pfd[1], v, sizeof v) != (ssize_t)sizeof v) _exit(2);
        _exit(0);
    }
    long long v[2] = {0, 0};
    EXPECT(read(pfd[0], v, sizeof v) == (ssize_t)sizeof v, "child's report");
    waitpid(pid, NULL, 0);
    EXPECT(v[0] >= (long long)bytes, "child: shared pages %lld < %zu", v[0], bytes);
    EXPECT(v[1] >= (long long)bytes, "child: resident %lld < %zu", v[1], bytes);
    close(pfd[0]), close(pfd[1]);
    munmap(sh, bytes);
}

static void test_adopted_teacher(void) {
    ModelConfig m;
    tu_tiny_model(&m, 1, 1, 8, 2);
    Error e = {0};
    UNet *a = unet_create(&m, NULL, &e);
    EXPECT(a != NULL, "%s", e.msg);
    if (!a) return;
    unet_init_params(a, 7);
    char path[256];
    snprintf(path, sizeof path, "%s/test_shared_teacher.%d.safetensors", LD_BINARY_DIR, (int)getpid());
    EXPECT(unet_save(a, path, NULL, 0, &e) == 0, "%s", e.msg);
    UNet *full = unet_from_file(path, &m, &e);
    UNet *b = unet_shape_file(path, &m, &e);
    EXPECT(full && b, "%s", e.msg);
    if (full && b) {
        EXPECT(b->pt.total == full->pt.total, "shapes differ");
        int zero = 1;
        for (size_t i = 0; i < b->pt.total; i++) zero &= b->params[i] == 0.0f;
        EXPECT(zero, "unet_shape_file read weights");
        Comm c = comm_serial();
        CommShared s;
        EXPECT(comm_node_shared_alloc(&c, b->pt.total * sizeof(float), &s, &e) == 0, "%s", e.msg);
        unet_adopt_params(b, s.ptr);
        EXPECT(b->params == s.ptr && b->params_borrowed, "adopt did not take the buffer");
        EXPECT(unet_load_file(b, path, &e) == 0, "%s", e.msg);
        comm_node_shared_seal(&c, &s);
        EXPECT(memcmp(b->params, full->params, b->pt.total * sizeof(float)) == 0,
               "weights loaded into the adopted buffer differ from unet_from_file's");
        // a frozen teacher's forward and backward write nothing into its sealed parameters
        // (a write would fault here); the gradients go to its own u->grads
        int B = 2, H = 8, W = 8, L = m.context_length;
        size_t n_in = (size_t)B * H * W, n_ctx = (size_t)B * L * m.cross_attention_dim;
        float *x = calloc(n_in, sizeof *x), *out = calloc(n_in, sizeof *out), *ctx = calloc(n_ctx, sizeof *ctx);
        float t[2] = {10, 500};
        TuRng r;
        tu_rng_seed(&r, 3);
        tu_fill(&r, x, n_in, -1, 1), tu_fill(&r, ctx, n_ctx, -1, 1);
        EXPECT(unet_forward(b, out, x, t, ctx, B, H, W, L, NULL, &e) == 0, "%s", e.msg);
        unet_zero_grad(b);
        unet_backward(b, out, NULL);
        EXPECT(b->grads && b->grads != b->params, "gradients not in their own buffer");
        unet_free(b);  // leaves the borrowed buffer
        b = NULL;
        EXPECT(s.ptr[0] == full->params[0], "unet_free touched the borrowed buffer");
        comm_node_shared_free(&c, &s);
        free(x), free(out), free(ctx);
    }
    unet_free(full), unet_free(b), unet_free(a);
    remove(path);
}

int main(void) {
    test_serial_shared();
    test_memstat();
    test_adopted_teacher();
    return tu_report("test_shared_teacher");
}
