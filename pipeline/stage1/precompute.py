"""Stage 1: a source's frozen model over every image -> the sharded cache, resumable, on dask.

The source (pipeline/stage1/sources/: dino-fps, DINO features -> FPS-Voronoi cluster maps; clip-kmeans, CLIP's
K-Means pseudo masks and their embeddings; dinov2-tokens, DINOv2's tokens) decides what is computed; everything
here is shared. The unit of work is one shard (pipeline/stage1/shards.py `run_shard`): decode its images on a thread
pool, run the source's model batch by batch under a per-device lock, write the shard and then its completion
record. Two shard tasks per device run at once, so one shard's images decode while the other's batches run through
the model. Locally the tasks run on dask's threaded scheduler; with `scheduler=ADDRESS` the same tasks go to a
`dask.distributed` cluster (one worker per GPU, each loading its own model and checking its fingerprint against
the cache's).

The client does every check before it writes a byte: the dataset and every image file exist (a missing file is an
error of the run, not a corrupt image), paths and the cache URL are made absolute (workers run in other folders),
the scheduler answers, the device type is fixed for every worker (`auto` is resolved on the workers' own
machines), the source's settings fit its model, and an existing cache's source and parameters match. Then the
cache's writer lease is taken (cache/lock.py), so a second run on the same cache is refused before it writes
anything, and the source's per-dataset state (dino-fps: the compact features' basis) is prepared before the cache
is created. Shards that have a record are skipped, so an interrupted run continues where it stopped;
`retry_failed` recomputes the shards that recorded failed images.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import torch

from oczss.cache.location import resolve
from oczss.cache.lock import WriterLock
from oczss.cache.schema import CacheParams, SourceParams, check_params
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.pipeline import console
from oczss.pipeline.runtime import device_type, resolve_device
from oczss.pipeline.stage1.config import PrecomputeConfig
from oczss.pipeline.stage1.inputs import Images, dataset_images
from oczss.pipeline.stage1.shards import ShardJob, ShardResult, run_shard, worker_device, worker_model
from oczss.pipeline.stage1.sources import get_source

log = logging.getLogger(__name__)
TASKS_PER_DEVICE = 2
FIT_IMAGES = 64  # the first images handed to a source's `prepare` (dino-fps fits its PCA basis on their tokens)


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


def check_inputs(cfg: PrecomputeConfig) -> Images:
    """The run's images per split (pipeline/stage1/inputs.py), refused if the dataset or a listed file is missing."""
    return dataset_images(cfg.dataset, cfg.data_root, ["train", "val"] if cfg.split == "all" else [cfg.split])


def cache_params(cfg: PrecomputeConfig, model, device_type: str) -> CacheParams | SourceParams:
    """The cache parameters of this run (the source's `params`; settings its model cannot take are refused)."""
    return get_source(cfg.masks).params(cfg, model, device_type)


def plan(cfg: PrecomputeConfig, lease: str, model, params: CacheParams | SourceParams,
         inputs: Images) -> tuple[list[ShardJob], int]:
    """Under the lease: prepare the source's per-dataset state (dino-fps: fit a new dataset's basis), then open or
    create the cache and its splits; return the pending shard jobs and the count of shards already done."""
    source, url = get_source(cfg.masks), resolve(cfg.cache)
    splits = list(inputs.ids)
    first = [inputs.path(splits[0], i) for i in inputs.ids[splits[0]][:FIT_IMAGES]]
    # before the cache is created: a preparation that fails leaves nothing behind
    extra = source.prepare(cfg, model, params, MaskCache.existing(url), first)
    cache = MaskCache.create_or_open(url, params, random_weights=cfg.weights == "random")
    source.created(cache, cfg.dataset, extra)
    weights = cfg.weights if cfg.weights in ("pretrained", "random") else resolve(cfg.weights)
    jobs, skipped = [], 0
    for split in splits:
        ids = inputs.ids[split]
        sc = cache.require_split(cfg.dataset, split, ids, str(inputs.root))
        for shard, record in enumerate(sc.records()):
            if record is not None and not (cfg.retry_failed and record["failed"]):
                skipped += 1
                continue
            a, b = sc.rows(shard)
            shard_ids = tuple(ids[a:b])
            jobs.append(ShardJob(url, cfg.dataset, split, shard, shard_ids,
                                 tuple(str(inputs.path(split, i).resolve()) for i in shard_ids), params, weights,
                                 cfg.device, cfg.batch_size, cfg.decode_threads, lease, extra))
    return jobs, skipped


def precompute(cfg: PrecomputeConfig, progress: bool = True) -> PrecomputeSummary:
    """Run Stage 1 for `cfg`; returns what was done. Safe to interrupt and run again."""
    inputs = check_inputs(cfg)
    url = resolve(cfg.cache)
    failed: dict[str, dict[str, str]] = {}
    with _scheduler(cfg.scheduler) as client:  # a dead address is refused before anything is written
        device_type = _device_type(cfg, client)
        model = get_source(cfg.masks).load(cfg)
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
            with console.progress(total, desc=f"precompute {cfg.masks} {cfg.dataset}", unit="img", enabled=progress) as bar:
                if client is not None:
                    results = _run_distributed(client, jobs, bar, report)
                else:
                    if jobs:
                        worker_model(jobs[0], worker_device(jobs[0]), model)  # reuse the model loaded above
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
