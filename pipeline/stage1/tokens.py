"""What Stage 1 computes for an image, shared by precompute, predict's on-the-fly cache and the benchmarks.

DINO sees each image at its aspect ratio: the short side resized to R, the long side to the nearest multiple of
the DINO patch (at most `long_tokens` patches: a longer image is squeezed to that), with the references' bilinear
interpolation (pipeline/data/resize.py). One forward gives both stored arrays: the cluster maps (Alg. 1: the
tokens resized to S x S over the whole image, FPS-Voronoi) and the compact tokens on the image's own token grid
(model/compaction.py), which the `view` cluster mode samples under each view's patches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from oczss.model.clustering import cluster_maps
from oczss.model.compaction import compact
from oczss.model.dino import DinoFeatures
from oczss.pipeline.data.images import load_rgb
from oczss.pipeline.data.resize import bilinear

MAX_ASPECT = 2  # the stored long side: L = 2 T tokens (4:3, 16:9 and Cityscapes' 2:1 keep their aspect)


def input_size(w: int, h: int, short: int, patch: int, long_tokens: int) -> tuple[int, int]:
    """(w, h) DINO sees for a w x h image: the short side `short`, the long side the multiple of `patch` nearest
    to the aspect-kept length, between `short` and long_tokens * patch."""
    long = max(w, h) * short / min(w, h)
    side = min(max(int(long / patch + 0.5) * patch, short), long_tokens * patch)
    return (side, short) if w >= h else (short, side)


def dino_input(image: np.ndarray, short: int, patch: int, long_tokens: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [h, w, 3] as DINO sees it (input_size)."""
    return bilinear(image, input_size(image.shape[1], image.shape[0], short, patch, long_tokens))


def load_input(path: Path | str, short: int, patch: int, long_tokens: int) -> np.ndarray:
    """The image file decoded (pipeline/data/images.py) and resized as DINO sees it; ImageError if unreadable."""
    return dino_input(np.asarray(load_rgb(path)), short, patch, long_tokens)


def image_arrays(extract: DinoFeatures, images: torch.Tensor, ids: list[str], seed: int, ks: list[int],
                 basis: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """One batch of same-sized DINO inputs uint8 [B, h, w, 3] on the device -> ({k: cluster maps uint8 [B, S, S]},
    compact tokens float16 [B, h/p, w/p, D] with the (mean, basis) given, or None without a basis)."""
    tokens = extract.token_grid(extract.normalise(images))
    maps = {k: lab.cpu().numpy() for k, lab in cluster_maps(extract.on_grid(tokens), ids, seed, ks).items()}
    if basis is None:
        return maps, None
    return maps, compact(tokens.permute(0, 2, 3, 1), *basis).cpu().numpy()
