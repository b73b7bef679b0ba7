"""Key-key attention graphs of CLIP and of the VFM (§3.1-3.2), and the range matching that puts them on one scale.

Each head's graph is A = s K Kᵀ over the N patch keys K [N, d] ([CLS] excluded), with s = d_CLIP^-1/2 for both
towers (the authors' code scales DINO's graph by CLIP's head scale as well). It is symmetric positive
semi-definite of rank <= d, and pre-softmax: Eq. 2's softmax comes later, in attention.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def key_graph(keys: torch.Tensor, scale: float) -> torch.Tensor:
    """keys [..., N, d] -> graphs s K Kᵀ [..., N, N]."""
    return scale * keys @ keys.transpose(-1, -2)


def resize_keys(keys: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """VFM keys [B, H, M, d] on the `grid` (M = h'*w') -> [B, H, N, d] on CLIP's grid `size` (N = h*w), each key
    channel resized bilinearly (align_corners False, no antialias): the keys are resized, not the graph."""
    b, heads, m, d = keys.shape
    if tuple(grid) == tuple(size):
        return keys
    maps = keys.permute(0, 1, 3, 2).reshape(b * heads, d, *grid)
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps.reshape(b, heads, d, -1).permute(0, 1, 3, 2)


def match_range(x: torch.Tensor, like: torch.Tensor, dims: int) -> torch.Tensor:
    """Min-max rescale `x` into the value range of `like`, the min and max taken over their last `dims` dimensions
    (leading dimensions are independent): (x - min x) / (max x - min x) * (max L - min L) + min L.

    dims 3 on keys [B, H, N, d]: one range per window over all heads, tokens and channels (the DINO keys into
    CLIP's). dims 2 on graphs [B, H, N, N]: one range per head. A constant `x` maps to min L.
    """
    flat_x, flat_like = x.flatten(-dims), like.flatten(-dims)
    lo, hi = flat_x.amin(-1), flat_x.amax(-1)
    like_lo, like_hi = flat_like.amin(-1), flat_like.amax(-1)
    shape = lo.shape + (1,) * dims
    unit = (x - lo.view(shape)) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny).view(shape)
    return unit * (like_hi - like_lo).view(shape) + like_lo.view(shape)
