"""Distilling the VFM graph into CLIP's last attention (§3.2.2 II, Eq. 7), with the matching and the low-rank
step before it: CLIP and VFM patch keys in, the graph A_ψ per CLIP head out, which replaces A_CLIP in Eq. 2.

Eq. 7: A_ψ^j = (ω Ã_VFM^i + A_CLIP^j) / (ω + 1), ω = balance · w, w = W(λ̄_VFM^i, λ̄_CLIP^j) of the pair
(the code's balance is 10; the paper's reading is 1). Without graph matching, head i goes with head i and
ω = 1, a plain average (the authors' `sequential` strategy). With LR, Ã is the low-rank graph, its diagonal
zeroed and its values min-max matched into its CLIP head's range (code; `lowrank_zero_diagonal`,
`lowrank_range_match`); without LR it is the VFM key graph unprocessed (Table 3, Exp.#3).
"""

from __future__ import annotations

import torch

from oczss.model.cass.config import CASSConfig
from oczss.model.cass.graphs import key_graph, match_range
from oczss.model.cass.lowrank import low_rank_graph
from oczss.model.cass.matching import hungarian, key_spectrum, normalise_spectrum, pair_heads, spectral_distances


def aggregate(vfm_graph: torch.Tensor, clip_graph: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Eq. 7: graphs [B, H, N, N] and ω [B, H] -> (ω Ã + A) / (ω + 1) [B, H, N, N]."""
    w = weight[..., None, None]
    return (w * vfm_graph + clip_graph) / (w + 1)


def distilled_graph(clip_keys: torch.Tensor, vfm_keys: torch.Tensor, scale: float,
                    config: CASSConfig) -> torch.Tensor:
    """clip_keys [B, H, N, d], vfm_keys [B, H, N, d'] (on CLIP's grid) -> A_ψ [B, H, N, N] in clip_keys' dtype,
    indexed by CLIP head. The Hungarian step (if graph_matching) is this forward's only host round trip."""
    b, heads, n, _ = clip_keys.shape
    clip_graph = key_graph(clip_keys, scale)
    if config.graph_matching:
        k = config.num_eigenvalues
        distances = spectral_distances(normalise_spectrum(key_spectrum(vfm_keys, scale, k)),
                                       normalise_spectrum(key_spectrum(clip_keys, scale, k)))
        vfm_head, w = pair_heads(hungarian(1 - distances, config.match_tolerance), distances, config.head_pairing)
        weight = config.balance * w
    else:
        vfm_head = torch.arange(heads, device=clip_keys.device).expand(b, heads)
        weight = clip_keys.new_ones(b, heads)
    paired = vfm_keys.gather(1, vfm_head[..., None, None].expand(-1, -1, n, vfm_keys.shape[-1]))
    vfm_graph = key_graph(paired, scale)
    if config.low_rank:
        vfm_graph = low_rank_graph(vfm_graph, rank=config.rank, solver=config.lowrank_solver,
                                   rank_search=config.rank_search, energy_threshold=config.energy_threshold,
                                   scaling=config.eigenscaling, high=config.eigenscale_high,
                                   low=config.eigenscale_low, iterations=config.power_iterations, seed=config.seed,
                                   sketch=config.lowrank_sketch)
        if config.lowrank_zero_diagonal:
            vfm_graph = vfm_graph * (1 - torch.eye(n, dtype=vfm_graph.dtype, device=vfm_graph.device))
        if config.lowrank_range_match:
            vfm_graph = match_range(vfm_graph, clip_graph.to(vfm_graph.dtype), dims=2)
    return aggregate(vfm_graph.to(clip_graph.dtype), clip_graph, weight.to(clip_graph.dtype))
