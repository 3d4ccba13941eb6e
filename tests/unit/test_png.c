// test_png.c — sample grids: write 3x4 grids (gray and RGB), read them back
// with libpng, check the size, border, scaling and pixel mapping; failures
// (missing directory, bad arguments) are clean errors that leave no file.
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/png_grid.h"
#include "testutil.h"

#define OUT_DIR LD_BINARY_DIR "/test_png_out"

enum { ROWS = 3, COLS = 4, NIMG = 11, IH = 5, IW = 6, SCALE = 2, BD = PNG_GRID_BORDER };

// Reads a PNG into a malloc'd buffer in the given format; NULL on failure.
static unsigned char *read_png(const char *path, png_uint_32 format, int *w, int *h) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return NULL;
    im.format = format;
    unsigned char *buf = malloc(PNG_IMAGE_SIZE(im));
    if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&im);
        return NULL;
    }
    *w = (int)im.width, *h = (int)im.height;
    return buf;
}

// Top-left pixel of image pixel (iy, ix) of cell (r, c).
static int gx(int c, int ix) { return BD + c * (IW * SCALE + BD) + ix * SCALE; }
static int gy(int r, int iy) { return BD + r * (IH * SCALE + BD) + iy * SCALE; }

static int no_temp_files(void) {
    DIR *d = opendir(OUT_DIR);
    if (!d) return 0;
    int clean = 1;
    struct dirent *de;
    while ((de = readdir(d))) clean &= strstr(de->d_name, ".tmp") == NULL;
    closedir(d);
    return clean;
}

static void check_gray(void) {
    static float img[NIMG * IH * IW];
    TuRng r;
    tu_rng_seed(&r, 1);
    tu_fill(&r, img, NIMG * IH * IW, -1, 1);
    // known values: image 0 pixel (0,0) = -1 -> 0; image 5 pixel (4,5) = 1 -> 255;
    // image 10 pixel (2,3) = 0 -> 128 (127.5 rounds to even); 0.5 -> 191;
    // out of range clamps; NaN -> 0
    img[0] = -1.0f;
    img[5 * IH * IW + 4 * IW + 5] = 1.0f;
    img[10 * IH * IW + 2 * IW + 3] = 0.0f;
    img[3 * IH * IW + 1 * IW + 1] = 0.5f;
    img[7 * IH * IW + 0 * IW + 2] = 7.0f;
    img[7 * IH * IW + 0 * IW + 3] = -3.0f;
    img[8 * IH * IW + 0] = NAN;
    const char *path = OUT_DIR "/gray.png";
    Error e;
    int rc = png_write_grid(path, img, NIMG, 1, IH, IW, ROWS, COLS, SCALE, &e);
    EXPECT(rc == 0, "gray grid written: %s", rc ? e.msg : "");
    int w = 0, h = 0;
    unsigned char *px = read_png(path, PNG_FORMAT_GRAY, &w, &h);
    EXPECT(px != NULL, "gray grid readable by libpng");
    if (!px) return;
    EXPECT(w == COLS * IW * SCALE + (COLS + 1) * BD && h == ROWS * IH * SCALE + (ROWS + 1) * BD,
           "size %dx%d", w, h);
#define P(x, y) px[(size_t)(y) * (size_t)w + (size_t)(x)]
    EXPECT(P(0, 0) == 128 && P(1, 1) == 128 && P(w - 1, h - 1) == 128, "outer border grey");
    EXPECT(P(gx(1, 0) - 1, gy(0, 0)) == 128, "border between columns");
    EXPECT(P(gx(0, 0), gy(1, 0) - 1) == 128, "border between rows");
    EXPECT(P(gx(0, 0), gy(0, 0)) == 0 && P(gx(0, 0) + 1, gy(0, 0) + 1) == 0,
           "-1 -> 0, scaled 2x2 (%d)", P(gx(0, 0), gy(0, 0)));
    EXPECT(P(gx(1, 5), gy(1, 4)) == 255 && P(gx(1, 5) + 1, gy(1, 4) + 1) == 255,
           "image 5 at row 1 col 1: 1 -> 255 (%d)", P(gx(1, 5), gy(1, 4)));
    EXPECT(P(gx(2, 3), gy(2, 2)) == 128, "image 10: 0 -> 128 (%d)", P(gx(2, 3), gy(2, 2)));
    EXPECT(P(gx(3, 1), gy(0, 1)) == 191, "image 3: 0.5 -> 191 (%d)", P(gx(3, 1), gy(0, 1)));
    EXPECT(P(gx(3, 2), gy(1, 0)) == 255 && P(gx(3, 3), gy(1, 0)) == 0, "out of range clamps");
    EXPECT(P(gx(0, 0), gy(2, 0)) == 0, "NaN -> 0");
    float v = img[6 * IH * IW + 3 * IW + 4];
    int want = (int)lrint((v + 1.0) * 0.5 * 255.0);
    EXPECT(P(gx(2, 4), gy(1, 3)) == want, "random pixel %d == %d", P(gx(2, 4), gy(1, 3)), want);
    int empty = 1;  // cell 11 (row 2, col 3) has no image
    for (int y = gy(2, 0); y < gy(2, 0) + IH * SCALE; y++)
        for (int x = gx(3, 0); x < gx(3, 0) + IW * SCALE; x++) empty &= P(x, y) == 128;
    EXPECT(empty, "cell past the last image stays grey");
#undef P
    free(px);

    // overwriting an existing grid works (rename replaces it)
    EXPECT(png_write_grid(path, img, 1, 1, IH, IW, 1, 1, 1, &e) == 0, "overwrite");
    px = read_png(path, PNG_FORMAT_GRAY, &w, &h);
    EXPECT(px && w == IW + 2 * BD && h == IH + 2 * BD, "overwritten grid has the new size");
    free(px);
}

static void check_rgb(void) {
    static float img[NIMG * 3 * IH * IW];
    for (int i = 0; i < NIMG; i++)
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < IH * IW; j++)
                img[(i * 3 + k) * IH * IW + j] = k == 0 ? 1.0f : k == 1 ? -1.0f : 0.5f;
    const char *path = OUT_DIR "/rgb.png";
    Error e;
    int rc = png_write_grid(path, img, NIMG, 3, IH, IW, ROWS, COLS, SCALE, &e);
    EXPECT(rc == 0, "rgb grid written: %s", rc ? e.msg : "");
    int w = 0, h = 0;
    unsigned char *px = read_png(path, PNG_FORMAT_RGB, &w, &h);
    EXPECT(px != NULL, "rgb grid readable");
    if (!px) return;
    EXPECT(w == COLS * IW * SCALE + (COLS + 1) * BD && h == ROWS * IH * SCALE + (ROWS + 1) * BD,
           "rgb size %dx%d", w, h);
    const unsigned char *p = px + ((size_t)gy(1, 2) * (size_t)w + (size_t)gx(2, 3)) * 3;
    EXPECT(p[0] == 255 && p[1] == 0 && p[2] == 191, "planar CHW -> interleaved RGB (%d %d %d)",
           p[0], p[1], p[2]);
    EXPECT(px[0] == 128 && px[1] == 128 && px[2] == 128, "rgb border grey");
    free(px);
}

static void check_errors(void) {
    float img[IH * IW] = {0};
    Error e;
    const char *bad = OUT_DIR "/no/such/dir/grid.png";
    EXPECT(png_write_grid(bad, img, 1, 1, IH, IW, 1, 1, 1, &e) < 0 && strstr(e.msg, bad),
           "missing directory: error naming the path: %s", e.msg);
    EXPECT(png_write_grid(OUT_DIR "/c2.png", img, 1, 2, IH, IW, 1, 1, 1, &e) < 0 &&
               strstr(e.msg, "channels"),
           "2 channels: %s", e.msg);
    EXPECT(png_write_grid(OUT_DIR "/many.png", img, 5, 1, IH, IW, 2, 2, 1, &e) < 0,
           "more images than cells");
    EXPECT(png_write_grid(OUT_DIR "/s0.png", img, 1, 1, IH, IW, 1, 1, 0, &e) < 0, "scale 0");
    struct stat st;
    EXPECT(stat(OUT_DIR "/c2.png", &st) != 0, "no file after a failed write");
    EXPECT(no_temp_files(), "no temp files left behind");
}

int main(void) {
    mkdir(OUT_DIR, 0755);
    check_gray();
    check_rgb();
    check_errors();
    return tu_report("test_png");
}
