"""Eval metrics against hand-computed confusion matrices, and the transductive pseudo-label rule."""

import math

import numpy as np
import torch

from oczss.pipeline.stage2.loader import UNSEEN
from oczss.pipeline.metrics import confusion, scores
from oczss.pipeline.stage2.train import lr_factor, pseudo_label
from oczss.pipeline.stage2.recipes import TrainConfig


def test_confusion_ignores_255():
    label = torch.tensor([[0, 0, 1], [2, 255, 2]])
    pred = torch.tensor([[0, 1, 1], [2, 0, 1]])
    conf = confusion(pred, label, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 1]]


def test_scores_by_hand():
    # rows = truth, columns = prediction; class 3 never occurs and is never predicted (NaN, left out)
    conf = np.array([[8, 2, 0, 0], [1, 3, 0, 0], [0, 4, 6, 0], [0, 0, 0, 0]])
    r = scores(conf, seen=[0, 1], unseen=[2, 3])
    iou0, iou1, iou2 = 8 / (8 + 2 + 1), 3 / (3 + 1 + 6), 6 / (6 + 4)
    assert math.isclose(r["iou"][0], 100 * iou0) and math.isclose(r["iou"][2], 100 * iou2)
    assert math.isnan(r["iou"][3])
    s, u = 100 * (iou0 + iou1) / 2, 100 * iou2
    assert math.isclose(r["mIoU_seen"], s) and math.isclose(r["mIoU_unseen"], u)
    assert math.isclose(r["hIoU"], 2 * s * u / (s + u))
    assert math.isclose(r["mIoU"], 100 * (iou0 + iou1 + iou2) / 3)
    assert math.isclose(r["pAcc"], 100 * 17 / 24)


def test_pseudo_labels_take_the_best_unseen_class_only_where_ground_truth_is_unseen():
    k, seen = 4, [0, 1]
    dec = torch.full((1, k, 2, 2), -5.0)
    mps = torch.full((1, k, 2, 2), -5.0)
    dec[0, 0] = 9.0  # a seen class scores highest everywhere: must never be chosen
    dec[0, 3, 0, 0], dec[0, 2, 1, 1] = 2.0, 2.0
    target = torch.tensor([[[UNSEEN, 1], [255, UNSEEN]]])
    out = pseudo_label({"decoder": dec, "mps": mps}, target, seen)
    assert out.tolist() == [[[3, 1], [255, 2]]]


def test_poly_schedule_with_warmup():
    cfg = TrainConfig(iters=100, warmup_iters=10, lr=1e-4, lr_mult=10.0, min_lr=1e-6, warmup_ratio=1e-6)
    base = cfg.effective_lr
    assert math.isclose(lr_factor(0, cfg) * base, ((base - 1e-6) + 1e-6) * 1e-6)
    regular = (base - 1e-6) * (1 - 5 / 100) ** 0.9 + 1e-6
    assert math.isclose(lr_factor(5, cfg) * base, regular * (1 - 0.5 * (1 - 1e-6)))
    assert math.isclose(lr_factor(50, cfg) * base, (base - 1e-6) * 0.5 ** 0.9 + 1e-6)
    assert math.isclose(lr_factor(100, cfg) * base, 1e-6)
