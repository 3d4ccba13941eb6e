// h5rows.h — row blocks of float32 datasets written into an existing HDF5
// file by every rank at once (the /activations snapshots). Whether the write
// is parallel is decided by the H5Access the caller passes: plain HDF5 for one
// process (h5rows_serial_access), or mpi/h5par.c's MPI-IO driver with
// collective transfers, so io/ needs no MPI. The ranks check their arguments
// against each other, then agree through the Comm after the open, after each
// dataset's creation, after each write and after the close, so one rank's
// failure stops all of them at the same point (no rank is left waiting in a
// collective) and every rank returns the same message.
#ifndef LD_H5ROWS_H
#define LD_H5ROWS_H
#include <hdf5.h>

#include "core/comm.h"

// Most dimensions of a dataset that h5rows_write takes.
#define H5ROWS_MAX_DIMS 8

// How the ranks open one file together: props() makes a fresh file-access and
// transfer property list pair (the caller closes both); a negative one is
// reported as a failure of that rank.
typedef struct H5Access {
    void (*props)(const struct H5Access *a, hid_t *fapl, hid_t *dxpl);
    void *impl;
} H5Access;

// One process writes every row with plain HDF5 (and no file lock, like the run
// file's own writer: readers may watch the file).
H5Access h5rows_serial_access(void);

// Collective (every rank calls it with the same file, n and paths/shapes):
// opens `file` (must exist), and for each dataset k creates (replacing any
// existing object at the path; parent groups created) a float32 dataset of
// shape dims[k][0..ndims[k]) at paths[k], then every rank writes its rows
// [row0, row0 + rows) of dimension 0 from data[k] (rows * prod(dims[k][1..])
// floats; rows may be 0) in ONE transfer per dataset; attr_names/attr_values
// (string attributes on each dataset, may be NULL) are written too; closes.
// The ranks' rows must tile dimension 0, so every dims[k][0] is the same. All
// ranks return the same result; on failure every rank's e holds the message of
// the lowest failing rank (naming file and dataset); the datasets before the
// failing one stay written. Nobody else may have the file open (close an
// H5Log first). Turns HDF5's error printing off for its duration.
int h5rows_write(Comm *c, const H5Access *a, const char *file, int n, const char *const *paths, const int *ndims,
                 const long long (*dims)[H5ROWS_MAX_DIMS], long long row0, long long rows, const float *const *data,
                 const char *const *attr_names, const char *const *attr_values, int n_attrs, Error *e);
#endif
