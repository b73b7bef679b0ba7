"""Multi-scale Feature Enhancement (MFE, §3.3, Fig. 4): an auxiliary branch on the pixel decoder's three scales.

F = {F_0, F_1, F_2} are the pixel decoder's multi-scale outputs (the transformer decoder's keys and values), F_0 the
coarsest (stride 32), F_2 the finest (stride 8). Each goes through its own dense block (3 x 3 convolution,
normalisation, ReLU); the refined F_0 is resized to F_1's size and added to the refined F_1, that sum is resized to
F_2's size and added to the refined F_2: F_u. MFE is trained through L_MFE (CE + focal of F_u against the pseudo
labels Y_p, oczss.model.sm.objective) and dropped at inference (§3.4), so it shapes the decoder's keys and values
through its gradient only; the model's predictions never read F_u.

Paper silent: the resize is bilinear (align_corners False); the blocks keep the pixel decoder's width D; F_u is
classified against E = cat(A_s, C_u) by a 1 x 1 projection to CLIP's C (`embed`) and the dot product, like the
queries' S = σ(V Eᵀ). Table 4's normalisations: `group` (GroupNorm, 32 groups), `batch` (BatchNorm), `none` (the
convolution then has a bias).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def dense_block(channels: int, norm: str) -> nn.Sequential:
    """Conv 3 x 3 (D -> D) + `norm` (`group`, `batch` or `none`) + ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none")]
    if norm == "group":
        layers.append(nn.GroupNorm(32, channels))
    elif norm == "batch":
        layers.append(nn.BatchNorm2d(channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MFE(nn.Module):
    """Three dense blocks fused coarse to fine (§3.3), and the projection of F_u to CLIP's C channels."""

    def __init__(self, channels: int, embed_dim: int, norm: str):
        super().__init__()
        self.blocks = nn.ModuleList(dense_block(channels, norm) for _ in range(3))
        self.project = nn.Conv2d(channels, embed_dim, 1)

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """features (F_0, F_1, F_2) [B, D, h_i, w_i], coarse to fine -> F_u [B, D, h_2, w_2]."""
        if len(features) != len(self.blocks):
            raise ValueError(f"MFE takes the pixel decoder's {len(self.blocks)} scales, got {len(features)}")
        fused = self.blocks[0](features[0])
        for block, f in zip(self.blocks[1:], features[1:]):
            fused = F.interpolate(fused, size=f.shape[-2:], mode="bilinear", align_corners=False) + block(f)
        return fused

    def embed(self, fused: torch.Tensor) -> torch.Tensor:
        """F_u [B, D, h, w] -> its per-pixel embeddings in CLIP's space [B, C, h, w]."""
        return self.project(fused)
