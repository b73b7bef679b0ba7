"""Joint image / label / cluster-map transforms (docs/protocol.md §2).

Training view: Resize (ratio U(0.5, 2) of the dataset's img_scale, aspect kept) -> RandomCrop (cat_max_ratio 0.75,
10 tries) -> horizontal flip (p 0.5) -> PhotoMetricDistortion -> ImageNet Normalize -> Pad (image 0, label 255).
Test view: short side resized to the dataset's test size (pipeline/data/resize.py `rescale`). Every view carries a `View`, the map from its pixel
coordinates back to the original image's normalised coordinates; the cached S x S cluster grid covers the whole
original image, so a view's per-patch cluster labels are the grid cells under its patch centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from oczss.model import IGNORE
from oczss.pipeline.data.resize import bilinear, nearest, ratio_scale, rescale_size

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass(frozen=True)
class View:
    """Where a view's pixels come from: content of `width` x `height` pixels, cropped at (left, top) from the
    original resized to `scaled_w` x `scaled_h`, mirrored if `flip`. Padding lies right of / below the content."""

    width: int
    height: int
    left: int
    top: int
    scaled_w: int
    scaled_h: int
    flip: bool = False

    def patch_centres(self, rows: int, cols: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised original-image coordinates in [0, 1) of the centres of a rows x cols grid of patch x patch
        pixels: (x [cols], y [rows]); padding clamps to the content's edge, a flip mirrors x."""
        u = np.clip((np.arange(cols) + 0.5) * patch, 0.0, self.width - 1e-3)
        v = np.clip((np.arange(rows) + 0.5) * patch, 0.0, self.height - 1e-3)
        if self.flip:
            u = self.width - u
        return (u + self.left) / self.scaled_w, (v + self.top) / self.scaled_h

    def patch_clusters(self, cluster_map: np.ndarray, rows: int, cols: int, patch: int) -> np.ndarray:
        """Cluster label of each patch of a rows x cols grid of patch x patch pixels: int64 [rows * cols], from the
        whole image's cluster map uint8 [S, S]: the cell that contains each patch centre."""
        s = cluster_map.shape[0]
        x, y = self.patch_centres(rows, cols, patch)
        gx = np.clip((x * s).astype(np.int64), 0, s - 1)
        gy = np.clip((y * s).astype(np.int64), 0, s - 1)
        return cluster_map[gy[:, None], gx[None, :]].astype(np.int64).reshape(-1)

    def patch_valid(self, rows: int, cols: int, patch: int) -> np.ndarray:
        """Whether each patch of a rows x cols grid shows the image (its centre lies in the content) rather than
        padding: bool [rows * cols]. Padding patches get no cluster."""
        inside_x = (np.arange(cols) + 0.5) * patch < self.width
        inside_y = (np.arange(rows) + 0.5) * patch < self.height
        return (inside_y[:, None] & inside_x[None, :]).reshape(-1)

    def patch_features(self, feature_map: np.ndarray, rows: int, cols: int, patch: int) -> np.ndarray:
        """Feature of each patch of a rows x cols grid: float16 [rows * cols, D], bilinear between the token
        centres of the whole image's feature map [T_h, T_w, D] (token (i, j) centred at ((j + 0.5) / T_w,
        (i + 0.5) / T_h), clamped at the border), at each patch centre."""
        th, tw = feature_map.shape[:2]
        x, y = self.patch_centres(rows, cols, patch)
        x0, x1, wx = _between(x * tw - 0.5, tw)
        y0, y1, wy = _between(y * th - 0.5, th)
        wx, wy = wx[None, :, None], wy[:, None, None]
        f = feature_map.astype(np.float32)
        top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
        bottom = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
        return (top * (1 - wy) + bottom * wy).reshape(rows * cols, -1).astype(np.float16)


def _between(position: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two grid indices around each position (in grid units, clamped to [0, size - 1]) and the weight of the
    second."""
    f = np.clip(position, 0, size - 1)
    i0 = np.minimum(f.astype(np.int64), max(size - 2, 0))
    return i0, np.minimum(i0 + 1, size - 1), f - i0


def random_crop(label: np.ndarray, crop: int, rng: np.random.Generator, cat_max_ratio: float = 0.75,
                tries: int = 10) -> tuple[int, int]:
    """mmseg RandomCrop: (top, left), retried until no class (255 ignored) covers cat_max_ratio of the crop."""
    h, w = label.shape

    def pick():
        return int(rng.integers(0, max(h - crop, 0) + 1)), int(rng.integers(0, max(w - crop, 0) + 1))

    top, left = pick()
    for _ in range(tries):
        values, counts = np.unique(label[top:top + crop, left:left + crop], return_counts=True)
        counts = counts[values != IGNORE]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
        top, left = pick()
    return top, left


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg PhotoMetricDistortion on uint8 RGB: brightness ±32, contrast [0.5, 1.5] (before or after the colour
    steps), saturation [0.5, 1.5], hue ±18 of 180 degrees-units, each with p = 0.5; every step clips to uint8 as
    mmseg does, here through 256-entry lookup tables."""
    img = image
    if rng.random() < 0.5:
        img = _affine(img, 1.0, rng.uniform(-32, 32))
    contrast_first = rng.integers(2) == 1
    if contrast_first and rng.random() < 0.5:
        img = _affine(img, rng.uniform(0.5, 1.5), 0.0)
    sat = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = int(rng.integers(-18, 19)) if rng.random() < 0.5 else None
    if sat is not None or hue is not None:
        hsv = np.array(Image.fromarray(img).convert("HSV"))  # PIL's hue spans 0..255 for 0..360 degrees
        if sat is not None:
            hsv[..., 1] = _affine(hsv[..., 1], sat, 0.0)
        if hue is not None:
            hsv[..., 0] = ((np.arange(256) + round(hue * 256 / 180)) % 256).astype(np.uint8)[hsv[..., 0]]
        img = np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"))
    if not contrast_first and rng.random() < 0.5:
        img = _affine(img, rng.uniform(0.5, 1.5), 0.0)
    return img


def _affine(img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """uint8 clip(img * alpha + beta), as mmseg's convert, by table lookup."""
    return np.take(np.clip(np.arange(256, dtype=np.float32) * alpha + beta, 0, 255).astype(np.uint8), img)


def normalise(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> float32 [3, H, W] with ImageNet mean/std (OTSeg's Normalize, docs/protocol.md §2)."""
    return ((image.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1).copy()


def train_view(image: np.ndarray, label: np.ndarray, img_scale: tuple[int, int], crop: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, View]:
    """One augmented training view: float32 [3, crop, crop], uint8 [crop, crop] (255 = ignore/pad), its View.

    The resize is mmseg's (pipeline/data/resize.py: the scale truncated to integers, cv2's bilinear image and
    nearest label); the image is resized only inside the crop, which equals cropping the whole resized image."""
    h, w = label.shape
    sw, sh = rescale_size(w, h, ratio_scale(img_scale, rng.uniform(0.5, 2.0)))
    label = nearest(label, (sw, sh))
    top, left = random_crop(label, crop, rng)
    label = label[top:top + crop, left:left + crop]
    image = bilinear(image, (sw, sh), (left, top, label.shape[1], label.shape[0]))
    flip = bool(rng.random() < 0.5)
    if flip:
        image, label = image[:, ::-1], label[:, ::-1]
    image = photometric(np.ascontiguousarray(image), rng)
    ch, cw = label.shape
    out_img = np.zeros((3, crop, crop), np.float32)
    out_lab = np.full((crop, crop), IGNORE, np.uint8)
    out_img[:, :ch, :cw] = normalise(image)
    out_lab[:ch, :cw] = label
    return out_img, out_lab, View(cw, ch, left, top, sw, sh, flip)


def windows(w: int, h: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Sliding windows (left, top, width, height) over a w x h image, clamped to the image (OTSeg slide)."""
    out = []
    rows = max(h - crop + stride - 1, 0) // stride + 1
    cols = max(w - crop + stride - 1, 0) // stride + 1
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, h), min(c * stride + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            out.append((x1, y1, x2 - x1, y2 - y1))
    return out
