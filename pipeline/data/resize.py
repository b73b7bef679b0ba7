"""Resizing as the references do it (mmcv on OpenCV), without OpenCV: the output sizes mmcv / mmseg compute and
cv2.resize's uint8 interpolation, bit for bit (docs/protocol.md §2).

Sizes:
- `rescale_size`: mmcv's rule for a keep-ratio resize into (long, short) = scale: factor = min(long / max(w, h),
  short / min(w, h)), each side int(side * factor + 0.5).
- `short_side_size`: mmseg 0.24's test Resize(keep_ratio=True, min_size=short) (OTSeg): the scale is replaced by
  (short * h / w, short) or (short, short * w / h) and then goes through `rescale_size`; the float arithmetic is
  the same, so the rounding at .5 is too.
- `ratio_scale`: mmseg's random_sample_ratio, the training scale int(img_scale * ratio) per side.

Interpolation (what mmcv.imresize calls: cv2.resize, INTER_LINEAR for images, INTER_NEAREST for labels):
- `bilinear`: cv2's fixed-point path for uint8. Per output column, fx = float32((dx + 0.5) * W / w - 0.5), the
  source column floor(fx) and its weights round((1 - fx) * 2048), round(fx * 2048) (half to even); columns left
  of the first or right of the last source column take that column whole. Rows alike, except that the row
  weights are kept and the row indices clipped. Horizontal pass in integers; the vertical one as cv2's uchar
  kernel rounds: ((b0 * (H0 >> 4)) >> 16) + ((b1 * (H1 >> 4)) >> 16) + 2) >> 2. No antialiasing when shrinking.
  Equal to opencv-python-headless 4.10's cv2.resize on every array the tests try (0 grey levels apart); a
  build whose vector kernel rounded otherwise could differ by 1 grey level at most.
- `nearest`: cv2's INTER_NEAREST, source index min(floor(dx * W / w), W - 1) (not the pixel centre).
"""

from __future__ import annotations

import numpy as np

COEF_BITS = 11  # cv2's INTER_RESIZE_COEF_BITS: interpolation weights in units of 1/2048


def rescale_size(w: int, h: int, scale: tuple[float, float]) -> tuple[int, int]:
    """mmcv.rescale_size: the largest (w, h) with the aspect kept inside (long, short) = scale (either order)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)


def short_side_size(w: int, h: int, short: int) -> tuple[int, int]:
    """mmseg 0.24's test resize, Resize(keep_ratio=True, min_size=short): the short side becomes `short`."""
    scale = (short * h / w, short) if h > w else (short, short * w / h)
    return rescale_size(w, h, scale)


def ratio_scale(img_scale: tuple[int, int], ratio: float) -> tuple[int, int]:
    """mmseg's Resize.random_sample_ratio: the img_scale that `ratio` makes, truncated to integers."""
    return int(img_scale[0] * ratio), int(img_scale[1] * ratio)


def rescale(image: np.ndarray, scale: tuple[float, float], min_size: int | None = None) -> np.ndarray:
    """The test-time resize of both methods (mmcv.imrescale): uint8 [H, W, C] -> uint8 [h, w, C], aspect kept.

    min_size: mmseg 0.24's Resize(min_size) (OTSeg: the short side becomes min_size); None: into `scale`
    (CASS's mmseg 1.x Resize(scale=(2048, S), keep_ratio=True))."""
    h, w = image.shape[:2]
    size = short_side_size(w, h, min_size) if min_size is not None else rescale_size(w, h, scale)
    return bilinear(image, size)


def _weights(src: int, dst: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cv2's source indices (i0, i1) and fixed-point weights (a0, a1) of every output position along one axis."""
    f = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    f = f - i0.astype(np.float32)
    if clamp:  # columns: outside the source, the border column whole
        outside = (i0 < 0) | (i0 >= src - 1)
        f[outside] = 0
        i0 = np.clip(i0, 0, src - 1)
    one = np.float32(1 << COEF_BITS)
    a0 = np.rint((np.float32(1) - f) * one).astype(np.int32)
    a1 = np.rint(f * one).astype(np.int32)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), a0, a1


def bilinear(image: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """cv2.resize(image, size, interpolation=INTER_LINEAR) for uint8 [H, W] or [H, W, C]; size = (w, h).

    box: (left, top, width, height), computes only that part of the output (what a crop of the whole resized
    image would hold, at the cost of the crop)."""
    if image.dtype != np.uint8:
        raise TypeError(f"bilinear resizes uint8 images, got {image.dtype}")
    h_in, w_in = image.shape[:2]
    w, h = size
    left, top, bw, bh = box if box is not None else (0, 0, w, h)
    x0, x1, a0, a1 = (v[left:left + bw] for v in _weights(w_in, w, clamp=True))
    y0, y1, b0, b1 = (v[top:top + bh] for v in _weights(h_in, h, clamp=False))
    rows = np.unique(np.concatenate([y0, y1]))  # the source rows the box needs
    c = image.shape[2] if image.ndim == 3 else 1
    src = image[rows].reshape(len(rows), w_in * c)
    lane = np.arange(c)
    cols0, cols1 = (x0[:, None] * c + lane).ravel(), (x1[:, None] * c + lane).ravel()
    horizontal = np.take(src, cols0, axis=1) * np.repeat(a0, c) + np.take(src, cols1, axis=1) * np.repeat(a1, c)
    horizontal >>= 4
    r0, r1 = np.searchsorted(rows, y0), np.searchsorted(rows, y1)
    out = (np.take(horizontal, r0, axis=0) * b0[:, None]) >> 16
    out += (np.take(horizontal, r1, axis=0) * b1[:, None]) >> 16
    out += 2
    out >>= 2
    return out.astype(np.uint8).reshape((bh, bw, c) if image.ndim == 3 else (bh, bw))


def nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize(label, size, interpolation=INTER_NEAREST) for [H, W] arrays; size = (w, h)."""
    h_in, w_in = label.shape[:2]
    w, h = size
    xs = np.minimum(np.floor(np.arange(w) * (1.0 / (w / w_in))).astype(np.int64), w_in - 1)
    ys = np.minimum(np.floor(np.arange(h) * (1.0 / (h / h_in))).astype(np.int64), h_in - 1)
    return label[ys[:, None], xs[None, :]]
