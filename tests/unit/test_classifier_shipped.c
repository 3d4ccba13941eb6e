// test_classifier_shipped.c — the shipped evaluator,
// models/fmnist_classifier.safetensors, on Debian's Fashion-MNIST test split:
//  - it loads (its metadata describes it) and reaches at least the README's
//    accuracy minus a margin on the first N test images;
//  - the alignment of the real test images with their own labels (what eval
//    reports for generated samples) equals the accuracy an independent argmax
//    loop counts, and over the whole split the test_accuracy train-classifier
//    measured and stored in the file (issue #11);
//  - per-class alignment averages back to the overall value (balanced counts).
// SKIPPED (77) without the dataset. Under the sanitizers (slow) only N = 2000.
#include <math.h>
#include <stdlib.h>

#include "data/fmnist.h"
#include "model/classifier.h"
#include "model/safetensors.h"
#include "testutil.h"

#define SHIPPED LD_SOURCE_DIR "/models/fmnist_classifier.safetensors"
// The accuracy README reports for the shipped file (on all 10000 test images),
// minus a margin for the subset and for rounding across BLAS builds.
#define MIN_ACCURACY 0.90

#if defined(__SANITIZE_ADDRESS__)
#define N_TEST 2000
#else
#define N_TEST 10000
#endif

int main(void) {
    tu_set_threads(1);  // many small passes: OpenMP barriers, not arithmetic, would dominate (testutil.h)
    Error e = {0};
    Fmnist test;
    if (fmnist_load(&test, FMNIST_DEFAULT_DIR, "test", &e)) {
        printf("SKIPPED: no Fashion-MNIST test split: %s\n", e.msg);
        return 77;
    }
    Classifier *c = clf_load(SHIPPED, &e);
    EXPECT(c != NULL, "load %s: %s", SHIPPED, e.msg);
    if (!c) {
        fmnist_free(&test);
        return tu_report("test_classifier_shipped");
    }
    EXPECT(c->arch.in_channels == 1 && c->arch.side == FMNIST_SIDE && c->arch.classes == FMNIST_CLASSES,
           "the shipped classifier takes [1,%d,%d] images into %d classes (got [%d,%d,%d], %d)", FMNIST_SIDE,
           FMNIST_SIDE, FMNIST_CLASSES, c->arch.in_channels, c->arch.side, c->arch.side, c->arch.classes);
    size_t per = FMNIST_SIDE * FMNIST_SIDE;
    float *x = malloc(N_TEST * per * sizeof(float));
    int *lab = malloc(N_TEST * sizeof(int));
    for (int i = 0; i < N_TEST; i++) fmnist_image(&test, i, x + i * per), lab[i] = test.labels[i];
    // the independent count: one forward per 50 images, argmax of the logits
    long ok = 0;
    for (int i = 0; i < N_TEST; i += 50) {
        clf_forward(c, x + i * per, NULL, 50);
        for (int k = 0; k < 50; k++) {
            const float *z = c->logits + k * FMNIST_CLASSES;
            int best = 0;
            for (int j = 1; j < FMNIST_CLASSES; j++)
                if (z[j] > z[best]) best = j;
            ok += best == lab[i + k];
        }
    }
    double acc = (double)ok / N_TEST, pc[FMNIST_CLASSES];
    double al = clf_alignment(c, x, lab, N_TEST, 100, pc);
    EXPECT(acc >= MIN_ACCURACY, "accuracy on the first %d test images %.4f < %.2f", N_TEST, acc, MIN_ACCURACY);
    EXPECT(fabs(al - acc) < 0.5 / N_TEST, "alignment of the test images %.6f != their accuracy %.6f", al, acc);
    long cnt[FMNIST_CLASSES] = {0};
    for (int i = 0; i < N_TEST; i++) cnt[lab[i]]++;
    double wsum = 0;
    for (int k = 0; k < FMNIST_CLASSES; k++) {
        EXPECT(pc[k] >= 0 && pc[k] <= 1, "alignment of class %d is %g", k, pc[k]);
        wsum += pc[k] * cnt[k];
    }
    EXPECT(fabs(wsum / N_TEST - al) < 1e-9, "per-class alignments weighted by count %.6f != overall %.6f",
           wsum / N_TEST, al);
    if (N_TEST == test.n) {
        StFile f;
        EXPECT(st_open(&f, SHIPPED, &e) == 0, "%s", e.msg);
        const char *m = st_meta(&f, "test_accuracy");
        EXPECT(m && fabs(atof(m) - al) < 1e-6,
               "alignment of all %d test images %.6f != train-classifier's test_accuracy %s", N_TEST, al,
               m ? m : "(absent)");
        st_close(&f);
    }
    printf("shipped classifier: accuracy %.4f on the first %d test images\n", acc, N_TEST);
    free(x), free(lab);
    clf_free(c);
    fmnist_free(&test);
    return tu_report("test_classifier_shipped");
}
