"""Stage 1: DINO features -> FPS-Voronoi cluster maps -> the sharded mask cache, resumable, on dask.

The unit of work is one shard (pipeline/stage1/shards.py `run_shard`): decode its images on a thread pool, run DINO
and the clustering batch by batch under a per-device lock, write the shard and then its completion record. Two shard tasks per
device run at once, so one shard's images decode while the other's batches run through DINO. Locally the tasks
run on dask's threaded scheduler; with `scheduler=ADDRESS` the same tasks go to a `dask.distributed` cluster (one
worker per GPU, each loading its own DINO and checking its fingerprint against the cache's).

The client does every check before it writes a byte: the dataset and every image file exist (a missing file is an
error of the run, not a corrupt image), paths and the cache URL are made absolute (workers run in other folders),
the scheduler answers, the device type is fixed for every worker (`auto` is resolved on the workers' own
machines), the feature width fits the DINO, and an existing cache's parameters match. Then the cache's writer lease
is taken (cache/lock.py), so a second run on the same cache is refused before it writes anything, and a new
dataset's compact-features basis is fitted before the cache is created. Shards
that have a record are skipped, so an interrupted run continues where it stopped; `retry_failed` recomputes the
shards that recorded failed images.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from oczss.cache.location import resolve
from oczss.cache.lock import WriterLock
from oczss.cache.schema import CacheParams, check_params
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.model.compaction import fit_basis
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline import console
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.images import ImageError
from oczss.pipeline.runtime import device_type, resolve_device
from oczss.pipeline.stage1.config import PrecomputeConfig
from oczss.pipeline.stage1.tokens import MAX_ASPECT, load_input
from oczss.pipeline.stage1.shards import ShardJob, ShardResult, extractor, run_shard, worker_device

log = logging.getLogger(__name__)
TASKS_PER_DEVICE = 2
FIT_IMAGES = 64  # images whose DINO tokens fit a dataset's PCA basis


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


def _device_type(cfg: PrecomputeConfig, client) -> str:
    """The device type every worker computes on: this machine's, or the dask workers' (which must agree)."""
    if client is None:
        return resolve_device(cfg.device).type
    if cfg.device != "auto":
        return device_type(cfg.device)  # the workers' machines decide availability
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


def check_inputs(cfg: PrecomputeConfig) -> tuple[Dataset, list[str], dict[str, list[str]]]:
    """(dataset, splits, ids per split), refused if a listed image file does not exist."""
    dataset = Dataset(cfg.dataset, str(Path(cfg.data_root).resolve()) if cfg.data_root else None)
    splits = ["train", "val"] if cfg.split == "all" else [cfg.split]
    ids = {s: dataset.image_ids(s) for s in splits}
    missing = _missing_images(dataset, ids)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise OCZSSError(f"{len(missing)} image file(s) listed by the {cfg.dataset} splits do not exist: {shown}")
    return dataset, splits, ids


def cache_params(cfg: PrecomputeConfig, model: torch.nn.Module, device_type: str) -> CacheParams:
    """The cache parameters of this run; a feature width beyond the DINO's channels is refused."""
    if cfg.feature_dim > model.embed_dim:
        raise OCZSSError(f"--feature-dim {cfg.feature_dim} exceeds the {model.embed_dim} channels of {cfg.dino_model}")
    return CacheParams(dino_model=cfg.dino_model, fingerprint=fingerprint(model), input_size=cfg.input_size,
                       grid=cfg.grid, ks=tuple(sorted(set(cfg.ks))), seed=cfg.seed, device=device_type,
                       dtype="bfloat16" if device_type == "cuda" else "float32", shard_size=cfg.shard_size,
                       feature_dim=cfg.feature_dim, feature_grid=cfg.input_size // model.patch_embed.patch_size[0],
                       feature_long=MAX_ASPECT * cfg.input_size // model.patch_embed.patch_size[0])


def plan(cfg: PrecomputeConfig, lease: str, model: torch.nn.Module, params: CacheParams,
         inputs: tuple[Dataset, list[str], dict[str, list[str]]]) -> tuple[list[ShardJob], int]:
    """Under the lease: fit a new dataset's basis, then open or create the cache and its splits; return the
    pending shard jobs and the count of shards already done."""
    dataset, splits, ids = inputs
    url = resolve(cfg.cache)
    existing = MaskCache.existing(url)
    basis = existing.basis(cfg.dataset) if existing is not None and cfg.feature_dim else None
    fit = cfg.feature_dim and basis is None
    if fit:  # before the cache is created: a fit that fails leaves nothing behind
        paths = [dataset.image_path(splits[0], i) for i in ids[splits[0]][:FIT_IMAGES]]
        basis = fit_dataset_basis(model, paths, cfg, params.device)
    cache = MaskCache.create_or_open(url, params, random_weights=cfg.weights == "random")
    if fit:
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
    inputs = check_inputs(cfg)
    url = resolve(cfg.cache)
    failed: dict[str, dict[str, str]] = {}
    with _scheduler(cfg.scheduler) as client:  # a dead address is refused before anything is written
        device_type = _device_type(cfg, client)
        model = load_dino(cfg.dino_model, cfg.weights, cfg.input_size, dynamic=True)
        params = cache_params(cfg, model, device_type)
        existing = MaskCache.existing(url)
        if existing is not None:
            check_params(url, existing.params, params)
        with WriterLock(url, force=cfg.force_unlock) as lease:
            jobs, skipped = plan(cfg, lease.token, model, params, inputs)
            total = sum(len(j.ids) for j in jobs)
            if skipped:
                log.info("resuming %s: %d shard(s) already done, %d to go", cfg.cache, skipped, len(jobs))

            def report(image_id: str, message: str) -> None:
                log.warning("skipped corrupt image %s", message)

            start = time.perf_counter()
            with console.progress(total, desc=f"precompute {cfg.dataset}", unit="img", enabled=progress) as bar:
                if client is not None:
                    results = _run_distributed(client, jobs, bar, report)
                else:
                    if jobs:
                        extractor(jobs[0], worker_device(jobs[0]), model)  # reuse the DINO loaded above
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


@contextlib.contextmanager
def _scheduler(address: str | None):
    """A dask.distributed client for `address` for the whole run; None without one."""
    if not address:
        yield None
        return
    from distributed import Client

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise OCZSSError(f"--scheduler {address}: cannot reach a dask scheduler there ({e})") from e
    with client:
        yield client


def _run_distributed(client, jobs: list[ShardJob], bar, report) -> list[ShardResult]:
    from distributed import as_completed

    results = []
    futures = client.map(run_shard, jobs, pure=False)
    for future in as_completed(futures):
        r = future.result()
        for image_id, reason in r.failed.items():
            report(image_id, reason)
        bar.update(r.images)
        results.append(r)
    return results
