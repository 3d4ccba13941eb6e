// png_grid.c — see png_grid.h.
#include "io/png_grid.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char msg[256];
} PngFail;

// libpng reports errors by calling this and expecting no return: keep the
// message and unwind to the setjmp in png_write_grid.
static void on_png_error(png_structp png, png_const_charp msg) {
    PngFail *f = png_get_error_ptr(png);
    snprintf(f->msg, sizeof f->msg, "%s", msg);
    longjmp(png_jmpbuf(png), 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg;  // warnings do not make the grid wrong
}

static uint8_t to_byte(float v) {
    if (!(v == v)) return 0;  // NaN
    double x = ((double)v + 1.0) * 0.5;
    x = x < 0 ? 0 : x > 1 ? 1 : x;
    return (uint8_t)lrint(x * 255.0);
}

// Row y of the grid image into row[0 .. width*C).
static void fill_row(uint8_t *row, int y, const float *imgs, int n, int C, int H, int W, int rows,
                     int cols, int scale, size_t width) {
    memset(row, PNG_GRID_BORDER_VALUE, width * (size_t)C);
    const int bd = PNG_GRID_BORDER, ch = H * scale, cw = W * scale;
    int r = (y - bd) / (ch + bd), oy = (y - bd) % (ch + bd);
    if (y < bd || r >= rows || oy >= ch) return;  // a horizontal border line
    int iy = oy / scale;
    for (int c = 0; c < cols; c++) {
        int i = r * cols + c;
        if (i >= n) break;
        const float *img = imgs + (size_t)i * C * H * W;
        uint8_t *dst = row + ((size_t)bd + (size_t)c * (cw + bd)) * C;
        for (int x = 0; x < cw; x++)
            for (int k = 0; k < C; k++)
                dst[(size_t)x * C + k] = to_byte(img[((size_t)k * H + iy) * W + x / scale]);
    }
}

int png_write_grid(const char *path, const float *imgs, int n, int C, int H, int W, int rows,
                   int cols, int scale, Error *e) {
    if (C != 1 && C != 3)
        return errorf(e, "%s: a PNG grid needs 1 (gray) or 3 (RGB) channels, got %d", path, C);
    if (H < 1 || W < 1 || rows < 1 || cols < 1 || scale < 1 || n < 0 || n > rows * cols)
        return errorf(e, "%s: bad grid: %d images of %dx%d in %dx%d cells, scale %d", path, n, H, W,
                      rows, cols, scale);
    long long wd = (long long)cols * W * scale + (long long)(cols + 1) * PNG_GRID_BORDER;
    long long ht = (long long)rows * H * scale + (long long)(rows + 1) * PNG_GRID_BORDER;
    if (wd > 1000000 || ht > 1000000)  // libpng's default user limit
        return errorf(e, "%s: grid of %lldx%lld pixels is too large", path, wd, ht);

    size_t plen = strlen(path) + 32;
    char *tmp = xmalloc(plen);
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int err = errno;
        free(tmp);
        return errorf(e, "%s: cannot create: %s", path, strerror(err));
    }
    uint8_t *row = xmalloc((size_t)wd * (size_t)C);
    PngFail fail = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &fail, on_png_error,
                                              on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int ok = png && info;
    if (!ok) snprintf(fail.msg, sizeof fail.msg, "out of memory in libpng");
    // nothing the error path reads is modified after setjmp, so no volatile
    if (ok && setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)wd, (png_uint_32)ht, 8,
                     C == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < (int)ht; y++) {
            fill_row(row, y, imgs, n, C, H, W, rows, cols, scale, (size_t)wd);
            png_write_row(png, row);
        }
        png_write_end(png, info);
    } else {
        ok = 0;
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(row);
    int io_err = 0;
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) io_err = errno;
    if (fclose(f) != 0 && ok && !io_err) io_err = errno;
    if (ok && !io_err && rename(tmp, path) != 0) io_err = errno;
    if (!ok || io_err) {
        remove(tmp);
        free(tmp);
        if (io_err) return errorf(e, "%s: write failed: %s", path, strerror(io_err));
        return errorf(e, "%s: PNG write failed: %s", path, fail.msg);
    }
    free(tmp);
    return 0;
}
