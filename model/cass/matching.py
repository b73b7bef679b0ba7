"""Complementary spectral graph matching (§3.2.1, Eq. 5) and the head pairing it yields.

Per head, the top-k eigenvalues of the key graph A = s K Kᵀ (k = 20 in the authors' code, or N if fewer),
normalised to sum 1 (the code's L2 then L1 normalisation of positive values), are compared with the
Wasserstein distance W(u, v) = Σ |sort(u) - sort(v)| (ascending sort; a sum, not a mean). Cost C[i, j] =
1 - W(λ̄_VFM^i, λ̄_CLIP^j), rows VFM heads, columns CLIP heads; Hungarian matching minimises the total cost,
i.e. pairs the most different (complementary) spectra.

Eigenvalues come from the d x d Gram matrix s Kᵀ K rather than the N x N graph: both have the same nonzero
eigenvalues and the graph has rank <= d, so the top k agree (zeros pad when d < k). That keeps the batched
eigendecomposition on the device at d = 64 instead of N = 196 (or 588 for a whole VOC image), in float64.
The assignment runs on the host with scipy's `linear_sum_assignment`: all windows' cost matrices cross to the
host in one transfer and the permutations come back in one, never one per window or head.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def key_spectrum(keys: torch.Tensor, scale: float, k: int) -> torch.Tensor:
    """keys [..., N, d] -> the top min(k, N) eigenvalues of s K Kᵀ, descending, float64 [..., min(k, N)]."""
    n, d = keys.shape[-2:]
    k = min(k, n)
    keys = keys.double()
    values = torch.linalg.eigvalsh(scale * keys.transpose(-1, -2) @ keys).flip(-1)[..., :k]
    if values.shape[-1] < k:
        values = torch.cat([values, values.new_zeros(*values.shape[:-1], k - values.shape[-1])], dim=-1)
    return values


def normalise_spectrum(values: torch.Tensor) -> torch.Tensor:
    """Eigenvalues [..., k] -> λ̄ = λ / Σ|λ| (a distribution over k bins for PSD graphs)."""
    return values / values.abs().sum(-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)


def wasserstein(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Σ_k |sort(u)_k - sort(v)_k| over the last dimension (broadcast): u [..., k], v [..., k] -> [...]."""
    return (u.sort(-1).values - v.sort(-1).values).abs().sum(-1)


def spectral_distances(vfm_spectra: torch.Tensor, clip_spectra: torch.Tensor) -> torch.Tensor:
    """Normalised spectra [B, H, k] of VFM and CLIP heads -> W between every pair [B, H_vfm, H_clip] (Eq. 5)."""
    return wasserstein(vfm_spectra.unsqueeze(-2), clip_spectra.unsqueeze(-3))


def hungarian(cost: torch.Tensor) -> torch.Tensor:
    """Cost matrices [B, H, H] -> σ LongTensor [B, H] on cost's device: row i is assigned column σ[b, i], the
    assignment minimising Σ_i cost[b, i, σ(i)] (scipy's linear_sum_assignment, one host round trip in all)."""
    host = cost.detach().cpu().numpy()
    sigma = np.stack([linear_sum_assignment(c)[1] for c in host])
    return torch.from_numpy(sigma).to(cost.device)


def pair_heads(sigma: torch.Tensor, distances: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The VFM head mixed into each CLIP head and that pair's Eq. 7 weight w.

    sigma [B, H]: Hungarian's VFM head i <-> CLIP head σ(i); distances [B, H_vfm, H_clip] (W of each pair).
    mode `matched` (paper): CLIP head j gets VFM head σ⁻¹(j), w = W[σ⁻¹(j), j].
    mode `transposed` (the authors' code): CLIP head i gets VFM head σ(i), w = W[i, σ(i)] — the weight of the
      matched pair (VFM i, CLIP σ(i)), not of the pair that is mixed.
    Returns (vfm_head [B, H] long, w [B, H]), both indexed by CLIP head.
    """
    if mode == "transposed":
        return sigma, distances.gather(-1, sigma.unsqueeze(-1)).squeeze(-1)
    inverse = torch.argsort(sigma, dim=-1)
    return inverse, distances.gather(-2, inverse.unsqueeze(-2)).squeeze(-2)
