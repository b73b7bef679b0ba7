"""Granular attention's multi-scale projections of the patch features (§3.4 eqs. 11-12, App. A)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GranularProjections(nn.Module):
    """`count` independent multi-scale projections of PF, computed together.

    Each projection o is eqs. 11-12: parallel 3x3 depthwise atrous convolutions with the given dilations (App. A:
    {1, 6, 12, 18}) and a global-average-pooling branch over PF on its h x w grid, concatenated to 5D channels, then
    a 1x1 convolution 5D -> D. ORA uses three (K and V of object refinement, Q of patch refinement), each with its
    own weights, as each replaces one linear projection. They are fused for speed, with the same parameters as
    `count` separate modules: each dilation is one depthwise convolution over PF repeated `count` times along the
    channels (a plain depthwise convolution, far faster than a grouped one with several filters per channel), the
    1x1 convolutions are one batched matmul, and the GAP branch, constant over the grid, enters as a per-image bias.
    No normalisation or activation (the paper names none).
    """

    def __init__(self, dim: int, count: int, dilations: tuple[int, ...]):
        super().__init__()
        self.count = count
        self.depthwise = nn.ModuleList(
            nn.Conv2d(dim * count, dim * count, 3, padding=d, dilation=d, groups=dim * count) for d in dilations)
        branches = len(dilations) + 1
        bound = 1.0 / math.sqrt(branches * dim)  # nn.Conv2d's default init for a 1x1 conv with 5D inputs
        self.pointwise = nn.Parameter(torch.empty(count, branches, dim, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(count, dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, patch_grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """x [B, M, D] (row-major on the h x w grid) -> `count` tensors [B, M, D]."""
        b, m, d = x.shape
        image = x.transpose(1, 2).reshape(b, d, *patch_grid).repeat(1, self.count, 1, 1)  # channel o * D + c
        local = torch.stack([_atrous(conv, image).view(b, self.count, d, m) for conv in self.depthwise], dim=1)
        w = self.pointwise.to(local.dtype)
        out = torch.einsum("bfocm,ofce->bome", local, w[:, :-1])  # the 1x1 conv over the 4 atrous branches
        pooled = torch.einsum("bc,oce->boe", x.mean(dim=1).to(w.dtype), w[:, -1])  # ... and over the GAP branch
        out = out + (pooled + self.bias.to(w.dtype)).unsqueeze(2)
        return out.unbind(1)


def _atrous(conv: nn.Conv2d, image: torch.Tensor) -> torch.Tensor:
    """`conv` (depthwise 3x3, dilation r, zero padding r) on image, skipping kernel rows / columns that lie wholly
    in the padding: where r >= h the off-centre rows only ever read zeros, so the centre row alone gives the same
    result (likewise for columns). Spares large dilations on small grids (r = 12, 18 on the demo's 8 x 8 grid,
    where the convolution reduces to a per-channel scale and shift)."""
    r = conv.dilation[0]
    h, w = image.shape[-2:]
    if r >= h and r >= w:
        return image * conv.weight[:, 0, 1, 1, None, None] + conv.bias[:, None, None]
    rows, pad_h = (slice(1, 2), 0) if r >= h else (slice(0, 3), r)
    cols, pad_w = (slice(1, 2), 0) if r >= w else (slice(0, 3), r)
    return F.conv2d(image, conv.weight[:, :, rows, cols], conv.bias, padding=(pad_h, pad_w), dilation=r,
                    groups=conv.groups)
