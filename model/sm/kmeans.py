"""Multi-scale K-Means with mask fusion (§3.2, Eq. 1; the CLIP-ZSS procedure the paper cites), batched.

Per window size s: the K-Means seeds are the means of the dense features over s x s windows whose top-left corners
run over I x J, I = {0, ⌊s/2⌋, 2⌊s/2⌋, ..., H - s} (Eq. 1; the last start is H - s even when the stride does not
land on it, so the windows cover the grid); K-Means then runs from those seeds. The seeds are a function of the
features alone, so the whole procedure is deterministic: no random seed enters it.

Paper silent, chosen here: spherical K-Means (cosine similarity on L2-normalised features, centroids renormalised;
an emptied cluster keeps its previous centroid) for `iters` Lloyd iterations; mask fusion pools the centroids of
every scale and merges every connected group of the graph whose edges join centroids with cosine similarity >
`threshold` (the paper: "merge the semantically similar masks by the cosine similarity among cluster centroids");
each merged group's centroid is the normalised mean of its members, and every cell goes to its most similar merged
centroid, so the pseudo masks Y_u partition the grid. Masks are ordered by area (largest first, ties by index);
cells of masks beyond `limit` get IGNORE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oczss.model.losses import IGNORE


def window_seeds(features: torch.Tensor, window: int) -> torch.Tensor:
    """Eq. 1: features [B, C, H, W] -> the mean of every s x s window on the I x J starts [B, |I| |J|, C]
    (s clipped to the grid)."""
    h, w = features.shape[-2:]
    s = min(window, h, w)
    means = F.avg_pool2d(features, s, stride=1)  # every window's mean, [B, C, H - s + 1, W - s + 1]
    rows, cols = _starts(h, s, features.device), _starts(w, s, features.device)
    return means[:, :, rows][:, :, :, cols].flatten(2).transpose(1, 2)


def _starts(n: int, s: int, device) -> torch.Tensor:
    starts = list(range(0, n - s + 1, max(1, s // 2)))
    if starts[-1] != n - s:
        starts.append(n - s)
    return torch.tensor(starts, device=device)


def spherical_kmeans(x: torch.Tensor, seeds: torch.Tensor, iters: int) -> torch.Tensor:
    """x [B, N, C] and seeds [B, k, C], both L2-normalised -> centroids [B, k, C] after `iters` Lloyd iterations
    (assignment by cosine similarity, ties to the lower index)."""
    centroids = seeds
    for _ in range(iters):
        assign = torch.bmm(x, centroids.transpose(1, 2)).argmax(-1)  # [B, N]
        onehot = F.one_hot(assign, centroids.shape[1]).to(x.dtype)  # [B, N, k]
        sums = torch.bmm(onehot.transpose(1, 2), x)  # [B, k, C]
        empty = onehot.sum(1) == 0  # [B, k]
        centroids = torch.where(empty.unsqueeze(-1), centroids, F.normalize(sums, dim=-1))
    return centroids


def fuse(centroids: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mask fusion: centroids [B, M, C] (normalised) -> group LongTensor[B, M], each centroid's connected component
    of the graph {cos > threshold} named by its lowest member index."""
    m = centroids.shape[1]
    linked = torch.bmm(centroids, centroids.transpose(1, 2)) > threshold
    linked |= torch.eye(m, dtype=torch.bool, device=centroids.device)
    group = torch.arange(m, device=centroids.device).expand(centroids.shape[0], m)
    for _ in range(m):  # min-label propagation: converges within the graph's diameter
        spread = torch.where(linked, group.unsqueeze(1), m).amin(-1)
        if torch.equal(spread, group):
            break
        group = spread
    return group


def multiscale_kmeans(features: torch.Tensor, windows: tuple[int, ...], iters: int, threshold: float,
                      limit: int) -> torch.Tensor:
    """Y_u as a label map: features [B, C, H, W] -> LongTensor[B, H, W], pseudo-mask index per cell (0 = the
    largest), IGNORE beyond `limit` masks."""
    b, _, h, w = features.shape
    x = F.normalize(features.float().flatten(2).transpose(1, 2), dim=-1)  # [B, N, C]
    grid = F.normalize(features.float(), dim=1)
    centroids = torch.cat([spherical_kmeans(x, F.normalize(window_seeds(grid, s), dim=-1), iters)
                           for s in windows], dim=1)  # [B, M, C]
    group = fuse(centroids, threshold)
    members = F.one_hot(group, centroids.shape[1]).to(x.dtype)  # [B, M (centroid), M (group)]
    merged = F.normalize(torch.bmm(members.transpose(1, 2), centroids), dim=-1)  # [B, M, C], zero for non-roots
    is_root = members.sum(1) > 0  # [B, M]
    similarity = torch.bmm(x, merged.transpose(1, 2)).masked_fill(~is_root.unsqueeze(1), -2.0)
    labels = similarity.argmax(-1)  # [B, N]
    area = F.one_hot(labels, merged.shape[1]).sum(1)  # [B, M]
    order = torch.argsort(area, dim=1, descending=True, stable=True)
    rank = torch.argsort(order, dim=1)  # rank[b, g]: position of group g by area
    ranked = rank.gather(1, labels)
    return torch.where(ranked < limit, ranked, IGNORE).view(b, h, w)
