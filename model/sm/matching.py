"""Split matching (§3.2, Eq. 2): Hungarian matching run separately for the seen and the candidate queries.

The matching cost of query i and target t is Mask2Former's: class_weight x the sigmoid focal cost of the query's
score for the target's column of E (Deformable DETR's form: the focal loss of the score as a positive minus as a
negative) + bce_weight x the mean BCE of the query's mask against the target mask + dice_weight x their Dice loss.
Seen queries are matched to the seen ground-truth masks Y_s, candidate queries to the candidate pseudo masks Y_u
(σ*_s, σ*_u of Eq. 2); the two assignments are concatenated into σ*, so no query is ever matched outside its group.
Mask costs are computed on every pixel of the mask logits' grid (stride 4), without Mask2Former's point sampling,
so the matching is deterministic.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def focal_cost(logits: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Scores [K, T] (each query's logit for each target's class) -> focal cost [K, T]:
    α (1 - p)^γ (-log p) - (1 - α) p^γ (-log(1 - p)), p = σ(logit)."""
    p = logits.sigmoid()
    positive = alpha * (1 - p) ** gamma * F.softplus(-logits)
    negative = (1 - alpha) * p ** gamma * F.softplus(logits)
    return positive - negative


def bce_cost(masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mask logits [K, P] and binary targets [T, P] -> mean binary cross-entropy over the P pixels [K, T]."""
    positive = F.softplus(-masks)  # -log σ(x)
    negative = F.softplus(masks)  # -log(1 - σ(x))
    return (positive @ targets.T + negative @ (1 - targets).T) / masks.shape[1]


def dice_cost(masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mask logits [K, P] and binary targets [T, P] -> 1 - (2 Σ p t + 1) / (Σ p + Σ t + 1) for every pair [K, T]."""
    p = masks.sigmoid()
    return 1 - (2 * p @ targets.T + 1) / (p.sum(-1, keepdim=True) + targets.sum(-1)[None, :] + 1)


def match_cost(class_logits: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor, *, class_weight: float,
               bce_weight: float, dice_weight: float, alpha: float, gamma: float) -> torch.Tensor:
    """One group's cost matrix [K, T]: class_logits [K, T] (each query's logit for each target's column of E),
    mask logits [K, P], binary target masks [T, P]."""
    return (class_weight * focal_cost(class_logits, alpha, gamma) + bce_weight * bce_cost(masks, targets)
            + dice_weight * dice_cost(masks, targets))


def hungarian(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cost [K, T] -> (queries, targets) LongTensors [min(K, T)] on cost's device: the assignment minimising the
    summed cost (scipy's linear_sum_assignment), ordered by target when T <= K."""
    if 0 in cost.shape:
        empty = torch.zeros(0, dtype=torch.long, device=cost.device)
        return empty, empty
    rows, cols = linear_sum_assignment(cost.detach().float().cpu().numpy())
    order = np.argsort(cols, kind="stable")
    return (torch.as_tensor(rows[order], dtype=torch.long, device=cost.device),
            torch.as_tensor(cols[order], dtype=torch.long, device=cost.device))


def split_match(seen_cost: torch.Tensor, candidate_cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2: σ*_s on the seen group's cost [K_s, T_s], σ*_u on the candidate group's [K_u, T_u], concatenated.

    Returns (queries, targets): query indices into the K_s + K_u queries (candidates after the seen ones) and target
    indices into the T_s + T_u targets (candidates after the seen ones)."""
    seen_q, seen_t = hungarian(seen_cost)
    cand_q, cand_t = hungarian(candidate_cost)
    return torch.cat([seen_q, cand_q + seen_cost.shape[0]]), torch.cat([seen_t, cand_t + seen_cost.shape[1]])
