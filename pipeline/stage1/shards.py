"""Stage 1's unit of work, one shard, as a worker runs it (pipeline/stage1/precompute.py plans and hands them out).

`run_shard` decodes the shard's images on a thread pool, runs DINO and the clustering batch by batch under a
per-device lock, writes the shard and then its completion record, once the writer's lease is confirmed. Each
process keeps one DINO per device (loaded and checked against the cache's fingerprint), one decode pool, one lock
per device and its open splits.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from oczss.cache.lock import check_holder
from oczss.cache.schema import CacheParams, pack_grid
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.data.images import ImageError
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage1.tokens import image_arrays, load_input


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to compute and write one shard; paths and the cache URL are absolute."""

    cache: str
    dataset: str
    split: str
    shard: int
    ids: tuple[str, ...]
    paths: tuple[str, ...]
    params: CacheParams
    weights: str
    device: str  # the --device flag: resolved on the worker, which must land on params.device
    batch_size: int
    decode_threads: int
    lease: str  # the writer's lease token, checked before the shard's record is committed
    basis: tuple[np.ndarray, np.ndarray] | None  # the dataset's (mean [C], basis [C, D]) when features are stored


@dataclass
class ShardResult:
    shard: int
    split: str
    images: int
    failed: dict[str, str]


# per-process resources: one DINO per device, one decode pool, one lock per device, open splits
_lock = threading.Lock()
_extractors: dict[tuple, DinoFeatures] = {}
_device_locks: dict[str, threading.Lock] = {}
_pools: dict[int, ThreadPoolExecutor] = {}
_splits: dict[tuple, object] = {}


def worker_device(job: ShardJob) -> torch.device:
    """The worker's own device for the job; it must be of the type the cache records."""
    device = resolve_device(job.device)
    if device.type != job.params.device:
        raise OCZSSError(f"this worker computes on {device.type} but the cache's clusters are made on "
                         f"{job.params.device}; give every worker the same kind of device")
    return device


def extractor(job: ShardJob, device: torch.device, model: torch.nn.Module | None = None) -> DinoFeatures:
    """This process's DINO for the job; `model`: the one plan() loaded and fingerprinted, else loaded and checked."""
    p = job.params
    key = (p.dino_model, job.weights, p.fingerprint, p.input_size, p.grid, str(device))
    with _lock:
        if key not in _extractors:
            if model is None:
                model = load_dino(p.dino_model, job.weights, p.input_size, dynamic=True)
                if fingerprint(model) != p.fingerprint:
                    raise OCZSSError(f"DINO weights {job.weights!r} on this worker differ from the cache's "
                                     f"(fingerprint {p.fingerprint[:12]}…); give every worker the same checkpoint")
            _extractors[key] = DinoFeatures(model, p.grid).to(device)
        return _extractors[key]


def _device_lock(device: torch.device) -> threading.Lock:
    with _lock:
        return _device_locks.setdefault(str(device), threading.Lock())


def _pool(threads: int) -> ThreadPoolExecutor:
    with _lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="oczss-decode")
        return _pools[threads]


def _split(job: ShardJob):
    """The job's split, opened once per process (its ids are read once, not per shard)."""
    key = (job.cache, job.dataset, job.split)
    with _lock:
        if key not in _splits:
            _splits[key] = MaskCache.open(job.cache, writable=True).split(job.dataset, job.split)
        return _splits[key]


def _decode(path: str, p: CacheParams) -> np.ndarray:
    """The image as DINO sees it (pipeline/stage1/tokens.py), uint8 [h, w, 3]; a file that vanished since the
    client checked is an error of the run."""
    try:
        return load_input(path, p.input_size, p.input_size // p.feature_grid, p.feature_long)
    except ImageError as e:
        if not os.path.exists(path):
            raise OCZSSError(f"image {path} is missing (it existed when the run started); nothing of its shard "
                             f"was written, run the command again once the file is back") from None
        raise e


def run_shard(job: ShardJob, on_images: Callable[[int], None] | None = None,
              on_failure: Callable[[str, str], None] | None = None) -> ShardResult:
    """Compute one shard's cluster maps for every K and write it; corrupt images are recorded, not fatal. Images
    are taken in order as they decode and go to DINO in batches of one size (a batch runs as soon as it is full)."""
    p = job.params
    device = worker_device(job)
    extract = extractor(job, device)
    split_cache = _split(job)
    decoded = [_pool(job.decode_threads).submit(_decode, path, p) for path in job.paths]
    n, s = len(job.ids), p.grid
    arrays = {f"labels_k{k}": np.zeros((n, s, s), np.uint8) for k in p.ks}
    basis = None
    if p.feature_dim:
        arrays["features"] = np.zeros((n, p.feature_grid, p.feature_long, p.feature_dim), np.float16)
        arrays["feature_shape"] = np.zeros((n, 2), np.uint16)
        basis = tuple(torch.from_numpy(a).to(device) for a in job.basis)
    failed: dict[str, str] = {}
    pending: dict[tuple, list[tuple[int, np.ndarray]]] = {}  # image size -> (row, image) waiting for a batch
    for i, future in enumerate(decoded):
        try:
            image = future.result()
        except ImageError as e:
            failed[job.ids[i]] = str(e)
            if on_failure:
                on_failure(job.ids[i], str(e))
            if on_images:
                on_images(1)
            continue
        batch = pending.setdefault(image.shape, [])
        batch.append((i, image))
        if len(batch) == job.batch_size:
            _run_batch(job, extract, device, basis, pending.pop(image.shape), arrays, on_images)
    for batch in pending.values():
        _run_batch(job, extract, device, basis, batch, arrays, on_images)
    split_cache.write_shard(job.shard, arrays, failed, before_commit=lambda: check_holder(job.cache, job.lease))
    return ShardResult(job.shard, job.split, n, failed)


def _run_batch(job: ShardJob, extract: DinoFeatures, device: torch.device, basis, batch: list[tuple[int, np.ndarray]],
               arrays: dict[str, np.ndarray], on_images: Callable[[int], None] | None) -> None:
    """DINO and the clustering for same-sized images [(row, uint8 [h, w, 3])]; their rows of `arrays` filled."""
    p = job.params
    rows = [i for i, _ in batch]
    images = torch.from_numpy(np.stack([image for _, image in batch]))
    if device.type == "cuda":
        images = images.pin_memory()
    with _device_lock(device):  # one batch at a time on the device; the other task decodes meanwhile
        maps, features = image_arrays(extract, images.to(device, non_blocking=True), [job.ids[i] for i in rows],
                                      p.seed, list(p.ks), basis)
    for k, lab in maps.items():
        arrays[f"labels_k{k}"][rows] = lab
    if features is not None:
        arrays["feature_shape"][rows] = features.shape[1:3]
        arrays["features"][rows] = [pack_grid(f, p.feature_grid, p.feature_long) for f in features]
    if on_images:
        on_images(len(rows))
