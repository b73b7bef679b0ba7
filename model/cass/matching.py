"""Complementary spectral graph matching (§3.2.1, Eq. 5) and the head pairing it yields.

Per head, the top-k eigenvalues of the key graph A = s K Kᵀ (k = 20 in the authors' code, or N if fewer),
normalised to sum 1 (the code's L2 then L1 normalisation of positive values), are compared with the
Wasserstein distance W(u, v) = Σ |sort(u) - sort(v)| (ascending sort; a sum, not a mean). Cost C[i, j] =
1 - W(λ̄_VFM^i, λ̄_CLIP^j), rows VFM heads, columns CLIP heads; Hungarian matching minimises the total cost,
i.e. pairs the most different (complementary) spectra.

Ties. The cost is often additively separable on blocks of heads: where, in every bin k, the sorted VFM values
all lie on one side of the sorted CLIP values, W[i, j] = a_i + b_j and every head order within the block has the
same total (random weights: most of the 12 x 12 matrix, totals 1e-15 apart; structured keys with per-head
spectral decays too, bench/cass_ties.py). Hungarian alone then picks an order by rounding noise (the authors'
code: scipy on a float32 copy of the cost), and a window's head order changes with the device or the summation
order. oczss picks deterministically: among the assignments whose total cost is within `tolerance`
(CASSConfig.match_tolerance, 1e-6) of the optimum, the lexicographically smallest σ (smallest σ(0), then σ(1),
...). So where every order ties, VFM head i goes with CLIP head i, and noise far below the tolerance cannot change
a pairing (`tie_break_assignment`).

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


def tie_break_assignment(cost: np.ndarray, tolerance: float) -> np.ndarray:
    """One cost matrix [H, H] (float64) -> σ [H]: the lexicographically smallest assignment whose total cost is at
    most the optimum + `tolerance` (module doc). Row by row, each column below the current σ(r) is tried with the
    rows before r fixed, and kept if the best completion of the other rows (Hungarian on the rest) stays within
    the bound; at most H (H - 1) / 2 small solves, none where no smaller column is free."""
    h = cost.shape[0]
    sigma = linear_sum_assignment(cost)[1]
    bound = cost[np.arange(h), sigma].sum() + tolerance
    prefix, free = 0.0, list(range(h))
    for r in range(h - 1):
        for j in free[:free.index(sigma[r])]:
            rest = [c for c in free if c != j]
            sub = cost[r + 1:][:, rest]
            cols = linear_sum_assignment(sub)[1]
            if prefix + cost[r, j] + sub[np.arange(h - r - 1), cols].sum() <= bound:
                sigma[r], sigma[r + 1:] = j, np.asarray(rest)[cols]
                break
        prefix += cost[r, sigma[r]]
        free.remove(sigma[r])
    return sigma


def hungarian(cost: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Cost matrices [B, H, H] -> σ LongTensor [B, H] on cost's device: row i is assigned column σ[b, i], the
    assignment minimising Σ_i cost[b, i, σ(i)], ties within `tolerance` broken lexicographically
    (tie_break_assignment; one host round trip in all)."""
    host = cost.detach().double().cpu().numpy()
    sigma = np.stack([tie_break_assignment(c, tolerance) for c in host])
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
