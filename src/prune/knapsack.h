// knapsack.h — the exact layer-removal plan (DESIGN §4): choose the removed
// set S minimising sum_{i in S} score[i] subject to sum_{i in S} cost[i] >=
// required (a 0/1 min-cost cover). Exact, not greedy, for any n; fast for the
// few hundred candidates of SDXL.
//
// Tie rule (the plan is a pure function of the inputs): among removed sets
// with the least total score — compared as the exact real sum of the double
// scores, never after rounding — the one with the fewest layers; among those,
// the one whose ascending index list is lexicographically smallest.
#ifndef LD_KNAPSACK_H
#define LD_KNAPSACK_H
#include <stdint.h>

#include "core/common.h"

typedef struct {
    int n_removed;
    int *removed;     // indices, ascending; NULL when n_removed == 0
    double score;     // sum of the removed scores, added in ascending index order
    int64_t cost;     // sum of the removed costs (>= required)
    long long nodes;  // search states generated: a measure of the work done
} KnapsackPlan;

// Solves the plan into *plan (free it with knapsack_plan_free). Returns 0, or
// -1 with e set (plan left empty) when the input is bad (n <= 0, a score that
// is negative, NaN or infinite, a cost <= 0, required < 0, costs overflowing
// int64) or when all candidates together cost less than `required`.
//
// `what` and `total` only phrase that infeasibility message: `what` names the
// cost unit ("parameters", "MACs"; NULL: "cost units") and `total` is the
// whole model's cost the ratio was taken of (<= 0: ratio not stated), giving
//   "needs 817,544,916 parameters removed but all candidates together hold
//    752,558,400 (largest achievable ratio 0.8755)"
// which the caller prefixes with its own context ("prune.ratio = 0.95 ...").
// The stated ratio is rounded down, so asking for it is always feasible.
int knapsack_min_cover(const double *score, const int64_t *cost, int n, int64_t required,
                       const char *what, int64_t total, KnapsackPlan *plan, Error *e);

void knapsack_plan_free(KnapsackPlan *p);

#endif
