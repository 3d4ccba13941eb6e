// test_fid.c — the FID and KID math (metrics/fid.h) against closed forms and
// independent references:
//  - a set against itself gives ~0 (also with fewer rows than features, where
//    the covariance is singular and the round-off clamp matters);
//  - Gaussians with diagonal, and with commuting non-diagonal covariances
//    (S1 = Q A Q^T, S2 = Q B Q^T: the distance is |dmu|^2 + sum (sqrt a - sqrt b)^2),
//    frechet_distance to 1e-9 relative;
//  - non-commuting covariances against tr (S1 S2)^{1/2} from a Denman–Beavers
//    iteration on the non-symmetric S1 S2 (no eigensolver: an independent path);
//  - fid_features on large samples of known Gaussians, to a sampling tolerance;
//  - feature_stats against a naive one-pass reference;
//  - KID against the full-Gram-matrix formula, and ~0 for one distribution;
//  - bad input (NaN, Inf, too few rows, asymmetric or indefinite covariance)
//    gives an error naming what is wrong.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/fid.h"
#include "testutil.h"

// ---- double-precision randomness (splitmix64 + Box–Muller) ------------------

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double unit(uint64_t *s) { return ((double)(next_u64(s) >> 11) + 0.5) * 0x1p-53; }
static double normal(uint64_t *s) { return sqrt(-2.0 * log(unit(s))) * cos(6.283185307179586 * unit(s)); }

// ---- small dense helpers (row-major d x d) ----------------------------------

static void matmul(const double *a, const double *b, double *c, int d) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += a[i * d + k] * b[k * d + j];
            c[i * d + j] = s;
        }
}

// A random orthogonal Q: the product of d Householder reflections.
static void random_orthogonal(double *q, int d, uint64_t *rng) {
    for (int i = 0; i < d * d; i++) q[i] = i % (d + 1) == 0;
    double *v = malloc(sizeof(double) * d), *t = malloc(sizeof(double) * d * d),
           *h = malloc(sizeof(double) * d * d);
    for (int r = 0; r < d; r++) {
        double nn = 0;
        for (int i = 0; i < d; i++) v[i] = normal(rng), nn += v[i] * v[i];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) h[i * d + j] = (i == j) - 2.0 * v[i] * v[j] / nn;
        matmul(h, q, t, d);
        memcpy(q, t, sizeof(double) * d * d);
    }
    free(v), free(t), free(h);
}

// S = Q diag(lam) Q^T
static void spectral(const double *q, const double *lam, double *s, int d) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double x = 0;
            for (int k = 0; k < d; k++) x += q[i * d + k] * lam[k] * q[j * d + k];
            s[i * d + j] = x;
        }
    for (int i = 0; i < d; i++)  // exactly symmetric, as a covariance is
        for (int j = i + 1; j < d; j++) s[j * d + i] = s[i * d + j];
}

// Inverse by Gauss–Jordan with partial pivoting; 0 on success.
static int invert(const double *a, double *inv, int d) {
    double *m = malloc(sizeof(double) * d * d);
    memcpy(m, a, sizeof(double) * d * d);
    for (int i = 0; i < d * d; i++) inv[i] = i % (d + 1) == 0;
    for (int c = 0; c < d; c++) {
        int p = c;
        for (int r = c + 1; r < d; r++)
            if (fabs(m[r * d + c]) > fabs(m[p * d + c])) p = r;
        if (m[p * d + c] == 0) return free(m), -1;
        for (int k = 0; k < d; k++) {
            double t = m[c * d + k]; m[c * d + k] = m[p * d + k]; m[p * d + k] = t;
            t = inv[c * d + k]; inv[c * d + k] = inv[p * d + k]; inv[p * d + k] = t;
        }
        double piv = m[c * d + c];
        for (int k = 0; k < d; k++) m[c * d + k] /= piv, inv[c * d + k] /= piv;
        for (int r = 0; r < d; r++) {
            if (r == c) continue;
            double f = m[r * d + c];
            for (int k = 0; k < d; k++) m[r * d + k] -= f * m[c * d + k], inv[r * d + k] -= f * inv[c * d + k];
        }
    }
    free(m);
    return 0;
}

// tr A^{1/2} by the Denman–Beavers iteration (Y -> A^{1/2}, Z -> A^{-1/2}),
// valid for A with positive real eigenvalues such as S1 S2 of two SPD matrices.
static double trace_sqrt_db(const double *a, int d) {
    size_t n = (size_t)d * d;
    double *y = malloc(sizeof(double) * n), *z = malloc(sizeof(double) * n), *yi = malloc(sizeof(double) * n),
           *zi = malloc(sizeof(double) * n);
    memcpy(y, a, sizeof(double) * n);
    for (size_t i = 0; i < n; i++) z[i] = i % (size_t)(d + 1) == 0;
    for (int it = 0; it < 100; it++) {
        if (invert(y, yi, d) || invert(z, zi, d)) { fprintf(stderr, "trace_sqrt_db: singular\n"); exit(1); }
        double change = 0, scale = 0;
        for (size_t i = 0; i < n; i++) {
            double ny = 0.5 * (y[i] + zi[i]);
            change = fmax(change, fabs(ny - y[i])), scale = fmax(scale, fabs(ny));
            y[i] = ny;
            z[i] = 0.5 * (z[i] + yi[i]);
        }
        if (change <= 1e-15 * scale) break;
    }
    double tr = 0;
    for (int i = 0; i < d; i++) tr += y[i * d + i];
    free(y), free(z), free(yi), free(zi);
    return tr;
}

static double trace(const double *s, int d) {
    double t = 0;
    for (int i = 0; i < d; i++) t += s[i * d + i];
    return t;
}

// Rows x = mu + Q diag(sqrt lam) z, z ~ N(0, I): samples of N(mu, Q diag(lam) Q^T).
static float *gaussian_rows(int n, int d, const double *mu, const double *q, const double *lam, uint64_t *rng) {
    float *x = malloc(sizeof(float) * (size_t)n * d);
    double *z = malloc(sizeof(double) * d);
    for (int r = 0; r < n; r++) {
        for (int k = 0; k < d; k++) z[k] = normal(rng) * sqrt(lam[k]);
        for (int i = 0; i < d; i++) {
            double s = mu[i];
            for (int k = 0; k < d; k++) s += q[i * d + k] * z[k];
            x[(size_t)r * d + i] = (float)s;
        }
    }
    free(z);
    return x;
}

// ---- the checks ---------------------------------------------------------------

static void test_self(void) {
    uint64_t rng = 1;
    int d = 16;
    double q[16 * 16], lam[16], mu[16];
    random_orthogonal(q, d, &rng);
    for (int i = 0; i < d; i++) lam[i] = 0.1 + 3.0 * unit(&rng), mu[i] = 5.0 * normal(&rng);
    for (int pass = 0; pass < 2; pass++) {
        int n = pass == 0 ? 400 : 5;  // 5 < d: a singular covariance
        float *x = gaussian_rows(n, d, mu, q, lam, &rng);
        double *m = malloc(sizeof(double) * d), *c = malloc(sizeof(double) * d * d), fid = NAN;
        feature_stats(x, n, d, m, c);
        Error e = {0};
        int rc = fid_features(x, n, x, n, d, &fid, &e);
        EXPECT(rc == 0, "self FID (n=%d): %s", n, e.msg);
        EXPECT(fabs(fid) < 1e-6 * trace(c, d), "self FID (n=%d) = %.3g, trace %.3g", n, fid, trace(c, d));
        printf("self FID n=%d d=%d: %.3g (trace %.3g)\n", n, d, fid, trace(c, d));
        free(x), free(m), free(c);
    }
}

// Commuting covariances (same eigenvectors Q): the closed form.
static void test_closed_form(int diagonal) {
    uint64_t rng = diagonal ? 2 : 3;
    int d = 12;
    double q[12 * 12], a[12], b[12], mu1[12], mu2[12], s1[144], s2[144];
    if (diagonal)
        for (int i = 0; i < d * d; i++) q[i] = i % (d + 1) == 0;
    else
        random_orthogonal(q, d, &rng);
    double want = 0;
    for (int i = 0; i < d; i++) {
        a[i] = 0.01 + 4.0 * unit(&rng), b[i] = 0.01 + 4.0 * unit(&rng);
        mu1[i] = normal(&rng), mu2[i] = normal(&rng);
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    spectral(q, a, s1, d), spectral(q, b, s2, d);
    double got = NAN;
    Error e = {0};
    EXPECT(frechet_distance(mu1, s1, mu2, s2, d, &got, &e) == 0, "%s", e.msg);
    EXPECT(fabs(got - want) <= 1e-9 * want, "%s: got %.15g, closed form %.15g", diagonal ? "diagonal" : "commuting",
           got, want);
    printf("%s closed form: %.15g vs %.15g (rel %.2g)\n", diagonal ? "diagonal" : "commuting", got, want,
           fabs(got - want) / want);
}

// Non-commuting SPD covariances against the Denman–Beavers trace.
static void test_noncommuting(void) {
    uint64_t rng = 4;
    int d = 10;
    double s1[100], s2[100], g[100], p[100], mu1[10], mu2[10];
    for (int which = 0; which < 2; which++) {
        for (int i = 0; i < d * d; i++) g[i] = normal(&rng);
        double *s = which ? s2 : s1;
        for (int i = 0; i < d; i++)  // G G^T / d + 0.05 I
            for (int j = 0; j < d; j++) {
                double x = 0;
                for (int k = 0; k < d; k++) x += g[i * d + k] * g[j * d + k];
                s[i * d + j] = x / d + 0.05 * (i == j);
            }
        for (int i = 0; i < d; i++)
            for (int j = i + 1; j < d; j++) s[j * d + i] = s[i * d + j];
    }
    double dmu = 0;
    for (int i = 0; i < d; i++) mu1[i] = normal(&rng), mu2[i] = mu1[i] + 0.1 * normal(&rng),
                                dmu += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    matmul(s1, s2, p, d);
    double want = dmu + trace(s1, d) + trace(s2, d) - 2.0 * trace_sqrt_db(p, d);
    double got = NAN;
    Error e = {0};
    EXPECT(frechet_distance(mu1, s1, mu2, s2, d, &got, &e) == 0, "%s", e.msg);
    double scale = trace(s1, d) + trace(s2, d);
    EXPECT(fabs(got - want) <= 1e-9 * scale, "non-commuting: got %.15g, Denman-Beavers %.15g", got, want);
    printf("non-commuting: %.15g vs Denman-Beavers %.15g (diff %.2g of trace %.3g)\n", got, want, fabs(got - want),
           scale);
}

// Large samples of two known Gaussians: the estimate near the population value.
static void test_sampled(void) {
    uint64_t rng = 5;
    int d = 6, n = 40000;
    double q[36], a[6], b[6], mu1[6], mu2[6];
    random_orthogonal(q, d, &rng);
    double want = 0;
    for (int i = 0; i < d; i++) {
        a[i] = 0.5 + unit(&rng), b[i] = 2.0 + unit(&rng);
        mu1[i] = normal(&rng), mu2[i] = mu1[i] + 0.5;
        want += 0.25 + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    float *x = gaussian_rows(n, d, mu1, q, a, &rng), *y = gaussian_rows(n, d, mu2, q, b, &rng);
    double got = NAN;
    Error e = {0};
    EXPECT(fid_features(x, n, y, n, d, &got, &e) == 0, "%s", e.msg);
    // Sampling error: the mean term's error ~ 2|dmu| sqrt(tr(S1+S2)/n) ~ 0.04
    // here, and the covariance terms' ~ tr S / sqrt(n) ~ 0.1 at worst: 0.1 is a
    // few standard errors, and a dropped factor or term moves it by > 1.
    EXPECT(fabs(got - want) < 0.1, "sampled FID %.5g, population %.5g", got, want);
    printf("sampled FID (n=%d, d=%d): %.5g, population %.5g\n", n, d, got, want);
    free(x), free(y);
}

static void test_stats(void) {
    uint64_t rng = 6;
    int n = 700, d = 9;  // n > STATS_CHUNK: the chunked accumulation is crossed
    float *x = malloc(sizeof(float) * n * d);
    for (int i = 0; i < n * d; i++) x[i] = (float)(100.0 + normal(&rng) * (1 + i % d));
    double mu[9], cov[81];
    feature_stats(x, n, d, mu, cov);
    double err = 0;
    for (int i = 0; i < d; i++) {
        long double s = 0;
        for (int r = 0; r < n; r++) s += x[r * d + i];
        long double m = s / n;
        err = fmax(err, fabs((double)(mu[i] - m)) / fabs((double)m));
        for (int j = 0; j < d; j++) {
            long double mj = 0, c = 0;
            for (int r = 0; r < n; r++) mj += x[r * d + j];
            mj /= n;
            for (int r = 0; r < n; r++) c += (x[r * d + i] - m) * (x[r * d + j] - mj);
            c /= n - 1;
            err = fmax(err, fabs((double)(cov[i * d + j] - c)) / fabs((double)cov[i * d + i]));
            EXPECT(cov[i * d + j] == cov[j * d + i], "cov not exactly symmetric at [%d,%d]", i, j);
        }
    }
    EXPECT(err < 1e-12, "feature_stats vs long-double reference: max rel err %.3g", err);
    free(x);
}

// KID: sum over all pairs of the Gram matrices minus their diagonals (the
// direct formula, not the implementation's upper-triangle sums).
static double kid_ref(const float *a, int na, const float *b, int nb, int d) {
    double kaa = 0, kbb = 0, kab = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < na; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += (double)a[i * d + k] * a[j * d + k];
            if (i != j) kaa += pow(s / d + 1, 3);
        }
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < nb; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += (double)b[i * d + k] * b[j * d + k];
            if (i != j) kbb += pow(s / d + 1, 3);
        }
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += (double)a[i * d + k] * b[j * d + k];
            kab += pow(s / d + 1, 3);
        }
    return kaa / ((double)na * (na - 1)) + kbb / ((double)nb * (nb - 1)) - 2 * kab / ((double)na * nb);
}

static void test_kid(void) {
    uint64_t rng = 7;
    int d = 8, na = 150, nb = 110;
    double q[64], lam[8], mu0[8] = {0}, mu1[8];
    random_orthogonal(q, d, &rng);
    for (int i = 0; i < d; i++) lam[i] = 0.5 + unit(&rng), mu1[i] = 0.7;
    float *a = gaussian_rows(na, d, mu0, q, lam, &rng), *b = gaussian_rows(nb, d, mu1, q, lam, &rng);
    float *c = gaussian_rows(nb, d, mu0, q, lam, &rng);
    double got = NAN, want = kid_ref(a, na, b, nb, d);
    Error e = {0};
    EXPECT(kid_features(a, na, b, nb, d, &got, &e) == 0, "%s", e.msg);
    EXPECT(fabs(got - want) <= 1e-12 * fabs(want), "KID %.15g, reference %.15g", got, want);
    double same = NAN;
    EXPECT(kid_features(a, na, c, nb, d, &same, &e) == 0, "%s", e.msg);
    EXPECT(fabs(same - kid_ref(a, na, c, nb, d)) <= 1e-9 * fabs(want), "KID same-distribution mismatch");
    // One distribution: an unbiased estimate near 0, far below the shifted pair.
    EXPECT(fabs(same) < 0.1 * want, "KID same distribution %.4g vs shifted %.4g", same, want);
    printf("KID shifted %.6g (reference %.6g), same distribution %.3g\n", got, want, same);
    free(a), free(b), free(c);
}

static void expect_error(int rc, const Error *e, const char *needle, const char *what) {
    EXPECT(rc == -1, "%s: expected an error, got rc %d", what, rc);
    EXPECT(strstr(e->msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, e->msg, needle);
}

static void test_errors(void) {
    int d = 3;
    double mu[3] = {0, 0, 0}, id[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, bad[9], out = 0;
    Error e = {0};
    double mun[3] = {0, NAN, 0};
    expect_error(frechet_distance(mun, id, mu, id, d, &out, &e), &e, "mu1[1] is not finite", "NaN mean");
    memcpy(bad, id, sizeof bad), bad[5] = INFINITY;
    expect_error(frechet_distance(mu, id, mu, bad, d, &out, &e), &e, "cov2[1,2] is not finite", "Inf covariance");
    memcpy(bad, id, sizeof bad), bad[1] = 0.5;
    expect_error(frechet_distance(mu, bad, mu, id, d, &out, &e), &e, "cov1 is not symmetric", "asymmetric");
    memcpy(bad, id, sizeof bad), bad[4] = -1;
    expect_error(frechet_distance(mu, bad, mu, id, d, &out, &e), &e, "not positive semidefinite", "indefinite");
    expect_error(frechet_distance(mu, id, mu, id, 0, &out, &e), &e, "dimension 0", "d = 0");
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    expect_error(fid_features(x, 1, x, 4, d, &out, &e), &e, "at least 2", "one row");
    expect_error(kid_features(x, 4, x, 1, d, &out, &e), &e, "at least 2", "KID one row");
    x[7] = NAN;
    expect_error(fid_features(x, 4, x, 4, d, &out, &e), &e, "not finite", "NaN feature");
    expect_error(kid_features(x, 4, x, 4, d, &out, &e), &e, "row 2, feature 1 is not finite", "KID NaN feature");
}

int main(void) {
    test_self();
    test_closed_form(1);
    test_closed_form(0);
    test_noncommuting();
    test_sampled();
    test_stats();
    test_kid();
    test_errors();
    return tu_report("test_fid");
}
