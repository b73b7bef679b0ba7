"""Pictures a person would rather look at than read: an image beside its label map, with boundaries and a legend.

Used by `cache show` (an S x S cluster map) and `predict` (a full-size class map); both hand arrays in. Text is
drawn with the TrueType font Pillow ships (Aileron, through FreeType), so words keep their spaces. The canvas
is never narrower than MIN_WIDTH: a narrow image is centred on it, and the title wraps instead of being cut, so
a notice such as the random-weights warning is always readable. Colours stay distinct for any number of classes:
a dataset's standard palette where the caller has one, otherwise `colours`.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BASE = np.array([  # high-contrast first colours; the rest are chosen to be as far from them as possible
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195)], np.uint8)
MIN_LIGHTNESS = 40  # CIE L* of every generated colour: none is mistaken for black (ignored pixels, dark shading)
SIDE, MIN_WIDTH, PAD, FONT_SIZE, LINE = 480, 480, 6, 14, 18
LEGEND_CELL = 170
NOTICE_COLOUR = (200, 0, 0)


@functools.lru_cache(maxsize=8)
def _generated(n: int) -> np.ndarray:
    """BASE, then greedy farthest-point picks in CIE Lab from the colours of a 16-level RGB grid with L* at least
    MIN_LIGHTNESS, each as far as possible from black and from every colour chosen before: uint8 [n, 3], distinct."""
    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 17)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(np.uint8)
    pool_lab = _lab(grid)
    grid, pool_lab = grid[pool_lab[:, 0] >= MIN_LIGHTNESS], pool_lab[pool_lab[:, 0] >= MIN_LIGHTNESS]
    chosen = [c for c in BASE[:n]]
    taken = _lab(np.array([(0, 0, 0), *chosen], np.uint8))
    nearest = np.min(np.linalg.norm(pool_lab[:, None] - taken[None], axis=-1), axis=1)
    while len(chosen) < n:
        pick = int(nearest.argmax())
        chosen.append(grid[pick])
        nearest = np.minimum(nearest, np.linalg.norm(pool_lab - pool_lab[pick], axis=-1))
    return np.array(chosen, np.uint8)


def colours(n: int) -> np.ndarray:
    """n distinct RGB colours, uint8 [n, 3] (up to 4,096; the first 16 are BASE)."""
    return _generated(max(n, 0)).copy() if n <= 4096 else _generated(4096)[np.arange(n) % 4096]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 [..., 3] -> CIE Lab (D65) float [..., 3]."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def boundaries(labels: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return edge


def _font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def wrap(text: str, width: int, font) -> list[str]:
    """Greedy word wrap of `text` into lines at most `width` pixels wide (a longer single word is split)."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width and len(word) > 1:
            cut = max(1, max(i for i in range(1, len(word)) if font.getlength(word[:i]) <= width or i == 1))
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return lines + [line] if line else lines


def _fit(name: str, suffix: str, width: int, font) -> str:
    """name + suffix, the name shortened with an ellipsis until the whole fits in `width` pixels."""
    text = name + suffix
    while font.getlength(text) > width and len(name) > 1:
        name = name[:-1]
        text = name.rstrip() + "…" + suffix
    return text


def render(image: Image.Image, labels: np.ndarray, names: list[str], title: str, notice: str = "",
           palette: np.ndarray | None = None) -> Image.Image:
    """[image | image blended with label colours and white label boundaries], long side SIDE, under the title (and
    the notice, in red) and over a legend of the labels present with their share of the map.

    labels: uint8 [h, w] covering the whole image at any resolution (an S x S cluster map, or a full-size class
    map); names: one per label value; palette: uint8 [>= len(names), 3] (default: colours(len(names))).
    """
    font = _font()
    scale = SIDE / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    img = np.asarray(image.resize((w, h), Image.BILINEAR), np.float32)
    lab = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    palette = colours(len(names)) if palette is None else np.asarray(palette, np.uint8)
    over = 0.4 * img + 0.6 * palette[lab].astype(np.float32)
    over[boundaries(lab)] = 255.0
    shares = np.bincount(labels.ravel(), minlength=len(names))[:len(names)] / labels.size
    present = [c for c in np.argsort(-shares, kind="stable") if shares[c] > 0]
    width = max(2 * w + 12, MIN_WIDTH)
    head = [(line, (0, 0, 0)) for line in wrap(title, width - 2 * PAD, font)]
    head += [(line, NOTICE_COLOUR) for line in (wrap(notice, width - 2 * PAD, font) if notice else [])]
    top = PAD + LINE * len(head) + PAD
    per_row = max(1, (width - PAD) // LEGEND_CELL)
    canvas = Image.new("RGB", (width, top + h + PAD + LINE * -(-len(present) // per_row) + PAD), (255, 255, 255))
    left = (width - (2 * w + 12)) // 2
    canvas.paste(Image.fromarray(img.astype(np.uint8)), (left, top))
    canvas.paste(Image.fromarray(over.clip(0, 255).astype(np.uint8)), (left + w + 12, top))
    draw = ImageDraw.Draw(canvas)
    for i, (line, colour) in enumerate(head):
        draw.text((PAD, PAD + i * LINE), line, fill=colour, font=font)
    for i, c in enumerate(present):
        x, y = PAD + (i % per_row) * LEGEND_CELL, top + h + PAD + (i // per_row) * LINE
        draw.rectangle((x, y + 2, x + 12, y + 14), fill=tuple(int(v) for v in palette[c]), outline=(0, 0, 0))
        share = f": {100 * shares[c]:.0f} %" if shares[c] >= 0.005 else ": <1 %"
        draw.text((x + 18, y), _fit(names[c], share, LEGEND_CELL - 24, font), fill=(0, 0, 0), font=font)
    return canvas
