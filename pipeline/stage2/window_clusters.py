"""Per-window object clusters at test time (eval's sliding windows, predict), one class per cluster mode
(pipeline/stage2/clusters.py). Each takes the windows' batch (ImageNet-normalised [n, 3, h, w]), their `View`s
(where each window lies in the resized image), the model's patch size and each window's first FPS centre, and
returns the per-patch assignment LongTensor [n, (h/patch) * (w/patch)] on the batch's device, -1 for padding
patches (a window padded to whole patches).
"""

from __future__ import annotations

import numpy as np
import torch

from oczss.errors import OCZSSError
from oczss.model.clustering import first_centres, fps_voronoi
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.data.transforms import View
from oczss.pipeline.stage2.clusters import dino_patch_features


def window_firsts(image_id: str, seed: int, windows: int, patches: int) -> torch.Tensor:
    """First FPS centre of each window of an image, seeded by (seed, image id, window index): LongTensor[n]."""
    return first_centres([f"{image_id}#{i}" for i in range(windows)], seed, patches)


def _valid(batch: torch.Tensor, views: list[View], patch: int) -> torch.Tensor:
    """BoolTensor [n, M]: the windows' patches that show the image (not padding), on the batch's device."""
    rows, cols = batch.shape[-2] // patch, batch.shape[-1] // patch
    return torch.from_numpy(np.stack([v.patch_valid(rows, cols, patch) for v in views])).to(batch.device)


class FromClusterMap:
    """whole: the image's cached S x S cluster map sampled at each window's patch centres."""

    def __init__(self, cluster_map: np.ndarray, k: int):
        self.cluster_map, self.k = cluster_map, k

    def __call__(self, batch: torch.Tensor, views: list[View], patch: int, first: torch.Tensor) -> torch.Tensor:
        rows, cols = batch.shape[-2] // patch, batch.shape[-1] // patch
        maps = torch.from_numpy(np.stack([v.patch_clusters(self.cluster_map, rows, cols, patch) for v in views]))
        return maps.to(batch.device).masked_fill(~_valid(batch, views, patch), -1)


class FromFeatureMap:
    """view: the image's compact DINO tokens [T_h, T_w, D] sampled at each window's patch centres, then
    FPS-Voronoi."""

    def __init__(self, feature_map: np.ndarray, k: int):
        self.feature_map, self.k = feature_map, k

    def __call__(self, batch: torch.Tensor, views: list[View], patch: int, first: torch.Tensor) -> torch.Tensor:
        rows, cols = batch.shape[-2] // patch, batch.shape[-1] // patch
        feats = np.stack([v.patch_features(self.feature_map, rows, cols, patch) for v in views])
        features = torch.from_numpy(feats).to(batch.device).float()
        return fps_voronoi(features, [self.k], first.to(batch.device), _valid(batch, views, patch))[self.k]


class FromDino:
    """online: the frozen DINO on the windows themselves, its tokens on the patch grid, then FPS-Voronoi."""

    def __init__(self, dino: DinoFeatures, k: int):
        self.dino, self.k = dino, k

    def __call__(self, batch: torch.Tensor, views: list[View], patch: int, first: torch.Tensor) -> torch.Tensor:
        features = dino_patch_features(self.dino, batch, (batch.shape[-2] // patch, batch.shape[-1] // patch))
        return fps_voronoi(features, [self.k], first.to(batch.device), _valid(batch, views, patch))[self.k]


def factory(mode: str | None, dino: DinoFeatures | None = None):
    """(the image's cached array or None, k) -> its window clusters, for a cluster mode; None for no mode (mask
    sources without DINO clusters). `dino`: the online mode's."""
    if mode == "whole":
        return FromClusterMap
    if mode == "view":
        return FromFeatureMap
    if mode == "online":
        return lambda _, k: FromDino(dino, k)
    return None


def trained_mode(ckpt: dict, override: str | None) -> str:
    """The cluster mode a checkpoint was trained in (its cluster source), unless `override` names another."""
    source = ckpt.get("cluster_source") or {}
    return override or source.get("mode") or ckpt["train_config"].get("cluster_mode", "whole")


def online_dino(source: dict, weights: str | None, crop: int, device: torch.device) -> DinoFeatures:
    """The frozen DINO of the online mode, as the checkpoint's cluster source names it (any input size)."""
    name = source.get("dino_model")
    if not name:
        raise OCZSSError("this checkpoint records no DINO for the online cluster mode; pass --cluster-mode whole "
                         "or view with a cache")
    weights = weights or ("random" if source.get("random_weights") else "pretrained")
    model = load_dino(name, weights, crop, dynamic=True)
    if source.get("fingerprint") and fingerprint(model) != source["fingerprint"]:
        raise OCZSSError(f"DINO weights {weights!r} differ from those the checkpoint was trained with; pass the same "
                         f"--dino-weights")
    return DinoFeatures(model, 0).to(device)
