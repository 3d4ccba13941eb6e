// test_rundir.c — the run directory's lock (io/rundir.h): a live holder is
// refused by name, a dead one's lock is taken over, and when several jobs find
// the same stale lock at once exactly one takes it (the race the .takeover
// flock closes). Processes are forked: the lock is per process.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/rundir.h"
#include "testutil.h"

// A lock file as a job on this host with PID `pid` would have left it.
static void write_lock(const RunDir *d, long pid) {
    char host[256];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    FILE *f = fopen(d->lock, "w");
    CHECK(f);
    fprintf(f, "host=%s\npid=%ld\ncommand=distill\nstarted=2026-01-01T00:00:00Z\n", host, pid);
    fclose(f);
}

// A PID that is certainly dead: a child that exited and was reaped.
static long dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return (long)p;
}

int main(void) {
    char dir[] = "/tmp/test_rundir.XXXXXX";
    CHECK(mkdtemp(dir));
    RunDir d;
    Error e = {0};
    EXPECT(rundir_init(&d, dir, &e) == 0, "init: %s", e.msg);
    char note[512];
    // a live holder (this very process's parent: the test itself, pid alive)
    write_lock(&d, (long)getpid());
    EXPECT(rundir_lock(&d, "train", note, sizeof note, &e) == -1 && strstr(e.msg, "is in use by another job: distill"),
           "live holder refused: %s", e.msg);
    // a dead holder: taken over, and the note says so
    write_lock(&d, dead_pid());
    EXPECT(rundir_lock(&d, "train", note, sizeof note, &e) == 0 && strstr(note, "took over the stale lock"), "stale taken over: %s / %s",
           e.msg, note);
    rundir_unlock(&d);
    // the race: K processes released together on the same stale lock; exactly
    // one may hold it. Each winner keeps it until every process has tried.
    // LAPTOP_DIFF_FAULT=lock_pause: each finds the lock stale, then waits 50 ms,
    // so all of them act on the same stale lock.
    setenv("LAPTOP_DIFF_FAULT", "lock_pause", 1);
    enum { K = 6, TRIALS = 10 };
    int bad_trials = 0, total_wins = 0;
    for (int t = 0; t < TRIALS; t++) {
        write_lock(&d, dead_pid());
        int go[2], done[2], res[2];
        CHECK(pipe(go) == 0 && pipe(done) == 0 && pipe(res) == 0);
        pid_t kids[K];
        for (int k = 0; k < K; k++) {
            kids[k] = fork();
            if (kids[k] == 0) {
                char c, nt[512];
                Error ke = {0};
                close(go[1]), close(done[1]);
                if (read(go[0], &c, 1) != 1) _exit(2);
                int won = rundir_lock(&d, "distill", nt, sizeof nt, &ke) == 0;
                c = won ? 'W' : 'L';
                if (write(res[1], &c, 1) != 1) _exit(2);
                if (read(done[0], &c, 1) != 0) _exit(2);  // hold until the parent closes `done`
                if (won) rundir_unlock(&d);
                _exit(0);
            }
        }
        close(go[0]), close(done[0]), close(res[1]);
        char start[K];
        memset(start, 'g', K);
        CHECK(write(go[1], start, K) == K);  // one byte each: all released at once
        int wins = 0;
        for (int k = 0; k < K; k++) {
            char c = 0;
            CHECK(read(res[0], &c, 1) == 1);
            wins += c == 'W';
        }
        close(done[1]), close(go[1]), close(res[0]);
        for (int k = 0; k < K; k++) waitpid(kids[k], NULL, 0);
        bad_trials += wins != 1;
        total_wins += wins;
    }
    EXPECT(bad_trials == 0, "%d of %d trials had not exactly one holder (%d wins in all)", bad_trials, TRIALS, total_wins);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return tu_report("test_rundir");
}
