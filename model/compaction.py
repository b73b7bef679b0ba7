"""Compact DINO features for the `view` cluster mode: the patch tokens of each image reduced to a few principal
components in fp16, so Stage 1 can store them (<= 64 KB per image at 32 x 32 tokens and D = 32) and every
training view can cluster its own patches in the step, as the paper's Table 11 setup does with stored features.

The basis is fitted once per dataset (PCA of the tokens of its first images) and recorded with the cache, so the
same projection serves training, evaluation and prediction.
"""

from __future__ import annotations

import torch


def fit_basis(tokens: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of tokens [N, C] -> (mean fp32 [C], basis fp32 [C, dim]: the top `dim` principal directions, ordered by
    variance, each with its largest entry positive, so a fit is reproducible)."""
    if tokens.dim() != 2 or not 1 <= dim <= tokens.shape[1]:
        raise ValueError(f"tokens must be [N, C] with 1 <= dim <= C, got {tuple(tokens.shape)} and dim {dim}")
    x = tokens.double()
    mean = x.mean(0)
    centred = x - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))  # ascending eigenvalues
    basis = vectors.flip(-1)[:, :dim]
    sign = torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
    return mean.float(), (basis * sign).float()


def compact(tokens: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """tokens [..., C] -> fp16 [..., D] = (tokens - mean) @ basis."""
    return ((tokens.float() - mean.to(tokens.device)) @ basis.to(tokens.device)).half()
