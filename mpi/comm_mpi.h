// comm_mpi.h — the Comm interface (src/comm.h) over MPI_COMM_WORLD.
#ifndef LD_COMM_MPI_H
#define LD_COMM_MPI_H
#include "core/comm.h"

// After MPI_Init. Also counts the ranks sharing this node (MPI_COMM_TYPE_SHARED).
Comm comm_mpi_world(void);
void comm_mpi_free(Comm *c);
#endif
