// test_comm.c — the shared collectives of core/comm.h on the serial Comm
// (their MPI behaviour is tested through the CLI on 1-3 ranks: scores and
// additivity via comm_run_jobs, failures via comm_agree): job order and
// width, a failing job's message, a stop signal between jobs, comm_agree's
// flag, sharding.
#include <signal.h>
#include <string.h>

#include "core/comm.h"
#include "core/stop.h"
#include "testutil.h"

// Job j writes (j, 10 j); job `fail_at` fails.
typedef struct {
    int fail_at, calls, signal_at;
} Jobs;

static int job(void *ctx, int j, double *out, Error *e) {
    Jobs *s = ctx;
    s->calls++;
    if (j == s->signal_at) raise(SIGUSR1);  // as a scheduler would, mid-job
    if (j == s->fail_at) return errorf(e, "job %d failed", j);
    out[0] = j, out[1] = 10.0 * j;
    return 0;
}

int main(void) {
    Comm c = comm_serial();
    Error e = {0};
    double out[2 * 7];
    Jobs s = {-1, 0, -1};
    EXPECT(comm_run_jobs(&c, 7, NULL, 2, job, &s, out, &e) == 0, "run_jobs: %s", e.msg);
    int ok = s.calls == 7;
    for (int j = 0; j < 7; j++) ok &= out[2 * j] == j && out[2 * j + 1] == 10.0 * j;
    EXPECT(ok, "every job's values land at its index (%d calls)", s.calls);
    // an explicit owner table: all jobs rank 0's
    int owner[3] = {0, 0, 0};
    s = (Jobs){-1, 0, -1};
    EXPECT(comm_run_jobs(&c, 3, owner, 2, job, &s, out, &e) == 0 && out[5] == 20.0, "owner table");
    // a failing job stops the loop and its message survives the agreement
    s = (Jobs){2, 0, -1};
    EXPECT(comm_run_jobs(&c, 7, NULL, 2, job, &s, out, &e) == -1 && s.calls == 3 && !strcmp(e.msg, "job 2 failed") &&
               !e.other_rank,
           "failing job: %d calls, \"%s\", other_rank %d", s.calls, e.msg, e.other_rank);
    // a stop signal during job 3: that job finishes, the loop ends before job 4, out untouched
    stop_install_handlers();
    EXPECT(stop_requested() == 0, "no stop before the signal");
    for (int j = 0; j < 14; j++) out[j] = -1;
    s = (Jobs){-1, 0, 3};
    EXPECT(comm_run_jobs(&c, 7, NULL, 2, job, &s, out, &e) == 1 && s.calls == 4, "stop: returns 1 after 4 calls, got %d calls",
           s.calls);
    ok = 1;
    for (int j = 0; j < 14; j++) ok &= out[j] == -1;
    EXPECT(ok && stop_requested() == SIGUSR1 && !strcmp(stop_signal_name(SIGUSR1), "SIGUSR1"), "stop: out untouched, SIGUSR1 seen");
    // comm_agree: nothing to agree on alone, but the failing rank keeps its message
    errorf(&e, "mine");
    EXPECT(comm_agree(&c, 0, &e) == 0, "agree on success");
    EXPECT(comm_agree(&c, -1, &e) == -1 && !strcmp(e.msg, "mine") && !e.other_rank, "agree on failure: %s", e.msg);
    EXPECT(comm_agree_share(&c, -1, &e) == -1 && !strcmp(e.msg, "mine"), "agree_share on failure: %s", e.msg);
    // errorf clears the other-rank flag
    e.other_rank = 1;
    errorf(&e, "again");
    EXPECT(!e.other_rank, "errorf resets other_rank");
    // shards tile [0, n) with sizes differing by at most one
    for (int size = 1; size <= 5; size++) {
        long next = 0, lo = 1 << 30, hi = 0;
        for (int r = 0; r < size; r++) {
            long st, cnt;
            comm_shard(13, r, size, &st, &cnt);
            ok = st == next;
            next = st + cnt, lo = cnt < lo ? cnt : lo, hi = cnt > hi ? cnt : hi;
            EXPECT(ok, "shard %d of %d starts at %ld", r, size, st);
        }
        EXPECT(next == 13 && hi - lo <= 1, "%d shards cover 13 evenly", size);
    }
    return tu_report("test_comm");
}
