// fid.c — see fid.h.
#include "metrics/fid.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

// LAPACK's symmetric eigensolver, the Fortran symbol (Debian's libopenblas
// carries LAPACK; no LAPACKE there). The two trailing size_t are gfortran's
// hidden lengths of the character arguments: passing them is the ABI.
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                   double *work, const int *lwork, int *info, size_t jobz_len, size_t uplo_len);

enum { STATS_CHUNK = 256 };  // rows centred at a time: bounded scratch for any n

void feature_stats(const float *x, int n, int d, double *mu, double *cov) {
    CHECK(n >= 2 && d >= 1);
    // Two passes (mean, then centred products): the one-pass sum-of-squares
    // form loses the covariance to cancellation when |mu| >> spread.
    for (int j = 0; j < d; j++) mu[j] = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += x[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= n;
    memset(cov, 0, sizeof(double) * d * d);
    double *c = xmalloc(sizeof(double) * STATS_CHUNK * d);
    for (int i0 = 0; i0 < n; i0 += STATS_CHUNK) {
        int rows = n - i0 < STATS_CHUNK ? n - i0 : STATS_CHUNK;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < d; j++) c[(size_t)i * d + j] = x[(size_t)(i0 + i) * d + j] - mu[j];
        // cov (upper triangle) += c^T c
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, rows, 1.0, c, d, 1.0, cov, d);
    }
    free(c);
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            cov[(size_t)i * d + j] /= n - 1;
            cov[(size_t)j * d + i] = cov[(size_t)i * d + j];  // exactly symmetric
        }
}

// Eigenvalues w[d] (ascending) of the symmetric a[d,d]; with vectors, a is
// overwritten by the eigenvectors, eigenvector j in row j (LAPACK writes
// column-major columns, which are our rows). A symmetric matrix reads the
// same in either order, so a row-major input needs no transpose.
static int sym_eig(double *a, int d, int vectors, double *w, const char *what, Error *e) {
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int lwork = -1, info = 0;
    double query = 0;
    dsyev_(&jobz, &uplo, &d, a, &d, w, &query, &lwork, &info, 1, 1);  // workspace size
    if (info != 0) return errorf(e, "frechet_distance: LAPACK dsyev workspace query for %s failed (info %d)", what, info);
    lwork = (int)query;
    if (lwork < 1) lwork = 1;
    double *work = xmalloc(sizeof(double) * (size_t)lwork);
    dsyev_(&jobz, &uplo, &d, a, &d, w, work, &lwork, &info, 1, 1);
    free(work);
    if (info != 0)
        return errorf(e, "frechet_distance: LAPACK dsyev on %s failed (info %d: %s)", what, info,
                      info < 0 ? "an illegal argument" : "the eigenvalue iteration did not converge");
    return 0;
}

static int check_finite(const double *x, size_t n, int d, const char *name, Error *e) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            if (n == (size_t)d) return errorf(e, "frechet_distance: %s[%zu] is not finite (%g)", name, i, x[i]);
            return errorf(e, "frechet_distance: %s[%zu,%zu] is not finite (%g)", name, i / d, i % d, x[i]);
        }
    return 0;
}

static int check_symmetric(const double *c, int d, const char *name, Error *e) {
    double amax = 0;
    for (size_t i = 0; i < (size_t)d * d; i++) amax = fmax(amax, fabs(c[i]));
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j < d; j++)
            if (fabs(c[(size_t)i * d + j] - c[(size_t)j * d + i]) > 1e-9 * amax)
                return errorf(e, "frechet_distance: %s is not symmetric: [%d,%d] = %g but [%d,%d] = %g", name, i, j,
                              c[(size_t)i * d + j], j, i, c[(size_t)j * d + i]);
    return 0;
}

int frechet_distance(const double *mu1, const double *cov1, const double *mu2, const double *cov2, int d,
                     double *out, Error *e) {
    if (d < 1) return errorf(e, "frechet_distance: feature dimension %d, expected >= 1", d);
    size_t dd = (size_t)d * d;
    if (check_finite(mu1, d, d, "mu1", e) || check_finite(mu2, d, d, "mu2", e) ||
        check_finite(cov1, dd, d, "cov1", e) || check_finite(cov2, dd, d, "cov2", e) ||
        check_symmetric(cov1, d, "cov1", e) || check_symmetric(cov2, d, "cov2", e))
        return -1;
    double *v = xmalloc(sizeof(double) * dd), *w = xmalloc(sizeof(double) * d);
    double *r = xmalloc(sizeof(double) * dd), *t = xmalloc(sizeof(double) * dd);
    int rc = -1;
    // sqrt(S1) = V diag(sqrt(l)) V^T, built as R = W^T W with W = diag(l^{1/4}) V.
    memcpy(v, cov1, sizeof(double) * dd);
    if (sym_eig(v, d, 1, w, "cov1", e)) goto done;
    double lmax = fmax(fabs(w[0]), fabs(w[d - 1]));
    if (w[0] < -1e-6 * lmax) {
        errorf(e, "frechet_distance: cov1 is not positive semidefinite (eigenvalue %g, largest %g)", w[0], w[d - 1]);
        goto done;
    }
    for (int j = 0; j < d; j++) {
        // Eigenvalues of a PSD matrix that come out slightly negative are
        // round-off (rank-deficient covariances, n <= d): clamp them to 0.
        double s = sqrt(sqrt(fmax(w[j], 0.0)));
        for (int i = 0; i < d; i++) v[(size_t)j * d + i] *= s;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, d, 1.0, v, d, v, d, 0.0, r, d);
    // M = sqrt(S1) S2 sqrt(S1): symmetric PSD, with the eigenvalues of S1 S2, so
    // tr (S1 S2)^{1/2} = sum sqrt(eig(M)).
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, r, d, cov2, d, 0.0, t, d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, t, d, r, d, 0.0, v, d);
    for (int i = 0; i < d; i++)  // symmetric up to round-off; make it exactly so for dsyev
        for (int j = i + 1; j < d; j++) {
            double m = 0.5 * (v[(size_t)i * d + j] + v[(size_t)j * d + i]);
            v[(size_t)i * d + j] = v[(size_t)j * d + i] = m;
        }
    if (sym_eig(v, d, 0, w, "sqrt(cov1) cov2 sqrt(cov1)", e)) goto done;
    double tr_sqrt = 0, tr1 = 0, tr2 = 0, dmu = 0;
    for (int j = 0; j < d; j++) tr_sqrt += sqrt(fmax(w[j], 0.0));  // again: negatives are round-off
    for (int i = 0; i < d; i++) {
        tr1 += cov1[(size_t)i * d + i];
        tr2 += cov2[(size_t)i * d + i];
        dmu += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    }
    // Not clamped at 0: equal sets give a round-off-sized value of either sign.
    *out = dmu + tr1 + tr2 - 2.0 * tr_sqrt;
    if (!isfinite(*out)) {
        errorf(e, "frechet_distance: the distance is not finite (%g): covariances too large for double", *out);
        goto done;
    }
    rc = 0;
done:
    free(v), free(w), free(r), free(t);
    return rc;
}

int fid_features(const float *a, int na, const float *b, int nb, int d, double *out, Error *e) {
    if (na < 2 || nb < 2)
        return errorf(e, "fid: %d and %d feature rows, expected at least 2 in each set (a covariance needs 2)", na, nb);
    if (d < 1) return errorf(e, "fid: feature dimension %d, expected >= 1", d);
    size_t dd = (size_t)d * d;
    double *mu1 = xmalloc(sizeof(double) * d), *mu2 = xmalloc(sizeof(double) * d);
    double *c1 = xmalloc(sizeof(double) * dd), *c2 = xmalloc(sizeof(double) * dd);
    feature_stats(a, na, d, mu1, c1);
    feature_stats(b, nb, d, mu2, c2);
    int rc = frechet_distance(mu1, c1, mu2, c2, d, out, e);
    free(mu1), free(mu2), free(c1), free(c2);
    return rc;
}

// ---- KID -------------------------------------------------------------------

static double poly3(const float *x, const float *y, int d) {
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)x[k] * y[k];
    double u = s / d + 1.0;
    return u * u * u;
}

// Sum over i of k(x_i, y_j) for j in [j0(i), ny): j0 = i + 1 when same (the
// off-diagonal pairs of one set, each once), else 0. Row sums are kept per i
// and added in order, so the result does not depend on the thread count.
static double kernel_sum(const float *x, int nx, const float *y, int ny, int d, int same) {
    double *row = xcalloc((size_t)nx, sizeof(double));
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < nx; i++) {
        double s = 0;
        for (int j = same ? i + 1 : 0; j < ny; j++) s += poly3(x + (size_t)i * d, y + (size_t)j * d, d);
        row[i] = s;
    }
    double total = 0;
    for (int i = 0; i < nx; i++) total += row[i];
    free(row);
    return total;
}

int kid_features(const float *a, int na, const float *b, int nb, int d, double *out, Error *e) {
    if (na < 2 || nb < 2)
        return errorf(e, "kid: %d and %d feature rows, expected at least 2 in each set", na, nb);
    if (d < 1) return errorf(e, "kid: feature dimension %d, expected >= 1", d);
    for (size_t i = 0; i < (size_t)na * d; i++)
        if (!isfinite(a[i])) return errorf(e, "kid: first set, row %zu, feature %zu is not finite", i / d, i % d);
    for (size_t i = 0; i < (size_t)nb * d; i++)
        if (!isfinite(b[i])) return errorf(e, "kid: second set, row %zu, feature %zu is not finite", i / d, i % d);
    double m = na, n = nb;
    double kaa = 2.0 * kernel_sum(a, na, a, na, d, 1);  // both (i,j) and (j,i)
    double kbb = 2.0 * kernel_sum(b, nb, b, nb, d, 1);
    double kab = kernel_sum(a, na, b, nb, d, 0);
    *out = kaa / (m * (m - 1)) + kbb / (n * (n - 1)) - 2.0 * kab / (m * n);
    if (!isfinite(*out)) return errorf(e, "kid: the estimate is not finite (%g): features too large", *out);
    return 0;
}
