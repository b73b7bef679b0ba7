"""Segmentation metrics over a whole split (docs/protocol.md §8): per-class IoU from one accumulated confusion matrix,
mIoU(S), mIoU(U), hIoU = 2 S U / (S + U), mIoU over all classes, pixel accuracy. Ignore index 255."""

from __future__ import annotations

import math

import numpy as np
import torch

from oczss.model import IGNORE


def confusion(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [K, K] counts, rows = ground truth, columns = prediction; pixels labelled 255 are left out."""
    valid = label != IGNORE
    index = label[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(conf: np.ndarray, seen: list[int], unseen: list[int]) -> dict:
    """Per-class IoU (NaN where a class is neither present nor predicted) and the summary metrics, in percent."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan) * 100

    def mean(idx):
        vals = iou[list(idx)]
        return float(np.nanmean(vals)) if len(vals) and not np.isnan(vals).all() else math.nan

    s, u = mean(seen), mean(unseen)
    h = 2 * s * u / (s + u) if s + u > 0 else math.nan
    total = conf.sum()
    return {"mIoU_seen": s, "mIoU_unseen": u, "hIoU": h, "mIoU": mean(range(len(iou))),
            "pAcc": float(tp.sum() / total * 100) if total else math.nan, "iou": [float(v) for v in iou]}
