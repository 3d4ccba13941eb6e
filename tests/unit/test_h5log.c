// test_h5log.c — the run file: series, attributes and whole datasets read back
// through the plain HDF5 API (and h5dump/h5py where installed); resume
// trimming; and the promise that the file stays readable: writers SIGKILLed
// at random moments leave files that open, whose series read (or, after a
// kill mid-allocation, read once the next writer has opened them), and a
// reader may open the file while a writer runs.
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/h5log.h"
#include "testutil.h"

static char g_dir[512];

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void path_in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

// ---- the tools a user looks with: h5dump and h5py, where installed ----------

static const char *kPyCheck =
    "import sys, h5py\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "assert f.attrs['program'] == 'laptop-diff', f.attrs['program']\n"
    "assert 'config' in f.attrs and 'created' in f.attrs\n"
    "t = f['train']\n"
    "n = min([t[k].shape[0] for k in t] or [0])\n"
    "for k in t:\n"
    "    a = t[k][:n]\n"
    "    assert t[k].attrs['units'] is not None and t[k].attrs['description'] is not None\n"
    "    assert (a == a).all() or n == 0, k\n"
    "if 'prune' in f:\n"
    "    c = f['prune/candidates'][:]\n"
    "    assert c['name'][0].decode() == 'down_blocks.0.resnets.0', c\n"
    "    assert list(f['prune/candidates'].attrs['units']) == ['', 'count', 'multiply-accumulates']\n"
    "print('h5py read', sys.argv[1].rsplit('/', 1)[-1], 'rows', n)\n";

static int have_h5py = -1, have_h5dump = -1;

// 0 when h5dump and h5py (each if installed) read the file; prints what ran.
static int external_readers(const char *path) {
    char cmd[1400], script[600];
    if (have_h5dump < 0) have_h5dump = system("h5dump --version > /dev/null 2>&1") == 0;
    if (have_h5py < 0) {
        have_h5py = system("/usr/bin/python3 -c 'import h5py' > /dev/null 2>&1") == 0;
        if (!have_h5py) printf("h5py not installed for /usr/bin/python3: its check is skipped\n");
        if (!have_h5dump) printf("h5dump not installed: its check is skipped\n");
    }
    int rc = 0;
    if (have_h5dump) {
        snprintf(cmd, sizeof cmd, "h5dump '%s' > /dev/null", path);
        rc |= system(cmd) != 0;
    }
    if (have_h5py) {
        snprintf(script, sizeof script, "%s/check_h5py.py", g_dir);
        FILE *f = fopen(script, "w");
        if (!f) return -1;
        fputs(kPyCheck, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, path);
        rc |= system(cmd) != 0;
    }
    return rc;
}

// ---- plain-HDF5 readers (what a user's script does) ------------------------

static hid_t open_ro(const char *path) {
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }
    H5E_END_TRY;
    return f;
}

// A string attribute (variable or fixed length) as a malloc'd string, or NULL.
static char *read_str_attr(hid_t file, const char *obj, const char *name) {
    char *out = NULL;
    H5E_BEGIN_TRY {
        hid_t a = H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            hid_t t = H5Aget_type(a);
            if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0) {
                char *s = NULL;
                if (H5Aread(a, t, &s) >= 0 && s) {
                    out = strdup(s);
                    H5free_memory(s);
                }
            }
            H5Tclose(t);
            H5Aclose(a);
        }
    }
    H5E_END_TRY;
    return out;
}

static int str_attr_is(hid_t file, const char *obj, const char *name, const char *want) {
    char *s = read_str_attr(file, obj, name);
    int ok = s && !strcmp(s, want);
    free(s);
    return ok;
}

// Whole dataset as doubles; *n0 = first dimension, *n1 = second (1 if 1-D).
static double *read_all(hid_t file, const char *path, long *n0, long *n1) {
    double *buf = NULL;
    *n0 = *n1 = -1;
    H5E_BEGIN_TRY {
        hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
        if (d >= 0) {
            hid_t sp = H5Dget_space(d);
            hsize_t dims[2] = {0, 1};
            int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
            if (nd == 1) dims[1] = 1;
            buf = malloc((dims[0] * dims[1] + 1) * sizeof *buf);
            if (nd < 1 || nd > 2 || H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
                free(buf);
                buf = NULL;
            } else {
                *n0 = (long)dims[0], *n1 = (long)dims[1];
            }
            H5Sclose(sp);
            H5Dclose(d);
        }
    }
    H5E_END_TRY;
    return buf;
}

// ---- the layout every test writes -------------------------------------------

enum { N1 = 4, WIDTH = 3 };
static const char *const kNames[N1] = {"step", "loss", "lr", "grad_norm"};
static const char *const kUnits[N1] = {"steps", "1", "1", "1"};
static const char *const kCols[WIDTH] = {"down.0", "mid", "up.0"};

static double value_of(int series, long step, int col) { return step * 1.5 + series * 0.25 + col * 0.125 + 1; }

typedef struct {
    int id[N1 + 1];
} Ids;

static int register_all(H5Log *l, Ids *ids, Error *e) {
    for (int i = 0; i < N1; i++)
        if ((ids->id[i] = h5log_series(l, kNames[i], kUnits[i], "test series", e)) < 0) return -1;
    ids->id[N1] = h5log_series2d(l, "feat_raw", WIDTH, "1", "per-tap feature loss", kCols, e);
    return ids->id[N1] < 0 ? -1 : 0;
}

static int append_row(H5Log *l, const Ids *ids, long step, Error *e) {
    for (int i = 0; i < N1; i++) {
        double v = i == 0 ? (double)step : value_of(i, step, 0);
        if (h5log_append(l, ids->id[i], &v, e)) return -1;
    }
    double row[WIDTH];
    for (int c = 0; c < WIDTH; c++) row[c] = value_of(N1, step, c);
    return h5log_append(l, ids->id[N1], row, e);
}

// Every series holds rows 0..n-1 of steps first_step.. in order, exactly.
static int check_rows(hid_t f, long want_rows, long step0) {
    int ok = 1;
    for (int i = 0; i <= N1; i++) {
        char p[64];
        snprintf(p, sizeof p, "/train/%s", i < N1 ? kNames[i] : "feat_raw");
        long n0, n1;
        double *v = read_all(f, p, &n0, &n1);
        EXPECT(v != NULL, "cannot read %s", p);
        if (!v) return 0;
        EXPECT(n0 == want_rows, "%s has %ld rows, want %ld", p, n0, want_rows);
        EXPECT(n1 == (i < N1 ? 1 : WIDTH), "%s width %ld", p, n1);
        for (long r = 0; r < n0 && r < want_rows; r++)
            for (long c = 0; c < n1; c++) {
                double want = i == 0 ? (double)(step0 + r) : value_of(i, step0 + r, (int)c);
                if (v[r * n1 + c] != want) {
                    ok = 0;
                    EXPECT(0, "%s[%ld,%ld] = %g, want %g", p, r, c, v[r * n1 + c], want);
                    r = n0;
                    break;
                }
            }
        free(v);
    }
    return ok;
}

// ---- tests ------------------------------------------------------------------

static const char *kConfig = "model = { sample_size = 8; };\ntrain = { steps = 25; };\n";

static void test_write_read(void) {
    char path[600];
    path_in_dir(path, sizeof path, "basic.h5");
    Error e = {0};
    H5Log *l = h5log_open(path, kConfig, H5LOG_CREATE, 0, &e);
    EXPECT(l != NULL, "open: %s", e.msg);
    if (!l) return;
    h5log_set_rows_hint(l, 25);
    Ids ids;
    EXPECT(register_all(l, &ids, &e) == 0, "register: %s", e.msg);
    for (long s = 0; s < 25; s++) {
        EXPECT(append_row(l, &ids, s, &e) == 0, "append: %s", e.msg);
        if (s % 5 == 4) EXPECT(h5log_flush(l, &e) == 0, "flush: %s", e.msg);
    }
    EXPECT(h5log_rows(l) == 25, "rows %ld", h5log_rows(l));
    // rows queued after the last flush are written by close
    EXPECT(append_row(l, &ids, 25, &e) == 0, "append: %s", e.msg);
    EXPECT(h5log_close(l, &e) == 0, "close: %s", e.msg);

    hid_t f = open_ro(path);
    EXPECT(f >= 0, "cannot open %s", path);
    if (f < 0) return;
    check_rows(f, 26, 0);
    EXPECT(str_attr_is(f, "/", "config", kConfig), "config attribute");
    EXPECT(str_attr_is(f, "/", "program", "laptop-diff"), "program attribute");
    char *created = read_str_attr(f, "/", "created");
    EXPECT(created && strlen(created) == 20 && created[4] == '-' && created[10] == 'T' && created[19] == 'Z',
           "created = %s", created ? created : "(none)");
    free(created);
    for (int i = 0; i < N1; i++) {
        char p[64];
        snprintf(p, sizeof p, "/train/%s", kNames[i]);
        EXPECT(str_attr_is(f, p, "units", kUnits[i]), "%s units", p);
        EXPECT(str_attr_is(f, p, "description", "test series"), "%s description", p);
    }
    EXPECT(str_attr_is(f, "/train/feat_raw", "units", "1"), "feat_raw units");
    EXPECT(str_attr_is(f, "/train/feat_raw", "description", "per-tap feature loss"), "feat_raw description");
    // column names: a string array attribute
    hid_t a = H5Aopen_by_name(f, "/train/feat_raw", "columns", H5P_DEFAULT, H5P_DEFAULT);
    EXPECT(a >= 0, "feat_raw has no columns attribute");
    if (a >= 0) {
        hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
        char *cols[WIDTH] = {0};
        EXPECT(H5Sget_simple_extent_npoints(sp) == WIDTH, "columns has %lld entries",
               (long long)H5Sget_simple_extent_npoints(sp));
        if (H5Sget_simple_extent_npoints(sp) == WIDTH && H5Aread(a, t, cols) >= 0) {
            for (int c = 0; c < WIDTH; c++) {
                EXPECT(cols[c] && !strcmp(cols[c], kCols[c]), "column %d = %s", c, cols[c] ? cols[c] : "(null)");
                H5free_memory(cols[c]);
            }
        }
        H5Sclose(sp);
        H5Tclose(t);
        H5Aclose(a);
    }
    // the series are extendible and chunked
    hid_t d = H5Dopen2(f, "/train/loss", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    hsize_t dims[1], maxd[1];
    H5Sget_simple_extent_dims(sp, dims, maxd);
    EXPECT(maxd[0] == H5S_UNLIMITED && H5Pget_layout(dcpl) == H5D_CHUNKED, "loss is not extendible");
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    EXPECT(external_readers(path) == 0, "h5dump/h5py cannot read %s", path);
}

static void test_resume_trim(void) {
    char path[600];
    path_in_dir(path, sizeof path, "resume.h5");
    Error e = {0};
    H5Log *l = h5log_open(path, kConfig, H5LOG_CREATE, 0, &e);
    EXPECT(l != NULL, "open: %s", e.msg);
    if (!l) return;
    Ids ids;
    register_all(l, &ids, &e);
    for (long s = 0; s < 25; s++) append_row(l, &ids, s, &e);
    double snap = 1;
    long long one = 1;
    EXPECT(h5log_write_f64(l, "/activations/5/down.0", &snap, 1, &one, "1", "snapshot", &e) == 0, "%s", e.msg);
    EXPECT(h5log_write_f64(l, "/activations/12/down.0", &snap, 1, &one, "1", "snapshot", &e) == 0, "%s", e.msg);
    EXPECT(h5log_close(l, &e) == 0, "close: %s", e.msg);

    // resume from step 9: rows with step <= 9 stay, later snapshots go
    l = h5log_open(path, "resumed config", H5LOG_OPEN, 9, &e);
    EXPECT(l != NULL, "reopen: %s", e.msg);
    if (!l) return;
    EXPECT(h5log_rows(l) == 10, "after resume_step 9: %ld rows, want 10", h5log_rows(l));
    EXPECT(h5log_exists(l, "/activations/5/down.0") && !h5log_exists(l, "/activations/12"),
           "snapshots after the resumed step must go, earlier ones stay");
    EXPECT(register_all(l, &ids, &e) == 0, "re-register: %s", e.msg);
    int extra = h5log_series(l, "late", "1", "added on resume", &e);
    EXPECT(extra >= 0, "late series: %s", e.msg);
    for (long s = 10; s < 15; s++) {
        append_row(l, &ids, s, &e);
        double v = (double)s;
        h5log_append(l, extra, &v, &e);
    }
    EXPECT(h5log_close(l, &e) == 0, "close: %s", e.msg);
    hid_t f = open_ro(path);
    EXPECT(f >= 0, "open");
    if (f < 0) return;
    check_rows(f, 15, 0);
    EXPECT(str_attr_is(f, "/", "config", "resumed config"), "config is the last job's");
    long n0, n1;
    double *late = read_all(f, "/train/late", &n0, &n1);
    EXPECT(late && n0 == 15, "late series rows %ld", n0);
    if (late) {
        int ok = 1;
        for (long r = 0; r < n0; r++) ok &= r < 10 ? isnan(late[r]) : late[r] == (double)r;
        EXPECT(ok, "a series added on resume is NaN before it existed");
    }
    free(late);
    H5Fclose(f);

    // keep everything; then restart /train empty
    l = h5log_open(path, NULL, H5LOG_OPEN, H5LOG_ALL_ROWS, &e);
    EXPECT(l && h5log_rows(l) == 15, "ALL_ROWS keeps 15 rows");
    h5log_close(l, &e);
    l = h5log_open(path, NULL, H5LOG_OPEN, -1, &e);
    EXPECT(l && h5log_rows(l) == 0, "keep_until_step -1 empties /train");
    EXPECT(l && h5log_exists(l, "/activations/5/down.0") == 0, "and drops every snapshot");
    h5log_close(l, &e);
}

static void test_helpers(void) {
    char path[600];
    path_in_dir(path, sizeof path, "helpers.h5");
    Error e = {0};
    H5Log *l = h5log_open(path, kConfig, H5LOG_CREATE, 0, &e);
    EXPECT(l != NULL, "open: %s", e.msg);
    if (!l) return;
    double scores[6] = {0.5, 0.25, 1e-3, 7, 8, 9};
    long long dims[2] = {2, 3};
    EXPECT(h5log_write_f64(l, "/prune/scores/output_loss", scores, 2, dims, "1", "scores", &e) == 0, "%s", e.msg);
    scores[0] = 42;  // replacing a dataset
    EXPECT(h5log_write_f64(l, "/prune/scores/output_loss", scores, 2, dims, "1", "scores v2", &e) == 0, "%s", e.msg);
    long long plan[3] = {4, 1, 7}, n3 = 3;
    EXPECT(h5log_write_i64(l, "/prune/plan", plan, 1, &n3, "index", "removed candidates", &e) == 0, "%s", e.msg);
    EXPECT(h5log_attr_str(l, "/prune/plan", "criterion", "output_loss", &e) == 0, "%s", e.msg);
    EXPECT(h5log_attr_f64(l, "/prune/plan", "ratio", 0.5, &e) == 0, "%s", e.msg);
    EXPECT(h5log_attr_i64(l, "/prune/plan", "total", 859520964LL, &e) == 0, "%s", e.msg);
    EXPECT(h5log_attr_f64(l, "/prune/plan", "ratio", 0.25, &e) == 0, "replace attr: %s", e.msg);
    EXPECT(h5log_attr_str(l, "/nope", "x", "y", &e) == -1 && strstr(e.msg, "/nope"), "attr on a missing object");
    float f32[2] = {1.5f, -2};
    long long two = 2;
    EXPECT(h5log_write(l, "/eval/teacher/loss", H5LOG_F32, f32, 1, &two, "1", "loss", &e) == 0, "%s", e.msg);
    double scalar = 3.25;
    EXPECT(h5log_write_f64(l, "/eval/teacher/params", &scalar, 0, NULL, "count", "params", &e) == 0, "%s", e.msg);
    const char *names[3] = {"down_blocks.0.resnets.0", "mid_block.attentions.0", "up_blocks.1.resnets.2"};
    long long params[3] = {100, 2000, 30000};
    double macs[3] = {1e6, 2e6, 3e6};
    H5LogColumn cols[3] = {{"name", H5LOG_STR, names, ""},
                           {"params", H5LOG_I64, params, "count"},
                           {"macs", H5LOG_F64, macs, "multiply-accumulates"}};
    EXPECT(h5log_write_table(l, "/prune/candidates", 3, cols, 3, "candidate layers", &e) == 0, "%s", e.msg);
    EXPECT(h5log_write_f64(l, "relative/path", scores, 1, &n3, "", "", &e) == -1, "relative paths are refused");

    double *back = NULL;
    int nd = 0;
    long long bd[8];
    EXPECT(h5log_read_f64(l, "/prune/scores/output_loss", &back, &nd, bd, &e) == 0, "%s", e.msg);
    EXPECT(back && nd == 2 && bd[0] == 2 && bd[1] == 3 && back[0] == 42 && back[5] == 9, "read back");
    free(back);
    EXPECT(h5log_read_f64(l, "/prune/plan", &back, &nd, bd, &e) == 0 && nd == 1 && back[2] == 7, "i64 as f64");
    free(back);
    EXPECT(h5log_read_f64(l, "/missing", &back, &nd, bd, &e) == -1 && strstr(e.msg, path), "missing dataset");
    EXPECT(h5log_close(l, &e) == 0, "close: %s", e.msg);

    hid_t f = open_ro(path);
    EXPECT(f >= 0, "open");
    if (f < 0) return;
    EXPECT(str_attr_is(f, "/prune/scores/output_loss", "description", "scores v2"), "replaced description");
    EXPECT(str_attr_is(f, "/prune/plan", "criterion", "output_loss"), "criterion attribute");
    double ratio = 0;
    long long total = 0;
    hid_t a = H5Aopen_by_name(f, "/prune/plan", "ratio", H5P_DEFAULT, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_DOUBLE, &ratio);
    H5Aclose(a);
    a = H5Aopen_by_name(f, "/prune/plan", "total", H5P_DEFAULT, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_LLONG, &total);
    H5Aclose(a);
    EXPECT(ratio == 0.25 && total == 859520964LL, "numeric attributes %g %lld", ratio, total);
    EXPECT(str_attr_is(f, "/eval/teacher/params", "units", "count"), "scalar dataset units");
    // the compound table, read with a memory type of our own
    typedef struct {
        char name[64];
        long long params;
        double macs;
    } Row;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 64);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(Row));
    H5Tinsert(mt, "name", offsetof(Row, name), st);
    H5Tinsert(mt, "params", offsetof(Row, params), H5T_NATIVE_LLONG);
    H5Tinsert(mt, "macs", offsetof(Row, macs), H5T_NATIVE_DOUBLE);
    Row rows[3];
    hid_t d = H5Dopen2(f, "/prune/candidates", H5P_DEFAULT);
    EXPECT(d >= 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0, "read the table");
    for (int i = 0; i < 3; i++)
        EXPECT(!strcmp(rows[i].name, names[i]) && rows[i].params == params[i] && rows[i].macs == macs[i],
               "table row %d: %s %lld %g", i, rows[i].name, rows[i].params, rows[i].macs);
    H5Dclose(d);
    H5Tclose(mt);
    H5Tclose(st);
    H5Fclose(f);
    EXPECT(external_readers(path) == 0, "h5dump/h5py cannot read %s", path);
}

static void test_errors(void) {
    char path[600], junk[600];
    path_in_dir(path, sizeof path, "errors.h5");
    path_in_dir(junk, sizeof junk, "not_hdf5.h5");
    Error e = {0};
    FILE *fp = fopen(junk, "w");
    fputs("this is not an HDF5 file\n", fp);
    fclose(fp);
    H5Log *l = h5log_open(junk, NULL, H5LOG_OPEN, H5LOG_ALL_ROWS, &e);
    EXPECT(l == NULL && strstr(e.msg, junk), "opening a non-HDF5 file: %s", e.msg);
    l = h5log_open("/nonexistent-dir/x/run.h5", NULL, H5LOG_CREATE, 0, &e);
    EXPECT(l == NULL && strstr(e.msg, "/nonexistent-dir/x/run.h5"), "bad directory: %s", e.msg);

    l = h5log_open(path, NULL, H5LOG_CREATE, 0, &e);
    EXPECT(l != NULL, "open: %s", e.msg);
    if (!l) return;
    EXPECT(h5log_series(l, "a/b", "", "", &e) == -1, "a name with '/' is refused");
    int a = h5log_series(l, "a", "", "", &e), b = h5log_series(l, "b", "", "", &e);
    EXPECT(h5log_series(l, "a", "", "", &e) == -1 && strstr(e.msg, "twice"), "registered twice: %s", e.msg);
    double v = 1;
    h5log_append(l, a, &v, &e);
    h5log_append(l, a, &v, &e);
    h5log_append(l, b, &v, &e);
    EXPECT(h5log_flush(l, &e) == -1 && strstr(e.msg, "once per row"), "uneven rows: %s", e.msg);
    EXPECT(h5log_append(l, 99, &v, &e) == -1, "unknown series id");
    h5log_close(l, &e);

    // an existing dataset of another shape cannot become a series
    l = h5log_open(path, NULL, H5LOG_CREATE, 0, &e);
    long long n = 1;
    h5log_write_f64(l, "/train/fixed", &v, 1, &n, "", "", &e);
    h5log_close(l, &e);
    l = h5log_open(path, NULL, H5LOG_OPEN, H5LOG_ALL_ROWS, &e);
    EXPECT(l == NULL && strstr(e.msg, "/train/fixed"), "a fixed dataset in /train: %s", e.msg);
    h5log_close(l, &e);
}

static void test_create_replaces(void) {
    char path[600];
    path_in_dir(path, sizeof path, "replace.h5");
    Error e = {0};
    H5Log *l = h5log_open(path, "first", H5LOG_CREATE, 0, &e);
    double v = 1;
    long long n = 1;
    h5log_write_f64(l, "/prune/x", &v, 1, &n, "", "", &e);
    h5log_close(l, &e);
    l = h5log_open(path, "second", H5LOG_CREATE, 0, &e);
    EXPECT(l && !h5log_exists(l, "/prune/x"), "CREATE gives a fresh file");
    h5log_close(l, &e);
    hid_t f = open_ro(path);
    EXPECT(f >= 0 && str_attr_is(f, "/", "config", "second"), "the new file replaced the old one");
    if (f >= 0) H5Fclose(f);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", g_dir);
    EXPECT(system(cmd) != 0, "no temp file left behind");
}

// Many rows: chunks fill and new ones are allocated along the way.
static void test_many_rows(void) {
    char path[600];
    path_in_dir(path, sizeof path, "many.h5");
    Error e = {0};
    H5Log *l = h5log_open(path, NULL, H5LOG_CREATE, 0, &e);
    h5log_set_rows_hint(l, 1);  // smallest chunks
    Ids ids;
    register_all(l, &ids, &e);
    for (long s = 0; s < 500; s++) {
        append_row(l, &ids, s, &e);
        if (s % 7 == 0) h5log_flush(l, &e);
    }
    EXPECT(h5log_close(l, &e) == 0, "close: %s", e.msg);
    hid_t f = open_ro(path);
    EXPECT(f >= 0, "open");
    if (f >= 0) {
        check_rows(f, 500, 0);
        // the chunk indexes are wide: with 64-row chunks a series' index node
        // splits (the crash hazard h5log.c describes) only after 32768 rows
        unsigned ik = 0;
        hid_t fcpl = H5Fget_create_plist(f);
        EXPECT(fcpl >= 0 && H5Pget_istore_k(fcpl, &ik) >= 0 && ik >= 256, "chunk index K %u, not >= 256", ik);
        if (fcpl >= 0) H5Pclose(fcpl);
        H5Fclose(f);
    }
}

// ---- a writer killed at random moments ---------------------------------------

// Child: appends and flushes rows forever. Tells the parent (pipe) after the
// first flush, so every kill lands in the append loop.
static _Noreturn void writer_child(const char *path, long hint, int ready_fd) {
    Error e;
    H5Log *l = h5log_open(path, kConfig, H5LOG_CREATE, 0, &e);
    if (!l) _exit(2);
    h5log_set_rows_hint(l, hint);
    Ids ids;
    if (register_all(l, &ids, &e)) _exit(3);
    for (long s = 0;; s++) {
        if (append_row(l, &ids, s, &e) || h5log_flush(l, &e)) _exit(4);
        if (s == 0) {
            char c = 1;
            if (write(ready_fd, &c, 1) != 1) _exit(5);
        }
    }
}

// Reads every series of a file a killed writer left. Rows that are there are
// right, except that the last row may read as NaN (the fill value) when the
// kill came between a dataset's new size and its new chunk reaching the disk.
// Sets the shortest and longest series length; returns how many series did
// not read.
static int read_killed(hid_t f, int iter, long *minr, long *maxr) {
    *minr = *maxr = -1;
    int unreadable = 0;
    for (int i = 0; i <= N1; i++) {
        char p[64];
        snprintf(p, sizeof p, "/train/%s", i < N1 ? kNames[i] : "feat_raw");
        long n0, n1;
        double *v = read_all(f, p, &n0, &n1);
        if (!v) {
            unreadable++;
            continue;
        }
        if (*minr < 0 || n0 < *minr) *minr = n0;
        if (n0 > *maxr) *maxr = n0;
        int bad = 0;
        for (long r = 0; r < n0 && !bad; r++)
            for (long c = 0; c < n1; c++) {
                double want = i == 0 ? (double)r : value_of(i, r, (int)c), got = v[r * n1 + c];
                if (got != want && !(r == n0 - 1 && isnan(got))) bad = 1;
            }
        EXPECT(!bad, "kill %d: %s has a wrong value", iter, p);
        free(v);
    }
    return unreadable;
}

// What a killed writer leaves. With chunks sized from the rows hint (no new
// file space after the first flush) every series reads at once, and lengths
// differ by at most the one flush (1 row here) in progress. A kill during a
// flush that allocated a chunk can leave that chunk past the recorded end of
// the file: the series does not read until the next writer's open claims it.
// In both cases that open (e.g. --resume) leaves a whole, aligned table.
static int check_killed_file(const char *path, int iter, int allocating) {
    hid_t f = open_ro(path);
    EXPECT(f >= 0, "kill %d: %s does not open", iter, path);
    if (f < 0) return 0;
    long minr, maxr;
    int unreadable = read_killed(f, iter, &minr, &maxr);
    H5Fclose(f);
    EXPECT(allocating || unreadable == 0, "kill %d: %d series do not read", iter, unreadable);
    if (iter == 0) EXPECT(external_readers(path) == 0, "kill %d: h5dump/h5py cannot read %s", iter, path);
    EXPECT(unreadable || (minr >= 1 && maxr - minr <= 1), "kill %d: series lengths %ld..%ld", iter, minr, maxr);

    Error e;
    H5Log *l = h5log_open(path, NULL, H5LOG_OPEN, H5LOG_ALL_ROWS, &e);
    EXPECT(l != NULL, "kill %d: reopening for append failed: %s", iter, e.msg);
    if (!l) return unreadable;
    long rows = h5log_rows(l);
    EXPECT(unreadable || rows == minr || rows == minr - 1, "kill %d: reopened with %ld rows (shortest %ld)", iter,
           rows, minr);
    EXPECT(h5log_close(l, &e) == 0, "kill %d: close after reopen: %s", iter, e.msg);
    f = open_ro(path);
    EXPECT(f >= 0, "kill %d: no longer opens after the reopen", iter);
    if (f < 0) return unreadable;
    int still = read_killed(f, iter, &minr, &maxr);
    EXPECT(still == 0 && minr == maxr && minr == rows, "kill %d: after reopen %d unreadable, lengths %ld..%ld, rows %ld",
           iter, still, minr, maxr, rows);
    H5Fclose(f);
    return unreadable;
}

static void test_kill_writer(void) {
    TuRng rng;
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
    tu_rng_seed(&rng, seed);
    int kills = getenv("LD_H5LOG_KILLS") ? atoi(getenv("LD_H5LOG_KILLS")) : 24;
    int healed = 0;
    for (int it = 0; it < kills; it++) {
        char path[600];
        snprintf(path, sizeof path, "%s/killed_%d.h5", g_dir, it);
        int fds[2];
        if (pipe(fds)) return;
        // odd kills: 64-row chunks, so flushes allocate file space mid-run
        int allocating = it % 2;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            writer_child(path, allocating ? 1 : 100000, fds[1]);
        }
        close(fds[1]);
        char c;
        ssize_t got = read(fds[0], &c, 1);
        close(fds[0]);
        EXPECT(got == 1, "kill %d: the writer died before its first flush", it);
        sleep_us((long)(tu_uniform(&rng, 0, 1) * 40000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        EXPECT(WIFSIGNALED(status), "kill %d: the writer exited on its own (status %d)", it, status);
        int before = tu_failures;
        healed += check_killed_file(path, it, allocating) > 0;
        if (tu_failures == before) unlink(path);  // failing files stay for a look
    }
    printf("kill test: %d writers killed (seed %llu); %d files needed the reopen to read\n", kills,
           (unsigned long long)seed, healed);
}

// A reader opens the file while the writer appends (the user looking at a
// running job): it must be allowed in, and see complete rows.
static void test_read_while_writing(void) {
    char path[600];
    path_in_dir(path, sizeof path, "live.h5");
    int fds[2];
    if (pipe(fds)) return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        writer_child(path, 100000, fds[1]);
    }
    close(fds[1]);
    char c;
    EXPECT(read(fds[0], &c, 1) == 1, "writer did not start");
    close(fds[0]);
    int opened = 0, read_ok = 0;
    for (int i = 0; i < 40; i++) {
        hid_t f = open_ro(path);
        if (f >= 0) {
            opened++;
            long n0, n1;
            double *v = read_all(f, "/train/loss", &n0, &n1);
            read_ok += v != NULL && n0 >= 1 && v[0] == value_of(1, 0, 0);
            free(v);
            H5Fclose(f);
        }
        sleep_us(2000);
    }
    EXPECT(external_readers(path) == 0, "h5dump/h5py cannot read %s while it is written", path);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    EXPECT(opened == 40, "a reader was refused %d of 40 times while the run wrote the file", 40 - opened);
    // A read racing a flush may see a half-written header; that must be rare.
    EXPECT(read_ok >= 36, "only %d of 40 live reads succeeded", read_ok);
    unlink(path);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/test_h5log_XXXXXX", LD_BINARY_DIR);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_write_read();
    test_resume_trim();
    test_helpers();
    test_errors();
    test_create_replaces();
    test_many_rows();
    test_kill_writer();
    test_read_while_writing();
    if (tu_failures == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    } else {
        fprintf(stderr, "files kept in %s\n", g_dir);
    }
    int rc = tu_report("test_h5log");
    // h5py is a test dependency (scripts/setup.sh): without it the "what a user's
    // tools read" check did not run, so the test is SKIPPED (ctest's
    // SKIP_RETURN_CODE), not passed. h5dump stays optional (not installed by setup).
    if (rc == 0 && !have_h5py) {
        printf("SKIPPED: h5py not installed for /usr/bin/python3\n");
        return 77;
    }
    return rc;
}
