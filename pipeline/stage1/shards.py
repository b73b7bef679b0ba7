"""Stage 1's unit of work, one shard, as a worker runs it (pipeline/stage1/precompute.py plans and hands them out).

`run_shard` decodes the shard's images on a thread pool, runs the source's frozen model batch by batch under a
per-device lock (pipeline/stage1/sources/: DINO and the clustering for dino-fps, CLIP and K-Means for clip-kmeans,
DINOv2 for dinov2-tokens), writes the shard and then its completion record, once the writer's lease is confirmed.
Each process keeps one model per (source, parameters, weights, device) (loaded and checked against the cache's
fingerprint), one decode pool, one lock per device and its open splits.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from oczss.cache.lock import check_holder
from oczss.cache.schema import CacheParams, SourceParams
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.pipeline.data.images import ImageError
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage1.sources import get_source


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to compute and write one shard; paths and the cache URL are absolute."""

    cache: str
    dataset: str
    split: str
    shard: int
    ids: tuple[str, ...]
    paths: tuple[str, ...]
    params: CacheParams | SourceParams  # params.source names the source
    weights: str
    device: str  # the --device flag: resolved on the worker, which must land on the params' device type
    batch_size: int
    decode_threads: int
    lease: str  # the writer's lease token, checked before the shard's record is committed
    basis: Any = None  # the source's per-dataset state (dino-fps: (mean [C], basis [C, D]) when features are stored)


@dataclass
class ShardResult:
    shard: int
    split: str
    images: int
    failed: dict[str, str]


# per-process resources: one model per (source, params, weights, device), one decode pool, one lock per device, splits
_lock = threading.Lock()
_models: dict[tuple, Any] = {}
_device_locks: dict[str, threading.Lock] = {}
_pools: dict[int, ThreadPoolExecutor] = {}
_splits: dict[tuple, object] = {}


def _device_type(params: CacheParams | SourceParams) -> str:
    return params.device if isinstance(params, CacheParams) else params.values["device"]


def worker_device(job: ShardJob) -> torch.device:
    """The worker's own device for the job; it must be of the type the cache records."""
    device, wanted = resolve_device(job.device), _device_type(job.params)
    if device.type != wanted:
        raise OCZSSError(f"this worker computes on {device.type} but the cache's {job.params.source} outputs are "
                         f"made on {wanted}; give every worker the same kind of device")
    return device


def worker_model(job: ShardJob, device: torch.device, model=None):
    """This process's model for the job (the source's `worker`); `model`: the one the client loaded and
    fingerprinted, else loaded and checked."""
    key = (job.params.source, job.params.digest(), job.weights, str(device))
    with _lock:
        if key not in _models:
            _models[key] = get_source(job.params.source).worker(job.params, job.weights, device, model)
        return _models[key]


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


def _decode(path: str, job: ShardJob) -> np.ndarray:
    """The image as the source's model sees it, uint8 [h, w, 3]; a file that vanished since the client checked is
    an error of the run."""
    try:
        return get_source(job.params.source).decode(path, job.params)
    except ImageError as e:
        if not os.path.exists(path):
            raise OCZSSError(f"image {path} is missing (it existed when the run started); nothing of its shard "
                             f"was written, run the command again once the file is back") from None
        raise e


def run_shard(job: ShardJob, on_images: Callable[[int], None] | None = None,
              on_failure: Callable[[str, str], None] | None = None) -> ShardResult:
    """Compute one shard's arrays and write it; corrupt images are recorded, not fatal (their rows stay zero).
    Images are taken in order as they decode and go to the model in batches of one size (a batch runs as soon as
    it is full)."""
    device = worker_device(job)
    runner = worker_model(job, device)
    split_cache = _split(job)
    decoded = [_pool(job.decode_threads).submit(_decode, path, job) for path in job.paths]
    n = len(job.ids)
    arrays = {name: np.zeros((n, *shape), dtype) for name, (shape, dtype, _) in job.params.layouts().items()}
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
            _run_batch(job, runner, device, pending.pop(image.shape), arrays, on_images)
    for batch in pending.values():
        _run_batch(job, runner, device, batch, arrays, on_images)
    split_cache.write_shard(job.shard, arrays, failed, before_commit=lambda: check_holder(job.cache, job.lease))
    return ShardResult(job.shard, job.split, n, failed)


def _run_batch(job: ShardJob, runner, device: torch.device, batch: list[tuple[int, np.ndarray]],
               arrays: dict[str, np.ndarray], on_images: Callable[[int], None] | None) -> None:
    """The source's model on same-sized images [(row, uint8 [h, w, 3])]; their rows of `arrays` filled."""
    rows = [i for i, _ in batch]
    images = torch.from_numpy(np.stack([image for _, image in batch]))
    if device.type == "cuda":
        images = images.pin_memory()
    with _device_lock(device):  # one batch at a time on the device; the other task decodes meanwhile
        out = get_source(job.params.source).compute(runner, images.to(device, non_blocking=True),
                                                    [job.ids[i] for i in rows], job.params, job.basis)
    for name, values in out.items():
        arrays[name][rows] = values
    if on_images:
        on_images(len(rows))
