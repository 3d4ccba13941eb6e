// common.h — error handling and allocation helpers shared by the whole core.
// Fatal wrappers name the file and line (llm.c style); recoverable errors
// (bad input files) go through Error so callers can print and exit cleanly.
#ifndef LD_COMMON_H
#define LD_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// The CUDA sources (src/cuda/*.cu, C++) include this header too.
#ifdef __cplusplus
#define _Noreturn [[noreturn]]
extern "C" {
#endif

// A recoverable error: a message that names file, line, key and expectation.
// other_rank: this rank only stopped because another rank failed (comm_agree);
// the failing rank holds the message worth printing.
typedef struct {
    char msg[1024];
    int other_rank;
} Error;

// Sets e->msg (printf-style), clears other_rank, and returns -1 so
// `return errorf(e, ...)` reads well.
int errorf(Error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Fatal: prints "file:line: message" and exits 1. For programmer errors and
// out-of-memory, never for bad user input.
_Noreturn void fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define FATAL(...) fatal_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond)                                                  \
    do {                                                             \
        if (!(cond)) fatal_at(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)

void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
char *xstrdup(const char *s);

// Seconds on the monotonic clock (for durations: rates, ETAs, stage times).
double now_s(void);

// mkdir -p; an Error names the directory that could not be made.
int make_dirs(const char *dir, Error *e);

#ifdef __cplusplus
}
#endif
#endif
