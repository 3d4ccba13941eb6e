// knapsack.c — see knapsack.h.
//
// Removing S with cost >= R is keeping K = complement(S) with cost <= W =
// C_all - R, so this solves the max 0/1 knapsack on the kept set. Exactness
// rests on two choices:
//  * Values are exact integers. Each score is m * 2^q (m < 2^53, odd); shifted
//    to the smallest q they become integers whose sums never round, so
//    "equal total score" means equal.
//  * The tie rule lives in each value's low bits (make_values), so distinct
//    kept sets have distinct values and the optimum is unique. A state may then
//    be dropped as soon as it cannot *strictly* beat the incumbent, and the set
//    is read back from the winning value alone.
// Search: dynamic programming over the items in decreasing value/cost order,
// keeping a list of (weight, value) states sorted by weight. A state is dropped
// when a lighter-or-equal one has a larger value (dominance) or when its
// Dantzig (LP relaxation) bound cannot exceed the incumbent. Every weight is a
// multiple of g = gcd(costs) and <= W, so a list never holds more than
// min(2^k, W/g + 1) states: worst case O(n * W/g) — pseudo-polynomial like a
// DP over costs — while the bound keeps real instances to a few states.
#include "prune/knapsack.h"

#include <math.h>
#include <string.h>

// ---- fixed-width unsigned integers: L little-endian 32-bit limbs ----------
// (32-bit limbs so every product fits uint64_t in plain C11.)

static void bn_add(uint32_t *d, const uint32_t *a, const uint32_t *b, int L) {
    uint64_t carry = 0;
    for (int i = 0; i < L; i++) {
        uint64_t t = (uint64_t)a[i] + b[i] + carry;
        d[i] = (uint32_t)t;
        carry = t >> 32;
    }
}

// d = a - b; callers guarantee a >= b.
static void bn_sub(uint32_t *d, const uint32_t *a, const uint32_t *b, int L) {
    uint64_t borrow = 0;
    for (int i = 0; i < L; i++) {
        uint64_t t = (uint64_t)a[i] - b[i] - borrow;
        d[i] = (uint32_t)t;
        borrow = (t >> 32) & 1;
    }
}

static int bn_cmp(const uint32_t *a, const uint32_t *b, int L) {
    for (int i = L - 1; i >= 0; i--)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

static void bn_add_one(uint32_t *d, int L) {
    for (int i = 0; i < L && ++d[i] == 0; i++) {
    }
}

// d[0..L+1] = a[0..L-1] * m.
static void bn_mul_u64(uint32_t *d, const uint32_t *a, int L, uint64_t m) {
    memset(d, 0, (size_t)(L + 2) * sizeof *d);
    for (int half = 0; half < 2; half++) {
        uint64_t f = half ? m >> 32 : m & 0xffffffffu, carry = 0;
        if (!f) continue;
        for (int i = 0; i < L; i++) {
            uint64_t t = (uint64_t)a[i] * f + d[i + half] + carry;  // <= 2^64 - 1
            d[i + half] = (uint32_t)t;
            carry = t >> 32;
        }
        for (int i = L + half; carry; i++) {
            uint64_t t = (uint64_t)d[i] + carry;
            d[i] = (uint32_t)t;
            carry = t >> 32;
        }
    }
}

// d += x * 2^shift (no overflow by the caller's sizing).
static void bn_add_shifted(uint32_t *d, int L, uint64_t x, int shift) {
    int limb = shift / 32, bit = shift % 32;
    uint64_t lo = x << bit, hi = bit ? x >> (64 - bit) : 0;  // x * 2^bit = hi * 2^64 + lo
    uint32_t part[3] = {(uint32_t)lo, (uint32_t)(lo >> 32), (uint32_t)hi};
    uint64_t carry = 0;
    for (int i = limb; i < L; i++) {
        uint64_t t = (uint64_t)d[i] + (i - limb < 3 ? part[i - limb] : 0) + carry;
        d[i] = (uint32_t)t;
        carry = t >> 32;
        if (i - limb >= 2 && !carry) break;
    }
}

static int bn_bit(const uint32_t *a, int b) { return (a[b / 32] >> (b % 32)) & 1; }
static void bn_set_bit(uint32_t *a, int b) { a[b / 32] |= 1u << (b % 32); }

static int bit_length(uint64_t x) {
    int b = 0;
    while (x) b++, x >>= 1;
    return b;
}

// ---- the instance ------------------------------------------------------------

typedef struct {
    int n, L;       // candidates; limbs per value
    int64_t W;      // kept-cost capacity
    uint32_t *val;  // [n][L] kept value of each candidate (original order)
    int m;          // candidates that fit W on their own, in density order:
    int *item;      // [m] their original indices
    int64_t *pw;    // [m+1] prefix costs in density order
    uint32_t *pv;   // [(m+1)][L] prefix values in density order
    const int64_t *cost;
} Inst;

#define VAL(in, i) ((in)->val + (size_t)(i) * (in)->L)
#define PV(in, k) ((in)->pv + (size_t)(k) * (in)->L)

// Kept value of candidate i, one integer of three fields, most significant first:
//   [score field: S_i << B] + [2^n - 2^(n-1-i)]
// where S_i is the exact integer score. Summed over a kept set K the low B
// bits hold |K| * 2^n - mask(K), mask(K) = sum_{i in K} 2^(n-1-i) in [1, 2^n)
// for K nonempty; they never carry into the score field (B = n + bits(n)).
// Maximising the sum therefore maximises kept score (= least removed score),
// then |K| (= fewest removed), then minimises mask(K) (= maximises the removed
// mask, which for equal-size sets is the lexicographically smallest removed
// index list: the first index where two such sets differ is removed by the
// winner). Distinct sets get distinct values.
static void make_values(Inst *in, const double *score) {
    int n = in->n;
    uint64_t *mant = xmalloc((size_t)n * sizeof *mant);
    int *q = xmalloc((size_t)n * sizeof *q), qmin = 0, have = 0;
    for (int i = 0; i < n; i++) {
        mant[i] = 0, q[i] = 0;
        if (score[i] == 0) continue;  // also -0.0
        int ex;
        double f = frexp(score[i], &ex);                   // score = f * 2^ex, f in [0.5, 1)
        mant[i] = (uint64_t)ldexp(f, 53), q[i] = ex - 53;  // exact: f has <= 53 bits
        while (!(mant[i] & 1)) mant[i] >>= 1, q[i]++;      // narrow integer scores
        if (!have || q[i] < qmin) qmin = q[i], have = 1;
    }
    int sbits = 0;
    for (int i = 0; i < n; i++)
        if (mant[i] && bit_length(mant[i]) + q[i] - qmin > sbits)
            sbits = bit_length(mant[i]) + q[i] - qmin;
    int B = n + bit_length((uint64_t)n);
    // Sums of n values: B low bits + sbits + bits(n) carry bits, plus a spare
    // limb so inc + 1 cannot overflow.
    in->L = (B + sbits + bit_length((uint64_t)n) + 31) / 32 + 1;
    in->val = xcalloc((size_t)n * in->L, sizeof *in->val);
    for (int i = 0; i < n; i++) {
        uint32_t *v = VAL(in, i);
        if (mant[i]) bn_add_shifted(v, in->L, mant[i], B + q[i] - qmin);
        for (int b = n - 1 - i; b < n; b++) bn_set_bit(v, b);  // 2^n - 2^(n-1-i)
    }
    free(mant), free(q);
}

// 1 when candidate a goes before b: larger value/cost, compared exactly as
// val_a * c_b vs val_b * c_a; equal densities by index, so the order is total.
static int denser(const Inst *in, int a, int b, uint32_t *t1, uint32_t *t2) {
    bn_mul_u64(t1, VAL(in, a), in->L, (uint64_t)in->cost[b]);
    bn_mul_u64(t2, VAL(in, b), in->L, (uint64_t)in->cost[a]);
    int c = bn_cmp(t1, t2, in->L + 2);
    return c ? c > 0 : a < b;
}

// Stable merge sort of idx[0..k) by `denser` (qsort has no context argument).
static void sort_by_density(const Inst *in, int *idx, int k) {
    int *tmp = xmalloc((size_t)k * sizeof *tmp);
    uint32_t *t1 = xmalloc((size_t)(in->L + 2) * sizeof *t1);
    uint32_t *t2 = xmalloc((size_t)(in->L + 2) * sizeof *t2);
    for (int width = 1; width < k; width *= 2) {
        for (int lo = 0; lo < k; lo += 2 * width) {
            int mid = lo + width < k ? lo + width : k, hi = lo + 2 * width < k ? lo + 2 * width : k;
            int i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                tmp[o++] = denser(in, idx[j], idx[i], t1, t2) ? idx[j++] : idx[i++];
            while (i < mid) tmp[o++] = idx[i++];
            while (j < hi) tmp[o++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)k * sizeof *idx);
    }
    free(tmp), free(t1), free(t2);
}

// ---- the search --------------------------------------------------------------

typedef struct {
    int64_t *w;
    uint32_t *v;  // [n][L]
    size_t n, cap;
} States;

static void states_push(States *s, int64_t w, const uint32_t *v, int L) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->w = xrealloc(s->w, s->cap * sizeof *s->w);
        s->v = xrealloc(s->v, s->cap * L * sizeof *s->v);
    }
    s->w[s->n] = w;
    memcpy(s->v + s->n * L, v, (size_t)L * sizeof *v);
    s->n++;
}

// Scratch for one state's bound.
typedef struct {
    uint32_t *base, *x, *p1, *p2;
} Scratch;

// Judges a state (weight w, value v) whose items [next, m) are undecided.
// Raises the incumbent `inc` with the state plus the Dantzig prefix of the
// rest (feasible), and returns 1 when the LP bound could still beat `inc`.
static int promising(const Inst *in, int next, int64_t w, const uint32_t *v, uint32_t *inc,
                     Scratch *s) {
    int L = in->L, m = in->m;
    int64_t r = in->W - w;
    int lo = next, hi = m;  // largest b with pw[b] - pw[next] <= r
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (in->pw[mid] - in->pw[next] <= r)
            lo = mid;
        else
            hi = mid - 1;
    }
    int b = lo;
    int64_t rest = r - (in->pw[b] - in->pw[next]);
    bn_sub(s->base, PV(in, b), PV(in, next), L);
    bn_add(s->base, s->base, v, L);
    if (bn_cmp(s->base, inc, L) > 0) memcpy(inc, s->base, (size_t)L * sizeof *inc);
    if (b == m) return 0;  // everything left fits: base is this state's best
    // Values are integers, so the state can win only if its LP bound
    // base + val_b * rest / c_b reaches inc + 1, i.e. val_b * rest >= c_b * x.
    memcpy(s->x, inc, (size_t)L * sizeof *inc);
    bn_add_one(s->x, L);
    bn_sub(s->x, s->x, s->base, L);  // >= 1: base <= inc just above
    int ib = in->item[b];
    bn_mul_u64(s->p1, VAL(in, ib), L, (uint64_t)rest);
    bn_mul_u64(s->p2, s->x, L, (uint64_t)in->cost[ib]);
    return bn_cmp(s->p1, s->p2, L + 2) >= 0;
}

// Best kept value into inc (which enters holding a feasible value).
static long long search(const Inst *in, uint32_t *inc) {
    int L = in->L, m = in->m;
    size_t Lz = (size_t)L;
    States a = {0}, next = {0};
    uint32_t *zero = xcalloc(Lz, sizeof *zero), *shifted = xmalloc(Lz * sizeof *shifted),
             *last = xmalloc(Lz * sizeof *last);
    Scratch s = {xmalloc(Lz * sizeof(uint32_t)), xmalloc(Lz * sizeof(uint32_t)),
                 xmalloc((Lz + 2) * sizeof(uint32_t)), xmalloc((Lz + 2) * sizeof(uint32_t))};
    long long nodes = 1;
    if (promising(in, 0, 0, zero, inc, &s)) states_push(&a, 0, zero, L);
    for (int j = 0; j < m && a.n; j++) {
        // Merge "without item j" (a as is) and "with item j" (a shifted), both
        // sorted by weight with strictly rising values, into `next`.
        int ij = in->item[j];
        int64_t cj = in->cost[ij];
        const uint32_t *vj = VAL(in, ij);
        size_t i0 = 0, i1 = 0;
        int have_last = 0, shifted_ready = 0;
        next.n = 0;
        for (;;) {
            int has0 = i0 < a.n, has1 = i1 < a.n && a.w[i1] <= in->W - cj;
            if (!has0 && !has1) break;
            if (has1 && !shifted_ready) bn_add(shifted, a.v + i1 * Lz, vj, L), shifted_ready = 1;
            int64_t w;
            const uint32_t *v;
            int64_t w1 = has1 ? a.w[i1] + cj : 0;
            if (has0 && (!has1 || a.w[i0] < w1)) {
                w = a.w[i0], v = a.v + i0 * Lz, i0++;
            } else if (!has0 || w1 < a.w[i0]) {
                w = w1, v = shifted, i1++, shifted_ready = 0;
            } else {  // equal weights: the larger value dominates
                int take1 = bn_cmp(shifted, a.v + i0 * Lz, L) > 0;
                w = w1, v = take1 ? shifted : a.v + i0 * Lz;
                i0++, i1++, shifted_ready = 0, nodes++;  // two states generated
            }
            nodes++;
            // Dominated by a lighter (or equal) state with a larger value.
            if (have_last && bn_cmp(v, last, L) <= 0) continue;
            memcpy(last, v, Lz * sizeof *last), have_last = 1;
            if (promising(in, j + 1, w, v, inc, &s)) states_push(&next, w, v, L);
        }
        States t = a;
        a = next, next = t;
    }
    free(a.w), free(a.v), free(next.w), free(next.v);
    free(zero), free(shifted), free(last);
    free(s.base), free(s.x), free(s.p1), free(s.p2);
    return nodes;
}

// Reads the kept set back from its value's low n bits, which hold
// 2^n - mask(K) mod 2^n (0 for K empty): mask = two's complement of them.
static void kept_from_value(const uint32_t *v, int n, char *kept) {
    int low = -1;
    for (int b = 0; b < n && low < 0; b++)
        if (bn_bit(v, b)) low = b;
    for (int i = 0; i < n; i++) {
        int b = n - 1 - i;
        kept[i] = low >= 0 && (b == low || (b > low && !bn_bit(v, b)));
    }
}

static void thousands(char *buf, size_t cap, int64_t x) {
    char digits[32];
    int k = snprintf(digits, sizeof digits, "%lld", (long long)x), o = 0;
    for (int i = 0; i < k && (size_t)o + 2 < cap; i++) {
        if (i && digits[i - 1] != '-' && (k - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
}

static int infeasible(Error *e, int64_t required, int64_t all, const char *what, int64_t total) {
    char need[40], have[40], ratio[64] = "";
    thousands(need, sizeof need, required);
    thousands(have, sizeof have, all);
    // Rounded down so the ratio we state is one that works.
    if (total > 0)
        snprintf(ratio, sizeof ratio, " (largest achievable ratio %.4f)",
                 floor((double)all / (double)total * 1e4) / 1e4);
    return errorf(e, "needs %s %s removed but all candidates together hold %s%s", need,
                  what ? what : "cost units", have, ratio);
}

int knapsack_min_cover(const double *score, const int64_t *cost, int n, int64_t required,
                       const char *what, int64_t total, KnapsackPlan *plan, Error *e) {
    memset(plan, 0, sizeof *plan);
    if (n <= 0) return errorf(e, "layer-removal plan: no candidates (n = %d)", n);
    if (required < 0)
        return errorf(e, "layer-removal plan: required cost %lld is negative", (long long)required);
    int64_t all = 0;
    for (int i = 0; i < n; i++) {
        if (!(score[i] >= 0) || isinf(score[i]))
            return errorf(e, "layer-removal plan: candidate %d has score %g (must be finite, >= 0)",
                          i, score[i]);
        if (cost[i] <= 0)
            return errorf(e, "layer-removal plan: candidate %d has cost %lld (must be > 0)", i,
                          (long long)cost[i]);
        if (cost[i] > INT64_MAX - all)
            return errorf(e, "layer-removal plan: candidate costs overflow int64");
        all += cost[i];
    }
    if (all < required) return infeasible(e, required, all, what, total);

    Inst in = {.n = n, .W = all - required, .cost = cost};
    make_values(&in, score);
    int L = in.L;
    // Candidates dearer than W can never be kept: always removed.
    in.item = xmalloc((size_t)n * sizeof *in.item);
    for (int i = 0; i < n; i++)
        if (cost[i] <= in.W) in.item[in.m++] = i;
    sort_by_density(&in, in.item, in.m);
    in.pw = xmalloc((size_t)(in.m + 1) * sizeof *in.pw);
    in.pv = xcalloc((size_t)(in.m + 1) * L, sizeof *in.pv);
    in.pw[0] = 0;
    for (int k = 0; k < in.m; k++) {
        in.pw[k + 1] = in.pw[k] + cost[in.item[k]];
        bn_add(PV(&in, k + 1), PV(&in, k), VAL(&in, in.item[k]), L);
    }
    // Incumbent: greedy in density order, skipping what no longer fits.
    uint32_t *inc = xcalloc((size_t)L, sizeof *inc);
    int64_t room = in.W;
    for (int k = 0; k < in.m; k++)
        if (cost[in.item[k]] <= room)
            room -= cost[in.item[k]], bn_add(inc, inc, VAL(&in, in.item[k]), L);

    plan->nodes = search(&in, inc);

    char *kept = xmalloc((size_t)n);
    kept_from_value(inc, n, kept);
    // The value must be exactly the sum of its set's values, within capacity.
    uint32_t *check = xcalloc((size_t)L, sizeof *check);
    int64_t kept_cost = 0;
    for (int i = 0; i < n; i++)
        if (kept[i]) bn_add(check, check, VAL(&in, i), L), kept_cost += cost[i];
    CHECK(bn_cmp(check, inc, L) == 0 && kept_cost <= in.W);

    plan->removed = xmalloc((size_t)n * sizeof *plan->removed);
    for (int i = 0; i < n; i++)
        if (!kept[i]) {
            plan->removed[plan->n_removed++] = i;
            plan->score += score[i];
            plan->cost += cost[i];
        }
    if (!plan->n_removed) free(plan->removed), plan->removed = NULL;
    free(kept), free(check), free(inc);
    free(in.val), free(in.item), free(in.pw), free(in.pv);
    return 0;
}

void knapsack_plan_free(KnapsackPlan *p) {
    free(p->removed);
    p->removed = NULL;
    p->n_removed = 0;
}
