// comm.c — the serial communicator and sharding arithmetic; see comm.h.
#include "core/comm.h"

#include <string.h>

#include "io/h5rows.h"

static void serial_sum_f32(Comm *c, float *buf, size_t n) { (void)c, (void)buf, (void)n; }
static void serial_sum_f64(Comm *c, double *buf, size_t n) { (void)c, (void)buf, (void)n; }
static void serial_max_i32(Comm *c, int *buf, size_t n) { (void)c, (void)buf, (void)n; }
static void serial_bcast(Comm *c, void *buf, size_t bytes, int root) { (void)c, (void)buf, (void)bytes, (void)root; }
static void serial_gatherv(Comm *c, const double *send, int count, double *recv, const int *counts, int root) {
    (void)c, (void)counts, (void)root;
    if (recv != send) memmove(recv, send, (size_t)count * sizeof(double));
}
static void serial_barrier(Comm *c) { (void)c; }

Comm comm_serial(void) {
    Comm c = {.rank = 0, .size = 1, .local_size = 1, .local_rank = 0, .impl = NULL, .sum_f32 = serial_sum_f32,
              .sum_f64 = serial_sum_f64, .max_i32 = serial_max_i32, .bcast = serial_bcast,
              .gatherv_f64 = serial_gatherv, .barrier = serial_barrier,
              .write_rows_f32 = h5rows_write_serial};
    return c;
}

void comm_shard(long n, int rank, int size, long *start, long *count) {
    long base = n / size, extra = n % size;
    *start = rank * base + (rank < extra ? rank : extra);
    *count = base + (rank < extra ? 1 : 0);
}
