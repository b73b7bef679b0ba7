"""Stage 2 data: samples with their cached cluster grids, label remapping per setting, a resumable sampler.

Training items are addressed by (index, position): `position` is the sample's place in the global stream of
samples, which seeds its augmentation. Data order and augmentation therefore depend only on (seed, step), not
on worker count or restarts, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch

from oczss.cache.store import DONE, MaskCache
from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.data.datasets import Dataset, DatasetSpec, Sample
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.data.transforms import train_view

UNSEEN = 254  # transductive training: ground truth is an unseen class; the train step pseudo-labels it (§6)


def label_lut(spec: DatasetSpec, setting: str) -> np.ndarray:
    """uint8 [256] lookup from dataset labels to training targets (protocol §1, "How labels are remapped").

    inductive: seen class c -> its position among the seen classes, unseen -> 255 (ignored);
    transductive: seen c -> c, unseen -> UNSEEN (pseudo-labelled during training); 255 stays 255 in both.
    """
    lut = np.full(256, IGNORE, np.uint8)
    for c in range(len(spec.classes)):
        if c in spec.unseen:
            lut[c] = UNSEEN if setting == "transductive" else IGNORE
        else:
            lut[c] = spec.seen.index(c) if setting == "inductive" else c
    return lut


class ClusterGrids:
    """Cached S x S cluster grids of one (dataset, split) at one K, opened lazily in each worker process.

    `source`: the cache's parameters and random-weights flag (what a checkpoint records to redo the clustering).
    """

    def __init__(self, url: str, dataset: str, split: str, k: int, source: dict):
        self.url, self.dataset, self.split, self.k, self.source = url, dataset, split, k, source
        self._sc = None

    def _split(self):
        if self._sc is None:
            self._sc = MaskCache.open(self.url).split(self.dataset, self.split)
        return self._sc

    def grid(self, image_id: str) -> np.ndarray:
        sc = self._split()
        return np.asarray(sc.labels(self.k)[sc.row(image_id)])

    def __getstate__(self):
        return {**self.__dict__, "_sc": None}


def with_clusters(samples: list[Sample], url: str, dataset: str, split: str, k: int,
                  min_grid: int = 1) -> tuple[list[Sample], ClusterGrids]:
    """Check that the cache fits and drop samples whose rows are missing or failed (with a warning).

    Refused before any training: a cache without this (dataset, split), without K = k, or whose grid is coarser
    than `min_grid`; the message says what to run.
    """
    cache = MaskCache.open(url)
    fix = f"run `oczss precompute --dataset {dataset} --split {split} --ks {k} --cache NEW_CACHE`"
    if (dataset, split) not in cache.splits():
        have = ", ".join(f"{d}/{s}" for d, s in cache.splits()) or "nothing"
        raise OCZSSError(f"cache {url} holds no {dataset}/{split} clusters (it holds {have}); {fix}")
    if k not in cache.params.ks:
        raise OCZSSError(f"cache {url} has no K={k} clusters (it has K in "
                         f"{','.join(map(str, cache.params.ks))}) but the model has {k} object prompts; {fix}")
    if cache.params.grid < min_grid:
        raise OCZSSError(f"cache {url} has a {cache.params.grid}x{cache.params.grid} grid, coarser than the "
                         f"model's {min_grid}x{min_grid} patch grid; {fix} --grid {min_grid}")
    sc = cache.split(dataset, split)
    status = sc.status()
    kept = [s for s in samples if s.image_id in sc.index and status[sc.row(s.image_id)] == DONE]
    skipped = len(samples) - len(kept)
    if skipped:
        warnings.warn(f"{skipped} of {len(samples)} {dataset}/{split} samples have no cluster labels in {url} "
                      f"(missing or failed in precompute) and are skipped", stacklevel=2)
    if not kept:
        raise OCZSSError(f"no {dataset}/{split} sample has cluster labels in {url}; {fix}")
    source = {**cache.params.to_dict(), "random_weights": cache.random_weights}
    return kept, ClusterGrids(url, dataset, split, k, source)


class TrainData(torch.utils.data.Dataset):
    """Augmented training views. Item (index, position) -> {image float32 [3, C, C], label int64 [C, C],
    clusters int64 [(C/16)^2]}; labels already remapped for the setting."""

    def __init__(self, dataset: Dataset, samples: list[Sample], setting: str, grids: ClusterGrids | None,
                 crop: int, patch: int, seed: int):
        self.dataset, self.samples, self.grids, self.crop, self.seed = dataset, samples, grids, crop, seed
        self.patch = patch
        self.lut = label_lut(dataset.spec, setting)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, position = key
        rng = np.random.default_rng([self.seed, position])
        for attempt in range(len(self.samples)):
            sample = self.samples[(index + attempt) % len(self.samples)]
            try:
                image = np.asarray(load_rgb(sample.image))
                break
            except ImageError as e:
                print(f"skipped corrupt image {e}", file=sys.stderr, flush=True)
        else:
            raise OCZSSError("every training image failed to decode")
        label = self.lut[self.dataset.read_label(sample.label)]
        if label.shape != image.shape[:2]:
            raise OCZSSError(f"label {sample.label} is {label.shape[1]}x{label.shape[0]} but its image "
                             f"{sample.image} is {image.shape[1]}x{image.shape[0]}")
        img, lab, view = train_view(image, label, self.dataset.spec.train_scale, self.crop, rng)
        side = self.crop // self.patch
        clusters = (view.patch_clusters(self.grids.grid(sample.image_id), side, side, self.patch)
                    if self.grids is not None
                    else np.zeros(side * side, np.int64))
        return {"image": torch.from_numpy(img), "label": torch.from_numpy(lab.astype(np.int64)),
                "clusters": torch.from_numpy(clusters)}


class Positions(torch.utils.data.Sampler):
    """Infinite stream of (index, position) for one rank, starting at micro-batch `start`.

    Micro-batch m covers global positions [m * per_rank * world, (m + 1) * per_rank * world); rank r takes its
    per_rank slice. Position p is sample p mod n of the permutation for epoch p // n, seeded by (seed, epoch).
    """

    def __init__(self, n: int, seed: int, start: int, per_rank: int, world: int = 1, rank: int = 0):
        self.n, self.seed, self.start, self.per_rank, self.world, self.rank = n, seed, start, per_rank, world, rank

    def __iter__(self):
        m, perm, epoch = self.start, None, -1
        while True:
            base = (m * self.world + self.rank) * self.per_rank
            for p in range(base, base + self.per_rank):
                if p // self.n != epoch:
                    epoch = p // self.n
                    perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
                yield int(perm[p % self.n]), p
            m += 1


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy and Python RNGs from the worker's torch seed (augmentation itself is
    seeded per sample, this only guards third-party code)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
