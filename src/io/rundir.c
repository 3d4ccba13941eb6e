// rundir.c — see rundir.h.
#include "io/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static void join(char *out, const char *dir, const char *name) { snprintf(out, RUNDIR_PATH, "%s/%s", dir, name); }

int rundir_init(RunDir *d, const char *dir, Error *e) {
    size_t n = strlen(dir);
    if (n == 0) return errorf(e, "output.dir is empty: set the run directory (results, checkpoints, models)");
    if (n > RUNDIR_MAX)
        return errorf(e, "output.dir is %zu characters long (at most %d): \"%.40s...\"", n, RUNDIR_MAX, dir);
    memset(d, 0, sizeof *d);
    memcpy(d->dir, dir, n + 1);
    join(d->run_h5, dir, "run.h5");
    join(d->checkpoints, dir, "checkpoints");
    join(d->model, dir, "model.safetensors");
    join(d->model_ema, dir, "model_ema.safetensors");
    join(d->student_init, dir, "student_init.safetensors");
    join(d->student, dir, "student.safetensors");
    join(d->student_ema, dir, "student_ema.safetensors");
    join(d->samples_png, dir, "samples.png");
    join(d->samples_h5, dir, "samples.h5");
    join(d->eval_png, dir, "teacher_vs_student.png");
    join(d->lock, dir, ".lock");
    return 0;
}

int rundir_make(const RunDir *d, Error *e) { return make_dirs(d->dir, e); }

typedef struct {
    char host[256], command[64], started[64], slurm_job[64];
    long pid, slurm_restart;
} LockInfo;

static void copy_field(char *dst, size_t n, const char *src) {
    size_t k = strlen(src) < n - 1 ? strlen(src) : n - 1;  // a longer value is cut: it is only shown
    memcpy(dst, src, k);
    dst[k] = '\0';
}

// Parses a lock file; 0 if it has host and pid.
static int read_lock(const char *path, LockInfo *li) {
    memset(li, 0, sizeof *li);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "host=", 5)) copy_field(li->host, sizeof li->host, line + 5);
        else if (!strncmp(line, "pid=", 4)) li->pid = strtol(line + 4, NULL, 10);
        else if (!strncmp(line, "command=", 8)) copy_field(li->command, sizeof li->command, line + 8);
        else if (!strncmp(line, "started=", 8)) copy_field(li->started, sizeof li->started, line + 8);
        else if (!strncmp(line, "slurm_job=", 10)) copy_field(li->slurm_job, sizeof li->slurm_job, line + 10);
        else if (!strncmp(line, "slurm_restart=", 14)) li->slurm_restart = strtol(line + 14, NULL, 10);
    }
    fclose(f);
    return li->host[0] && li->pid > 0 ? 0 : -1;
}

static void this_host(char *out, size_t n) {
    if (gethostname(out, n) != 0) snprintf(out, n, "unknown");
    out[n - 1] = '\0';
}

// kill(pid, 0) succeeds for a zombie too: a SIGKILLed rank that is not yet
// reaped holds nothing, so /proc's state 'Z' counts as dead (Linux).
static int pid_alive(long pid) {
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 0;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');  // "pid (comm) S ...": comm may hold spaces
    return !(paren && paren[1] == ' ' && paren[2] == 'Z');
}

int rundir_lock(const RunDir *d, const char *command, char *note, size_t n, Error *e) {
    if (n) note[0] = '\0';
    if (rundir_make(d, e)) return -1;
    char host[256], tmp[RUNDIR_PATH + 32], started[64];
    this_host(host, sizeof host);
    time_t now = time(NULL);
    struct tm tm;
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", d->lock, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return errorf(e, "%s: cannot create the lock file: %s", tmp, strerror(errno));
    fprintf(f, "host=%s\npid=%ld\ncommand=%s\nstarted=%s\n", host, (long)getpid(), command, started);
    // A requeued Slurm job keeps its id and counts its restarts: a lock of an
    // earlier run of this very job is stale even from another (lost) node.
    const char *job = getenv("SLURM_JOB_ID"), *restart = getenv("SLURM_RESTART_COUNT");
    long my_restart = restart ? strtol(restart, NULL, 10) : 0;
    if (job && *job) fprintf(f, "slurm_job=%s\nslurm_restart=%ld\n", job, my_restart);
    if (fclose(f) != 0) {
        unlink(tmp);
        return errorf(e, "%s: cannot write the lock file: %s", tmp, strerror(errno));
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (link(tmp, d->lock) == 0) break;
        if (errno != EEXIST) {
            rc = errorf(e, "%s: cannot create the lock: %s", d->lock, strerror(errno));
            break;
        }
        LockInfo li;
        if (read_lock(d->lock, &li) != 0) {
            rc = errorf(e, "output.dir %s is locked by %s, which does not say which job holds it; if no job is "
                           "writing there, remove the file", d->dir, d->lock);
            break;
        }
        int same_host = !strcmp(li.host, host);
        int requeued = job && *job && !strcmp(li.slurm_job, job) && li.slurm_restart < my_restart;
        int dead = (same_host && !pid_alive(li.pid)) || requeued;
        if (!dead || attempt > 0) {
            rc = errorf(e, "output.dir %s is in use by another job: %s (pid %ld on %s) since %s (lock %s)%s", d->dir,
                        li.command[0] ? li.command : "?", li.pid, li.host, li.started[0] ? li.started : "?", d->lock,
                        same_host ? "" : "; if that job is dead, remove the lock file");
            break;
        }
        // A killed job's lock. Two jobs may find it stale at once: a takeover
        // happens only under an flock on <lock>.takeover (the kernel drops it
        // when its holder dies), and only if the lock is still the dead one's.
        // fault injection for the tests: LAPTOP_DIFF_FAULT=lock_pause widens the
        // window in which several jobs have all found the lock stale
        const char *fault = getenv("LAPTOP_DIFF_FAULT");
        if (fault && !strcmp(fault, "lock_pause")) nanosleep(&(struct timespec){0, 50000000}, NULL);
        char guard_path[RUNDIR_PATH + 16];
        snprintf(guard_path, sizeof guard_path, "%s.takeover", d->lock);
        int guard = open(guard_path, O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        if (guard < 0) {
            rc = errorf(e, "%s: cannot open: %s", guard_path, strerror(errno));
            break;
        }
        if (flock(guard, LOCK_EX | LOCK_NB) != 0) {
            rc = errorf(e, "output.dir %s: another job is taking over the stale lock %s of %s (pid %ld on %s) right now",
                        d->dir, d->lock, li.command[0] ? li.command : "?", li.pid, li.host);
            close(guard);
            break;
        }
        LockInfo now_li;
        int same = read_lock(d->lock, &now_li) == 0 && now_li.pid == li.pid && !strcmp(now_li.host, li.host) &&
                   !strcmp(now_li.started, li.started);
        if (same && unlink(d->lock) != 0 && errno != ENOENT) {
            rc = errorf(e, "%s: cannot remove the stale lock: %s", d->lock, strerror(errno));
            close(guard);
            break;
        }
        // not the same: another job took it over first; the next round names it
        int took = same && link(tmp, d->lock) == 0;
        close(guard);
        if (took) {
            if (requeued)
                snprintf(note, n, "took over the lock %s of %s (pid %ld on %s): an earlier run (restart %ld) of this Slurm job %s",
                         d->lock, li.command[0] ? li.command : "?", li.pid, li.host, li.slurm_restart, job);
            else
                snprintf(note, n, "took over the stale lock %s of %s (pid %ld, started %s): no such process on %s",
                         d->lock, li.command[0] ? li.command : "?", li.pid, li.started[0] ? li.started : "?", host);
            break;
        }
        if (same && errno != EEXIST) {
            rc = errorf(e, "%s: cannot create the lock: %s", d->lock, strerror(errno));
            break;
        }
    }
    unlink(tmp);
    return rc;
}

void rundir_unlock(const RunDir *d) {
    LockInfo li;
    char host[256];
    this_host(host, sizeof host);
    if (read_lock(d->lock, &li) == 0 && li.pid == (long)getpid() && !strcmp(li.host, host)) unlink(d->lock);
}
