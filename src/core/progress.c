// progress.c — see progress.h.
#include "core/progress.h"

#include <math.h>
#include <stdio.h>

void format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0 || s > 1e9) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t < 60) snprintf(buf, n, "%lds", t);
    else if (t < 3600) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else if (t < 86400) snprintf(buf, n, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else snprintf(buf, n, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
}

double progress_eta(long step, long start_step, long total, double elapsed_s) {
    long done = step - start_step;
    if (done <= 0 || !(elapsed_s >= 0)) return -1;
    long left = total > step ? total - step : 0;
    return elapsed_s / (double)done * (double)left;
}

void progress_format(char *buf, size_t n, const Progress *p) {
    char eta[32];
    format_duration(p->eta_s, eta, sizeof eta);
    double pct = p->total > 0 ? 100.0 * (double)p->step / (double)p->total : 0;
    size_t k = 0;
    // each piece appends at k; snprintf's return past the end just stops the rest
#define PUT(...) (k += k < n ? (size_t)snprintf(buf + k, n - k, __VA_ARGS__) : 0)
    PUT("%s step %ld/%ld (%.1f%%) | loss %.4e", p->stage ? p->stage : "train", p->step, p->total, pct, p->loss);
    for (int i = 0; i < p->n_terms; i++) PUT(" | %s %.4e", p->term_names[i], p->terms[i]);
    PUT(" | lr %.2e | grad %.3e | %.1f samples/s | ETA %s", p->lr, p->grad_norm, p->samples_per_s, eta);
#undef PUT
}
