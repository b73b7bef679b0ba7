"""Stage 1: DINO features -> FPS-Voronoi cluster maps -> the sharded mask cache, resumable, on dask.

The unit of work is one shard (`run_shard`): decode its images on a thread pool, run DINO and the clustering
batch by batch under a per-device lock, write the shard and then its completion record. Two shard tasks per
device run at once, so one shard's images decode while the other's batches run through DINO. Locally the tasks
run on dask's threaded scheduler; with `scheduler=ADDRESS` the same tasks go to a `dask.distributed` cluster (one
worker per GPU, each loading its own DINO and checking its fingerprint against the cache's).

The client does every check before any work: the dataset and every image file exist (a missing file is an error
of the run, not a corrupt image), paths and the cache URL are made absolute (workers run in other folders), the
device type is fixed for every worker (`auto` is resolved on the workers' own machines), and the cache's writer
lease is taken (cache/lock.py), so a second run on the same cache is refused before it writes anything. Shards
that have a record are skipped, so an interrupted run continues where it stopped; `retry_failed` recomputes the
shards that recorded failed images.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from oczss.cache.location import resolve
from oczss.cache.lock import WriterLock, check_holder
from oczss.cache.schema import CacheParams, pack_grid
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.model.compaction import fit_basis
from oczss.model.dino import DEFAULT_MODEL, DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline import console
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.images import ImageError
from oczss.pipeline.runtime import device_type, resolve_device
from oczss.pipeline.stage1.tokens import MAX_ASPECT, image_arrays, load_input

log = logging.getLogger(__name__)
TASKS_PER_DEVICE = 2
FEATURE_DIM = 32  # D of the compact features of the `view` cluster mode
FIT_IMAGES = 64  # images whose DINO tokens fit a dataset's PCA basis


@dataclass(frozen=True)
class PrecomputeConfig:
    """The flags of `oczss precompute`. split: 'train', 'val' or 'all'."""

    dataset: str
    cache: str
    data_root: str | None = None
    split: str = "train"
    ks: tuple[int, ...] = (6, 8)
    input_size: int = 448  # the short side; chosen from bench/view_features.py (README)
    grid: int = 64
    batch_size: int = 32
    device: str = "auto"
    weights: str = "pretrained"
    dino_model: str = DEFAULT_MODEL
    seed: int = 0
    shard_size: int = 256
    decode_threads: int = min(16, os.cpu_count() or 1)
    scheduler: str | None = None
    retry_failed: bool = False
    force_unlock: bool = False
    feature_dim: int = FEATURE_DIM

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
        if not 0 <= self.feature_dim <= 256:
            raise OCZSSError(f"--feature-dim {self.feature_dim}: must lie in 0..256 (0: store no features)")
        top = min(255, self.grid * self.grid)
        if not self.ks or min(self.ks) < 1 or max(self.ks) > top:
            raise OCZSSError(f"--ks {','.join(map(str, self.ks))}: every K must lie in 1..{top} (at most 255, and at "
                             f"most the S x S = {self.grid}x{self.grid} cells of --grid)")


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


# -- per-process resources (one DINO per device, one decode pool, one lock per device, open splits) ------------
_lock = threading.Lock()
_extractors: dict[tuple, DinoFeatures] = {}
_device_locks: dict[str, threading.Lock] = {}
_pools: dict[int, ThreadPoolExecutor] = {}
_splits: dict[tuple, object] = {}


def _device(job: ShardJob) -> torch.device:
    """The worker's own device for the job; it must be of the type the cache records."""
    device = resolve_device(job.device)
    if device.type != job.params.device:
        raise OCZSSError(f"this worker computes on {device.type} but the cache's clusters are made on "
                         f"{job.params.device}; give every worker the same kind of device")
    return device


def _extractor(job: ShardJob, device: torch.device, model: torch.nn.Module | None = None) -> DinoFeatures:
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
    device = _device(job)
    extract = _extractor(job, device)
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


def _device_type(cfg: PrecomputeConfig) -> str:
    """The device type every worker computes on: this machine's, or the dask workers' (which must agree)."""
    if not cfg.scheduler:
        return resolve_device(cfg.device).type
    if cfg.device != "auto":
        return device_type(cfg.device)  # the workers' machines decide availability
    with _client(cfg.scheduler) as client:
        found = set(client.run(lambda: "cuda" if torch.cuda.is_available() else "cpu").values())
    if len(found) != 1:
        raise OCZSSError(f"--scheduler {cfg.scheduler}: the workers have different devices ({', '.join(sorted(found))})"
                         f"; clusters would differ between them. Pass --device cpu or --device cuda")
    return found.pop()


def _missing_images(dataset: Dataset, ids: dict[str, list[str]]) -> list[str]:
    missing = [str(dataset.image_path(s, i)) for s, split_ids in ids.items() for i in split_ids
               if not dataset.image_path(s, i).exists()]
    return missing


def fit_dataset_basis(model: torch.nn.Module, paths: list, cfg: PrecomputeConfig,
                      device_type: str) -> tuple[np.ndarray, np.ndarray]:
    """The PCA basis of the compact features (model/compaction.py), fitted on the DINO tokens of `paths` (the
    dataset's first images, each as DINO sees it in Stage 1; corrupt ones are left out): (mean float32 [C],
    basis float32 [C, D])."""
    device = torch.device(device_type)
    extract = DinoFeatures(model, cfg.grid).to(device)
    patch = model.patch_embed.patch_size[0]
    tokens = []
    for path in paths:
        try:
            image = load_input(path, cfg.input_size, patch, MAX_ASPECT * cfg.input_size // patch)
        except ImageError:
            continue
        grid = extract.token_grid(extract.normalise(torch.from_numpy(image)[None].to(device)))
        tokens.append(grid[0].flatten(1).T.cpu())
    if not tokens:
        raise OCZSSError(f"none of the first {len(paths)} images of {cfg.dataset} could be decoded to fit the "
                         f"compact features' basis")
    tokens = torch.cat(tokens)
    if cfg.feature_dim > tokens.shape[1]:
        raise OCZSSError(f"--feature-dim {cfg.feature_dim} exceeds the {tokens.shape[1]} channels of {cfg.dino_model}")
    mean, basis = fit_basis(tokens, cfg.feature_dim)
    log.info("fitted the %d-d basis of %s's compact features on %d tokens of %d images", cfg.feature_dim,
             cfg.dataset, len(tokens), len(paths))
    return mean.numpy(), basis.numpy()


def plan(cfg: PrecomputeConfig, lease: str, model: torch.nn.Module, device_type: str) -> tuple[list[ShardJob], int]:
    """Check the dataset, open or create the cache; return the pending shard jobs and the count of shards
    already done."""
    root = str(Path(cfg.data_root).resolve()) if cfg.data_root else None
    dataset = Dataset(cfg.dataset, root)
    splits = ["train", "val"] if cfg.split == "all" else [cfg.split]
    ids = {s: dataset.image_ids(s) for s in splits}
    missing = _missing_images(dataset, ids)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise OCZSSError(f"{len(missing)} image file(s) listed by the {cfg.dataset} splits do not exist: {shown}")
    url = resolve(cfg.cache)
    patch = model.patch_embed.patch_size[0]
    params = CacheParams(dino_model=cfg.dino_model, fingerprint=fingerprint(model), input_size=cfg.input_size,
                         grid=cfg.grid, ks=tuple(sorted(set(cfg.ks))), seed=cfg.seed, device=device_type,
                         dtype="bfloat16" if device_type == "cuda" else "float32", shard_size=cfg.shard_size,
                         feature_dim=cfg.feature_dim, feature_grid=cfg.input_size // patch,
                         feature_long=MAX_ASPECT * cfg.input_size // patch)
    cache = MaskCache.create_or_open(url, params, random_weights=cfg.weights == "random")
    basis = None
    if cfg.feature_dim:
        basis = cache.basis(cfg.dataset)
        if basis is None:
            first = splits[0]
            paths = [dataset.image_path(first, i) for i in ids[first][:FIT_IMAGES]]
            basis = fit_dataset_basis(model, paths, cfg, device_type)
            cache.set_basis(cfg.dataset, *basis)
    jobs, skipped = [], 0
    for split in splits:
        sc = cache.require_split(cfg.dataset, split, ids[split], str(dataset.root.resolve()))
        for shard, record in enumerate(sc.records()):
            if record is not None and not (cfg.retry_failed and record["failed"]):
                skipped += 1
                continue
            a, b = sc.rows(shard)
            shard_ids = tuple(ids[split][a:b])
            jobs.append(ShardJob(url, cfg.dataset, split, shard, shard_ids,
                                 tuple(str(dataset.image_path(split, i).resolve()) for i in shard_ids), params,
                                 cfg.weights if cfg.weights in ("pretrained", "random") else resolve(cfg.weights),
                                 cfg.device, cfg.batch_size, cfg.decode_threads, lease, basis))
    return jobs, skipped


def precompute(cfg: PrecomputeConfig, progress: bool = True) -> PrecomputeSummary:
    """Run Stage 1 for `cfg`; returns what was done. Safe to interrupt and run again."""
    Dataset(cfg.dataset, cfg.data_root).check("train" if cfg.split == "all" else cfg.split, labels=False)
    device_type = _device_type(cfg)
    model = load_dino(cfg.dino_model, cfg.weights, cfg.input_size, dynamic=True)
    failed: dict[str, dict[str, str]] = {}
    with WriterLock(resolve(cfg.cache), force=cfg.force_unlock) as lease:
        jobs, skipped = plan(cfg, lease.token, model, device_type)
        total = sum(len(j.ids) for j in jobs)
        if skipped:
            log.info("resuming %s: %d shard(s) already done, %d to go", cfg.cache, skipped, len(jobs))

        def report(image_id: str, message: str) -> None:
            log.warning("skipped corrupt image %s", message)

        start = time.perf_counter()
        with console.progress(total, desc=f"precompute {cfg.dataset}", unit="img", enabled=progress) as bar:
            if cfg.scheduler:
                results = _run_distributed(cfg.scheduler, jobs, bar, report)
            else:
                if jobs:
                    _extractor(jobs[0], _device(jobs[0]), model)  # reuse the DINO loaded above
                results = _run_local(jobs, bar, report)
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


def _client(address: str):
    from distributed import Client

    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise OCZSSError(f"--scheduler {address}: cannot reach a dask scheduler there ({e})") from e


def _run_distributed(address: str, jobs: list[ShardJob], bar, report) -> list[ShardResult]:
    from distributed import as_completed

    results = []
    with _client(address) as client:
        futures = client.map(run_shard, jobs, pure=False)
        for future in as_completed(futures):
            r = future.result()
            for image_id, reason in r.failed.items():
                report(image_id, reason)
            bar.update(r.images)
            results.append(r)
    return results
