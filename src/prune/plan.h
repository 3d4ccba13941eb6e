// plan.h — from scores to a removal plan (DESIGN §4): the exact knapsack
// (knapsack.c) over the candidates' parameters or MACs, or a handcrafted list;
// the additivity report's random removal sets; and the student, a real
// smaller U-Net with the kept layers' weights under their original names.
#ifndef LD_PLAN_H
#define LD_PLAN_H
#include <stdint.h>

#include "io/config.h"
#include "model/unet.h"

typedef struct {
    int n_cands;
    Granularity gran;        // the teacher's candidate list the plan indexes
    uint8_t *removed;        // per candidate of the full architecture
    int n_removed;
    int budget_macs;         // 0: parameters, 1: MACs
    long long total;         // the U-Net's total of that budget
    long long required;      // ceil(ratio * total) (0 for a handcrafted plan)
    long long removed_cost;  // what the plan removes
    double ratio;            // prune.ratio asked for
    double predicted;        // sum of the removed candidates' scores
    double actual;           // measured output loss of removing them all (NAN until measured)
    char criterion[32];      // scores used, or "handcrafted"
} Plan;

// Exact optimum for prune.ratio/prune.budget, or prune.layers when given.
// scores: one per candidate (NaN for none), of `criterion`. Errors name the key.
int plan_make(const UNet *teacher, const double *scores, Criterion criterion, const PruneConfig *pc, Plan *p,
              Error *e);
void plan_free(Plan *p);
// The table: layer, kind, params, MACs, score, running ratio.
void plan_print(FILE *f, const UNet *teacher, const double *scores, const Plan *p);

// K random removal sets (K x n_cands flags), sizes spread so their removed
// budget fraction covers (0, max_ratio]: set k aims at max_ratio*(k+1)/K.
uint8_t *additivity_sets(const UNet *teacher, int K, double max_ratio, int budget_macs, uint64_t seed);

// Pearson correlation of x and y (n >= 2).
double pearson(const double *x, const double *y, int n);

// A pruned copy at the teacher's granularity: built without the removed
// layers (or blocks), every kept tensor copied by name.
UNet *plan_student(const UNet *teacher, const uint8_t *removed, Error *e);
#endif
