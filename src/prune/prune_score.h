// prune_score.h — scoring the candidate layers (DESIGN §4). `output_loss`
// (LAPTOP: the output MSE to the teacher on the calibration set with only that
// layer removed) costs a forward pass per candidate and calibration shard, so
// the (candidate x shard) jobs are split across the ranks by estimated cost and
// their partial sums gathered and added in a fixed order; the baselines need at
// most one pass and are computed identically on every rank. Every score depends
// on the calibration set and the seed only, never on the rank count.
#ifndef LD_PRUNE_SCORE_H
#define LD_PRUNE_SCORE_H
#include "core/comm.h"
#include "data/calib.h"
#include "io/config.h"  // Criterion and criterion_name: prune.criterion is parsed there

// Jobs -> ranks, longest-processing-time first: jobs by cost descending (ties
// by index), each to the least-loaded rank (ties: the lowest). A function of
// the costs and the rank count alone, so the same on every rank.
void lpt_partition(const long long *cost, int n_jobs, int ranks, int *owner);

// MACs of one sample's forward with the candidates of mask[n_cands] bypassed.
long long removal_macs(const UNet *u, const uint8_t *mask);

// The output loss of removal sets: loss[k] = mean over the calibration set of
// (out - teacher)^2 with the candidates of masks[k * n_cands ..] bypassed, or
// NaN without a pass where live (NULL: all live) has live[k] == 0. The work is
// (set x shard) jobs (calib_shards), split by lpt_partition on their MACs;
// each job sums its shard's squared errors, and every rank adds the gathered
// sums of a set in shard order 0, 1, ..., so loss[] does not depend on the
// rank count (bit for bit at a fixed thread count). Every rank gets loss[].
// label (NULL: silent): rank 0 prints "LABEL: N jobs (...): rank 0: k jobs,
// rank 1: ..." and progress lines under it; `what` names a set ("candidate").
int removal_losses(UNet *u, const Calib *cs, const uint8_t *masks, const uint8_t *live, int n_sets, Comm *comm,
                   const char *label, const char *what, double *loss, Error *e);

// Scores of every candidate for criterion c into scores[n_cands] on every
// rank (absent candidates get NaN). The teacher's outputs must be in cs.
// progress: rank 0 prints output_loss's partition and progress lines when nonzero.
int score_criterion(UNet *u, Calib *cs, Criterion c, uint64_t seed, Comm *comm, double *scores, int progress,
                    Error *e);
#endif
