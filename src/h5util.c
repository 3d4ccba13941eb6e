// h5util.c — see h5util.h.
#include "h5util.h"

#include <string.h>

// HDF5 prints its own error stack by default; we report our own messages.
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

hid_t h5u_open(const char *path, Error *e) {
    quiet();
    hid_t f = -1;
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe);
        f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        if (f < 0) errorf(e, "%s: exists but is not an HDF5 file we can open for writing", path);
    } else {
        f = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
        if (f < 0) errorf(e, "%s: cannot create the HDF5 file", path);
    }
    return f;
}

int h5u_close(hid_t f, const char *path, Error *e) {
    if (H5Fclose(f) < 0) return errorf(e, "%s: closing the HDF5 file failed", path);
    return 0;
}

// Creates the groups leading to path; removes an existing object at path.
static int prepare(hid_t f, const char *path, Error *e) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(f, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) return errorf(e, "cannot create group %s", buf);
            H5Gclose(g);
        }
        *p = '/';
    }
    if (H5Lexists(f, path, H5P_DEFAULT) > 0 && H5Ldelete(f, path, H5P_DEFAULT) < 0)
        return errorf(e, "cannot replace %s", path);
    return 0;
}

static int write_any(hid_t f, const char *path, int rank, const hsize_t *dims, hid_t file_type, hid_t mem_type,
                     const void *data, Error *e) {
    if (prepare(f, path, e)) return -1;
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, path, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = d >= 0 ? H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    return w < 0 ? errorf(e, "writing %s failed", path) : 0;
}

int h5u_write_f64(hid_t f, const char *path, int rank, const hsize_t *dims, const double *data, Error *e) {
    return write_any(f, path, rank, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, e);
}

int h5u_write_i64(hid_t f, const char *path, int rank, const hsize_t *dims, const int64_t *data, Error *e) {
    return write_any(f, path, rank, dims, H5T_STD_I64LE, H5T_NATIVE_INT64, data, e);
}

int h5u_write_strings(hid_t f, const char *path, int n, const char *const *s, Error *e) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hsize_t dims[1] = {(hsize_t)n};
    int rc = write_any(f, path, 1, dims, t, t, s, e);
    H5Tclose(t);
    return rc;
}

static int attr_any(hid_t f, const char *obj, const char *name, hid_t type, const void *v, Error *e) {
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0) H5Adelete_by_name(f, obj, name, H5P_DEFAULT);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = a >= 0 ? H5Awrite(a, type, v) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return w < 0 ? errorf(e, "writing attribute %s of %s failed", name, obj) : 0;
}

int h5u_attr_str(hid_t f, const char *obj, const char *name, const char *value, Error *e) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_any(f, obj, name, t, value, e);
    H5Tclose(t);
    return rc;
}

int h5u_attr_f64(hid_t f, const char *obj, const char *name, double value, Error *e) {
    return attr_any(f, obj, name, H5T_NATIVE_DOUBLE, &value, e);
}

int h5u_attr_i64(hid_t f, const char *obj, const char *name, int64_t value, Error *e) {
    return attr_any(f, obj, name, H5T_NATIVE_INT64, &value, e);
}

int h5u_read_f64(const char *file, const char *path, double *out, size_t n, Error *e) {
    quiet();
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return errorf(e, "%s: cannot open (HDF5)", file);
    int rc = 0;
    hid_t d = H5Lexists(f, path, H5P_DEFAULT) > 0 ? H5Dopen2(f, path, H5P_DEFAULT) : -1;
    if (d < 0) {
        rc = errorf(e, "%s: no dataset %s", file, path);
    } else {
        hid_t sp = H5Dget_space(d);
        hssize_t cnt = H5Sget_simple_extent_npoints(sp);
        if (cnt != (hssize_t)n)
            rc = errorf(e, "%s: %s has %lld values, expected %zu", file, path, (long long)cnt, n);
        else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            rc = errorf(e, "%s: reading %s failed", file, path);
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return rc;
}
