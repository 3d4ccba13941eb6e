// test_progress.c — the progress line's fields and the ETA arithmetic.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/progress.h"
#include "testutil.h"

static int has(const char *s, const char *part) { return strstr(s, part) != NULL; }

int main(void) {
    char b[64];
    struct {
        double s;
        const char *want;
    } d[] = {{0, "0s"},       {44.6, "45s"},     {59.4, "59s"},     {60, "1m00s"},  {723, "12m03s"},
             {3600, "1h00m"}, {11220, "3h07m"}, {187200, "2d04h"}, {-1, "?"},      {NAN, "?"}};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        format_duration(d[i].s, b, sizeof b);
        EXPECT(!strcmp(b, d[i].want), "format_duration(%g) = %s, want %s", d[i].s, b, d[i].want);
    }
    // resumed at 1000, 200 steps in 50 s: 0.25 s/step, 8800 left
    EXPECT(fabs(progress_eta(1200, 1000, 10000, 50) - 2200) < 1e-9, "eta %g", progress_eta(1200, 1000, 10000, 50));
    EXPECT(progress_eta(1000, 1000, 10000, 5) < 0, "no pace before the first step");
    EXPECT(progress_eta(10000, 0, 10000, 5) == 0, "nothing left at the end");

    char line[256];
    Progress p = {.stage = "distill", .step = 1200, .total = 10000, .loss = 0.0123456, .lr = 1e-4, .grad_norm = 0.5321,
                  .samples_per_s = 123.44, .eta_s = 3725};
    progress_format(line, sizeof line, &p);
    EXPECT(has(line, "distill") && has(line, "1200/10000") && has(line, "12.0%") && has(line, "1.2346e-02") &&
               has(line, "1.00e-04") && has(line, "5.321e-01") && has(line, "123.4 samples/s") &&
               has(line, "ETA 1h02m") && !strchr(line, '\n'),
           "progress line: %s", line);
    // the loss terms follow the loss, in order; a short buffer cuts, never overflows
    const char *names[] = {"loss_task", "loss_feat"};
    double terms[] = {0.01, 2.5e-3};
    p.n_terms = 2, p.term_names = names, p.terms = terms;
    progress_format(line, sizeof line, &p);
    const char *lt = strstr(line, "loss_task 1.0000e-02"), *lf = strstr(line, "loss_feat 2.5000e-03");
    EXPECT(lt && lf && lt < lf && strstr(line, "1.2346e-02") < lt && lf < strstr(line, "lr 1.00e-04"),
           "loss terms: %s", line);
    char tiny[24];
    progress_format(tiny, sizeof tiny, &p);
    EXPECT(strlen(tiny) == sizeof tiny - 1 && !strncmp(tiny, line, sizeof tiny - 1), "cut line: %s", tiny);
    p.n_terms = 0;
    p.eta_s = -1;
    progress_format(line, sizeof line, &p);
    EXPECT(has(line, "ETA ?"), "unknown ETA: %s", line);
    printf("%s\n", line);
    return tu_report("test_progress");
}
