// fid.h — distribution distances between two sets of feature vectors (issue
// #11): the Fréchet distance of their Gaussian fits (FID, when the features are
// an evaluator network's penultimate activations) and the kernel inception
// distance (KID, an unbiased MMD^2). Pure math: rows in, a number out.
#ifndef LD_FID_H
#define LD_FID_H

#include "core/common.h"

// Mean mu[d] and unbiased covariance cov[d,d] (divided by n-1, row-major,
// exactly symmetric) of the rows of x[n,d], accumulated in double. Needs
// n >= 2 and d >= 1 (a programmer error otherwise: callers check n first).
// Non-finite rows give non-finite statistics, which frechet_distance rejects.
void feature_stats(const float *x, int n, int d, double *mu, double *cov);

// The Fréchet distance between N(mu1, cov1) and N(mu2, cov2):
//   |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})
// with the trace of the square root from LAPACK's symmetric eigensolver
// (dsyev). Returns 0 with *out set, or -1 with e set when an input is not
// finite, a covariance is not symmetric or clearly not positive semidefinite,
// d < 1, or LAPACK reports a failure.
int frechet_distance(const double *mu1, const double *cov1, const double *mu2, const double *cov2, int d,
                     double *out, Error *e);

// FID between the rows of a[na,d] and b[nb,d]: feature_stats of both, then
// frechet_distance. -1 with e set when na or nb < 2, d < 1, or as above.
int fid_features(const float *a, int na, const float *b, int nb, int d, double *out, Error *e);

// KID (Bińkowski et al., 2018): the unbiased estimate of MMD^2 between the rows
// of a[na,d] and b[nb,d] under the cubic polynomial kernel k(x,y) = (x.y/d + 1)^3,
// over all pairs (no subsets), in double. It can be slightly negative (the
// estimate is unbiased). -1 with e set when na or nb < 2, d < 1 or an input or
// the result is not finite. O((na + nb)^2 d) time, O(na + nb) memory beyond the
// inputs; the same result for any thread count.
int kid_features(const float *a, int na, const float *b, int nb, int d, double *out, Error *e);

#endif
