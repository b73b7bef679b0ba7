"""`oczss cache show`: an image beside its cluster map, overlaid with cluster boundaries (as the paper's Fig. 2).

The S x S label grid covers the whole image in normalised coordinates, so it is resized (nearest) onto the
image as it is. A legend gives each cluster's colour and share of the grid; random-weight caches say so in
the header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from oczss.cache.store import DONE, FAILED, MaskCache
from oczss.errors import OCZSSError
from oczss.pipeline.datasets import Dataset
from oczss.pipeline.images import ImageError, load_rgb

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


def show(url: str, image_id: str, dataset: str, k: int, out: str | Path, split: str | None = None,
         data_root: str | None = None) -> Path:
    """Write the picture for `image_id` to `out` (PNG) and return its path."""
    cache = MaskCache.open(url)
    if k not in cache.params.ks:
        raise OCZSSError(f"--k {k}: cache {url} has K in {','.join(map(str, cache.params.ks))}")
    candidates = [s for d, s in cache.splits() if d == dataset and (split is None or s == split)]
    if not candidates:
        raise OCZSSError(f"cache {url} holds no {dataset}" + (f"/{split}" if split else "") + " split")
    for s in candidates:
        sc = cache.split(dataset, s)
        if image_id in sc.index:
            break
    else:
        raise OCZSSError(f"image {image_id!r} is in none of the cached {dataset} splits ({', '.join(candidates)})")
    row = sc.row(image_id)
    status = sc.status()[row]
    if status != DONE:
        why = "its image failed to decode" if status == FAILED else "its shard is not done yet"
        raise OCZSSError(f"image {image_id!r}: no cluster labels in the cache ({why})")
    labels = np.asarray(sc.labels(k)[row])
    root = data_root or sc.meta.get("data_root")
    path = Dataset(dataset, root).image_path(s, image_id)
    try:
        image = load_rgb(path)
    except ImageError as e:
        raise OCZSSError(f"cannot show {image_id!r}: {e} (pass --data-root if the dataset moved)") from e
    p = cache.params
    title = (f"{dataset}/{s} {image_id}   K={k}  S={p.grid}  DINO {p.dino_model} @ {p.input_size}"
             + ("   RANDOM WEIGHTS (tests/demo only)" if cache.random_weights else ""))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render(image, labels, [f"cluster {j}" for j in range(k)], title).save(out)
    return out
