"""Dense inference, the paper's protocol (poster, "Zero-shot segmentation results"): "pixel-wise predictions are
obtained by projecting patch representations onto pre-computed text embeddings of the class names, followed by
up-sampling"."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.simzss.vision import VisionTokens


def dense_logits(patches: torch.Tensor, grid: tuple[int, int], classes: torch.Tensor,
                 size: tuple[int, int]) -> torch.Tensor:
    """Cosine similarity of every patch to every class, up-sampled: patches [B, h*w, D] (row-major on the h x w
    grid), classes [K, D] -> fp32 [B, K, H, W] for `size` = (H, W), bilinear (align_corners False)."""
    b, n, d = patches.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{n} patch tokens do not fill a {grid[0]} x {grid[1]} grid")
    scores = F.normalize(patches.float(), dim=-1) @ F.normalize(classes.float(), dim=-1).T  # [B, N, K]
    scores = scores.transpose(1, 2).reshape(b, -1, *grid)
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def segment(vision: VisionTokens, images: torch.Tensor, classes: torch.Tensor,
            size: tuple[int, int] | None = None) -> torch.Tensor:
    """ImageNet-normalised images [B, 3, H, W] and class embeddings [K, D] -> per-pixel class scores [B, K, *size]
    (default size: H x W).

    An image whose sides are not multiples of the patch p is resized (bilinear) to the nearest multiples below
    for the tower; the scores are up-sampled to `size` either way."""
    p = vision.patch
    given = tuple(images.shape[-2:])
    grid = (given[0] // p, given[1] // p)
    if min(grid) < 1:
        raise OCZSSError(f"an image of {given[1]} x {given[0]} pixels is smaller than one {p} x {p} patch")
    if grid[0] * p != given[0] or grid[1] * p != given[1]:
        images = F.interpolate(images, size=(grid[0] * p, grid[1] * p), mode="bilinear", align_corners=False)
    _, patches = vision.tokens(images)
    return dense_logits(patches, grid, classes, size or given)
