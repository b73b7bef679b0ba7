"""Pictures a person would rather look at than read: an image beside its label map, with boundaries and a legend.

Used by `cache show` (an S x S cluster map) and `predict` (a full-size class map); both hand arrays in.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195)], np.uint8)
HEADER, SIDE = 36, 480


def colours(n: int) -> np.ndarray:
    """n distinct RGB colours, uint8 [n, 3] (the palette repeats, slightly darkened, past 16)."""
    reps = -(-n // len(PALETTE))
    return np.concatenate([(PALETTE * (1.0 - 0.3 * r)).astype(np.uint8) for r in range(reps)])[:n]


def boundaries(labels: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return edge


def render(image: Image.Image, labels: np.ndarray, names: list[str], title: str) -> Image.Image:
    """[image | image blended with label colours and white label boundaries], long side SIDE, under a title line
    and over a legend of the labels present with their share.

    labels: uint8 [h, w] covering the whole image at any resolution (an S x S cluster grid, or a full-size class
    map); names: one per label value.
    """
    scale = SIDE / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    img = np.asarray(image.resize((w, h), Image.BILINEAR), np.float32)
    lab = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    palette = colours(len(names))
    over = 0.4 * img + 0.6 * palette[lab].astype(np.float32)
    over[boundaries(lab)] = 255.0
    shares = np.bincount(labels.ravel(), minlength=len(names))[:len(names)] / labels.size
    present = [c for c in np.argsort(-shares, kind="stable") if shares[c] > 0]
    per_row = max(1, (2 * w + 12) // 160)
    canvas = Image.new("RGB", (2 * w + 12, h + HEADER + 6 + 20 * -(-len(present) // per_row)), (255, 255, 255))
    canvas.paste(Image.fromarray(img.astype(np.uint8)), (0, HEADER))
    canvas.paste(Image.fromarray(over.clip(0, 255).astype(np.uint8)), (w + 12, HEADER))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill=(0, 0, 0))
    for i, c in enumerate(present):
        x, y = 4 + (i % per_row) * 160, h + HEADER + 5 + (i // per_row) * 20
        draw.rectangle((x, y, x + 12, y + 12), fill=tuple(int(v) for v in palette[c]))
        draw.text((x + 16, y), f"{names[c]} {100 * shares[c]:.0f}%", fill=(0, 0, 0))
    return canvas
