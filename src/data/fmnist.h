// fmnist.h — Fashion-MNIST from Debian's dataset-fashion-mnist: the gzip'd
// IDX files (train-*/t10k-*-idx?-ubyte.gz) read with zlib. Pixels stay as the
// file's u8 (47 MB for the train split, not 245 MB of floats per rank) and are
// converted one image at a time to the model's input: [1,32,32], 28x28 padded
// by 2 with the background value, scaled to [-1, 1]. Every malformed file is
// an Error naming the file and the problem.
#ifndef LD_FMNIST_H
#define LD_FMNIST_H
#include <stdint.h>

#include "core/common.h"

#define FMNIST_CLASSES 10
#define FMNIST_SRC 28   // stored image side
#define FMNIST_SIDE 32  // model input side (padded)
#define FMNIST_PAD ((FMNIST_SIDE - FMNIST_SRC) / 2)

// Debian's install location (the job config's default data.path).
#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    int n;              // images
    uint8_t *pixels;    // [n, 28, 28], as stored
    uint8_t *labels;    // [n], 0..9
} Fmnist;

// Loads split "train" (train-*) or "test" (t10k-*) from directory dir.
// Returns 0, or -1 with e naming the file and what is wrong (missing, not
// gzip, truncated or corrupt, bad magic, bad dims, count mismatch, label > 9).
int fmnist_load(Fmnist *f, const char *dir, const char *split, Error *e);
// Reads one IDX file: magic 0x00000803 (images, [n,28,28]) or 0x00000801
// (labels, [n]). *data is malloc'd; *dims gets n (and 28, 28 for images).
int fmnist_read_idx(const char *path, uint32_t magic, uint8_t **data, uint32_t dims[3], Error *e);
void fmnist_free(Fmnist *f);

// Image i as the model's input x[32*32] (channel count 1): pixel/127.5 - 1,
// padded by FMNIST_PAD on every side with -1 (the background).
void fmnist_image(const Fmnist *f, int i, float *x);

// Official class names in label order: "T-shirt/top", ..., "Ankle boot".
const char *fmnist_class_name(int cls);
#endif
