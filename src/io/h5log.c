// h5log.c — see h5log.h.
#include "io/h5log.h"

#include "io/h5err.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define H5LOG_MAX_DIMS 8
#define CHUNK_MAX_BYTES (1 << 20)
#define DEFAULT_ROWS 1024
#define MIN_CHUNK_ROWS 64
#define CHUNK_INDEX_K 256  // 512 chunks per index node: >= 32768 rows before a split

typedef struct {
    char *name;
    hid_t dset;
    int width;     // 0: 1-D series; else columns of a 2-D series
    double *pend;  // queued rows, (width ? width : 1) values each
    long n_pend, cap_pend;
} Series;

struct H5Log {
    char *path;
    hid_t file;
    long rows;
    long rows_hint;
    Series *s;
    int n_series, cap_series;
};

// ---- HDF5 error reporting --------------------------------------------------
// HDF5 prints its error stack by default; we turn that off for the duration of
// each call and put the stack's outermost and innermost messages into Error.

// errorf with the HDF5 error stack appended: "<path>: <what>: <outer> (<inner>)".
static int h5fail(Error *e, const char *path, const char *what) {
    char stack[400];
    h5err_suffix(stack, sizeof stack);
    return errorf(e, "%s: %s%s", path, what, stack);
}

// ---- small helpers ---------------------------------------------------------

static hid_t str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

// Variable-length UTF-8 string attribute(s): n == 0 scalar, else an array of n.
static int put_str_attr(hid_t obj, const char *name, const char *const *values, int n) {
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return -1;
    hid_t t = str_type();
    hsize_t dim = (hsize_t)n;
    hid_t sp = n ? H5Screate_simple(1, &dim, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, t, values) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

static int put_num_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *value) {
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return -1;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, mtype, value) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static int put_units_doc(hid_t obj, const char *units, const char *doc) {
    const char *u = units ? units : "", *d = doc ? doc : "";
    return put_str_attr(obj, "units", &u, 0) || put_str_attr(obj, "description", &d, 0) ? -1 : 0;
}

static int valid_abs_path(const char *path) {
    if (!path || path[0] != '/' || path[1] == '\0') return 0;
    size_t n = strlen(path);
    return path[n - 1] != '/' && !strstr(path, "//");
}

static hid_t make_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    // No file lock: HDF5 would otherwise refuse every reader (h5py, h5dump)
    // for as long as the run holds the file open.
    H5Pset_file_locking(fapl, 0, 1);
    return fapl;
}

// The chunk cache is off for series: rows then go straight to their
// (already allocated) chunk on write, and a flush only rewrites the small
// object headers that hold the dataset sizes.
static hid_t series_dapl(void) {
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT);
    return dapl;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

// fsync the directory holding path so a rename in it is durable.
static void fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrdup(path) : xstrdup(".");
    if (slash) dir[slash == path ? 1 : (size_t)(slash - path)] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);  // some filesystems cannot; the rename already happened
        close(fd);
    }
    free(dir);
}

static void iso_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else snprintf(buf, n, "unknown");
}

// ---- open / close ----------------------------------------------------------

static int write_root_attrs(hid_t file, const char *config_text, int created) {
    hid_t root = H5Oopen(file, "/", H5P_DEFAULT);
    if (root < 0) return -1;
    int rc = 0;
    if (created) {
        char when[32];
        iso_now(when, sizeof when);
        const char *prog = "laptop-diff", *w = when;
        int version = 1;
        rc |= put_str_attr(root, "program", &prog, 0);
        rc |= put_str_attr(root, "created", &w, 0);
        rc |= put_num_attr(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, &version);
    }
    if (config_text) rc |= put_str_attr(root, "config", &config_text, 0);
    H5Oclose(root);
    return rc ? -1 : 0;
}

static int ensure_train_group(hid_t file) {
    if (H5Lexists(file, "/train", H5P_DEFAULT) > 0) return 0;
    hid_t g = H5Gcreate2(file, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    const char *d = "one row per logged step; series are aligned by row (/train/step names "
                    "the step). A writer killed mid-flush may leave some series one flush "
                    "longer than others: use the shortest length.";
    int rc = put_str_attr(g, "description", &d, 0);
    H5Gclose(g);
    return rc;
}

// HDF5 1.10 cannot close a file whose metadata it failed to write (a full disk): H5Fclose
// fails and leaves the file half torn down, and the library's shutdown (at MPI finalization)
// then crashes on it. Such a file is left open and the process told to end without
// shutting HDF5 down (h5log_unclosable). Process-wide, as HDF5's own state is.
static int unclosable = 0;

int h5log_unclosable(void) { return unclosable; }

// Flush, then close only if the flush worked. -1 when the file could not be closed.
static int close_file(H5Log *l) {
    if (l->file < 0) return 0;
    int rc = 0;
    H5Quiet q = h5err_quiet();
    if (H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(l->file) < 0) unclosable = 1, rc = -1;
    h5err_restore(q);
    l->file = H5I_INVALID_HID;
    return rc;
}

static H5Log *log_new(const char *path) {
    H5Log *l = xcalloc(1, sizeof *l);
    l->path = xstrdup(path);
    l->file = H5I_INVALID_HID;
    return l;
}

static void log_free(H5Log *l) {
    for (int i = 0; i < l->n_series; i++) {
        if (l->s[i].dset >= 0) H5Dclose(l->s[i].dset);
        free(l->s[i].name);
        free(l->s[i].pend);
    }
    free(l->s);
    close_file(l);
    free(l->path);
    free(l);
}

// A complete new file beside path, then renamed over it.
static int create_file(H5Log *l, const char *config_text, Error *e) {
    size_t tn = strlen(l->path) + 32;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.tmp.%ld", l->path, (long)getpid());
    hid_t fapl = make_fapl(), fcpl = H5Pcreate(H5P_FILE_CREATE);
    // Wide chunk indexes (v1 B-tree nodes of 2 x CHUNK_INDEX_K chunks): a
    // series' index does not split before it has that many chunks. A split
    // rewrites the root to point at new nodes, and a writer killed before those
    // reach the disk leaves the whole series unreadable, not just its last rows.
    H5Pset_istore_k(fcpl, CHUNK_INDEX_K);
    l->file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    int rc = 0;
    if (l->file < 0) rc = h5fail(e, l->path, "cannot create the run file");
    else if (write_root_attrs(l->file, config_text, 1) || ensure_train_group(l->file))
        rc = h5fail(e, l->path, "cannot write the root attributes");
    else if (H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0)
        rc = h5fail(e, l->path, "cannot flush the new run file");
    else if (fsync_path(tmp) != 0)
        rc = errorf(e, "%s: cannot fsync %s: %s", l->path, tmp, strerror(errno));
    else if (rename(tmp, l->path) != 0)
        rc = errorf(e, "%s: cannot rename %s over it: %s", l->path, tmp, strerror(errno));
    if (rc) {
        close_file(l);
        unlink(tmp);
    } else {
        fsync_parent(l->path);
    }
    free(tmp);
    return rc;
}

typedef struct {
    char **names;
    int n, cap;
} NameList;

static herr_t collect_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g, (void)info;
    NameList *nl = data;
    if (nl->n == nl->cap) {
        nl->cap = nl->cap ? 2 * nl->cap : 16;
        nl->names = xrealloc(nl->names, (size_t)nl->cap * sizeof *nl->names);
    }
    nl->names[nl->n++] = xstrdup(name);
    return 0;
}

static int list_group(hid_t file, const char *group, NameList *nl) {
    memset(nl, 0, sizeof *nl);
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    if (g < 0) return -1;
    hsize_t idx = 0;
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_cb, nl);
    H5Gclose(g);
    return rc < 0 ? -1 : 0;
}

static void names_free(NameList *nl) {
    for (int i = 0; i < nl->n; i++) free(nl->names[i]);
    free(nl->names);
}

// Parses a whole decimal long (no sign, no junk).
static int parse_step(const char *s, long *out) {
    if (!*s) return -1;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (LONG_MAX - 9) / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

// Reads rows [0, rows) of a series (width columns; 1 for 1-D) into buf.
static int read_rows(hid_t d, hsize_t rows, hsize_t width, int rank, double *buf) {
    if (rows == 0) return 0;
    hsize_t start[2] = {0, 0}, count[2] = {rows, width};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    herr_t r = fs < 0 || ms < 0 ? -1 : H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (r >= 0) r = H5Dread(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, buf);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return r < 0 ? -1 : 0;
}

// Makes /train a table again after whatever ended the last writer: every
// series is cut to their common length and must read in full (so damage is
// an error here, never silently extended); trailing rows whose step is NaN
// (a row whose size reached the disk but whose chunk did not) go; then rows
// whose step is > keep go (the series are written in step order).
static int trim_train(H5Log *l, long keep, Error *e) {
    NameList nl;
    if (list_group(l->file, "/train", &nl)) return h5fail(e, l->path, "cannot list /train");
    int rc = 0, n = nl.n, step_i = -1;
    hid_t *d = xcalloc((size_t)n + 1, sizeof *d);
    int *rank = xcalloc((size_t)n + 1, sizeof *rank);
    hsize_t *width = xcalloc((size_t)n + 1, sizeof *width), rows = (hsize_t)-1;
    for (int i = 0; i < n && !rc; i++) {
        char p[512];
        snprintf(p, sizeof p, "/train/%s", nl.names[i]);
        hid_t dapl = series_dapl();
        d[i] = H5Dopen2(l->file, p, dapl);
        H5Pclose(dapl);
        hsize_t dims[H5LOG_MAX_DIMS] = {0, 1}, maxd[H5LOG_MAX_DIMS];
        hid_t sp = d[i] >= 0 ? H5Dget_space(d[i]) : -1;
        rank[i] = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (rank[i] < 1 || rank[i] > 2 || H5Sget_simple_extent_dims(sp, dims, maxd) < 0 ||
            maxd[0] != H5S_UNLIMITED)
            rc = errorf(e, "%s: %s is not an extendible 1-D or 2-D series", l->path, p);
        if (sp >= 0) H5Sclose(sp);
        width[i] = rank[i] == 2 ? dims[1] : 1;
        if (dims[0] < rows) rows = dims[0];
        if (!strcmp(nl.names[i], "step") && rank[i] == 1) step_i = i;
    }
    if (rows == (hsize_t)-1) rows = 0;
    double *buf = NULL, *step = NULL;
    for (int i = 0; i < n && !rc; i++) {
        buf = xrealloc(buf, (size_t)(rows * width[i] + 1) * sizeof *buf);
        if (read_rows(d[i], rows, width[i], rank[i], buf)) {
            char what[400];
            snprintf(what, sizeof what, "/train/%s is damaged (cannot read its %llu rows)", nl.names[i],
                     (unsigned long long)rows);
            rc = h5fail(e, l->path, what);
        } else if (i == step_i) {
            step = buf;
            buf = NULL;
        }
    }
    if (!rc && step) {
        while (rows > 0 && isnan(step[rows - 1])) rows--;
        if (keep != H5LOG_ALL_ROWS) {
            hsize_t k = 0;
            while (k < rows && step[k] <= (double)keep) k++;
            rows = k;
        }
    } else if (!rc && keep != H5LOG_ALL_ROWS) {
        rows = 0;  // without a step series rows cannot be matched to steps
    }
    for (int i = 0; i < n && !rc; i++) {
        hsize_t dims[2];
        hid_t sp = H5Dget_space(d[i]);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        if (dims[0] == rows) continue;
        dims[0] = rows;
        if (H5Dset_extent(d[i], dims) < 0) rc = h5fail(e, l->path, "cannot trim the /train series");
    }
    for (int i = 0; i < n; i++)
        if (d[i] > 0) H5Dclose(d[i]);
    free(buf), free(step), free(d), free(rank), free(width);
    names_free(&nl);
    if (!rc) l->rows = (long)rows;
    return rc;
}

// Drops /activations/<step> snapshots newer than the step we resume from.
static int prune_activations(H5Log *l, long keep, Error *e) {
    if (keep == H5LOG_ALL_ROWS || H5Lexists(l->file, "/activations", H5P_DEFAULT) <= 0) return 0;
    NameList nl;
    if (list_group(l->file, "/activations", &nl)) return h5fail(e, l->path, "cannot list /activations");
    int rc = 0;
    for (int i = 0; i < nl.n && !rc; i++) {
        long step;
        char p[512];
        snprintf(p, sizeof p, "/activations/%s", nl.names[i]);
        if (parse_step(nl.names[i], &step) == 0 && step > keep && H5Ldelete(l->file, p, H5P_DEFAULT) < 0)
            rc = h5fail(e, l->path, "cannot remove a snapshot newer than the resumed step");
    }
    names_free(&nl);
    return rc;
}

static int open_existing(H5Log *l, const char *config_text, long keep, Error *e) {
    hid_t fapl = make_fapl();
    l->file = H5Fopen(l->path, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (l->file < 0) return h5fail(e, l->path, "cannot open the run file for writing");
    // A writer killed mid-flush can leave chunks that are written and
    // referenced but lie past the end-of-allocation the superblock recorded.
    // Claiming up to the physical end makes them readable again and keeps
    // new allocations from landing on top of them.
    if (H5Fincrement_filesize(l->file, 0) < 0) return h5fail(e, l->path, "cannot claim the file's end");
    if (write_root_attrs(l->file, config_text, 0) || ensure_train_group(l->file))
        return h5fail(e, l->path, "cannot update the root attributes");
    if (trim_train(l, keep, e) || prune_activations(l, keep, e)) return -1;
    if (H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0) return h5fail(e, l->path, "cannot flush");
    return 0;
}

H5Log *h5log_open(const char *path, const char *config_text, H5LogMode mode, long keep_until_step,
                  Error *e) {
    if (!path || !*path) {
        errorf(e, "h5log_open: empty path");
        return NULL;
    }
    H5Log *l = log_new(path);
    H5Quiet q = h5err_quiet();
    int rc;
    struct stat st;
    if (mode == H5LOG_CREATE || (stat(path, &st) != 0 && errno == ENOENT))
        rc = create_file(l, config_text, e);
    else
        rc = open_existing(l, config_text, keep_until_step, e);
    h5err_restore(q);
    if (rc) {
        log_free(l);
        return NULL;
    }
    return l;
}

static int flush_rows(H5Log *l, Error *e);

int h5log_close(H5Log *l, Error *e) {
    if (!l) return 0;
    H5Quiet q = h5err_quiet();
    int rc = flush_rows(l, e);
    for (int i = 0; i < l->n_series; i++) {
        if (l->s[i].dset >= 0 && H5Dclose(l->s[i].dset) < 0 && !rc) rc = h5fail(e, l->path, "cannot close a series");
        l->s[i].dset = H5I_INVALID_HID;
    }
    if (close_file(l) && !rc) rc = h5fail(e, l->path, "cannot close the run file");
    h5err_restore(q);
    if (!rc && fsync_path(l->path) != 0)
        rc = errorf(e, "%s: cannot fsync: %s", l->path, strerror(errno));
    log_free(l);
    return rc;
}

const char *h5log_path(const H5Log *l) { return l->path; }
long h5log_rows(const H5Log *l) { return l->rows; }
void h5log_set_rows_hint(H5Log *l, long rows) { l->rows_hint = rows > 0 ? rows : 0; }

// ---- series ----------------------------------------------------------------

static int valid_name(const char *name) {
    if (!name || !*name || strlen(name) > 200) return 0;
    for (const char *c = name; *c; c++)
        if (*c == '/' || (*c == '.' && c == name)) return 0;
    return 1;
}

static int add_series(H5Log *l, const char *name, int width, const char *units, const char *doc,
                      const char *const *cols, Error *e) {
    if (!valid_name(name)) return errorf(e, "%s: bad series name '%s'", l->path, name ? name : "(null)");
    if (width < 0 || (width > 0 && (size_t)width * 8 > CHUNK_MAX_BYTES))
        return errorf(e, "%s: series %s: bad width %d", l->path, name, width);
    for (int i = 0; i < l->n_series; i++)
        if (!strcmp(l->s[i].name, name)) return errorf(e, "%s: series %s registered twice", l->path, name);
    char p[256];
    snprintf(p, sizeof p, "/train/%s", name);
    int rank = width ? 2 : 1;
    hsize_t w = (hsize_t)(width ? width : 1);
    hid_t dapl = series_dapl(), d = H5I_INVALID_HID;
    int rc = 0;
    if (H5Lexists(l->file, p, H5P_DEFAULT) > 0) {
        d = H5Dopen2(l->file, p, dapl);
        hsize_t dims[2] = {0, 0}, maxd[2] = {0, 0};
        hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
        int nd = sp >= 0 ? H5Sget_simple_extent_dims(sp, dims, maxd) : -1;
        if (sp >= 0) H5Sclose(sp);
        if (d < 0)
            rc = h5fail(e, l->path, "cannot open an existing series");
        else if (nd != rank || maxd[0] != H5S_UNLIMITED || (rank == 2 && dims[1] != w))
            rc = errorf(e, "%s: %s exists with another shape (rank %d, not an extendible [rows%s] series)",
                        l->path, p, nd, width ? ", width" : "");
        else if (dims[0] != (hsize_t)l->rows) {
            dims[0] = (hsize_t)l->rows;  // a series added later: NaN up to now
            if (H5Dset_extent(d, dims) < 0) rc = h5fail(e, l->path, "cannot size a series");
        }
    } else {
        long hint = l->rows_hint ? l->rows_hint : DEFAULT_ROWS;
        long maxrows = (long)(CHUNK_MAX_BYTES / (8 * w));
        hsize_t chunk[2] = {(hsize_t)(hint < MIN_CHUNK_ROWS ? MIN_CHUNK_ROWS : hint > maxrows ? maxrows : hint), w};
        hsize_t dims[2] = {(hsize_t)l->rows, w}, maxd[2] = {H5S_UNLIMITED, w};
        double nan = NAN;
        hid_t sp = H5Screate_simple(rank, dims, maxd);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &nan);
        d = H5Dcreate2(l->file, p, H5T_IEEE_F64LE, sp, H5P_DEFAULT, dcpl, dapl);
        H5Pclose(dcpl);
        H5Sclose(sp);
        if (d < 0 || put_units_doc(d, units, doc) || (cols && put_str_attr(d, "columns", cols, width)))
            rc = h5fail(e, l->path, "cannot create a series");
    }
    H5Pclose(dapl);
    if (rc) {
        if (d >= 0) H5Dclose(d);
        return -1;
    }
    if (l->n_series == l->cap_series) {
        l->cap_series = l->cap_series ? 2 * l->cap_series : 16;
        l->s = xrealloc(l->s, (size_t)l->cap_series * sizeof *l->s);
    }
    Series *s = &l->s[l->n_series];
    memset(s, 0, sizeof *s);
    s->name = xstrdup(name);
    s->dset = d;
    s->width = width;
    return l->n_series++;
}

int h5log_series(H5Log *l, const char *name, const char *units, const char *description, Error *e) {
    H5Quiet q = h5err_quiet();
    int rc = add_series(l, name, 0, units, description, NULL, e);
    h5err_restore(q);
    return rc;
}

int h5log_series2d(H5Log *l, const char *name, int width, const char *units,
                   const char *description, const char *const *column_names, Error *e) {
    if (width < 1) return errorf(e, "%s: series %s: width must be >= 1", l->path, name ? name : "(null)");
    H5Quiet q = h5err_quiet();
    int rc = add_series(l, name, width, units, description, column_names, e);
    h5err_restore(q);
    return rc;
}

int h5log_append(H5Log *l, int series, const double *values, Error *e) {
    if (series < 0 || series >= l->n_series) return errorf(e, "%s: no series %d", l->path, series);
    Series *s = &l->s[series];
    long w = s->width ? s->width : 1;
    if (s->n_pend == s->cap_pend) {
        s->cap_pend = s->cap_pend ? 2 * s->cap_pend : 16;
        s->pend = xrealloc(s->pend, (size_t)(s->cap_pend * w) * sizeof *s->pend);
    }
    memcpy(s->pend + s->n_pend * w, values, (size_t)w * sizeof *values);
    s->n_pend++;
    return 0;
}

// Rows go into their chunks first; the new sizes reach the file in H5Fflush.
static int flush_rows(H5Log *l, Error *e) {
    if (l->n_series == 0) return 0;
    long p = l->s[0].n_pend;
    for (int i = 1; i < l->n_series; i++)
        if (l->s[i].n_pend != p)
            return errorf(e, "%s: series %s has %ld queued rows but %s has %ld: append to every series once per row",
                          l->path, l->s[i].name, l->s[i].n_pend, l->s[0].name, p);
    if (p == 0) return 0;
    for (int i = 0; i < l->n_series; i++) {
        Series *s = &l->s[i];
        int rank = s->width ? 2 : 1;
        hsize_t w = (hsize_t)(s->width ? s->width : 1);
        hsize_t dims[2] = {(hsize_t)(l->rows + p), w}, start[2] = {(hsize_t)l->rows, 0}, count[2] = {(hsize_t)p, w};
        if (H5Dset_extent(s->dset, dims) < 0) return h5fail(e, l->path, "cannot extend a series");
        hid_t fs = H5Dget_space(s->dset), ms = H5Screate_simple(rank, count, NULL);
        herr_t r = fs < 0 || ms < 0 ? -1 : H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        if (r >= 0) r = H5Dwrite(s->dset, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, s->pend);
        if (ms >= 0) H5Sclose(ms);
        if (fs >= 0) H5Sclose(fs);
        if (r < 0) {
            char what[300];
            snprintf(what, sizeof what, "cannot write rows of /train/%s", s->name);
            return h5fail(e, l->path, what);
        }
    }
    for (int i = 0; i < l->n_series; i++) l->s[i].n_pend = 0;
    l->rows += p;
    return 0;
}

int h5log_flush(H5Log *l, Error *e) {
    H5Quiet q = h5err_quiet();
    int rc = flush_rows(l, e);
    if (!rc && H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0) rc = h5fail(e, l->path, "cannot flush");
    h5err_restore(q);
    return rc;
}

// ---- whole datasets and attributes -----------------------------------------

static int types_of(H5LogType t, hid_t *ftype, hid_t *mtype) {
    switch (t) {
    case H5LOG_F64: *ftype = H5T_IEEE_F64LE, *mtype = H5T_NATIVE_DOUBLE; return 0;
    case H5LOG_F32: *ftype = H5T_IEEE_F32LE, *mtype = H5T_NATIVE_FLOAT; return 0;
    case H5LOG_I64: *ftype = H5T_STD_I64LE, *mtype = H5T_NATIVE_LLONG; return 0;
    case H5LOG_I32: *ftype = H5T_STD_I32LE, *mtype = H5T_NATIVE_INT; return 0;
    default: return -1;
    }
}

// Removes whatever is at path and returns a link-creation plist that makes
// missing parent groups.
static hid_t prepare_path(H5Log *l, const char *path) {
    if (h5_path_exists(l->file, path) && H5Ldelete(l->file, path, H5P_DEFAULT) < 0) return -1;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

static int write_array(H5Log *l, const char *path, H5LogType type, const void *data, int ndims,
                       const long long *dims, const char *units, const char *doc, Error *e) {
    hid_t ftype, mtype;
    if (!valid_abs_path(path)) return errorf(e, "%s: bad dataset path '%s'", l->path, path ? path : "(null)");
    if (types_of(type, &ftype, &mtype)) return errorf(e, "%s: %s: unsupported element type", l->path, path);
    if (ndims < 0 || ndims > H5LOG_MAX_DIMS || (ndims > 0 && !dims))
        return errorf(e, "%s: %s: bad rank %d", l->path, path, ndims);
    hsize_t hd[H5LOG_MAX_DIMS];
    long long total = 1;
    for (int i = 0; i < ndims; i++) {
        if (dims[i] < 0) return errorf(e, "%s: %s: negative dimension", l->path, path);
        hd[i] = (hsize_t)dims[i];
        total *= dims[i];
    }
    if (total > 0 && !data) return errorf(e, "%s: %s: data is NULL", l->path, path);
    hid_t lcpl = prepare_path(l, path);
    if (lcpl < 0) return h5fail(e, l->path, "cannot replace an existing object");
    hid_t sp = ndims ? H5Screate_simple(ndims, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(l->file, path, ftype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (d < 0 || (total > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) ||
        put_units_doc(d, units, doc) || H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0) {
        char what[600];
        snprintf(what, sizeof what, "cannot write %s", path);
        rc = h5fail(e, l->path, what);
    }
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(lcpl);
    return rc;
}

int h5log_write(H5Log *l, const char *path, H5LogType type, const void *data, int ndims,
                const long long *dims, const char *units, const char *description, Error *e) {
    H5Quiet q = h5err_quiet();
    int rc = write_array(l, path, type, data, ndims, dims, units, description, e);
    h5err_restore(q);
    return rc;
}

int h5log_write_f64(H5Log *l, const char *path, const double *data, int ndims, const long long *dims,
                    const char *units, const char *description, Error *e) {
    return h5log_write(l, path, H5LOG_F64, data, ndims, dims, units, description, e);
}

int h5log_write_i64(H5Log *l, const char *path, const long long *data, int ndims,
                    const long long *dims, const char *units, const char *description, Error *e) {
    return h5log_write(l, path, H5LOG_I64, data, ndims, dims, units, description, e);
}

static int write_table(H5Log *l, const char *path, long long n_rows, const H5LogColumn *cols,
                       int n_cols, const char *doc, Error *e) {
    if (!valid_abs_path(path)) return errorf(e, "%s: bad dataset path '%s'", l->path, path ? path : "(null)");
    if (n_rows < 0 || n_cols < 1 || !cols) return errorf(e, "%s: %s: bad table shape", l->path, path);
    size_t *off = xcalloc((size_t)n_cols, sizeof *off), *size = xcalloc((size_t)n_cols, sizeof *size);
    size_t row = 0;
    for (int c = 0; c < n_cols; c++) {
        if (!cols[c].name || (n_rows > 0 && !cols[c].data) ||
            (cols[c].type != H5LOG_STR && cols[c].type != H5LOG_I64 && cols[c].type != H5LOG_F64)) {
            free(off), free(size);
            return errorf(e, "%s: %s: column %d is unnamed, empty or of an unsupported type", l->path, path, c);
        }
        size[c] = 8;
        if (cols[c].type == H5LOG_STR) {
            size[c] = 1;
            const char *const *s = cols[c].data;
            for (long long r = 0; r < n_rows; r++) {
                size_t n = s[r] ? strlen(s[r]) + 1 : 1;
                if (n > size[c]) size[c] = n;
            }
        }
        off[c] = row;
        row += size[c];
    }
    // Packed rows in the file's own layout, so memory and file types are one.
    hid_t ct = H5Tcreate(H5T_COMPOUND, row);
    hid_t *st = xcalloc((size_t)n_cols, sizeof *st);
    for (int c = 0; c < n_cols; c++) {
        hid_t ft = cols[c].type == H5LOG_I64 ? H5T_STD_I64LE : H5T_IEEE_F64LE;
        if (cols[c].type == H5LOG_STR) {
            st[c] = H5Tcopy(H5T_C_S1);
            H5Tset_size(st[c], size[c]);
            // ASCII: HDF5 cannot convert between character sets, and readers'
            // fixed-length string types default to ASCII (names are ASCII).
            H5Tset_strpad(st[c], H5T_STR_NULLTERM);
            ft = st[c];
        }
        H5Tinsert(ct, cols[c].name, off[c], ft);
    }
    unsigned char *buf = xcalloc((size_t)(n_rows ? n_rows : 1), row);
    for (long long r = 0; r < n_rows; r++) {
        unsigned char *p = buf + (size_t)r * row;
        for (int c = 0; c < n_cols; c++) {
            if (cols[c].type == H5LOG_STR) {
                const char *s = ((const char *const *)cols[c].data)[r];
                if (s) memcpy(p + off[c], s, strlen(s));
            } else if (cols[c].type == H5LOG_I64) {
                int64_t v = ((const long long *)cols[c].data)[r];
                memcpy(p + off[c], &v, 8);
            } else {
                memcpy(p + off[c], (const double *)cols[c].data + r, 8);
            }
        }
    }
    int rc = 0;
    hid_t lcpl = prepare_path(l, path);
    hsize_t n = (hsize_t)n_rows;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = lcpl < 0 ? -1 : H5Dcreate2(l->file, path, ct, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    const char **units = xcalloc((size_t)n_cols, sizeof *units);
    for (int c = 0; c < n_cols; c++) units[c] = cols[c].units ? cols[c].units : "";
    const char *dd = doc ? doc : "";
    if (d < 0 || (n_rows > 0 && H5Dwrite(d, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) ||
        put_str_attr(d, "units", units, n_cols) || put_str_attr(d, "description", &dd, 0) ||
        H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0) {
        char what[600];
        snprintf(what, sizeof what, "cannot write table %s", path);
        rc = h5fail(e, l->path, what);
    }
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    if (lcpl >= 0) H5Pclose(lcpl);
    for (int c = 0; c < n_cols; c++)
        if (st[c] > 0) H5Tclose(st[c]);
    H5Tclose(ct);
    free(units), free(buf), free(st), free(off), free(size);
    return rc;
}

int h5log_write_table(H5Log *l, const char *path, long long n_rows, const H5LogColumn *cols,
                      int n_cols, const char *description, Error *e) {
    H5Quiet q = h5err_quiet();
    int rc = write_table(l, path, n_rows, cols, n_cols, description, e);
    h5err_restore(q);
    return rc;
}

typedef enum { ATTR_STR, ATTR_F64, ATTR_I64 } AttrKind;

static int set_attr(H5Log *l, const char *object, const char *name, AttrKind kind, const void *value,
                    Error *e) {
    if (!object || !name || !*name) return errorf(e, "%s: bad attribute arguments", l->path);
    H5Quiet q = h5err_quiet();
    int rc = 0;
    hid_t o = h5_path_exists(l->file, object) ? H5Oopen(l->file, object, H5P_DEFAULT) : -1;
    if (o < 0) {
        rc = errorf(e, "%s: cannot set attribute %s: no object %s", l->path, name, object);
    } else {
        int r = kind == ATTR_STR   ? put_str_attr(o, name, (const char *const *)value, 0)
                : kind == ATTR_F64 ? put_num_attr(o, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, value)
                                   : put_num_attr(o, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, value);
        if (r || H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0) {
            char what[400];
            snprintf(what, sizeof what, "cannot set attribute %s of %s", name, object);
            rc = h5fail(e, l->path, what);
        }
        H5Oclose(o);
    }
    h5err_restore(q);
    return rc;
}

int h5log_attr_str(H5Log *l, const char *object, const char *name, const char *value, Error *e) {
    const char *v = value ? value : "";
    return set_attr(l, object, name, ATTR_STR, &v, e);
}

int h5log_attr_f64(H5Log *l, const char *object, const char *name, double value, Error *e) {
    return set_attr(l, object, name, ATTR_F64, &value, e);
}

int h5log_attr_i64(H5Log *l, const char *object, const char *name, long long value, Error *e) {
    return set_attr(l, object, name, ATTR_I64, &value, e);
}

int h5log_exists(H5Log *l, const char *path) {
    if (!path || path[0] != '/') return 0;
    H5Quiet q = h5err_quiet();
    int r = h5_path_exists(l->file, path);
    h5err_restore(q);
    return r;
}

int h5log_read_f64(H5Log *l, const char *path, double **data, int *ndims, long long *dims, Error *e) {
    *data = NULL;
    H5Quiet q = h5err_quiet();
    int rc = 0;
    hid_t d = h5_path_exists(l->file, path) ? H5Dopen2(l->file, path, H5P_DEFAULT) : -1;
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t hd[H5LOG_MAX_DIMS];
    if (d < 0) {
        rc = errorf(e, "%s: no dataset %s", l->path, path);
    } else if (nd < 0 || nd > H5LOG_MAX_DIMS || H5Sget_simple_extent_dims(sp, hd, NULL) < 0) {
        rc = errorf(e, "%s: %s: unsupported shape", l->path, path);
    } else {
        size_t total = 1;
        for (int i = 0; i < nd; i++) total *= (size_t)hd[i], dims[i] = (long long)hd[i];
        *ndims = nd;
        *data = xmalloc((total ? total : 1) * sizeof **data);
        if (total && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
            char what[600];
            snprintf(what, sizeof what, "cannot read %s as float64", path);
            rc = h5fail(e, l->path, what);
            free(*data);
            *data = NULL;
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    h5err_restore(q);
    return rc;
}
