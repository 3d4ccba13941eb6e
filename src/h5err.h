// h5err.h — HDF5's error stack as text for our messages: the outermost and
// innermost descriptions, read right after the failing call (the next HDF5
// call clears the stack). Shared by the run log and the row writer.
#ifndef LD_H5ERR_H
#define LD_H5ERR_H
#include <stddef.h>

// buf gets "" (no stack), ": <outer>" or ": <outer> (<inner>)".
void h5err_suffix(char *buf, size_t n);
#endif
