// progress.h — the one-line progress report rank 0 prints every log interval
// (DESIGN §8): stage, step/total, loss and its terms, lr, grad norm,
// samples/s, ETA. Pure formatting, so the format is tested and the training
// loop (train/trainer.c) stays short.
#ifndef LD_PROGRESS_H
#define LD_PROGRESS_H
#include <stddef.h>

typedef struct {
    const char *stage;     // "train", "distill", ...
    long step, total;      // steps completed, steps of the whole run
    double loss, lr, grad_norm;
    double samples_per_s;  // over the last interval
    double eta_s;          // seconds left; < 0 or NaN: unknown
    int n_terms;           // further loss terms printed after the loss (may be 0)
    const char *const *term_names;
    const double *terms;
} Progress;

// e.g. "distill step 1200/10000 (12.0%) | loss 1.2346e-02 | loss_task
// 1.0000e-02 | lr 1.00e-04 | grad 5.321e-01 | 123.4 samples/s | ETA 1h02m"
// (one line, no newline; cut at n bytes).
void progress_format(char *buf, size_t n, const Progress *p);

// Seconds left at the average pace of the steps this process ran
// (start_step: the step it started or resumed from); -1 before the first.
double progress_eta(long step, long start_step, long total, double elapsed_s);

// "45s", "12m03s", "3h07m", "2d04h"; "?" for negative or non-finite input.
void format_duration(double seconds, char *buf, size_t n);
#endif
