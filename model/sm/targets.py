"""Per-image targets of split matching (§3.2): seen masks Y_s, candidate pseudo masks Y_u and the pseudo labels Y_p.

Inputs are a training view's label maps at its pixel size: `target` holds seen-class indices (positions among the
seen classes, i.e. columns of A_s) and IGNORE (255) elsewhere, unseen pixels included (inductive setting);
`candidate_labels` holds each pixel's candidate (the index of its pseudo mask among the image's cached candidates,
whose rows of C_u the batch carries) or IGNORE. With `unannotated`, a candidate keeps only the pixels the ground
truth ignores (candidates are "latent classes in unannotated regions", §1); a candidate left with less than
`min_fraction` of the view's pixels is dropped, and at most `limit` candidates (K_u), the largest, are kept.

Y_p (§3.2 "Y_s and Y_u are added to be the total pseudo label") labels every pixel with its column of
E = cat(A_s, C_u): a seen class c -> c, the t-th kept candidate -> N_s + t, IGNORE elsewhere. Seen labels win
where a candidate overlaps annotated pixels (without `unannotated`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from oczss.model.losses import IGNORE


@dataclass
class ImageTargets:
    """One image's targets. classes LongTensor[T_s] (seen class indices, their columns of E); seen_masks
    [T_s, h*w] float {0, 1} on the mask grid; candidates LongTensor[T_u] (indices of the kept cached candidates,
    largest first); candidate_masks [T_u, h*w]; pixel_labels LongTensor[H, W]: Y_p at the view's pixel size."""

    classes: torch.Tensor
    seen_masks: torch.Tensor
    candidates: torch.Tensor
    candidate_masks: torch.Tensor
    pixel_labels: torch.Tensor


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Label maps [..., H, W] -> [..., *size], nearest neighbour (no label is invented)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    lead = labels.shape[:-2]
    flat = labels.reshape(-1, 1, *labels.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="nearest").to(labels.dtype).reshape(*lead, *size)


def image_targets(target: torch.Tensor, candidate_labels: torch.Tensor | None, size: tuple[int, int], *,
                  num_seen: int, limit: int, unannotated: bool, min_fraction: float) -> ImageTargets:
    """One view's targets: target and candidate_labels LongTensor[H, W] (candidate_labels None: no candidates, the
    baseline); size: the mask grid (h, w)."""
    target = target.long()
    classes = torch.unique(target[target != IGNORE])
    small = resize_labels(target, size).flatten()
    seen_masks = (small[None, :] == classes[:, None]).float()
    pixel_labels = target.clone()
    kept = torch.zeros(0, dtype=torch.long, device=target.device)
    candidate_masks = seen_masks.new_zeros(0, small.numel())
    if candidate_labels is not None and limit > 0:
        cand = candidate_labels.long()
        if unannotated:
            cand = torch.where(target == IGNORE, cand, IGNORE)
        valid = cand[cand != IGNORE]
        ids = torch.unique(valid)
        area = (valid[None, :] == ids[:, None]).sum(-1)
        keep = area >= min_fraction * cand.numel()
        ids, area = ids[keep], area[keep]
        kept = ids[torch.argsort(area, descending=True, stable=True)][:limit]
        cand_small = resize_labels(cand, size).flatten()
        candidate_masks = (cand_small[None, :] == kept[:, None]).float()
        rank = torch.full((IGNORE + 1,), -1, dtype=torch.long, device=cand.device)  # candidate -> t, else -1
        rank[kept] = torch.arange(len(kept), device=cand.device)
        column = rank[cand]
        pixel_labels = torch.where((pixel_labels == IGNORE) & (column >= 0), num_seen + column, pixel_labels)
    return ImageTargets(classes, seen_masks, kept, candidate_masks, pixel_labels)
