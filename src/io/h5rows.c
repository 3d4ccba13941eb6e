// h5rows.c — see h5rows.h.
#include "io/h5rows.h"

#include "io/h5err.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

// The arguments of one call, passed around whole.
typedef struct {
    const char *file;
    int n;
    const char *const *paths;
    const int *ndims;
    const long long (*dims)[H5ROWS_MAX_DIMS];
    long long row0, rows;
    const float *const *data;
    const char *const *attr_names, *const *attr_values;
    int n_attrs;
} Req;

// ---- errors ----------------------------------------------------------------

// "<file>: dataset <path>: <what>: <outer> (<inner>)" from HDF5's error stack,
// which the next HDF5 call clears: call it right after the failing one.
__attribute__((format(printf, 4, 5))) static int h5fail(Error *e, const char *file, const char *path,
                                                         const char *fmt, ...) {
    char stack[400], what[512];
    h5err_suffix(stack, sizeof stack);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *sep = path ? ": dataset " : "", *p = path ? path : "";
    return errorf(e, "%s%s%s: %s%s", file, sep, p, what, stack);
}

// ---- arguments, checked locally and then against the other ranks -----------

static int valid_abs_path(const char *path) {
    if (!path || path[0] != '/' || path[1] == '\0') return 0;
    size_t n = strlen(path);
    return path[n - 1] != '/' && !strstr(path, "//");
}

// Elements per row of dataset k (0 if a trailing dimension is 0); -1 on overflow.
static long long row_elems(const Req *r, int k) {
    long long m = 1;
    for (int i = 1; i < r->ndims[k]; i++) {
        long long d = r->dims[k][i];
        if (d > 0 && m > LLONG_MAX / d) return -1;
        m *= d;
    }
    return m;
}

static int check_args(const Req *r, Error *e) {
    const char *file = r->file && *r->file ? r->file : "(no file)";
    if (!r->file || !*r->file) return errorf(e, "write_rows_f32: no file name");
    if (r->n < 0 || r->n_attrs < 0) return errorf(e, "%s: write_rows_f32: negative count", file);
    if (r->n > 0 && (!r->paths || !r->ndims || !r->dims || !r->data))
        return errorf(e, "%s: write_rows_f32: paths, ndims, dims and data are required", file);
    if (r->n_attrs > 0 && (!r->attr_names || !r->attr_values))
        return errorf(e, "%s: write_rows_f32: %d attributes but no names or values", file, r->n_attrs);
    for (int a = 0; a < r->n_attrs; a++)
        if (!r->attr_names[a] || !*r->attr_names[a] || !r->attr_values[a])
            return errorf(e, "%s: write_rows_f32: attribute %d has no name or value", file, a);
    if (r->row0 < 0 || r->rows < 0) return errorf(e, "%s: write_rows_f32: negative rows", file);
    for (int k = 0; k < r->n; k++) {
        const char *p = r->paths[k] ? r->paths[k] : "(null)";
        if (!valid_abs_path(r->paths[k])) return errorf(e, "%s: dataset %s: not an absolute path", file, p);
        if (r->ndims[k] < 1 || r->ndims[k] > H5ROWS_MAX_DIMS)
            return errorf(e, "%s: dataset %s: %d dimensions (1..%d)", file, p, r->ndims[k], H5ROWS_MAX_DIMS);
        for (int i = 0; i < r->ndims[k]; i++)
            if (r->dims[k][i] < 0) return errorf(e, "%s: dataset %s: negative dimension", file, p);
        if (r->dims[k][0] != r->dims[0][0])
            return errorf(e, "%s: dataset %s: %lld rows, but %s has %lld (the ranks' rows must tile both)", file,
                          p, r->dims[k][0], r->paths[0], r->dims[0][0]);
        if (r->row0 > r->dims[k][0] - r->rows)
            return errorf(e, "%s: dataset %s: rows [%lld, %lld) past its %lld rows", file, p, r->row0,
                          r->row0 + r->rows, r->dims[k][0]);
        long long m = row_elems(r, k);
        if (m < 0 || (m > 0 && r->dims[k][0] > LLONG_MAX / m))
            return errorf(e, "%s: dataset %s: too many elements", file, p);
        if (m * r->rows > 0 && !r->data[k]) return errorf(e, "%s: dataset %s: data is NULL", file, p);
    }
    return 0;
}

static uint32_t fnv1a(uint32_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

static uint32_t fnv1a_str(uint32_t h, const char *s) { return fnv1a(h, s, strlen(s) + 1); }

// A hash of everything that must be the same on every rank (all but the rows
// and data), 31 bits so that it can be negated.
static int args_hash(const Req *r) {
    uint32_t h = fnv1a_str(2166136261u, r->file);
    h = fnv1a(h, &r->n, sizeof r->n);
    h = fnv1a(h, &r->n_attrs, sizeof r->n_attrs);
    for (int k = 0; k < r->n; k++) {
        h = fnv1a_str(h, r->paths[k]);
        h = fnv1a(h, &r->ndims[k], sizeof r->ndims[k]);
        h = fnv1a(h, r->dims[k], (size_t)r->ndims[k] * sizeof r->dims[k][0]);
    }
    for (int a = 0; a < r->n_attrs; a++) h = fnv1a_str(fnv1a_str(h, r->attr_names[a]), r->attr_values[a]);
    return (int)(h & 0x7fffffffu);
}

// Every rank learns whether any rank failed: then all get the message of the
// lowest failing rank and return -1 together (comm_agree_share). hash (0 after
// the first call) catches ranks that passed different arguments.
static int agree(Comm *c, int failed, int hash, const char *file, Error *e) {
    if (comm_agree_share(c, failed, e)) return -1;
    int v[2] = {hash, -hash};
    c->max_i32(c, v, 2);
    if (v[0] != -v[1])
        return errorf(e, "%s: write_rows_f32: the ranks passed different datasets, shapes or attributes", file);
    return 0;
}

// ---- one dataset -------------------------------------------------------------

// The groups above path must be groups where they exist (the missing ones are
// created with the dataset); an object at path itself is removed.
static int prepare_path(hid_t f, const char *file, const char *path, Error *e) {
    size_t n = strlen(path);
    char *p = xmalloc(n + 1);
    memcpy(p, path, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char ch = p[i];
        p[i] = '\0';
        htri_t there = H5Lexists(f, p, H5P_DEFAULT);
        H5O_info_t info;
        if (there < 0) {
            rc = h5fail(e, file, path, "cannot look up %s", p);
        } else if (there == 0) {
            break;
        } else if (ch == '/') {
            if (H5Oget_info_by_name2(f, p, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
                rc = h5fail(e, file, path, "cannot inspect %s", p);
            else if (info.type != H5O_TYPE_GROUP)
                rc = errorf(e, "%s: dataset %s: %s exists and is not a group", file, path, p);
        } else if (H5Ldelete(f, p, H5P_DEFAULT) < 0) {
            rc = h5fail(e, file, path, "cannot replace the existing object");
        }
        p[i] = ch;
    }
    free(p);
    return rc;
}

static int put_attr(hid_t d, const char *file, const char *path, const char *name, const char *value, Error *e) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(d, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, t, &value) < 0) rc = h5fail(e, file, path, "cannot write attribute %s", name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

// A dataset being written: its handle and this rank's file and memory selections.
typedef struct {
    hid_t d, fs, ms;
} Target;

static void target_close(Target *t) {
    if (t->ms >= 0) H5Sclose(t->ms);
    if (t->fs >= 0) H5Sclose(t->fs);
    if (t->d >= 0) H5Dclose(t->d);
    *t = (Target){-1, -1, -1};
}

// Creates dataset k with its attributes and selects this rank's rows (none
// when it has none) in the file and in its contiguous memory block.
static int target_open(hid_t f, const Req *r, int k, Target *t, Error *e) {
    const char *path = r->paths[k];
    *t = (Target){-1, -1, -1};
    if (prepare_path(f, r->file, path, e)) return -1;
    hsize_t hd[H5ROWS_MAX_DIMS], start[H5ROWS_MAX_DIMS] = {0}, count[H5ROWS_MAX_DIMS];
    for (int i = 0; i < r->ndims[k]; i++) hd[i] = count[i] = (hsize_t)r->dims[k][i];
    start[0] = (hsize_t)r->row0, count[0] = (hsize_t)r->rows;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    t->fs = H5Screate_simple(r->ndims[k], hd, NULL);
    t->d = H5Dcreate2(f, path, H5T_IEEE_F32LE, t->fs, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = t->d < 0 ? h5fail(e, r->file, path, "cannot create the dataset") : 0;
    H5Pclose(lcpl);
    for (int a = 0; a < r->n_attrs && !rc; a++)
        rc = put_attr(t->d, r->file, path, r->attr_names[a], r->attr_values[a], e);
    if (!rc) {
        long long m = row_elems(r, k) * r->rows;
        hsize_t mem = m > 0 ? (hsize_t)m : 1;
        t->ms = H5Screate_simple(1, &mem, NULL);
        herr_t s = m > 0 ? H5Sselect_hyperslab(t->fs, H5S_SELECT_SET, start, NULL, count, NULL)
                         : (H5Sselect_none(t->fs) < 0 ? -1 : H5Sselect_none(t->ms));
        if (t->ms < 0 || s < 0)
            rc = h5fail(e, r->file, path, "cannot select rows [%lld, %lld)", r->row0, r->row0 + r->rows);
    }
    if (rc) target_close(t);
    return rc;
}

// The one transfer of dataset k (collective when dxpl says so): every rank
// takes part, those without rows with an empty selection.
static int target_write(const Target *t, hid_t dxpl, const Req *r, int k, Error *e) {
    float none = 0;
    const float *buf = row_elems(r, k) * r->rows > 0 ? r->data[k] : &none;
    if (H5Dwrite(t->d, H5T_NATIVE_FLOAT, t->ms, t->fs, dxpl, buf) < 0)
        return h5fail(e, r->file, r->paths[k], "cannot write rows [%lld, %lld)", r->row0, r->row0 + r->rows);
    return 0;
}

// ---- the call ----------------------------------------------------------------

static int write_all(Comm *c, hid_t fapl, hid_t dxpl, const Req *r, Error *e) {
    int failed = check_args(r, e);
    if (agree(c, failed, failed ? 0 : args_hash(r), r->file ? r->file : "(no file)", e)) return -1;
    if (r->n == 0) return 0;
    // Every row must be written exactly once for the datasets to be complete;
    // a sum catches the usual slips (a rank missing, a wrong split).
    double total = (double)r->rows;
    c->sum_f64(c, &total, 1);
    if (total != (double)r->dims[0][0])
        return errorf(e, "%s: dataset %s: the ranks' rows add up to %.0f, not its %lld rows", r->file, r->paths[0],
                      total, r->dims[0][0]);

    hid_t f = fapl >= 0 && dxpl >= 0 ? H5Fopen(r->file, H5F_ACC_RDWR, fapl) : -1;
    if (fapl < 0 || dxpl < 0)
        failed = errorf(e, "%s: cannot set up HDF5 file access for writing", r->file);
    else if (f < 0)
        failed = h5fail(e, r->file, NULL, "cannot open for writing (it must exist and be an HDF5 file)");
    if (agree(c, failed, 0, r->file, e)) {
        if (f >= 0) H5Fclose(f);
        return -1;
    }
    int rc = 0;
    for (int k = 0; k < r->n && !rc; k++) {
        Target t;
        rc = agree(c, target_open(f, r, k, &t, e), 0, r->file, e);
        if (!rc) rc = agree(c, target_write(&t, dxpl, r, k, e), 0, r->file, e);
        target_close(&t);
    }
    failed = H5Fclose(f) < 0 ? h5fail(e, r->file, NULL, "closing the file failed") : 0;
    int closed = agree(c, failed, 0, r->file, e);
    return rc ? rc : closed;
}

int h5rows_write(Comm *c, const H5Access *a, const char *file, int n, const char *const *paths, const int *ndims,
                 const long long (*dims)[H5ROWS_MAX_DIMS], long long row0, long long rows, const float *const *data,
                 const char *const *attr_names, const char *const *attr_values, int n_attrs, Error *e) {
    Req r = {file, n, paths, ndims, dims, row0, rows, data, attr_names, attr_values, n_attrs};
    H5Quiet q = h5err_quiet();  // failures come back through e
    hid_t fapl = -1, dxpl = -1;
    a->props(a, &fapl, &dxpl);  // a failure here is one rank's; write_all reports it to all of them
    int rc = write_all(c, fapl, dxpl, &r, e);
    if (dxpl >= 0) H5Pclose(dxpl);
    if (fapl >= 0) H5Pclose(fapl);
    h5err_restore(q);
    return rc;
}

static void serial_props(const H5Access *a, hid_t *fapl, hid_t *dxpl) {
    (void)a;
    *fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (*fapl >= 0 && H5Pset_file_locking(*fapl, 0, 1) < 0) {
        H5Pclose(*fapl);
        *fapl = -1;
    }
    *dxpl = H5Pcreate(H5P_DATASET_XFER);
}

H5Access h5rows_serial_access(void) { return (H5Access){.props = serial_props, .impl = NULL}; }
