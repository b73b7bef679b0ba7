"""The loss terms of Split Matching: L_match = L_cls + L_mask (Eq. 3), L_cos (§3.2) and L_MFE (§3.3).

L_cls is a sigmoid focal loss (§4, [26]) on S = σ(V Eᵀ): a matched query's target is its target's column of E, an
unmatched query's is all zeros. L_mask = IoU loss + Dice loss (§4) on the matched pairs' masks. L_cos = 1 -
cos(V'_u, C_u) for the matched candidate queries. L_MFE = CE + focal of F_u's per-pixel scores against Y_p. The
elementwise focal loss and the Dice loss are oczss.model.losses' (OC-ZSS's), the same formulas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oczss.model.losses import IGNORE, dice, sigmoid_focal


def focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Elementwise sigmoid focal loss: logits and {0, 1} targets of one shape -> that shape."""
    sign = 1 - 2 * targets
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return sigmoid_focal(logits.unsqueeze(-1), sign.unsqueeze(-1), alpha_t.unsqueeze(-1), None, gamma)


def classification_loss(scores: torch.Tensor, columns: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """L_cls summed: scores [K, N] (logits of S = σ(V Eᵀ)), columns LongTensor[K] (each query's target column of E,
    -1 for unmatched queries) -> 0-d."""
    targets = torch.zeros_like(scores)
    matched = columns >= 0
    targets[matched.nonzero().squeeze(1), columns[matched]] = 1
    return focal(scores, targets, alpha, gamma).sum()


def iou_loss(masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft IoU loss per pair: mask logits [T, P], targets [T, P] ->
    1 - (Σ p t + 1) / (Σ p + Σ t - Σ p t + 1) [T]."""
    p = masks.sigmoid()
    inter = (p * targets).sum(-1)
    return 1 - (inter + 1) / (p.sum(-1) + targets.sum(-1) - inter + 1)


def dice_loss(masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss per pair: mask logits [T, P], targets [T, P] -> 1 - (2 Σ p t + 1) / (Σ p + Σ t + 1) [T]."""
    return dice(masks.unsqueeze(0), targets.unsqueeze(0), None).squeeze(0)


def cosine_loss(features: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """L_cos per matched candidate: V'_u [T, C], C_u [T, C] -> 1 - cos [T]."""
    return 1 - F.cosine_similarity(features, embeddings, dim=-1)


def mfe_loss(scores: torch.Tensor, labels: torch.Tensor, alpha: float,
             gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L_MFE's two terms for one image: per-pixel scores [N, h, w] over the columns of E, Y_p LongTensor[h, w]
    (IGNORE where unlabelled) -> (CE, focal), each a mean over the labelled pixels (the focal loss summed over the
    N columns); zeros (connected to the graph) when no pixel is labelled."""
    valid = labels != IGNORE
    if not valid.any():
        zero = scores.sum() * 0
        return zero, zero
    x = scores.flatten(1)[:, valid.flatten()].T  # [P, N]
    y = labels[valid]
    ce = F.cross_entropy(x, y)
    onehot = F.one_hot(y, x.shape[1]).to(x.dtype)
    return ce, focal(x, onehot, alpha, gamma).sum(-1).mean()
