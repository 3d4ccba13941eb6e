// isum_check.c — Comm.isum (mpi/comm_mpi.c) under mpirun, for
// tests/cli/test_isum.sh. Every rank fills buffers with values of widely
// mixed magnitudes (so the order of a float sum shows in its bits) that any
// rank can regenerate, starts sums of awkward sizes (0, 1, fewer elements
// than ranks, odd, large) all at once under distinct tags, makes progress on
// them in a scrambled order and waits in reverse, then checks each result,
// on every rank, against the serial loop acc = x_0; acc += x_1; ... bit for
// bit. It also starts and at once waits (the blocking use), and reports
// whether the result equals MPI_Allreduce's (sum_f32) bit for bit: that is
// printed ("allreduce: equal" / "allreduce: differs"), not checked here.
// Prints "rank R: ok" when every check passed; exits 1 otherwise.
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_mpi.h"

// Rank r's element i: a signed integer scaled by 2^(-20..19).
static float value(int r, size_t i) {
    uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(r * 40503u + 12345u);
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    float m = (float)((int)(h % 2000001u) - 1000000);
    int ex = (int)((h >> 21) % 40) - 20;
    float s = 1;
    for (int k = 0; k < (ex < 0 ? -ex : ex); k++) s *= 2;
    return ex < 0 ? m / s : m * s;
}

static void fill(float *x, size_t n, int r) {
    for (size_t i = 0; i < n; i++) x[i] = value(r, i);
}

// The serial loop in rank order.
static void expected(float *x, size_t n, int P) {
    for (size_t i = 0; i < n; i++) {
        float acc = value(0, i);
        for (int r = 1; r < P; r++) acc += value(r, i);
        x[i] = acc;
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    Comm c = comm_mpi_world();
    int P = c.size, bad = 0;
    size_t sizes[] = {0, 1, (size_t)(P > 1 ? P - 1 : 1), (size_t)P, (size_t)P + 1, 7, 1001, 65537, ((size_t)1 << 20) + 3};
    enum { NS = sizeof sizes / sizeof *sizes };
    float *buf[NS], *want[NS];
    void *h[NS];
    for (int k = 0; k < NS; k++) {
        buf[k] = malloc((sizes[k] ? sizes[k] : 1) * sizeof(float));
        want[k] = malloc((sizes[k] ? sizes[k] : 1) * sizeof(float));
        fill(buf[k], sizes[k], c.rank);
        expected(want[k], sizes[k], P);
    }
    // all in flight at once; tags out of order and far apart
    for (int k = 0; k < NS; k++) h[k] = c.isum_start(&c, buf[k], sizes[k], (k * 7919) % 1000 + k);
    for (int round = 0; round < 50; round++)
        for (int k = 0; k < NS; k++) (void)c.isum_test(&c, h[(k * 5 + round) % NS]);
    for (int k = NS - 1; k >= 0; k--) c.isum_wait(&c, h[k]);
    for (int k = 0; k < NS; k++)
        if (sizes[k] && memcmp(buf[k], want[k], sizes[k] * sizeof(float))) {
            size_t i = 0;
            while (buf[k][i] == want[k][i]) i++;
            printf("rank %d: FAIL: isum of %zu floats differs from the rank-order sum at %zu: %.9g vs %.9g\n", c.rank,
                   sizes[k], i, buf[k][i], want[k][i]);
            bad = 1;
        }
    // the blocking use (start, then wait at once), and the same tag again
    int differs = 0;
    for (int k = 0; k < NS; k++) {
        fill(buf[k], sizes[k], c.rank);
        c.isum_wait(&c, c.isum_start(&c, buf[k], sizes[k], 3));
        if (sizes[k] && memcmp(buf[k], want[k], sizes[k] * sizeof(float))) {
            printf("rank %d: FAIL: start-then-wait of %zu floats differs from the rank-order sum\n", c.rank, sizes[k]);
            bad = 1;
        }
        fill(buf[k], sizes[k], c.rank);
        c.sum_f32(&c, buf[k], sizes[k]);
        if (sizes[k] && memcmp(buf[k], want[k], sizes[k] * sizeof(float))) differs = 1;
    }
    if (c.rank == 0) printf("allreduce: %s (MPI_Allreduce vs the rank-order sum, %d ranks)\n", differs ? "differs" : "equal", P);
    if (!bad) printf("rank %d: ok\n", c.rank);
    for (int k = 0; k < NS; k++) free(buf[k]), free(want[k]);
    int any = bad;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    comm_mpi_free(&c);
    MPI_Finalize();
    return any ? 1 : 0;
}
