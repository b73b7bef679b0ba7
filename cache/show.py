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


def render(image: Image.Image, labels: np.ndarray, k: int, title: str) -> Image.Image:
    """[image | clusters over image with boundaries] with a header line and a legend. labels: uint8 [S, S]."""
    scale = SIDE / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    img = np.asarray(image.resize((w, h), Image.BILINEAR), np.float32)
    lab = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    over = 0.5 * img + 0.5 * colours(k)[lab].astype(np.float32)
    over[boundaries(lab)] = 255.0
    legend_h = 22
    canvas = Image.new("RGB", (2 * w + 12, h + HEADER + legend_h), (255, 255, 255))
    canvas.paste(Image.fromarray(img.astype(np.uint8)), (0, HEADER))
    canvas.paste(Image.fromarray(over.clip(0, 255).astype(np.uint8)), (w + 12, HEADER))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill=(0, 0, 0))
    shares = np.bincount(labels.ravel(), minlength=k)[:k] / labels.size
    x = 4
    for j in range(k):
        draw.rectangle((x, h + HEADER + 5, x + 12, h + HEADER + 17), fill=tuple(int(c) for c in colours(k)[j]))
        draw.text((x + 16, h + HEADER + 5), f"{j}: {100 * shares[j]:.0f}%", fill=(0, 0, 0))
        x += 70
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
    render(image, labels, k, title).save(out)
    return out
