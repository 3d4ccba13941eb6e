// png_grid.h — sample grids as PNG: float images in [-1, 1] laid out in rows x
// cols cells, each cell upscaled by an integer factor (nearest neighbour, so a
// 32x32 sample is viewable) and surrounded by a 2-pixel mid-grey (128) border
// that shows against dark and light images alike.
//
// Pixel value: round(clamp((v + 1) / 2, 0, 1) * 255), as diffusers'
// image / 2 + 0.5 -> clamp -> * 255 -> round; NaN becomes 0.
// Image size: cols * W * scale + (cols + 1) * 2 by rows * H * scale + (rows + 1) * 2.
// The file is written to "PATH.tmp.PID", flushed to disk and renamed onto PATH,
// so a reader never sees a half-written grid.
#ifndef LD_PNG_GRID_H
#define LD_PNG_GRID_H
#include "core/common.h"

enum { PNG_GRID_BORDER = 2, PNG_GRID_BORDER_VALUE = 128 };

// imgs: n images [n,C,H,W] (C = 1: grayscale, C = 3: RGB), placed row-major
// (image i at row i / cols, column i % cols); cells past n stay border grey.
// Needs n <= rows * cols and scale >= 1. Returns 0, or -1 + e naming the path.
int png_write_grid(const char *path, const float *imgs, int n, int C, int H, int W, int rows,
                   int cols, int scale, Error *e);
#endif
