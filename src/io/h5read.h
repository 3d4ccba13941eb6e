// h5read.h — opening a dataset of a user's input file with its type, rank and
// sizes checked, so every reader (the HDF5 dataset of real models, the inputs
// of `forward`) refuses a bad file with the same clear message naming the
// file, the dataset, its shape and what was expected.
#ifndef LD_H5READ_H
#define LD_H5READ_H
#include <hdf5.h>
#include <stddef.h>

#include "core/common.h"

// buf gets "[d0,d1,...]".
void h5_shape_str(char *buf, size_t cap, const hsize_t *dims, int rank);

// Opens dataset `name` of file f (`path` names the file in errors). It must
// exist, be floating point (or integer where allow_int), have rank want_rank
// and sizes 1..INT_MAX (the first may be 0 where allow_empty: the caller judges
// an empty file). dims gets its sizes. -1 + e otherwise (nothing left open).
hid_t h5_open_float(hid_t f, const char *path, const char *name, int want_rank, int allow_int, int allow_empty,
                    const char *meaning, hsize_t *dims, Error *e);
#endif
