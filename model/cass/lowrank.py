"""Low-rank dynamic eigenscaling of the VFM graph (§3.2.2 I, Eq. 6): Ã = U_r ψ(Λ_r) U_rᵀ.

Two solvers, batched on the device in float64:
  - `randomized` (the authors' code: torch.svd_lowrank(A, q=10), default 2 power iterations): a randomized range
    finder (Halko et al. 2011, Alg. 4.4) then the SVD of the small projected matrix, Ã = U ψ(S) Vᵀ. Its Gaussian
    sketch [N, q] (`sketch`):
      `fixed` (default): drawn once from a CPU generator seeded with `seed` and shared by every window and head,
        so a window's graph is a function of its pixels alone: the same on any device, in any batch, at any
        position in the dataset, with or without DataLoader workers, and reproducible per image.
      `fresh` (the authors'): torch.svd_lowrank draws a new sketch from torch's global generator on the graph's
        device for every window and head, so a window's result depends on everything drawn before it (the
        images before it, the head order, other code using the generator); one sketch per graph here, drawn in
        window-then-CLIP-head order as the authors' per-head loop does, so the caller seeds the global generator.
    Each window sees a standard Gaussian sketch under both, so the expected approximation is the same; only the
    fixed one makes it repeatable.
  - `exact` (the paper's "standard eigendecomposition"): torch.linalg.eigh, V = U.
Rank: `fixed` keeps the top `rank` components. The code's energy search measures the energy over the `rank`
values it has computed, reaches 100 % at once and keeps `rank` = 10 every time; `energy` (the paper's reading,
exact solver only) keeps the smallest r with Σ_{i<=r} λ_i / Σ λ_i >= threshold over the whole spectrum.
ψ (the code's `_scale_singular_values`) is the affine map of [s_min, s_max] onto [low·s_min, high·s_max],
low = 0.5, high = 1.5, over the kept components: larger values grow, smaller ones shrink.
"""

from __future__ import annotations

import math

import torch


def randomized_svd(graphs: torch.Tensor, rank: int, iterations: int, seed: int, sketch: str = "fixed"):
    """graphs [..., N, N] (float64) -> U [..., N, q], S [..., q], V [..., N, q] with q = min(rank, N); `sketch`
    `fixed` (one seeded [N, q] for all) or `fresh` (one per graph from the global generator, module doc)."""
    n = graphs.shape[-1]
    q = min(rank, n)
    if sketch == "fresh":
        count = math.prod(graphs.shape[:-2])
        draws = [torch.randn(n, q, dtype=graphs.dtype, device=graphs.device) for _ in range(count)]
        sketches = torch.stack(draws).view(*graphs.shape[:-2], n, q)
    else:
        generator = torch.Generator().manual_seed(seed)
        sketches = torch.randn(n, q, generator=generator, dtype=graphs.dtype).to(graphs.device)
    basis = torch.linalg.qr(graphs @ sketches).Q
    for _ in range(iterations):
        basis = torch.linalg.qr(graphs.transpose(-1, -2) @ basis).Q
        basis = torch.linalg.qr(graphs @ basis).Q
    u, s, vh = torch.linalg.svd(basis.transpose(-1, -2) @ graphs, full_matrices=False)
    return basis @ u, s, vh.transpose(-1, -2)


def energy_rank(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """Descending eigenvalues [..., N] -> the smallest r with Σ_{i<=r} λ_i / Σ λ_i >= threshold, long [...]
    (negative round-off eigenvalues count as 0)."""
    energy = values.clamp_min(0).cumsum(-1)
    ratio = energy / energy[..., -1:].clamp_min(torch.finfo(values.dtype).tiny)
    return ((ratio < threshold - 1e-12).sum(-1) + 1).clamp_max(values.shape[-1])


def eigenscale(values: torch.Tensor, keep: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """ψ over the kept values: values [..., r] (descending), keep bool [..., r] ->
    (s - s_min) / (s_max - s_min) * (high·s_max - low·s_min) + low·s_min, with s_min, s_max over the kept ones.
    Example (1.5, 0.5): [10, 5, 2, 1] -> [15, 6.944, 2.111, 0.5]. Equal kept values all map to low·s_min."""
    s_min = values.masked_fill(~keep, float("inf")).amin(-1, keepdim=True)
    s_max = values.masked_fill(~keep, float("-inf")).amax(-1, keepdim=True)
    span = (s_max - s_min).clamp_min(torch.finfo(values.dtype).tiny)
    return (values - s_min) / span * (high * s_max - low * s_min) + low * s_min


def low_rank_graph(graphs: torch.Tensor, *, rank: int, solver: str, rank_search: str, energy_threshold: float,
                   scaling: bool, high: float, low: float, iterations: int, seed: int,
                   sketch: str = "fixed") -> torch.Tensor:
    """Symmetric PSD graphs [..., N, N] -> Ã [..., N, N] float64: the kept components, eigenscaled if `scaling`
    (Eq. 6). Arguments as in CASSConfig (solver = lowrank_solver)."""
    graphs = graphs.double()
    if solver == "randomized":
        u, s, v = randomized_svd(graphs, rank, iterations, seed, sketch)
        keep = torch.ones_like(s, dtype=torch.bool)
    else:
        s, u = torch.linalg.eigh(graphs)
        s, u = s.flip(-1), u.flip(-1)
        if rank_search == "energy":  # every component stays, masked: no host sync for the largest rank
            keep = torch.arange(s.shape[-1], device=s.device) < energy_rank(s, energy_threshold).unsqueeze(-1)
        else:
            s, u = s[..., :rank], u[..., :rank]
            keep = torch.ones_like(s, dtype=torch.bool)
        v = u
    if scaling:
        s = eigenscale(s, keep, high, low)
    return (u * (s * keep).unsqueeze(-2)) @ v.transpose(-1, -2)
