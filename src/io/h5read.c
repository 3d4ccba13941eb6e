// h5read.c — see h5read.h.
#include "io/h5read.h"

#include <limits.h>
#include <stdio.h>

#include "io/h5err.h"

void h5_shape_str(char *buf, size_t cap, const hsize_t *dims, int rank) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

hid_t h5_open_float(hid_t f, const char *path, const char *name, int want_rank, int allow_int, int allow_empty,
                    const char *meaning, hsize_t *dims, Error *e) {
    // H5Dopen's failure does not say which part of the path is missing
    if (!h5_path_exists(f, name)) {
        errorf(e, "%s: no dataset %s (expected %s)", path, name, meaning);
        return -1;
    }
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        errorf(e, "%s: %s is not a dataset (expected %s)", path, name, meaning);
        return -1;
    }
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    H5T_class_t cls = H5Tget_class(t);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t d[H5S_MAX_RANK];
    if (rank > 0) H5Sget_simple_extent_dims(sp, d, NULL);
    H5Tclose(t), H5Sclose(sp);
    char shape[200];
    h5_shape_str(shape, sizeof shape, d, rank > 0 ? rank : 0);
    if (cls != H5T_FLOAT && !(allow_int && cls == H5T_INTEGER)) {
        errorf(e, "%s: %s %s is not floating point (expected float32 or float64: %s)", path, name, shape, meaning);
    } else if (rank != want_rank) {
        errorf(e, "%s: %s has shape %s, rank %d; expected rank %d: %s", path, name, shape, rank, want_rank, meaning);
    } else {
        int good = 1;
        for (int i = 0; i < rank; i++) {
            if (d[i] > INT_MAX || (d[i] == 0 && !(i == 0 && allow_empty))) good = 0;
            dims[i] = d[i];
        }
        if (good) return ds;
        errorf(e, "%s: %s has shape %s; every size must be 1..%d: %s", path, name, shape, INT_MAX, meaning);
    }
    H5Dclose(ds);
    return -1;
}
