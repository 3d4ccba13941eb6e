// bench_knapsack.c — time per exact layer-removal plan (knapsack_min_cover)
// and search states, on random instances shaped like the real ones:
//   sd15        34 candidates whose costs repeat like identical blocks
//               (8 block sizes in 2e6..5e7 parameters), scores over 4 decades
//   uncorr      costs log-uniform 2e6..5e7, scores over 4 decades, independent
//   correlated  score ~ cost x (1 +- 50%) noise: the textbook-hard case
//   macs        costs 1e9..5e10 (MACs), scores over 4 decades
// at ratios 0.25 and 0.5 of the candidates' total. Prints measurements only.
// usage: bench_knapsack [SEEDS]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/common.h"
#include "prune/knapsack.h"

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1p-53; }
static double log_uniform(uint64_t *s, double lo, double hi) {
    return exp(log(lo) + unit(s) * (log(hi) - log(lo)));
}

typedef enum { SD15, UNCORR, CORRELATED, MACS } Kind;
static const char *kind_name[] = {"sd15", "uncorr", "correlated", "macs"};

static void make(Kind kind, int n, uint64_t *rng, double *score, int64_t *cost) {
    int64_t block[8];
    for (int b = 0; b < 8; b++) block[b] = (int64_t)log_uniform(rng, 2e6, 5e7);
    for (int i = 0; i < n; i++) {
        switch (kind) {
            case SD15:
                cost[i] = block[next_u64(rng) % 8];
                break;
            case MACS:
                cost[i] = (int64_t)log_uniform(rng, 1e9, 5e10);
                break;
            default:
                cost[i] = (int64_t)log_uniform(rng, 2e6, 5e7);
                break;
        }
        score[i] = kind == CORRELATED ? (double)cost[i] * 1e-9 * (0.5 + unit(rng))
                                      : log_uniform(rng, 1e-6, 1e-2);
    }
}

int main(int argc, char **argv) {
    int seeds = argc > 1 ? atoi(argv[1]) : 20;
    const struct {
        Kind kind;
        int n;
    } cases[] = {{SD15, 34},        {UNCORR, 100},     {UNCORR, 200},
                 {UNCORR, 400},     {MACS, 200},       {CORRELATED, 34},
                 {CORRELATED, 100}, {CORRELATED, 200}, {CORRELATED, 400}};
    const double ratios[] = {0.25, 0.5};
    printf("%-11s %4s %5s %6s %11s %11s %11s %11s %8s\n", "instances", "n", "ratio", "seeds",
           "mean_ms", "max_ms", "mean_nodes", "max_nodes", "removed");
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int r = 0; r < 2; r++) {
            int n = cases[c].n;
            double *score = malloc(n * sizeof *score), t_sum = 0, t_max = 0, removed = 0;
            int64_t *cost = malloc(n * sizeof *cost);
            long long nodes_sum = 0, nodes_max = 0;
            for (int s = 0; s < seeds; s++) {
                uint64_t rng = 1000003ULL * (uint64_t)(s + 1) + (uint64_t)n;
                make(cases[c].kind, n, &rng, score, cost);
                int64_t all = 0;
                for (int i = 0; i < n; i++) all += cost[i];
                int64_t required = (int64_t)ceil(ratios[r] * (double)all);
                KnapsackPlan p;
                Error e;
                double t0 = now_s();
                if (knapsack_min_cover(score, cost, n, required, "parameters", all, &p, &e)) {
                    fprintf(stderr, "%s\n", e.msg);
                    return 1;
                }
                double dt = now_s() - t0;
                t_sum += dt, t_max = dt > t_max ? dt : t_max, removed += p.n_removed;
                nodes_sum += p.nodes, nodes_max = p.nodes > nodes_max ? p.nodes : nodes_max;
                knapsack_plan_free(&p);
            }
            printf("%-11s %4d %5.2f %6d %11.3f %11.3f %11.0f %11lld %8.1f\n",
                   kind_name[cases[c].kind], n, ratios[r], seeds, 1e3 * t_sum / seeds, 1e3 * t_max,
                   (double)nodes_sum / seeds, nodes_max, removed / seeds);
            fflush(stdout);
            free(score), free(cost);
        }
    return 0;
}
