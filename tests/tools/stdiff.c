// stdiff.c — compares the tensors of two safetensors files (for the CLI tests).
// usage: stdiff A.safetensors B.safetensors TOL
// Prints the largest relative difference (max |a-b| / max |b| over each tensor)
// and exits 0 when every tensor is within TOL (TOL 0: bit-identical), 1 if not,
// 2 on bad input (different names or shapes).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: stdiff A.safetensors B.safetensors TOL\n");
        return 2;
    }
    double tol = atof(argv[3]), worst = 0;
    const char *worst_name = "";
    StFile a, b;
    Error e;
    if (st_open(&a, argv[1], &e) || st_open(&b, argv[2], &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 2;
    }
    if (a.n_tensors != b.n_tensors) {
        fprintf(stderr, "stdiff: %d vs %d tensors\n", a.n_tensors, b.n_tensors);
        return 2;
    }
    int identical = 1;
    for (int i = 0; i < a.n_tensors; i++) {
        const StTensor *ta = &a.tensors[i], *tb = st_find(&b, ta->name);
        if (!tb || tb->numel != ta->numel) {
            fprintf(stderr, "stdiff: %s missing or reshaped in %s\n", ta->name, argv[2]);
            return 2;
        }
        float *x = malloc((size_t)ta->numel * sizeof(float) + 4), *y = malloc((size_t)ta->numel * sizeof(float) + 4);
        if (st_read_f32(&a, ta, x, &e) || st_read_f32(&b, tb, y, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 2;
        }
        double m = 0, d = 0;
        for (int64_t j = 0; j < ta->numel; j++) {
            m = fmax(m, fabs(y[j]));
            d = fmax(d, fabs((double)x[j] - y[j]));
            if (memcmp(&x[j], &y[j], sizeof(float))) identical = 0;
        }
        double r = m > 0 ? d / m : d;
        if (r > worst || isnan(r)) worst = isnan(r) ? INFINITY : r, worst_name = ta->name;
        free(x), free(y);
    }
    printf("stdiff: %d tensors, max relative difference %.3e (%s)%s\n", a.n_tensors, worst, worst_name,
           identical ? ", bit-identical" : "");
    st_close(&a), st_close(&b);
    return tol == 0 ? !identical : worst > tol;
}
