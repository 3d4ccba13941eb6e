// h5rows.h — row blocks of float32 datasets written into an existing HDF5
// file by every rank at once: the body of Comm.write_rows_f32 (comm.h).
// Whether the write is parallel is decided by the property lists passed in:
// the serial Comm passes plain HDF5 ones (one process writes all rows);
// mpi/h5par.c passes the MPI-IO driver and collective transfers. The ranks
// check their arguments against each other, then agree through the Comm after
// the open, after each dataset's creation, after each write and after the
// close, so one rank's failure stops all of them at the same point (no rank is
// left waiting in a collective) and every rank returns the same message.
#ifndef LD_H5ROWS_H
#define LD_H5ROWS_H
#include <hdf5.h>

#include "core/comm.h"

// Comm.write_rows_f32 with the caller's file-access and transfer property
// lists (a negative one is reported as a failure of this rank). Turns HDF5's
// error printing off for its duration.
int h5rows_write(Comm *c, hid_t fapl, hid_t dxpl, const char *file, int n, const char *const *paths,
                 const int *ndims, const long long (*dims)[COMM_MAX_DIMS], long long row0, long long rows,
                 const float *const *data, const char *const *attr_names, const char *const *attr_values,
                 int n_attrs, Error *e);

// Comm.write_rows_f32 of comm_serial(): plain HDF5, rows must be all of
// dimension 0 (row0 0, rows dims[k][0]).
int h5rows_write_serial(Comm *c, const char *file, int n, const char *const *paths, const int *ndims,
                        const long long (*dims)[COMM_MAX_DIMS], long long row0, long long rows,
                        const float *const *data, const char *const *attr_names,
                        const char *const *attr_values, int n_attrs, Error *e);
#endif
