// h5err.c — see h5err.h.
#include "io/h5err.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char outer[160], inner[160];
    int n;
} ErrWalk;

static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data) {
    ErrWalk *w = data;
    const char *d = err->desc && *err->desc ? err->desc : err->func_name;
    if (n == 0) snprintf(w->outer, sizeof w->outer, "%s", d ? d : "?");
    // A failed system call comes as "file write failed: time = ..., filename = ..., ...,
    // error message = 'No space left on device', ...": keep its head and the reason.
    const char *colon = d ? strchr(d, ':') : NULL, *why = d ? strstr(d, "error message = '") : NULL;
    if (colon && why) {
        why += strlen("error message = '");
        snprintf(w->inner, sizeof w->inner, "%.*s: %.*s", (int)(colon - d), d, (int)strcspn(why, "'"), why);
    } else {
        snprintf(w->inner, sizeof w->inner, "%s", d ? d : "?");
    }
    w->n++;
    return 0;
}

void h5err_suffix(char *buf, size_t n) {
    ErrWalk w = {"", "", 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &w);
    if (w.n == 0)
        snprintf(buf, n, "%s", "");
    else if (w.n == 1 || !strcmp(w.outer, w.inner))
        snprintf(buf, n, ": %s", w.outer);
    else
        snprintf(buf, n, ": %s (%s)", w.outer, w.inner);
}

H5Quiet h5err_quiet(void) {
    H5Quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

void h5err_restore(H5Quiet q) { H5Eset_auto2(H5E_DEFAULT, q.fn, q.data); }
