"""Where object prompts get their clusters in Stage 2: the three cluster modes, and the cached arrays they read.

    whole   Stage 1's S x S cluster map of the whole image, sampled at each view's patch centres.
            A view shows only the clusters that fall in it: prompts of absent clusters carry no object.
    view    the paper's Table 11 setup: Stage 1 stores compact DINO tokens (model/compaction.py) at each image's
            aspect ratio; each view samples them at its patch centres and FPS-Voronoi clusters the view's own
            patches in the step, on the device.
    online  the paper's practical mode: the frozen DINO runs on each view and FPS-Voronoi clusters it in the step;
            on CUDA the DINO of the next micro-batch runs on a side stream while the current step runs. No cache.
In every mode a view's padding patches get no cluster: their prompts' edges leave them out.

Every reader of cached arrays goes through `CachedMaps` (cache/reader.py's ShardReader): a shard is read whole on
first use in a process and checked against its completion record (cache/integrity.py: sha256 of its arrays and ids,
label values < K). A damaged shard is an error naming it and `oczss cache verify`, unless `skip_damaged` asks to skip
its images (one warning per shard). Checked shards stay in a small in-memory LRU.
"""

from __future__ import annotations

import numpy as np
import torch

from oczss.cache.integrity import unbound
from oczss.cache.reader import ShardReader
from oczss.cache.schema import unpack_grid
from oczss.cache.split import DONE
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.model.clustering import fps_voronoi
from oczss.model.dino import DinoFeatures, resize_grid
from oczss.pipeline.data.datasets import Sample
from oczss.pipeline.data.names import images_of
from oczss.pipeline.data.transforms import MEAN, STD

MODES = ("whole", "view", "online")


class CachedMaps(ShardReader):
    """Per-image arrays of one (dataset, split) from the cache: `labels_k{K}` cluster maps uint8 [S, S] or
    `features` float16 [T_h, T_w, D] (each image's own token grid, unpacked with its feature_shape); opened
    lazily in each process (picklable), each shard checked on first read (cache/reader.py)."""

    def __init__(self, url: str, dataset: str, split: str, array: str, skip_damaged: bool = False):
        super().__init__(url, dataset, split, (array, "feature_shape") if array == "features" else (array,),
                         skip_damaged)
        self.array = array

    def prepare(self, data: dict):
        if self.array != "features":
            return data[self.array]
        return [unpack_grid(f, shape).copy() for f, shape in zip(data["features"], data["feature_shape"])]

    def get(self, image_id: str) -> np.ndarray | None:
        """The image's array; None if its shard is damaged and damaged shards are skipped."""
        shard, i = self.locate(image_id)
        return None if shard is None else shard[i]


def open_cached(samples: list[Sample], url: str, dataset: str, split: str, mode: str, k: int, min_grid: int = 1,
                skip_damaged: bool = False) -> tuple[list[Sample], CachedMaps, int, dict]:
    """(samples the cache has, their CachedMaps for `mode`, how many were dropped, the cluster source a checkpoint
    records). Refused before any work: a cache without this (dataset, split), without K = k or features for the
    view mode, whose grid is coarser than `min_grid` (the message says what to run), or whose parameters or (view
    mode) features' basis changed after its shards were written. Samples whose rows are missing or failed are
    dropped; the caller decides whether that is acceptable. A variant (voc21) reads the cache of the dataset whose
    images it shares (voc)."""
    dataset = images_of(dataset)
    cache = MaskCache.open(url)
    sc = cache.require(dataset, split, k, min_grid)
    if mode == "view" and not cache.params.feature_dim:
        raise OCZSSError(f"cache {url} stores no compact DINO features, which the `view` cluster mode samples; "
                         f"rebuild it with `oczss precompute --dataset {dataset} --split {split} --feature-dim 32 "
                         f"--cache NEW_CACHE`, or use --cluster-mode whole")
    records = sc.records()
    changed = unbound(records, sc.bound(features=mode == "view"))
    if changed:
        raise OCZSSError(f"cache {url} {sc.name}: {' and '.join(changed)} changed after its shards were written "
                         f"(their completion records bound another sha256); run `oczss cache verify --cache {url}`")
    status = sc.status(records)
    kept = [s for s in samples if s.image_id in sc.index and status[sc.index[s.image_id]] == DONE]
    if not kept:
        raise OCZSSError(f"no {dataset}/{split} sample has cluster labels in {url}; run `oczss precompute "
                         f"--dataset {dataset} --split {split} --ks {k} --cache {url}`")
    source = {"mode": mode, **cache.params.to_dict(), "random_weights": cache.random_weights}
    if mode == "view":
        mean, basis = cache.basis(dataset)
        source.update(feature_mean=torch.from_numpy(mean), feature_basis=torch.from_numpy(basis))
    array = "features" if mode == "view" else f"labels_k{k}"
    return kept, CachedMaps(url, dataset, split, array, skip_damaged), len(samples) - len(kept), source


class StepClusters:
    """Per-patch object assignment LongTensor [B, M] of a training batch on the device, by cluster mode.

    none: None (mask sources other than `dino`); whole: the batch's `clusters`; view: FPS-Voronoi of the batch's
    `features` [B, M, D] from its `first` centres; online: FPS-Voronoi of the frozen DINO's tokens of the batch's
    `image` (ImageNet-normalised, as DINO expects), resized to the (h, w) patch grid of the model. Patches that
    are padding (the batch's `valid` [B, M] is False) get no cluster (-1) and take no part in FPS-Voronoi.
    """

    def __init__(self, mode: str, k: int, patch_grid: tuple[int, int], dino: DinoFeatures | None = None):
        if mode not in MODES + ("none",):
            raise OCZSSError(f"cluster mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode, self.k, self.patch_grid, self.dino = mode, k, patch_grid, dino

    def __call__(self, batch: dict) -> torch.Tensor | None:
        if self.mode == "none":  # a mask source that needs no DINO clusters
            return None
        valid = batch["valid"]
        if self.mode == "whole":
            return batch["clusters"].masked_fill(~valid, -1)
        if self.mode == "view":
            features = batch["features"].float()
        else:
            features = dino_patch_features(self.dino, batch["image"], self.patch_grid)
        return fps_voronoi(features, [self.k], batch["first"], valid)[self.k]


def dino_patch_features(dino: DinoFeatures, images: torch.Tensor, patch_grid: tuple[int, int]) -> torch.Tensor:
    """ImageNet-normalised images [B, 3, H, W] -> the DINO's tokens on the model's (h, w) patch grid, fp32
    [B, h*w, C] (bilinear where the DINO's patch differs from the model's)."""
    mean = torch.as_tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(STD, device=images.device).view(1, 3, 1, 1)
    pixels = images.float() * std + mean  # back to 0..255, then the DINO's own normalisation
    x = (pixels - dino.mean) / dino.std
    p = dino.patch
    grid = dino.token_grid(x[..., :x.shape[-2] - x.shape[-2] % p, :x.shape[-1] - x.shape[-1] % p])
    return resize_grid(grid, patch_grid).flatten(2).transpose(1, 2)


def device_batches(batches, device: torch.device, clusters: StepClusters):
    """The loader's batches on `device`, each with its `patch_clusters` [B, M], one for each batch of `batches`.

    On CUDA one batch ahead: its copy and, in the online mode, its DINO forward and clustering are queued on a side
    stream while the current step runs on the default one (the step waits on an event, not on the host)."""
    def prepare(batch: dict) -> dict:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        batch["patch_clusters"] = clusters(batch)
        return batch

    if device.type != "cuda":
        for batch in batches:
            yield prepare(batch)
        return
    stream = torch.cuda.Stream(device)

    def ahead(batch: dict):
        with torch.cuda.stream(stream):
            ready = prepare(batch)
            event = torch.cuda.Event()
            event.record(stream)
        return ready, event

    def handed_over(current: dict, event) -> dict:
        """The batch, once the default stream waits for its side-stream work and owns its memory."""
        torch.cuda.current_stream(device).wait_event(event)
        for tensor in current.values():
            if tensor is not None:  # patch_clusters is None for mask sources without DINO clusters
                tensor.record_stream(torch.cuda.current_stream(device))
        return current

    upcoming = None
    for batch in batches:
        following = ahead(batch)  # queued before the current batch is handed over: it overlaps the current step
        if upcoming is not None:
            yield handed_over(*upcoming)
        upcoming = following
    if upcoming is not None:
        yield handed_over(*upcoming)
