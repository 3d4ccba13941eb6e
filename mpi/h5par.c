// h5par.c — see h5par.h. The steps (argument check across ranks, collective
// open and dataset creation, each rank's hyperslab or empty selection, one
// H5Dwrite per dataset, agreement on failure) are src/h5rows.c's; this file
// supplies what makes them parallel: the MPI-IO file driver on
// MPI_COMM_WORLD and collective transfers.
#include "h5par.h"

#include <hdf5.h>
#include <mpi.h>

#include "io/h5err.h"
#include "io/h5rows.h"

#ifndef H5_HAVE_PARALLEL
#error "h5par.c needs a parallel HDF5 (Debian: libhdf5-openmpi-dev, pkg-config hdf5-openmpi)"
#endif

int h5par_write_rows_f32(Comm *c, const char *file, int n, const char *const *paths, const int *ndims,
                         const long long (*dims)[COMM_MAX_DIMS], long long row0, long long rows,
                         const float *const *data, const char *const *attr_names,
                         const char *const *attr_values, int n_attrs, Error *e) {
    H5Quiet q = h5err_quiet();  // failures come back through e
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (fapl >= 0 && H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL) < 0) {
        H5Pclose(fapl);
        fapl = -1;
    }
    if (dxpl >= 0 && H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0) {
        H5Pclose(dxpl);
        dxpl = -1;
    }
    // A failure above is one rank's; h5rows_write reports it to all of them.
    int rc = h5rows_write(c, fapl, dxpl, file, n, paths, ndims, dims, row0, rows, data, attr_names, attr_values,
                          n_attrs, e);
    if (dxpl >= 0) H5Pclose(dxpl);
    if (fapl >= 0) H5Pclose(fapl);
    h5err_restore(q);
    return rc;
}
