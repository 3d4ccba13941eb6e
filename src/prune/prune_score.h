// prune_score.h — scoring the candidate layers (DESIGN §4). `output_loss`
// (LAPTOP: the output MSE to the teacher on the calibration set with only that
// layer removed) costs a forward pass per candidate, so candidates are split
// across the ranks by estimated cost and gathered; the baselines need at most
// one pass and are computed identically on every rank. Every score depends on
// the calibration set and the seed only, never on the rank count.
#ifndef LD_PRUNE_SCORE_H
#define LD_PRUNE_SCORE_H
#include "core/comm.h"
#include "data/calib.h"
#include "io/config.h"  // Criterion and criterion_name: prune.criterion is parsed there

// Candidate -> rank, longest-processing-time first on the estimated cost (the
// MACs of a forward without that layer), ties by index: the same on every rank.
void score_partition(const UNet *u, int ranks, int *owner);

// Scores of every candidate for criterion c into scores[n_cands] on every
// rank (absent candidates get NaN). The teacher's outputs must be in cs.
// progress: rank 0 prints "candidate k/n" lines when nonzero.
int score_criterion(UNet *u, Calib *cs, Criterion c, uint64_t seed, Comm *comm, double *scores, int progress,
                    Error *e);
#endif
