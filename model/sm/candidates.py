"""The unseen candidates' source (§3.2): pseudo masks Y_u from multi-scale K-Means on a frozen CLIP's dense
features, and each pseudo-masked region's CLS embedding C_u from the same frozen CLIP image encoder.

`unseen_candidates(images, visual, params)` is a pure function of the images, the frozen CLIP image tower
(oczss.model.clip.load_tower(..., "visual")) and CandidateParams; Stage 1 runs it once per image and caches its
result. It needs no random seed: Eq. 1 makes the K-Means seeds a function of the features (oczss.model.sm.kmeans),
and nothing else draws random numbers, so the same input gives the same candidates.

Paper silent, chosen here (each a field of CandidateParams):
- dense features O: the last block's patch tokens through CLIP's ln_post and projection (CLIP's C-d space, the
  space of C_u and of the text), position embeddings resized bicubically to the input's grid
  (oczss.model.cass.towers, as CASS reads CLIP); resized bilinearly to the `grid` x `grid` cells clustered (0: the
  patch grid itself);
- K-Means window sizes `windows` (in grid cells; 8 and 16 on the 32 x 32 grid of a 512 x 512 input give 7 x 7 + 3 x 3
  seeds), `iters` Lloyd iterations, fusion `threshold` (cosine), at most `max_candidates` masks (K_u), the largest;
- the region fed to CLIP: `mask` (§3.2: X_m = X masked by Y_u, the whole image with every other pixel at the CLIP
  mean colour, resized to `crop_size`) or `box` (the intro's "cropped": the masked image cut to the mask's bounding
  box first); `chunk` regions per CLIP forward (memory only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from oczss.errors import OCZSSError
from oczss.model.cass.towers import clip_cls, clip_last_input
from oczss.model.dino import resize_grid
from oczss.model.losses import IGNORE
from oczss.model.sm.kmeans import multiscale_kmeans
from oczss.model.sm.targets import resize_labels

REGIONS = ("mask", "box")


@dataclass(frozen=True)
class CandidateParams:
    """How the candidates are made (module docstring); recorded with every cache that stores them."""

    grid: int = 32
    windows: tuple[int, ...] = (8, 16)
    iters: int = 10
    threshold: float = 0.9
    max_candidates: int = 50
    region: str = "mask"
    crop_size: int = 224
    chunk: int = 64

    def __post_init__(self):
        object.__setattr__(self, "windows", tuple(int(s) for s in self.windows))
        if self.region not in REGIONS:
            raise OCZSSError(f"candidate params: region={self.region!r} is not one of {', '.join(REGIONS)}")
        if not self.windows or min(self.windows) < 1:
            raise OCZSSError(f"candidate params: windows must be >= 1 cell each, got {self.windows}")
        if not 1 <= self.max_candidates < IGNORE:
            raise OCZSSError(f"candidate params: max_candidates must lie in [1, {IGNORE - 1}], got "
                             f"{self.max_candidates}")
        for name in ("grid", "iters"):
            if getattr(self, name) < 0:
                raise OCZSSError(f"candidate params: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("crop_size", "chunk"):
            if getattr(self, name) < 1:
                raise OCZSSError(f"candidate params: {name} must be >= 1, got {getattr(self, name)}")
        if not -1.0 <= self.threshold <= 1.0:
            raise OCZSSError(f"candidate params: threshold is a cosine similarity, in [-1, 1]; got {self.threshold}")


@dataclass
class Candidates:
    """labels uint8 [B, S, S]: each cell's pseudo mask (0 = the largest), IGNORE for none; embeddings fp32
    [B, max_candidates, C]: row u = C_u of pseudo mask u (L2-normalised), zero rows past the count; counts
    LongTensor[B]: pseudo masks per image."""

    labels: torch.Tensor
    embeddings: torch.Tensor
    counts: torch.Tensor


def clip_normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, H, W, 3] -> CLIP-normalised float [B, 3, H, W]."""
    x = images.permute(0, 3, 1, 2).float() / 255
    mean = x.new_tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    return (x - mean) / x.new_tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)


def dense_features(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """O: CLIP-normalised images [B, 3, H, W] -> the last block's patch tokens in CLIP's C-d space [B, C, h, w]."""
    x, (h, w) = clip_last_input(visual, images)
    x = visual.transformer.resblocks[-1](x)
    tokens = visual.ln_post(x[:, 1:]) @ visual.proj
    return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)


@torch.inference_mode()
def unseen_candidates(images: torch.Tensor, visual: nn.Module, params: CandidateParams) -> Candidates:
    """Y_u and C_u (§3.2) for CLIP-normalised images [B, 3, H, W] (H, W multiples of the CLIP patch)."""
    features = dense_features(visual, images)
    if params.grid:
        features = resize_grid(features, (params.grid, params.grid))
    labels = multiscale_kmeans(features, params.windows, params.iters, params.threshold, params.max_candidates)
    counts = torch.where(labels == IGNORE, -1, labels).flatten(1).amax(1) + 1
    embeddings = region_embeddings(images, labels, counts, visual, params)
    return Candidates(labels.to(torch.uint8), embeddings, counts)


def region_embeddings(images: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor, visual: nn.Module,
                      params: CandidateParams) -> torch.Tensor:
    """C_u: the frozen CLIP's CLS of every pseudo-masked region -> [B, max_candidates, C], zero past the counts.

    images [B, 3, H, W] CLIP-normalised; labels LongTensor[B, S, S] (upsampled to H x W, nearest)."""
    full = resize_labels(labels, tuple(images.shape[-2:]))
    regions, where = [], []
    for b, count in enumerate(counts.tolist()):
        for u in range(count):
            mask = full[b] == u
            region = images[b] * mask
            if params.region == "box":
                rows, cols = mask.any(1).nonzero().squeeze(1), mask.any(0).nonzero().squeeze(1)
                region = region[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            regions.append(F.interpolate(region[None], size=(params.crop_size, params.crop_size), mode="bilinear",
                                         align_corners=False, antialias=True)[0])
            where.append((b, u))
    out = images.new_zeros(len(images), params.max_candidates, visual.output_dim)
    for start in range(0, len(regions), params.chunk):
        batch = torch.stack(regions[start:start + params.chunk])
        cls = clip_cls(visual, clip_last_input(visual, batch)[0])
        for (b, u), embedding in zip(where[start:start + params.chunk], cls):
            out[b, u] = embedding
    return out
