"""FPS + Voronoi clustering of patch features (Appendix C, Algorithm 1, steps 4-5; §3.2 eq. 4), used by Stage 1,
`predict`'s on-the-fly clusters and the `clip` mask source.

One farthest-point-sampling run with the largest K serves every K: FPS is greedy, so the first k centres of a
K-centre run are exactly the k-centre run (the prefix property). Squared distances are expanded as
||F_i||^2 - 2 F_i.c + ||c||^2 in fp32 (one batched matrix-vector product per centre, so the features are read
once per centre instead of materialising [B, N, C] differences), each image on its own, so a result does not
depend on the batch it was computed in. On CUDA the product runs in full fp32, not TF32.
"""

from __future__ import annotations

import contextlib
import hashlib

import torch


def fps_voronoi(features: torch.Tensor, ks: list[int], first: torch.Tensor,
                valid: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
    """Farthest-point sampling then nearest-centre (Voronoi) assignment, batched.

    Args:
        features: [B, N, C] patch features (any float dtype; distances are computed in fp32).
        ks: cluster counts, each in [1, N].
        first: LongTensor[B], index of each image's first centre (Alg. 1 step 4, "pick c_1 uniformly").
        valid: BoolTensor[B, N] or None (all): the points that take part (a view's padding patches do not). The
            first centre is the valid point of rank first mod (valid points), which is `first` when all are valid.
    Returns:
        {k: LongTensor[B, N]} labels in [0, k): l_i = argmin_{t<k} ||F_i - F_{c_t}||^2 (Alg. 1 step 5), ties to
        the lower centre index; -1 for points that are not valid.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be [B, N, C], got shape {tuple(features.shape)}")
    b, n, _ = features.shape
    if not ks or min(ks) < 1 or max(ks) > n:
        raise ValueError(f"every k must lie in [1, {n}], got {ks}")
    if first.shape != (b,):
        raise ValueError(f"first must be [B]={b}, got shape {tuple(first.shape)}")
    x = features.float()
    rows = torch.arange(b, device=x.device)
    kmax = max(ks)
    sq = x.square().sum(-1)  # [B, N]: ||F_i||^2
    dists = x.new_empty(b, kmax, n)  # dists[:, t] = squared distance of every point to centre t
    centre = first.to(x.device)
    if valid is not None:
        valid = valid.to(x.device)
        rank = centre % valid.sum(1).clamp(min=1)
        centre = (valid & (valid.cumsum(1) - 1 == rank[:, None])).long().argmax(1)
    nearest = None
    with _ieee_fp32(x.is_cuda):
        for t in range(kmax):
            # ||F_i - c||^2 = ||F_i||^2 - 2 F_i.c + ||c||^2: the features are read once per centre
            dot = torch.bmm(x, x[rows, centre].unsqueeze(-1)).squeeze(-1)
            dists[:, t] = (sq - 2 * dot + sq[rows, centre].unsqueeze(1)).clamp_(min=0)
            nearest = dists[:, t] if nearest is None else torch.minimum(nearest, dists[:, t])
            if valid is not None:
                nearest = nearest.masked_fill(~valid, -1.0)  # never a centre
            if t + 1 < kmax:
                centre = nearest.argmax(dim=1)  # Alg. 1 step 4: c_t = argmax_i min_{j<t} d(F_i, F_cj)
    out = {k: dists[:, :k].argmin(dim=1) for k in sorted(set(ks))}
    return out if valid is None else {k: lab.masked_fill(~valid, -1) for k, lab in out.items()}


@contextlib.contextmanager
def _ieee_fp32(cuda: bool):
    """Full fp32 matrix products on CUDA for the block, whatever TF32 setting the process has."""
    if not cuda:
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = before


def first_centres(image_ids: list[str], seed: int, n: int) -> torch.Tensor:
    """First FPS centre per image, from a generator seeded by (seed, image id): LongTensor[len(image_ids)].

    The same image gets the same first centre across restarts, batches, workers and machines.
    """
    out = []
    for image_id in image_ids:
        digest = hashlib.sha256(f"{seed}\0{image_id}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        out.append(int(torch.randint(n, (1,), generator=g)))
    return torch.tensor(out, dtype=torch.long)


def cluster_maps(features: torch.Tensor, image_ids: list[str], seed: int, ks: list[int]) -> dict[int, torch.Tensor]:
    """Alg. 1 steps 4-5 for a batch of images on their S x S feature grids, first centres seeded per image.

    features [B, S*S, C] (row-major on the S x S grid); image_ids: one per image, seeding its first centre with
    `seed` (see first_centres). Returns {k: uint8 [B, S, S]} on the features' device.
    """
    b, n, _ = features.shape
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"features must lie on a square grid, got {n} tokens")
    first = first_centres(image_ids, seed, n).to(features.device)
    return {k: lab.view(b, side, side).to(torch.uint8) for k, lab in fps_voronoi(features, ks, first).items()}
