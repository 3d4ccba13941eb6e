// params.c — see params.h.
#include "core/params.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"

size_t params_add(ParamTable *pt, const char *prefix, const char *leaf, int ndim, int s0, int s1,
                  int s2, int s3) {
    if (pt->n == pt->cap) {
        pt->cap = pt->cap ? 2 * pt->cap : 256;
        pt->t = xrealloc(pt->t, (size_t)pt->cap * sizeof *pt->t);
    }
    ParamTensor *t = &pt->t[pt->n++];
    memset(t, 0, sizeof *t);
    int n = snprintf(t->name, sizeof t->name, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    CHECK(n > 0 && n < (int)sizeof t->name);
    int s[4] = {s0, s1, s2, s3};
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = s[i];
        t->numel *= (size_t)s[i];
    }
    t->offset = pt->total;
    pt->total += t->numel;
    return t->offset;
}

const ParamTensor *params_find(const ParamTable *pt, const char *name) {
    for (int i = 0; i < pt->n; i++)
        if (strcmp(pt->t[i].name, name) == 0) return &pt->t[i];
    return NULL;
}

size_t params_count_range(const ParamTable *pt, int from, int to) {
    size_t n = 0;
    for (int i = from; i < to; i++) n += pt->t[i].numel;
    return n;
}

void params_free(ParamTable *pt) {
    free(pt->t);
    memset(pt, 0, sizeof *pt);
}
