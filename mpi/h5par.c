// h5par.c — see h5par.h. The steps (argument check across ranks, collective
// open and dataset creation, each rank's hyperslab or empty selection, one
// H5Dwrite per dataset, agreement on failure) are src/io/h5rows.c's; this file
// supplies what makes them parallel: the MPI-IO file driver on
// MPI_COMM_WORLD and collective transfers.
#include "h5par.h"

#include <hdf5.h>
#include <mpi.h>

#include "io/h5rows.h"

#ifndef H5_HAVE_PARALLEL
#error "h5par.c needs a parallel HDF5 (Debian: libhdf5-openmpi-dev, pkg-config hdf5-openmpi)"
#endif

static void mpio_props(const H5Access *a, hid_t *fapl, hid_t *dxpl) {
    (void)a;
    *fapl = H5Pcreate(H5P_FILE_ACCESS);
    *dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (*fapl >= 0 && H5Pset_fapl_mpio(*fapl, MPI_COMM_WORLD, MPI_INFO_NULL) < 0) {
        H5Pclose(*fapl);
        *fapl = -1;
    }
    if (*dxpl >= 0 && H5Pset_dxpl_mpio(*dxpl, H5FD_MPIO_COLLECTIVE) < 0) {
        H5Pclose(*dxpl);
        *dxpl = -1;
    }
}

H5Access h5par_access(void) { return (H5Access){.props = mpio_props, .impl = NULL}; }
