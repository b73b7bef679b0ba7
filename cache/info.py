"""`oczss cache info`: what a cache holds, how complete and how sound it is, its size, cluster-size statistics
(dino-fps; a cache of another source gets every check and count but no cluster statistics).

Every done shard is read once, with dask (one task per shard): it is checked against its record (cache/integrity)
and its per-(image, cluster) pixel counts are taken. Damaged shards are reported, never a traceback, and left
out of the statistics: the share of empty clusters and quantiles of the non-empty cluster sizes (share of the
S x S map). Image and shard counts that disagree with the split's metadata are reported with them.
"""

from __future__ import annotations

import numpy as np

from oczss.cache.integrity import count_problems
from oczss.cache.schema import CacheParams
from oczss.cache.split import DONE, FAILED, MISSING, SplitCache, SplitNotCreated, array_layouts
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _counts(labels: np.ndarray, k: int) -> np.ndarray:
    """uint8 [n, S, S] (values < k) -> int64 [n, k] pixels per cluster."""
    flat = labels.reshape(len(labels), -1).astype(np.int64)
    offsets = np.arange(len(labels))[:, None] * k
    return np.bincount((flat + offsets).ravel(), minlength=len(labels) * k).reshape(len(labels), k)


def _ks(cache: MaskCache) -> tuple[int, ...]:
    """The cluster counts whose statistics `info` gives: dino-fps's K list, none for another source."""
    return cache.params.ks if isinstance(cache.params, CacheParams) else ()


def _shard(sc: SplitCache, shard: int, record: dict, done: np.ndarray) -> tuple[dict, list[str]]:
    """({k: int64 [done rows, k] counts}, problems) for one shard; no counts if it is damaged."""
    data, problems = sc.read_shard(shard, list(array_layouts(sc.cache.params)), record)
    if problems:
        return {}, problems
    a, b = sc.rows(shard)
    return {k: _counts(data[f"labels_k{k}"][done[a:b]], k) for k in _ks(sc.cache)}, []


def split_report(sc: SplitCache, records: list[dict | None], status: np.ndarray, on_shard=None) -> dict:
    """Cluster statistics per K over the done rows of sound shards, and the damaged shards' problems."""
    import dask

    from dask.callbacks import Callback

    class Tick(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if on_shard and isinstance(result, tuple):
                on_shard()

    done = status == DONE
    tasks = [dask.delayed(_shard)(sc, s, r, done) for s, r in enumerate(records) if r is not None]
    with Tick():
        results = dask.compute(*tasks, scheduler="threads")
    problems = [p for _, found in results for p in found]
    stats = {}
    for k in _ks(sc.cache):
        grid = sc.cache.params.grid
        counts = [c[k] for c, _ in results if c]
        counts = np.concatenate(counts) if counts else np.zeros((0, k), np.int64)
        if not len(counts):
            stats[str(k)] = {"images": 0}
            continue
        sizes = counts / float(grid * grid)
        nonempty = sizes[sizes > 0]
        stats[str(k)] = {"images": int(len(counts)), "empty_share": float((counts == 0).mean()),
                         "size_quantiles": {f"p{int(q * 100)}": float(np.quantile(nonempty, q)) for q in QUANTILES}}
    return {"clusters": stats, "damaged": problems}


def cache_info(url: str, on_shard=None) -> dict:
    """Everything `oczss cache info` shows, as a JSON-ready dict."""
    cache = MaskCache.open(url)
    out = {"cache": url, "source": cache.source, "params": cache.params.to_dict(), "random_weights": cache.random_weights,
           "created": cache.meta.get("created"), "oczss_version": cache.meta.get("oczss_version"), "splits": []}
    for dataset, split in cache.splits():
        try:
            sc = cache.split(dataset, split)
            records = sc.records()
        except SplitNotCreated as e:
            out["splits"].append({"dataset": dataset, "split": split, "unfinished": str(e)})
            continue
        except OCZSSError as e:
            out["splits"].append({"dataset": dataset, "split": split, "error": str(e)})
            continue
        status = sc.status(records)
        try:
            nbytes = sum(a.nbytes_stored() for _, a in sc.group.arrays())
        except (ValueError, KeyError, TypeError) as e:  # a garbled array zarr.json
            out["splits"].append({"dataset": dataset, "split": split,
                                  "error": f"an array's zarr.json is damaged ({type(e).__name__}: {e})"})
            continue
        entry = {"dataset": dataset, "split": split, "data_root": sc.meta.get("data_root"), "images": sc.n,
                 "done": int((status == DONE).sum()), "missing": int((status == MISSING).sum()),
                 "failed": int((status == FAILED).sum()),
                 "shards_done": sum(r is not None for r in records), "shards": sc.num_shards,
                 "bytes": int(nbytes), "bytes_per_image": nbytes / max(int((status != MISSING).sum()), 1),
                 "failed_images": {i: why for r in records if r for i, why in r["failed"].items()},
                 **split_report(sc, records, status, on_shard)}
        entry["damaged"] = count_problems(sc.name, sc.meta, sc.n, sc.shard_size, records) + entry["damaged"]
        out["splits"].append(entry)
    return out
