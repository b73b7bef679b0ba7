"""Object presence-driven object-level context (§3.3): the presence prior, the text clusters, object-guided text
adjustment (OTA, Eq. 8) and object-perspective patch-text similarity (OPS, Eq. 9).

As in the authors' code: the prior P is the raw cosine between the L2-normalised [CLS] embedding and each
unadjusted query embedding (no softmax, no temperature; the paper calls it a likelihood, its formula is lost).
The queries (every name, synonyms included) are clustered once, by Ward linkage on their cosine distances cut at
a height (`ward_cut`). Per window and cluster, only the member with the highest P moves (ties: the first):
t̃ = normalize((1 - α) t + α μ), μ = normalize(mean of the top-k patch features by cosine to t), the patch
features being the window's L2-normalised Eq. 4 features. Then S* = (1 - λ) F̂ T̃ᵀ + λ P, P broadcast over
patches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform


def presence_prior(cls: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """L2-normalised [CLS] embeddings [B, C] and query embeddings [Q, C] -> P = cos [B, Q]."""
    return cls @ queries.T


def ward_clusters(queries: torch.Tensor, cut: float) -> torch.Tensor:
    """Query embeddings [Q, C] -> cluster index per query, LongTensor [Q] (CPU) in 0..G-1.

    Ward linkage (scipy) on the cosine distances 1 - cos in float64, clipped to [0, 2] with a zero diagonal,
    flat clusters where the merge height exceeds `cut` (fcluster, criterion 'distance'). One query: one cluster.
    """
    if queries.shape[0] == 1:
        return torch.zeros(1, dtype=torch.long)
    q = F.normalize(queries.detach().double().cpu(), dim=-1).numpy()
    distances = np.clip(1.0 - q @ q.T, 0.0, 2.0)
    distances = (distances + distances.T) / 2
    np.fill_diagonal(distances, 0.0)
    labels = fcluster(linkage(squareform(distances), method="ward"), t=cut, criterion="distance") - 1
    return torch.from_numpy(labels.astype(np.int64))


def cluster_members(labels: torch.Tensor) -> torch.Tensor:
    """Cluster index per query [Q] (0..G-1, each used) -> membership bool [G, Q]."""
    return labels.unsqueeze(0) == torch.arange(int(labels.max()) + 1).unsqueeze(1)


def adjust_text(features: torch.Tensor, queries: torch.Tensor, prior: torch.Tensor, members: torch.Tensor,
                alpha: float, top_k: int) -> torch.Tensor:
    """Eq. 8, batched over windows and clusters.

    features [B, N, C] L2-normalised patch features; queries [Q, C] L2-normalised; prior [B, Q]; members [G, Q]
    bool (cluster_members). Returns the adjusted queries [B, Q, C]: in each cluster the member with the highest
    prior becomes normalize((1 - α) t + α μ); every other query is unchanged.
    """
    b, n, _ = features.shape
    groups = members.shape[0]
    scores = prior.unsqueeze(1).masked_fill(~members, float("-inf"))  # [B, G, Q]
    chosen = scores.argmax(-1)  # [B, G]
    texts = queries[chosen]  # [B, G, C]
    sims = texts @ features.transpose(1, 2)  # [B, G, N]
    top = sims.topk(min(top_k, n), dim=-1).indices  # [B, G, k]
    picked = features.gather(1, top.flatten(1).unsqueeze(-1).expand(-1, -1, features.shape[-1]))
    mean = F.normalize(picked.view(b, groups, -1, features.shape[-1]).mean(2), dim=-1)
    adjusted = F.normalize((1 - alpha) * texts + alpha * mean, dim=-1)
    out = queries.unsqueeze(0).expand(b, -1, -1).clone()
    return out.scatter(1, chosen.unsqueeze(-1).expand_as(adjusted), adjusted)


def object_perspective(logits: torch.Tensor, prior: torch.Tensor, weight: float) -> torch.Tensor:
    """Eq. 9: patch-text similarities [B, N, Q] and the prior [B, Q] -> (1 - λ) S + λ P [B, N, Q]."""
    return (1 - weight) * logits + weight * prior.unsqueeze(1)
