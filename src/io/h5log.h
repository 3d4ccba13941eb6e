// h5log.h — the run file (output.dir/run.h5, DESIGN §7), written by one
// process (rank 0) with serial HDF5. It holds the job config (attribute
// "config" of "/"), the per-step /train series, and whole datasets and
// attributes that the other stages add (/prune, /eval). Every dataset carries
// "units" and "description" attributes.
//
// Readable at every moment, not only at the end (tests/unit/test_h5log.c
// SIGKILLs writers at random moments and reads what they leave):
// - Plain HDF5, oldest file format, no SWMR. SWMR was tried on HDF5 1.10.8:
//   plain readers are refused while it writes, and writers killed mid-flush
//   left files that SWMR readers hang on and that stay unreadable after
//   h5clear. Without SWMR there are no "open for write" flags to go stale.
// - The writer takes no HDF5 file lock, so h5py/h5dump may open the file while
//   a run writes it. (In this process, read through h5log_read_f64: a second
//   H5Fopen of the same file with HDF5's default locking is refused.)
// - Appended rows wait in memory until h5log_flush, which writes them straight
//   into their chunks (chunk cache off) and then flushes HDF5's metadata; the
//   file on disk does not change between flushes.
// - Series chunks hold the rows hint (h5log_set_rows_hint; capped at 1 MiB),
//   so only the first flush and one flush per chunk of rows after that
//   allocate file space.
// - A series' chunk index (a v1 B-tree) has room for 512 chunks in its root
//   node (istore_k 256; HDF5's default, 64), so it does not split before
//   32768 rows even with the smallest chunks. A writer killed while a split's
//   new nodes were not yet on disk left the whole series unreadable (the kill
//   test hit it at 4097 rows, 64 chunks of 64).
// What a SIGKILL during a flush can leave: the file always opens. Usually
// every series reads, every stored row is right, and the series differ in
// length by at most the rows of that flush (the last row may read NaN, the
// fill value): readers use the shortest. If the flush was allocating a chunk,
// that chunk can lie past the end of file HDF5 recorded, and the series does
// not read until the next h5log_open (e.g. --resume), which claims it; that
// open also cuts every series to the common length. Structural writes (new
// datasets, attributes) are not crash-atomic; they come at stage boundaries.
//
// Rows: /train is a table of aligned columns. Call h5log_append once per
// registered series for every row, then h5log_flush (every log interval).
// Not thread-safe; the handle is for one process. To let other processes
// write (collective /activations snapshots), close it and open it again.
#ifndef LD_H5LOG_H
#define LD_H5LOG_H
#include <limits.h>

#include "core/common.h"

typedef struct H5Log H5Log;

typedef enum {
    // A new file. Built as <path>.tmp.<pid> and renamed over path, so an old
    // run.h5 is replaced whole or not at all. Whether replacing one is
    // allowed is the caller's decision.
    H5LOG_CREATE = 0,
    // An existing file (created if missing), e.g. a stage after `score`, or
    // --resume. Its contents stay; see keep_until_step for /train.
    H5LOG_OPEN = 1,
} H5LogMode;

// keep_until_step for H5LOG_OPEN: keep every /train row.
#define H5LOG_ALL_ROWS LONG_MAX

// Opens the run file. config_text (or NULL) becomes attribute "config" of "/"
// (the job that opened it last); "program" and "created" (ISO 8601 UTC) are
// set when the file is created. With H5LOG_OPEN the /train series are first
// trimmed to their common length, then rows whose /train/step is greater than
// keep_until_step are dropped, together with /activations/<step> groups past
// it: pass the checkpoint's step on --resume, -1 to restart /train empty,
// H5LOG_ALL_ROWS to keep all. NULL + e on failure.
H5Log *h5log_open(const char *path, const char *config_text, H5LogMode mode, long keep_until_step,
                  Error *e);

// Flushes pending rows (if they are complete), closes, fsyncs. Always frees.
int h5log_close(H5Log *l, Error *e);
// 1 once a run file could not be written on close (a full disk): HDF5 1.10 crashes
// closing such a file, at the latest in its shutdown at MPI finalization, so it was
// left open and the process must end without that shutdown (mpi/main.c: _exit).
int h5log_unclosable(void);

const char *h5log_path(const H5Log *l);
// Rows already written to every series (after trimming, on open).
long h5log_rows(const H5Log *l);

// Expected number of /train rows of this run (e.g. steps / log interval + 1):
// chunks of series registered afterwards hold that many rows (capped at 1 MiB
// per chunk), so a run allocates file space for its series once. 0: 1024.
void h5log_set_rows_hint(H5Log *l, long rows);

// Registers /train/<name>: an extendible float64 [rows] series (fill NaN).
// An existing dataset of the same shape is reused; a new one is padded with
// NaN up to the current rows. Returns the series id (>= 0) or -1 + e.
int h5log_series(H5Log *l, const char *name, const char *units, const char *description, Error *e);
// The same for a [rows, width] series; column_names (width strings, or NULL)
// become the string-array attribute "columns".
int h5log_series2d(H5Log *l, const char *name, int width, const char *units,
                   const char *description, const char *const *column_names, Error *e);
// Queues one row of a series: 1 value, or width values for a 2-D series.
int h5log_append(H5Log *l, int series, const double *values, Error *e);
// Writes the queued rows (every series must have the same number queued) and
// flushes HDF5, so readers see them. Also the commit point of the helpers below.
int h5log_flush(H5Log *l, Error *e);

// Whole datasets at an absolute path ("/prune/scores/output_loss"): missing
// groups are created, an existing object at the path is replaced. ndims 0 is a
// scalar. Each has "units" and "description" attributes. Flushed on return.
typedef enum { H5LOG_F64 = 0, H5LOG_F32, H5LOG_I64, H5LOG_I32, H5LOG_STR } H5LogType;
int h5log_write(H5Log *l, const char *path, H5LogType type, const void *data, int ndims,
                const long long *dims, const char *units, const char *description, Error *e);
int h5log_write_f64(H5Log *l, const char *path, const double *data, int ndims, const long long *dims,
                    const char *units, const char *description, Error *e);
int h5log_write_i64(H5Log *l, const char *path, const long long *data, int ndims,
                    const long long *dims, const char *units, const char *description, Error *e);

// A compound table of n_rows rows (e.g. /prune/candidates). Column data:
// H5LOG_STR: const char *const * (fixed-length ASCII field sized to the
// longest), H5LOG_I64: const long long *, H5LOG_F64: const double *. The
// "units" attribute is a string array, one per column.
typedef struct {
    const char *name;
    H5LogType type;
    const void *data;
    const char *units;
} H5LogColumn;
int h5log_write_table(H5Log *l, const char *path, long long n_rows, const H5LogColumn *cols,
                      int n_cols, const char *description, Error *e);

// Attributes of an existing group or dataset ("/" is the root); replaced if present.
int h5log_attr_str(H5Log *l, const char *object, const char *name, const char *value, Error *e);
int h5log_attr_f64(H5Log *l, const char *object, const char *name, double value, Error *e);
int h5log_attr_i64(H5Log *l, const char *object, const char *name, long long value, Error *e);

// 1 if a group or dataset exists at path, else 0.
int h5log_exists(H5Log *l, const char *path);
// Reads a whole numeric dataset as float64 into *data (malloc'd; caller
// frees); *ndims and dims[0..*ndims) get its shape (at most 8 dimensions).
int h5log_read_f64(H5Log *l, const char *path, double **data, int *ndims, long long *dims, Error *e);
#endif
