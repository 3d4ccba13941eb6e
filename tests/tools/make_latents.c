// make_latents.c — writes a seeded random dataset in the real-model HDF5 format
// (README "Data formats"): /latents [N,C,H,W] and /context [N,L,D] for the train
// split, /test/latents and /test/context (NTEST rows) for the test split, all
// float32 N(0,1). It stands in for VAE latents and CLIP states where a job needs
// the SD-1.5 data shape but not real data (jobs/sd15_smoke.cfg). With P, also
// SDXL's added conditioning: /pooled [N,P] N(0,1) and /time_ids [N,6] = the
// neutral (8H, 8W, 0, 0, 8H, 8W) of VAE latents (jobs/sdxl_smoke.cfg).
// usage: make_latents OUT.h5 N NTEST C H W L D [SEED [P]]
// The file is written under a temporary name and renamed, so OUT.h5 is either
// complete or absent.
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"

// One float32 dataset of shape dims holding x.
static int write_f32(hid_t file, const char *name, const hsize_t *dims, int rank, const float *x) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    H5Pclose(lcpl);
    return rc;
}

// One float32 dataset of shape dims, filled with N(0,1) draws of stream `stream`.
static int write_normal(hid_t file, const char *name, const hsize_t *dims, int rank, uint64_t seed,
                        uint64_t stream) {
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    float *x = xmalloc(n * sizeof(float));
    rng_normal_fill(x, n, seed, stream, 0);
    int rc = write_f32(file, name, dims, rank, x);
    free(x);
    return rc;
}

static int parse_dim(const char *s, const char *what, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > (1L << 30)) {
        fprintf(stderr, "make_latents: %s = \"%s\": expected an integer >= 1\n", what, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 9 || argc > 11) {
        fprintf(stderr, "usage: make_latents OUT.h5 N NTEST C H W L D [SEED [P]]\n");
        return 2;
    }
    static const char *names[] = {"N", "NTEST", "C", "H", "W", "L", "D"};
    long v[7];
    for (int i = 0; i < 7; i++)
        if (parse_dim(argv[2 + i], names[i], &v[i])) return 2;
    uint64_t seed = argc >= 10 ? strtoull(argv[9], NULL, 10) : 1;
    long P = 0;
    if (argc == 11 && parse_dim(argv[10], "P", &P)) return 2;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]) >= (int)sizeof tmp) {
        fprintf(stderr, "make_latents: output path too long\n");
        return 2;
    }
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        fprintf(stderr, "make_latents: %s: cannot create\n", tmp);
        return 1;
    }
    int rc = 0;
    for (int split = 0; split < 2 && !rc; split++) {
        hsize_t n = (hsize_t)(split ? v[1] : v[0]);
        hsize_t lat[4] = {n, (hsize_t)v[2], (hsize_t)v[3], (hsize_t)v[4]};
        hsize_t ctx[3] = {n, (hsize_t)v[5], (hsize_t)v[6]};
        rc = write_normal(file, split ? "/test/latents" : "/latents", lat, 4, seed, 2 * split + 1) ||
             write_normal(file, split ? "/test/context" : "/context", ctx, 3, seed, 2 * split + 2);
        if (P && !rc) {
            hsize_t pd[2] = {n, (hsize_t)P}, td[2] = {n, 6};
            rc = write_normal(file, split ? "/test/pooled" : "/pooled", pd, 2, seed, 5 + split);
            float *tid = xmalloc((size_t)n * 6 * sizeof(float));
            for (hsize_t i = 0; i < n; i++) {
                const float ids[6] = {8.0f * v[3], 8.0f * v[4], 0, 0, 8.0f * v[3], 8.0f * v[4]};
                memcpy(tid + 6 * i, ids, sizeof ids);
            }
            rc = rc || write_f32(file, split ? "/test/time_ids" : "/time_ids", td, 2, tid);
            free(tid);
        }
    }
    if (H5Fclose(file) < 0) rc = 1;
    if (rc || rename(tmp, argv[1]) != 0) {
        fprintf(stderr, "make_latents: writing %s failed\n", argv[1]);
        remove(tmp);
        return 1;
    }
    printf("%s: /latents [%ld,%ld,%ld,%ld], /context [%ld,%ld,%ld]%s, /test with %ld rows\n", argv[1], v[0], v[2],
           v[3], v[4], v[0], v[5], v[6], P ? ", /pooled, /time_ids" : "", v[1]);
    return 0;
}
