// h5err.c — see h5err.h.
#include "io/h5err.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"

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

// Whether every component of an absolute path exists (H5Lexists needs the
// parents to exist).
int h5_path_exists(hid_t file, const char *path) {
    if (!strcmp(path, "/")) return 1;
    size_t n = strlen(path);
    char *p = xmalloc(n + 1);
    memcpy(p, path, n + 1);
    int ok = 1;
    for (size_t i = 1; i <= n && ok; i++)
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];
            p[i] = '\0';
            ok = H5Lexists(file, p, H5P_DEFAULT) > 0;
            p[i] = c;
        }
    free(p);
    return ok;
}
