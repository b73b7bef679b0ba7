"""Stage 1: DINO features -> FPS-Voronoi cluster labels -> the sharded mask cache, resumable, on dask.

The unit of work is one shard (`run_shard`): decode its images on a thread pool, run DINO and the clustering
batch by batch under a per-device lock, write the shard and then its completion record. Two shard tasks per
device run at once, so one shard's images decode while the other's batches run through DINO. Locally the tasks run on dask's
threaded scheduler; with `scheduler=ADDRESS` the same tasks go to a `dask.distributed` cluster (one worker per
GPU, each loading its own DINO and checking its fingerprint against the cache's). Shards that already have a
record are skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from oczss.cache.schema import CacheParams
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.model.clustering import cluster_maps
from oczss.model.dino import DEFAULT_MODEL, DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.images import ImageError, load_resized
from oczss.pipeline.runtime import resolve_device

TASKS_PER_DEVICE = 2


@dataclass(frozen=True)
class PrecomputeConfig:
    """The flags of `oczss precompute`. split: 'train', 'val' or 'all'."""

    dataset: str
    cache: str
    data_root: str | None = None
    split: str = "train"
    ks: tuple[int, ...] = (6, 8)
    input_size: int = 512
    grid: int = 64
    batch_size: int = 32
    device: str = "auto"
    weights: str = "pretrained"
    dino_model: str = DEFAULT_MODEL
    seed: int = 0
    shard_size: int = 256
    decode_threads: int = min(16, os.cpu_count() or 1)
    scheduler: str | None = None

    def __post_init__(self):
        """Refuse bad flags before any work starts."""
        if self.split not in ("train", "val", "all"):
            raise OCZSSError(f"--split {self.split!r}: choose train, val or all")
        for flag, v in (("--input-size", self.input_size), ("--grid", self.grid), ("--batch-size", self.batch_size),
                        ("--shard-size", self.shard_size), ("--decode-threads", self.decode_threads)):
            if v < 1:
                raise OCZSSError(f"{flag} {v}: must be at least 1")
        if self.seed < 0:
            raise OCZSSError(f"--seed {self.seed}: must be at least 0")
        top = min(255, self.grid * self.grid)
        if not self.ks or min(self.ks) < 1 or max(self.ks) > top:
            raise OCZSSError(f"--ks {','.join(map(str, self.ks))}: every K must lie in 1..{top} (at most 255, and at "
                             f"most the S x S = {self.grid}x{self.grid} cells of --grid)")


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to compute and write one shard."""

    cache: str
    dataset: str
    split: str
    shard: int
    ids: tuple[str, ...]
    paths: tuple[str, ...]
    params: CacheParams
    weights: str
    device: str
    batch_size: int
    decode_threads: int


@dataclass
class ShardResult:
    shard: int
    split: str
    images: int
    failed: dict[str, str]


# -- per-process resources (one DINO per device, one decode pool, one lock per device) ----------------------------
_lock = threading.Lock()
_extractors: dict[tuple, DinoFeatures] = {}
_device_locks: dict[str, threading.Lock] = {}
_pools: dict[int, ThreadPoolExecutor] = {}


def _extractor(job: ShardJob, model: torch.nn.Module | None = None) -> DinoFeatures:
    """This process's DINO for the job; `model`: the one plan() loaded and fingerprinted, else loaded and checked."""
    p = job.params
    key = (p.dino_model, job.weights, p.fingerprint, p.input_size, p.grid, job.device)
    with _lock:
        if key not in _extractors:
            if model is None:
                model = load_dino(p.dino_model, job.weights, p.input_size)
                if fingerprint(model) != p.fingerprint:
                    raise OCZSSError(f"DINO weights {job.weights!r} on this worker differ from the cache's "
                                     f"(fingerprint {p.fingerprint[:12]}…); give every worker the same checkpoint")
            _extractors[key] = DinoFeatures(model, p.grid).to(job.device)
        return _extractors[key]


def _device_lock(device: str) -> threading.Lock:
    with _lock:
        return _device_locks.setdefault(device, threading.Lock())


def _pool(threads: int) -> ThreadPoolExecutor:
    with _lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="oczss-decode")
        return _pools[threads]


def run_shard(job: ShardJob, on_images: Callable[[int], None] | None = None,
              on_failure: Callable[[str, str], None] | None = None) -> ShardResult:
    """Compute one shard's labels for every K and write it; corrupt images are recorded, not fatal."""
    p = job.params
    extract = _extractor(job)
    split_cache = MaskCache.open(job.cache, writable=True).split(job.dataset, job.split)
    decoded = [_pool(job.decode_threads).submit(load_resized, path, p.input_size) for path in job.paths]
    n, s = len(job.ids), p.grid
    labels = {k: np.zeros((n, s, s), np.uint8) for k in p.ks}
    failed: dict[str, str] = {}
    device = torch.device(job.device)
    for start in range(0, n, job.batch_size):
        rows, images = [], []
        for i in range(start, min(start + job.batch_size, n)):
            try:
                images.append(decoded[i].result())
                rows.append(i)
            except ImageError as e:
                failed[job.ids[i]] = str(e)
                if on_failure:
                    on_failure(job.ids[i], str(e))
        if rows:
            batch = torch.from_numpy(np.stack(images))
            if device.type == "cuda":
                batch = batch.pin_memory()
            with _device_lock(job.device):  # one batch at a time on the device; the other task decodes meanwhile
                feats = extract(batch.to(device, non_blocking=True))
                maps = cluster_maps(feats, [job.ids[i] for i in rows], p.seed, list(p.ks))
                for k, lab in maps.items():
                    labels[k][rows] = lab.cpu().numpy()
        if on_images:
            on_images(min(start + job.batch_size, n) - start)
    split_cache.write_shard(job.shard, labels, failed)
    return ShardResult(job.shard, job.split, n, failed)


# -- the client side -------------------------------------------------------------------------------------------
@dataclass
class PrecomputeSummary:
    cache: str
    shards_run: int
    shards_skipped: int
    images: int
    failed: dict[str, dict[str, str]]
    seconds: float
    random_weights: bool

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def plan(cfg: PrecomputeConfig) -> tuple[list[ShardJob], int, torch.nn.Module]:
    """Check the dataset, load DINO, open or create the cache; return the pending shard jobs, the count of shards
    already done, and the loaded DINO."""
    dataset = Dataset(cfg.dataset, cfg.data_root)
    splits = ["train", "val"] if cfg.split == "all" else [cfg.split]
    ids = {s: dataset.image_ids(s) for s in splits}
    device = resolve_device(cfg.device)
    model = load_dino(cfg.dino_model, cfg.weights, cfg.input_size)
    params = CacheParams(dino_model=cfg.dino_model, fingerprint=fingerprint(model), input_size=cfg.input_size,
                         grid=cfg.grid, ks=tuple(sorted(set(cfg.ks))), seed=cfg.seed, device=device.type,
                         dtype="bfloat16" if device.type == "cuda" else "float32", shard_size=cfg.shard_size)
    cache = MaskCache.create_or_open(cfg.cache, params, random_weights=cfg.weights == "random")
    jobs, skipped = [], 0
    for split in splits:
        sc = cache.require_split(cfg.dataset, split, ids[split], str(dataset.root))
        for shard, record in enumerate(sc.records()):
            if record is not None:
                skipped += 1
                continue
            a, b = sc.rows(shard)
            shard_ids = tuple(ids[split][a:b])
            jobs.append(ShardJob(cfg.cache, cfg.dataset, split, shard, shard_ids,
                                 tuple(str(dataset.image_path(split, i)) for i in shard_ids), params, cfg.weights,
                                 str(device), cfg.batch_size, cfg.decode_threads))
    return jobs, skipped, model


def precompute(cfg: PrecomputeConfig, progress: bool = True) -> PrecomputeSummary:
    """Run Stage 1 for `cfg`; returns what was done. Safe to interrupt and run again."""
    from tqdm import tqdm

    jobs, skipped, model = plan(cfg)
    total = sum(len(j.ids) for j in jobs)
    if skipped:
        print(f"resuming {cfg.cache}: {skipped} shard(s) already done, {len(jobs)} to go", file=sys.stderr)
    bar = tqdm(total=total, unit="img", desc=f"precompute {cfg.dataset}", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)
    failed: dict[str, dict[str, str]] = {}

    def report(image_id: str, message: str) -> None:
        bar.write(f"skipped corrupt image {message}", file=sys.stderr)

    start = time.perf_counter()
    try:
        if cfg.scheduler:
            results = _run_distributed(cfg.scheduler, jobs, bar, report)
        else:
            if jobs:
                _extractor(jobs[0], model)  # reuse the DINO loaded by plan()
            results = _run_local(jobs, bar, report)
    finally:
        bar.close()
    for r in results:
        if r.failed:
            failed.setdefault(r.split, {}).update(r.failed)
    return PrecomputeSummary(cfg.cache, len(jobs), skipped, total, failed, time.perf_counter() - start,
                             cfg.weights == "random")


def _run_local(jobs: list[ShardJob], bar, report) -> list[ShardResult]:
    import dask

    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            bar.update(n)

    tasks = [dask.delayed(run_shard, pure=False)(job, advance, report,
                                                 dask_key_name=f"shard-{job.split}-{job.shard:06d}") for job in jobs]
    return list(dask.compute(*tasks, scheduler="threads", num_workers=TASKS_PER_DEVICE))


def _run_distributed(address: str, jobs: list[ShardJob], bar, report) -> list[ShardResult]:
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise OCZSSError(f"--scheduler {address}: cannot reach a dask scheduler there ({e})") from e
    results = []
    with client:
        futures = client.map(run_shard, jobs, pure=False)
        for future in as_completed(futures):
            r = future.result()
            for image_id, reason in r.failed.items():
                report(image_id, reason)
            bar.update(r.images)
            results.append(r)
    return results

