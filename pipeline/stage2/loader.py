"""Stage 2 training data: augmented views with their per-patch clusters, label remapping per setting, and a
resumable sampler.

Training items are addressed by (index, position): `position` is the sample's place in the global stream of
samples, which seeds its augmentation. Data order and augmentation therefore depend only on (seed, step), not
on worker count or restarts, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.data.datasets import Dataset, DatasetSpec, Sample
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.data.transforms import View, train_view
from oczss.pipeline.data.pairs import check_pairs
from oczss.pipeline.stage2.clusters import CachedMaps
from oczss.pipeline.workers import collate, guarded, ignore_signals

log = logging.getLogger(__name__)

UNSEEN = 254  # transductive training: ground truth is an unseen class; the train step pseudo-labels it (§6)


def label_lut(spec: DatasetSpec, setting: str) -> np.ndarray:
    """uint8 [256] lookup from dataset labels to training targets (docs/protocol.md §1, label remapping).

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


class TrainData(torch.utils.data.Dataset):
    """Augmented training views. Item (index, position) -> {image float32 [3, C, C], label int64 [C, C] (remapped
    for the setting), first int64 [] (the view's first FPS centre, a patch index drawn from the sample's seeded
    generator), valid bool [M] (the patches that are not padding)} and, by cluster mode
    (pipeline/stage2/clusters.py), clusters int64 [M] (whole) or features float16 [M, D] (view), M = (C / patch)^2.

    The augmentation (crop with cat_max_ratio, flip, ...) sees the dataset's own labels, as in the reference; the
    seen/unseen remap is applied to the finished view. A sample whose image cannot be decoded, or whose cached
    shard is damaged and skipped, is replaced by the next one (reported once). Label values outside the classes
    (255 aside) are ignored like 255; the item's `note` names them (pipeline/workers.py logs it once per file).
    An error is carried to the main process as a Failure (pipeline/workers.py) and raised there.
    """

    def __init__(self, dataset: Dataset, samples: list[Sample], setting: str, maps: CachedMaps | None, mode: str,
                 crop: int, patch: int, seed: int):
        self.dataset, self.samples, self.maps, self.mode, self.crop = dataset, samples, maps, mode, crop
        self.patch, self.seed = patch, seed
        self.lut = label_lut(dataset.spec, setting)

    def __len__(self) -> int:
        return len(self.samples)

    @guarded
    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, position = key
        rng = np.random.default_rng([self.seed, position])
        for attempt in range(len(self.samples)):
            sample = self.samples[(index + attempt) % len(self.samples)]
            cached = self.maps.get(sample.image_id) if self.maps is not None else None
            if self.maps is not None and cached is None:
                continue  # a damaged shard the user asked to skip
            try:
                image = np.asarray(load_rgb(sample.image))
                break
            except ImageError as e:
                log.warning("skipped corrupt image %s", e)
        else:
            raise OCZSSError("no training image could be used (every one failed to decode or was skipped)")
        label = self.dataset.read_label(sample.label)
        if label.shape != image.shape[:2]:
            raise OCZSSError(f"label {sample.label} is {label.shape[1]}x{label.shape[0]} but its image "
                             f"{sample.image} is {image.shape[1]}x{image.shape[0]}")
        img, lab, view = train_view(image, label, self.dataset.spec.train_scale, self.crop, rng)
        side = self.crop // self.patch
        item = {"image": torch.from_numpy(img), "label": torch.from_numpy(self.lut[lab].astype(np.int64)),
                "first": torch.tensor(int(rng.integers(side * side))), "note": self._outside(label, sample),
                "valid": torch.from_numpy(view.patch_valid(side, side, self.patch))}
        self.add_cached(item, view, cached)
        return item

    def add_cached(self, item: dict, view: View, cached) -> None:
        """Put what the cache holds for the sample, seen through the view, into the item (a method's own data
        subclasses this): OC-ZSS's clusters int64 [M] (whole) or features float16 [M, D] (view)."""
        side = self.crop // self.patch
        if self.mode == "whole" and cached is not None:
            item["clusters"] = torch.from_numpy(view.patch_clusters(cached, side, side, self.patch))
        elif self.mode == "view" and cached is not None:
            item["features"] = torch.from_numpy(view.patch_features(cached, side, side, self.patch))

    def _outside(self, label: np.ndarray, sample: Sample) -> str:
        """'' or the note naming the label values outside the classes (255 aside), which training ignores."""
        n = len(self.dataset.spec.classes)
        outside = (label >= n) & (label != IGNORE)
        if not outside.any():
            return ""
        values = np.unique(label[outside])
        return (f"label {sample.label}: values {', '.join(map(str, values))} lie outside the {n} classes of "
                f"{self.dataset.spec.name} (255 aside) and are ignored in training (`oczss data check` lists them)")


def training_split(cfg, data_root: str | None, progress: bool) -> tuple[Dataset, list[Sample]]:
    """The run's dataset (its unseen classes replaced by cfg.unseen when given) and its checked train samples."""
    dataset = Dataset(cfg.dataset, data_root)
    if cfg.unseen is not None:
        dataset.spec = dataclasses.replace(dataset.spec, unseen=tuple(sorted(cfg.unseen)))
    samples = dataset.samples("train")
    check_pairs(samples, f"{cfg.dataset} train", show_progress=progress)
    return dataset, samples


def training_loader(data: torch.utils.data.Dataset, ctx, collate_fn=collate) -> torch.utils.data.DataLoader:
    """The DataLoader of a training run (Context `ctx`): `data`'s items in the resumable Positions order from the
    run's step, in ctx.workers processes, batched by `collate_fn` (pipeline/workers.py's by default)."""
    workers = ctx.workers
    return torch.utils.data.DataLoader(
        data, batch_size=ctx.micro, sampler=Positions(len(data), ctx.cfg.seed, ctx.step * ctx.accum, ctx.micro,
                                                      ctx.world, ctx.rank),
        num_workers=workers, pin_memory=ctx.device.type == "cuda", worker_init_fn=seed_worker, collate_fn=collate_fn,
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)


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
    seeded per sample, this only guards third-party code); SIGINT and SIGTERM are left to the main process."""
    import random

    ignore_signals()

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
