# Shared by the CLI tests that check sample grids (test_sample, test_eval, test_run):
# read a PNG and rebuild what png_grid.c must have written from the sample values.
import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BORDER, BORDER_VALUE, SCALE = 2, 128, 2  # png_grid.h; sample and eval write at scale 2


def read_png(path):
    """The pixels as uint8 [height, width] (gray) or [height, width, 3]; fails on a non-PNG."""
    from PIL import Image  # Debian's python3-pil, a matplotlib dependency

    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, f"{path}: not a PNG"
    with Image.open(path) as im:
        assert im.format == "PNG", (path, im.format)
        return np.asarray(im)


def expected_grid(x, rows, cols):
    """x [n, C, H, W] in [-1, 1] laid out row-major in rows x cols cells as png_grid.c does:
    byte = lrint(clamp((v + 1) / 2, 0, 1) * 255) (round half to even, as np.rint), each cell
    upscaled by SCALE and framed by a BORDER-pixel grey border."""
    n, C, H, W = x.shape
    ch, cw = H * SCALE, W * SCALE
    out = np.full((rows * ch + (rows + 1) * BORDER, cols * cw + (cols + 1) * BORDER, C), BORDER_VALUE, np.uint8)
    b = np.rint(np.clip((x.astype(np.float64) + 1.0) * 0.5, 0, 1) * 255.0).astype(np.uint8)
    b[np.isnan(x)] = 0
    for i in range(n):
        r, c = divmod(i, cols)
        cell = b[i].transpose(1, 2, 0).repeat(SCALE, axis=0).repeat(SCALE, axis=1)
        y0, x0 = BORDER + r * (ch + BORDER), BORDER + c * (cw + BORDER)
        out[y0:y0 + ch, x0:x0 + cw] = cell
    return out[:, :, 0] if C == 1 else out


def check_grid(path, x, rows, cols):
    """The PNG at path is exactly the grid of x; returns its (height, width)."""
    got, want = read_png(path), expected_grid(x, rows, cols)
    assert got.shape == want.shape, (path, got.shape, want.shape)
    bad = int(np.count_nonzero(got != want))
    assert bad == 0, f"{path}: {bad} of {got.size} pixels differ from the samples"
    return got.shape[:2]
