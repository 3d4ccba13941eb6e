// test_knapsack.c — the layer-removal plan solver against brute force (all
// 2^n removed sets, n <= 20) on random instances built to hit the hard cases:
// ties (integer, repeated and zero scores, equal costs), huge costs, scores
// spanning 600 orders of magnitude, required = 0, = all, infeasible. The brute
// force applies the tie rule of knapsack.h with its own exact comparison (an
// error-free expansion, not the solver's fixed-point integers), so the sets
// must match exactly. Larger n is checked against a DP over small costs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune/knapsack.h"
#include "testutil.h"

// ---- randomness (splitmix64: full 64-bit draws the float helper lacks) -----

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static int64_t below(uint64_t *s, int64_t n) { return (int64_t)(next_u64(s) % (uint64_t)n); }
static int64_t between(uint64_t *s, int64_t lo, int64_t hi) { return lo + below(s, hi - lo + 1); }
static double unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1p-53; }
static double log_uniform(uint64_t *s, double lo, double hi) {
    return exp(log(lo) + unit(s) * (log(hi) - log(lo)));
}

// ---- exact sign of a sum of doubles (Shewchuk's grow-expansion) ------------

static int exact_sign(const double *t, int k) {
    double e[256];  // an expansion has at most one component per term added
    int len = 0;
    if (k > 256) fprintf(stderr, "exact_sign: %d terms, at most 256\n", k), exit(1);
    for (int j = 0; j < k; j++) {
        double q = t[j];
        int out = 0;
        for (int i = 0; i < len; i++) {  // two-sum: q + e[i] = s + err exactly
            double s = q + e[i], bv = s - q, err = (q - (s - bv)) + (e[i] - bv);
            if (err != 0) e[out++] = err;  // zero elimination keeps it short
            q = s;
        }
        e[out++] = q;
        len = out;
    }
    for (int i = len - 1; i >= 0; i--)  // largest component carries the sign
        if (e[i] != 0) return e[i] > 0 ? 1 : -1;
    return 0;
}

// sign(sum_a - sum_b) for removed masks a, b, decided exactly.
static int cmp_sets(const double *score, int n, uint32_t a, uint32_t b, double sa, double sb) {
    // Sums of <= 20 nonnegative terms err by < 20 ulps, far below 1e-12.
    if (fabs(sa - sb) > 1e-12 * fmax(sa, sb)) return sa < sb ? -1 : 1;
    double t[64];
    int k = 0;
    for (int i = 0; i < n; i++) {  // common items cancel
        if ((a >> i & 1) && !(b >> i & 1)) t[k++] = score[i];
        if ((b >> i & 1) && !(a >> i & 1)) t[k++] = -score[i];
    }
    return exact_sign(t, k);
}

static double sum_in_order(const double *score, int n, uint32_t mask) {
    double s = 0;
    for (int i = 0; i < n; i++)
        if (mask >> i & 1) s += score[i];
    return s;
}

// The tie rule of knapsack.h by enumeration; returns the removed mask or -1.
// Sums over a set come from two half-set tables (costs exact; scores within
// a few ulps, which cmp_sets allows for).
static int64_t brute_force(const double *score, const int64_t *cost, int n, int64_t required) {
    int nlo = n < 10 ? n : 10;
    uint32_t half = 1u << nlo;
    int64_t clo[1024], chi[1024];
    double slo[1024], shi[1024];
    for (uint32_t h = 0; h < half; h++) {
        clo[h] = chi[h] = 0, slo[h] = shi[h] = 0;
        for (int i = 0; i < nlo; i++)
            if (h >> i & 1) clo[h] += cost[i], slo[h] += score[i];
        for (int i = nlo; i < n && i < nlo + 10; i++)
            if (h >> (i - nlo) & 1) chi[h] += cost[i], shi[h] += score[i];
    }
    int64_t best = -1;
    double best_s = 0;
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
        uint32_t lo = mask & (half - 1), hi = mask >> nlo;
        if (clo[lo] + chi[hi] < required) continue;
        double s = slo[lo] + shi[hi];
        if (best >= 0) {
            uint32_t b = (uint32_t)best, x = mask ^ b;
            int d = cmp_sets(score, n, mask, b, s, best_s);
            if (!d) d = __builtin_popcount(mask) - __builtin_popcount(b);
            if (!d) d = (x & -x & mask) ? -1 : 1;  // wins if it removes the first difference
            if (d >= 0) continue;
        }
        best = mask, best_s = s;
    }
    return best;
}

// ---- instances ---------------------------------------------------------------

static void make_instance(uint64_t *rng, int kind, int n, double *score, int64_t *cost) {
    static const double pool[] = {0.0, 0.25, 0.1, 1.0, 3.0, 0.1, 1e-3};
    double same = log_uniform(rng, 1e-4, 1.0);
    int64_t same_cost = between(rng, 1, 1000000);
    for (int i = 0; i < n; i++) {
        switch (kind) {
            case 0:  // dyadic scores (exact sums), small costs that often repeat
                score[i] = (double)below(rng, 1 << 20) / 1024.0, cost[i] = between(rng, 1, 20);
                break;
            case 1:  // tiny integer scores: heavy ties and zeros
                score[i] = (double)below(rng, 4), cost[i] = between(rng, 1, 10);
                break;
            case 2:  // all zero: decided by the tie rule alone
                score[i] = 0, cost[i] = between(rng, 1, 1000);
                break;
            case 3:  // all equal scores, costs equal half of the time
                score[i] = same, cost[i] = n % 2 ? same_cost : between(rng, 1, 50);
                break;
            case 4:  // equal costs, full-precision scores
                score[i] = log_uniform(rng, 1e-5, 1.0), cost[i] = same_cost;
                break;
            case 5:  // huge costs (SD-1.5 MACs scale)
                score[i] = log_uniform(rng, 1e-5, 1.0),
                cost[i] = between(rng, 1000000000, 50000000000);
                break;
            case 6:  // SD-1.5 parameter-like costs, scores over four decades
                score[i] = log_uniform(rng, 1e-6, 1e-2), cost[i] = between(rng, 2000000, 50000000);
                break;
            case 7:  // repeated scores and costs from small pools
                score[i] = pool[below(rng, 7)], cost[i] = 1000 * between(rng, 1, 4);
                break;
            default:  // extreme spread: subnormal to 1e300
                score[i] = below(rng, 5) == 0 ? 0.0 : log_uniform(rng, 4.9e-324, 1e300);
                cost[i] = between(rng, 1, 1000);
                break;
        }
    }
}

static int64_t pick_required(uint64_t *rng, int64_t all) {
    switch (below(rng, 20)) {
        case 0:
            return 0;
        case 1:
            return all;
        case 2:
            return all + between(rng, 1, 1000);  // infeasible
        default:
            return below(rng, all + 1);
    }
}

static void check_against_brute_force(void) {
    uint64_t rng = 12345;
    int instances = 3000, mismatches = 0, infeasible = 0, empty = 0, full = 0;
    double score[20];
    int64_t cost[20];
    for (int k = 0; k < instances; k++) {
        int n = k < instances - 200 ? 1 + k % 16 : 17 + k % 4;  // fewer 2^17..2^20 enumerations
        int kind = (int)below(&rng, 9);
        make_instance(&rng, kind, n, score, cost);
        int64_t all = 0;
        for (int i = 0; i < n; i++) all += cost[i];
        int64_t required = pick_required(&rng, all);
        int64_t want = brute_force(score, cost, n, required);

        KnapsackPlan p;
        Error e = {0};
        int rc = knapsack_min_cover(score, cost, n, required, "parameters", all + all / 7, &p, &e);
        if (want < 0) {
            infeasible++;
            EXPECT(rc == -1 && strstr(e.msg, "largest achievable ratio"),
                   "instance %d (kind %d, n %d): infeasible must fail with the ratio: rc %d '%s'",
                   k, kind, n, rc, e.msg);
            continue;
        }
        uint32_t got = 0;
        int64_t got_cost = 0;
        for (int r = 0; r < p.n_removed; r++) {
            got |= 1u << p.removed[r], got_cost += cost[p.removed[r]];
            if (r) EXPECT(p.removed[r - 1] < p.removed[r], "removed indices ascending");
        }
        int ok = rc == 0 && got == (uint32_t)want && got_cost == p.cost && p.cost >= required &&
                 p.score == sum_in_order(score, n, got) && p.nodes > 0;
        if (!ok && mismatches++ < 10)
            fprintf(stderr,
                    "instance %d (kind %d, n %d, required %lld): got %#x (rc %d %s) want %#llx\n",
                    k, kind, n, (long long)required, got, rc, e.msg, (long long)want);
        EXPECT(ok, "instance %d matches brute force", k);
        empty += want == 0, full += want == (int64_t)((1u << n) - 1);
        knapsack_plan_free(&p);
    }
    printf(
        "brute force: %d instances (%d infeasible, %d empty plans, %d remove-all), %d mismatches\n",
        instances, infeasible, empty, full, mismatches);
    EXPECT(infeasible > 20 && empty > 50 && full > 50, "the cases were all exercised");
}

// Larger n against a DP over removed cost (capped at required): small integer
// costs and dyadic scores, whose sums are exact in any order, so the least
// score and, for it, the fewest layers must agree exactly.
static void check_against_cost_dp(void) {
    uint64_t rng = 777;
    for (int k = 0; k < 24; k++) {
        int n = 60 + 40 * (k % 7);  // up to 300
        double *score = malloc(n * sizeof *score);
        int64_t *cost = malloc(n * sizeof *cost), all = 0;
        for (int i = 0; i < n; i++) {
            score[i] = k % 3 == 0 ? (double)below(&rng, 3) : (double)below(&rng, 1 << 20) / 4096.0;
            cost[i] = between(&rng, 1, k % 2 ? 5 : 60);
            all += cost[i];
        }
        int64_t R = k % 4 == 0 ? all / 4 : all / 2;
        double *best = malloc((R + 1) * sizeof *best);
        int *cnt = malloc((R + 1) * sizeof *cnt);
        for (int64_t c = 0; c <= R; c++) best[c] = c ? INFINITY : 0, cnt[c] = 0;
        for (int i = 0; i < n; i++)  // best[c]: least (score, count) removing >= c
            for (int64_t c = R; c >= 1; c--) {
                int64_t from = c > cost[i] ? c - cost[i] : 0;
                double s = best[from] + score[i];
                int m = cnt[from] + 1;
                if (s < best[c] || (s == best[c] && m < cnt[c])) best[c] = s, cnt[c] = m;
            }
        KnapsackPlan p;
        Error e;
        int rc = knapsack_min_cover(score, cost, n, R, NULL, 0, &p, &e);
        EXPECT(rc == 0 && p.score == best[R] && p.n_removed == cnt[R] && p.cost >= R,
               "n %d: score %.17g (%d layers) vs cost DP %.17g (%d layers), %lld nodes", n, p.score,
               p.n_removed, best[R], cnt[R], p.nodes);
        knapsack_plan_free(&p);
        free(score), free(cost), free(best), free(cnt);
    }
}

// Same input, same plan; permuted input, same optimum (the sets correspond
// up to the index tie-break, so compare exactly via the expansion).
static void check_determinism_and_permutation(void) {
    uint64_t rng = 99;
    enum { N = 120 };
    double score[N], pscore[N];
    int64_t cost[N], pcost[N], all = 0;
    int perm[N];
    for (int i = 0; i < N; i++) {
        score[i] = log_uniform(&rng, 1e-6, 1e-2), cost[i] = between(&rng, 2000000, 50000000);
        all += cost[i], perm[i] = i;
    }
    for (int i = N - 1; i > 0; i--) {
        int j = (int)below(&rng, i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < N; i++) pscore[i] = score[perm[i]], pcost[i] = cost[perm[i]];
    KnapsackPlan a, b, c;
    Error e;
    EXPECT(knapsack_min_cover(score, cost, N, all / 2, NULL, 0, &a, &e) == 0, "%s", e.msg);
    EXPECT(knapsack_min_cover(score, cost, N, all / 2, NULL, 0, &b, &e) == 0, "%s", e.msg);
    EXPECT(knapsack_min_cover(pscore, pcost, N, all / 2, NULL, 0, &c, &e) == 0, "%s", e.msg);
    EXPECT(a.n_removed == b.n_removed && a.score == b.score && a.nodes == b.nodes &&
               !memcmp(a.removed, b.removed, a.n_removed * sizeof *a.removed),
           "same input gives the same plan");
    double t[2 * N];
    int k = 0;
    for (int r = 0; r < a.n_removed; r++) t[k++] = score[a.removed[r]];
    for (int r = 0; r < c.n_removed; r++) t[k++] = -pscore[c.removed[r]];
    EXPECT(exact_sign(t, k) == 0 && a.n_removed == c.n_removed,
           "permuted input: same optimum (%.17g vs %.17g)", a.score, c.score);
    knapsack_plan_free(&a), knapsack_plan_free(&b), knapsack_plan_free(&c);
}

static void check_bad_input_and_messages(void) {
    double s[3] = {0.1, 0.2, 0.3};
    int64_t c[3] = {10, 20, 30};
    KnapsackPlan p;
    Error e;
    EXPECT(knapsack_min_cover(s, c, 0, 1, NULL, 0, &p, &e) == -1, "n = 0 rejected");
    EXPECT(knapsack_min_cover(s, c, 3, -1, NULL, 0, &p, &e) == -1, "negative required rejected");
    double bad[3][3] = {{0.1, -1e-300, 0.3}, {0.1, NAN, 0.3}, {0.1, INFINITY, 0.3}};
    for (int k = 0; k < 3; k++) {
        EXPECT(knapsack_min_cover(bad[k], c, 3, 10, NULL, 0, &p, &e) == -1 &&
                   strstr(e.msg, "candidate 1") && p.removed == NULL,
               "bad score %d rejected: %s", k, e.msg);
    }
    int64_t zero[3] = {10, 0, 30}, huge[3] = {INT64_MAX, INT64_MAX / 2 + 2, 1};
    EXPECT(
        knapsack_min_cover(s, zero, 3, 10, NULL, 0, &p, &e) == -1 && strstr(e.msg, "candidate 1"),
        "zero cost rejected: %s", e.msg);
    EXPECT(knapsack_min_cover(s, huge, 3, 10, NULL, 0, &p, &e) == -1 && strstr(e.msg, "overflow"),
           "overflowing costs rejected: %s", e.msg);
    double negzero[3] = {-0.0, 0.2, 0.3};
    EXPECT(knapsack_min_cover(negzero, c, 3, 10, NULL, 0, &p, &e) == 0 && p.n_removed == 1 &&
               p.removed[0] == 0,
           "-0.0 is a zero score");
    knapsack_plan_free(&p);

    // The message the pruning step will show (after its "prune.ratio = 0.95 ").
    double s2[2] = {1, 2};
    int64_t c2[2] = {752558400 - 100000000, 100000000};
    EXPECT(knapsack_min_cover(s2, c2, 2, 817544916, "parameters", 859520964, &p, &e) == -1 &&
               !strcmp(e.msg,
                       "needs 817,544,916 parameters removed but all candidates together "
                       "hold 752,558,400 (largest achievable ratio 0.8755)"),
           "infeasible message: '%s'", e.msg);
    EXPECT(knapsack_min_cover(s2, c2, 2, 999999999999, NULL, 0, &p, &e) == -1 &&
               !strcmp(e.msg,
                       "needs 999,999,999,999 cost units removed but all candidates "
                       "together hold 752,558,400"),
           "infeasible message without units: '%s'", e.msg);
    // 0.87554... must be stated as 0.8755, never rounded up to an infeasible 0.8756.
    int64_t c3[1] = {875549999}, total3 = 1000000000;
    EXPECT(knapsack_min_cover(s2, c3, 1, total3, "MACs", total3, &p, &e) == -1 &&
               strstr(e.msg, "ratio 0.8755)"),
           "ratio rounded down: '%s'", e.msg);
}

int main(void) {
    check_bad_input_and_messages();
    check_against_brute_force();
    check_against_cost_dp();
    check_determinism_and_permutation();
    return tu_report("test_knapsack");
}
