// h5par_check.c — drives h5rows_write (io/h5rows.h) for tests/cli/test_h5par.sh.
// usage: h5par_check serial|mpi FILE [ok|bad|mismatch|nodata|missing]
// serial: comm_serial() and plain HDF5, without MPI; mpi: comm_mpi_world() and
// h5par_access() (parallel HDF5).
// Rank 0 creates FILE with the run file's serial writer (h5log) and closes it,
// as a run does before a collective snapshot; then every rank writes its
// comm_shard() rows of three "activation" datasets of different shapes:
//   ok       a first write at /activations/000100/{a,b,c/old} with other
//            shapes, replaced by /activations/000100/{a,b,c} (5 rows), then
//            /activations/000200/{a,b,c} (2 rows: with 3 ranks one has none)
//   bad      the second dataset's path lies under the dataset /blocker
//   mismatch rank r passes a different shape for one dataset
//   nodata   the last rank alone passes NULL data (its message reaches all)
//   missing  FILE is never created
// Value of dataset k, global row i, element j of the row, in write `set`:
// 1000*set + 100*k + i + j/256. Every rank prints "rank R: ok" or
// "rank R: failed" on stdout; rank 0 prints the error (every rank has the
// same one) on stderr. Exit 0 or 1.
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "core/comm.h"
#include "comm_mpi.h"
#include "h5par.h"
#include "io/h5log.h"
#include "io/h5rows.h"

enum { N_SETS = 3 };

typedef struct {
    const char *paths[N_SETS];
    int ndims[N_SETS];
    long long dims[N_SETS][H5ROWS_MAX_DIMS];  // dims[k][0] is set from the batch
    int null_data_rank;                     // this rank passes NULL for dataset 0 (-1: none)
} Layout;

static int write_set(Comm *c, const H5Access *a, const char *file, const Layout *lay, long long batch, int set, const char *model,
                     Error *e) {
    long start, count;
    comm_shard((long)batch, c->rank, c->size, &start, &count);
    long long dims[N_SETS][H5ROWS_MAX_DIMS];
    float *buf[N_SETS];
    const float *data[N_SETS];
    for (int k = 0; k < N_SETS; k++) {
        memcpy(dims[k], lay->dims[k], sizeof dims[k]);
        dims[k][0] = batch;
        long long inner = 1;
        for (int i = 1; i < lay->ndims[k]; i++) inner *= dims[k][i];
        buf[k] = xmalloc((size_t)(count * inner + 1) * sizeof(float));
        for (long r = 0; r < count; r++)
            for (long long j = 0; j < inner; j++)
                buf[k][r * inner + j] = (float)(1000 * set + 100 * k + (start + r)) + (float)j / 256.0f;
        data[k] = buf[k];
    }
    if (c->rank == lay->null_data_rank) data[0] = NULL;
    const char *names[] = {"model", "units"}, *values[] = {model, "1"};
    int rc = h5rows_write(c, a, file, N_SETS, lay->paths, lay->ndims, (const long long (*)[H5ROWS_MAX_DIMS])dims, start,
                          count, data, names, values, 2, e);
    for (int k = 0; k < N_SETS; k++) free(buf[k]);
    return rc;
}

// Rank 0 makes the file (optionally with a dataset in the way); all learn
// whether that worked.
static int make_file(Comm *c, const char *file, int blocker, Error *e) {
    int failed = 0;
    if (c->rank == 0) {
        H5Log *l = h5log_open(file, NULL, H5LOG_CREATE, H5LOG_ALL_ROWS, e);
        double one = 1;
        long long dim = 1;
        if (!l || (blocker && h5log_write_f64(l, "/blocker", &one, 1, &dim, "1", "in the way", e)))
            failed = 1;
        if (l && h5log_close(l, e)) failed = 1;
    }
    c->bcast(c, &failed, sizeof failed, 0);
    if (failed && c->rank != 0) errorf(e, "rank 0 could not create %s", file);
    return failed ? -1 : 0;
}

static int run(Comm *c, const H5Access *a, const char *file, const char *what, Error *e) {
    if (strcmp(what, "missing") && make_file(c, file, !strcmp(what, "bad"), e)) return -1;
    Layout fin = {{"/activations/000100/a", "/activations/000100/b", "/activations/000100/c"},
                  {4, 2, 3},
                  {{0, 3, 4, 4}, {0, 8}, {0, 2, 3}},
                  -1};
    if (!strcmp(what, "bad")) fin.paths[1] = "/blocker/x";
    if (!strcmp(what, "mismatch")) fin.dims[1][1] += c->rank;
    if (!strcmp(what, "nodata")) fin.null_data_rank = c->size - 1;
    if (!strcmp(what, "ok")) {
        Layout pre = {{"/activations/000100/a", "/activations/000100/b", "/activations/000100/c/old"},
                      {2, 4, 1},
                      {{0, 2}, {0, 1, 1, 1}, {0}},
                      -1};
        if (write_set(c, a, file, &pre, 5, 0, "pre", e)) return -1;
    }
    if (write_set(c, a, file, &fin, 5, 1, "teacher", e)) return -1;
    Layout later = fin;
    later.paths[0] = "/activations/000200/a", later.paths[1] = "/activations/000200/b";
    later.paths[2] = "/activations/000200/c";
    return write_set(c, a, file, &later, 2, 2, "student", e);
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || (strcmp(argv[1], "serial") && strcmp(argv[1], "mpi"))) {
        fprintf(stderr, "usage: h5par_check serial|mpi FILE [ok|bad|mismatch|nodata|missing]\n");
        return 2;
    }
    int mpi = !strcmp(argv[1], "mpi");
    const char *what = argc == 4 ? argv[3] : "ok";
    if (mpi) MPI_Init(&argc, &argv);
    Comm c = mpi ? comm_mpi_world() : comm_serial();
    H5Access a = mpi ? h5par_access() : h5rows_serial_access();
    Error e = {0};
    int rc = run(&c, &a, argv[2], what, &e);
    printf("rank %d: %s\n", c.rank, rc ? "failed" : "ok");
    fflush(stdout);
    if (rc && c.rank == 0) fprintf(stderr, "h5par_check: %s\n", e.msg);
    if (!rc && c.rank == 0)
        fprintf(stderr, "h5par_check: wrote %s with %d rank%s\n", argv[2], c.size, c.size == 1 ? "" : "s");
    if (mpi) {
        comm_mpi_free(&c);
        MPI_Finalize();
    }
    return rc ? 1 : 0;
}
