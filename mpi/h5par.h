// h5par.h — the H5Access (io/h5rows.h) of the MPI job: parallel HDF5 over
// MPI_COMM_WORLD, one collective MPI-IO transfer per dataset.
#ifndef LD_H5PAR_H
#define LD_H5PAR_H
#include "io/h5rows.h"

H5Access h5par_access(void);
#endif
