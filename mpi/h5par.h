// h5par.h — Comm.write_rows_f32 (comm.h) for the MPI communicator: parallel
// HDF5 over MPI_COMM_WORLD, one collective MPI-IO transfer per dataset.
#ifndef LD_H5PAR_H
#define LD_H5PAR_H
#include "core/comm.h"

int h5par_write_rows_f32(Comm *c, const char *file, int n, const char *const *paths, const int *ndims,
                         const long long (*dims)[COMM_MAX_DIMS], long long row0, long long rows,
                         const float *const *data, const char *const *attr_names,
                         const char *const *attr_values, int n_attrs, Error *e);
#endif
