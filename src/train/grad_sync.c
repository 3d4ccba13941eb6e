// grad_sync.c — see grad_sync.h.
#include "train/grad_sync.h"

#include <stdlib.h>

#include "core/common.h"

enum { NOT_STARTED = 0, IN_FLIGHT = 1, DONE = 2 };
#define MAX_BUCKETS ((size_t)1 << 24)

struct GradSync {
    Comm *c;
    size_t n, bucket;     // floats, floats per bucket
    int nb, overlap, max_inflight;
    float *g;
    void **h;             // [nb] the handle of a bucket in flight
    unsigned char *state; // [nb]
    int ready;            // buckets [ready, nb) lie wholly in the final range
    int next;             // buckets [next, nb) have been started (they start from the top down)
    int inflight, done, early;
};

GradSync *grad_sync_create(Comm *c, size_t n, double bucket_mb, int overlap, int max_inflight) {
    GradSync *s = xcalloc(1, sizeof *s);
    s->c = c, s->n = n, s->overlap = overlap, s->max_inflight = max_inflight;
    s->bucket = (size_t)(bucket_mb * 1024 * 1024 / sizeof(float));
    if (s->bucket < 1) s->bucket = 1;
    // bucket indices (the sums' tags, which comm_mpi.c folds into MPI's tag range) stay ints
    if (n / s->bucket >= MAX_BUCKETS) s->bucket = n / MAX_BUCKETS + 1;
    s->nb = (int)((n + s->bucket - 1) / s->bucket);
    s->h = xcalloc((size_t)(s->nb ? s->nb : 1), sizeof *s->h);
    s->state = xcalloc((size_t)(s->nb ? s->nb : 1), 1);
    return s;
}

void grad_sync_free(GradSync *s) {
    if (!s) return;
    free(s->h), free(s->state), free(s);
}

// One rank has nothing to sum.
static int active(const GradSync *s) { return s->c->size > 1; }

void grad_sync_begin(GradSync *s, float *grads) {
    s->g = grads;
    for (int k = 0; k < s->nb; k++) {
        CHECK(s->state[k] != IN_FLIGHT);  // the last step was finished
        s->state[k] = NOT_STARTED;
    }
    s->ready = s->next = s->nb;
    s->inflight = s->done = s->early = 0;
}

static size_t bucket_len(const GradSync *s, int k) {
    size_t off = (size_t)k * s->bucket;
    return s->n - off < s->bucket ? s->n - off : s->bucket;
}

// Starts final buckets, highest first, while the in-flight limit allows.
static void start_ready(GradSync *s, int early) {
    while (s->next > s->ready && (s->max_inflight <= 0 || s->inflight < s->max_inflight)) {
        int k = --s->next;
        s->h[k] = s->c->isum_start(s->c, s->g + (size_t)k * s->bucket, bucket_len(s, k), k);
        s->state[k] = IN_FLIGHT;
        s->inflight++, s->early += early;
    }
}

static void retire(GradSync *s, int k) {
    s->c->isum_wait(s->c, s->h[k]);
    s->h[k] = NULL, s->state[k] = DONE;
    s->inflight--, s->done++;
}

// Progress on every sum in flight; the finished ones free their place.
static void test_inflight(GradSync *s) {
    for (int k = s->next; k < s->nb; k++)
        if (s->state[k] == IN_FLIGHT && s->c->isum_test(s->c, s->h[k])) retire(s, k);
}

void grad_sync_final(void *ctx, size_t from) {
    GradSync *s = ctx;
    if (!s->overlap || !active(s)) return;
    int k = (int)((from + s->bucket - 1) / s->bucket);  // first bucket starting at or after from
    if (k < s->ready) s->ready = k;
    test_inflight(s);
    start_ready(s, 1);
}

void grad_sync_finish(GradSync *s) {
    if (!active(s)) return;
    s->ready = 0;
    while (s->done < s->nb) {
        start_ready(s, 0);
        // the oldest sum in flight (the highest bucket) first: it is the likeliest done
        int k = s->nb - 1;
        while (s->state[k] != IN_FLIGHT) k--;
        retire(s, k);
    }
}

int grad_sync_buckets(const GradSync *s) { return s->nb; }
int grad_sync_started_early(const GradSync *s) { return s->early; }
