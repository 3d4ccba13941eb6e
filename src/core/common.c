// common.c — see common.h.
#include "core/common.h"

#include <stdarg.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

// Fits a message into n bytes by shortening its longest words to their first 40 and last 20
// characters (a path echoed into it is what is long), so the reason at its end survives.
static void fit_message(char *dst, size_t n, char *s) {
    enum { HEAD = 40, TAIL = 20 };
    size_t len = strlen(s);
    while (len >= n) {
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < len; i++) {
            size_t w = strcspn(s + i, " ");
            if (w > best_len) best = i, best_len = w;
            i += w;
        }
        if (best_len <= HEAD + 3 + TAIL) break;  // no long word left: the end is cut below
        memcpy(s + best + HEAD, "...", 3);
        memmove(s + best + HEAD + 3, s + best + best_len - TAIL, len - (best + best_len - TAIL) + 1);
        len = strlen(s);
    }
    snprintf(dst, n, "%s", s);
}

int errorf(Error *e, const char *fmt, ...) {
    if (e) {
        // formatted apart from e->msg: callers pass e->msg itself as an argument
        char buf[4 * sizeof e->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        fit_message(e->msg, sizeof e->msg, buf);
        e->other_rank = 0;
    }
    return -1;
}

void fatal_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "laptop-diff: fatal: %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void *xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) fatal_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc_at(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) fatal_at(file, line, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *xrealloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) fatal_at(file, line, "out of memory reallocating %zu bytes", n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

int make_dirs(const char *dir, Error *e) {
    char path[1100];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char keep = *p;
            *p = 0;
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return errorf(e, "%s: cannot create directory: %s", path, strerror(errno));
            *p = keep;
            if (!keep) break;
        }
    }
    return 0;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
