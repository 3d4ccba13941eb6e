// h5util.h — one-shot writes into a run file (serial HDF5, called on rank 0):
// whole datasets at a path (groups created, an existing dataset replaced) and
// attributes on any object. The stages that write results once — score, plan,
// eval — use these; the per-step series use h5log.h.
#ifndef LD_H5UTIL_H
#define LD_H5UTIL_H
#include <hdf5.h>
#include <stdint.h>

#include "common.h"

// Opens path read-write, creating it if missing. Returns <0 + e on failure.
hid_t h5u_open(const char *path, Error *e);
int h5u_close(hid_t f, const char *path, Error *e);

// Writes data (float64 / int64) of the given shape at `path` ("/prune/scores/output_loss").
int h5u_write_f64(hid_t f, const char *path, int rank, const hsize_t *dims, const double *data, Error *e);
int h5u_write_i64(hid_t f, const char *path, int rank, const hsize_t *dims, const int64_t *data, Error *e);
// A string dataset [n] (variable-length UTF-8).
int h5u_write_strings(hid_t f, const char *path, int n, const char *const *s, Error *e);

// Attributes on the object at obj ("/" or a dataset/group path); replaced if present.
int h5u_attr_str(hid_t f, const char *obj, const char *name, const char *value, Error *e);
int h5u_attr_f64(hid_t f, const char *obj, const char *name, double value, Error *e);
int h5u_attr_i64(hid_t f, const char *obj, const char *name, int64_t value, Error *e);

// Reads a whole float64 dataset of n values (error if the size differs or it is missing).
int h5u_read_f64(const char *file, const char *path, double *out, size_t n, Error *e);
#endif
