// h5err.h — HDF5's error stack as text for our messages: the outermost and
// innermost descriptions, read right after the failing call (the next HDF5
// call clears the stack); and switching HDF5's own printing of the stack off
// for a call whose failures come back to us as an Error; whether a path
// exists. Shared by every
// HDF5 user (run log, row writers, dataset reader, score reader).
#ifndef LD_H5ERR_H
#define LD_H5ERR_H
#include <hdf5.h>
#include <stddef.h>

// HDF5's automatic stack printer as it was before h5err_quiet().
typedef struct {
    H5E_auto2_t fn;
    void *data;
} H5Quiet;

// Turns HDF5's printing off; h5err_restore(q) puts the previous printer back.
H5Quiet h5err_quiet(void);
void h5err_restore(H5Quiet q);

// buf gets "" (no stack), ": <outer>" or ": <outer> (<inner>)".
void h5err_suffix(char *buf, size_t n);

// 1 if every component of the absolute path exists in file (a group or
// dataset at the end), else 0: H5Lexists alone fails when a parent is missing.
int h5_path_exists(hid_t file, const char *path);
#endif
