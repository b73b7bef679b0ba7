"""`oczss cache info`: what a cache holds, how complete it is, its size, and cluster-size statistics.

Cluster sizes are computed with dask over every done image (one task per shard): per (image, cluster) pair
the share of the S x S grid the cluster covers; reported as the share of empty clusters and quantiles of the
non-empty sizes.
"""

from __future__ import annotations

import numpy as np

from oczss.cache.store import DONE, FAILED, MISSING, MaskCache, SplitCache

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _counts(block: np.ndarray, k: int) -> np.ndarray:
    """uint8 [n, S, S] -> int64 [n, k] pixels per cluster."""
    flat = block.reshape(len(block), -1).astype(np.int64)
    offsets = np.arange(len(block))[:, None] * k
    return np.bincount((flat + offsets).ravel(), minlength=len(block) * k).reshape(len(block), k)


def cluster_stats(sc: SplitCache, k: int, done: np.ndarray) -> dict:
    """Empty-cluster share and size quantiles (share of the grid) over the rows where `done` (bool [N]) holds,
    computed with dask."""
    import dask.array as da

    if not done.any():
        return {"images": 0}
    params = sc.cache.params
    grid = params.grid
    labels = da.from_zarr(sc.labels(k), chunks=(params.shard_size, grid, grid))
    counts = labels.map_blocks(_counts, k, dtype=np.int64, chunks=(labels.chunks[0], (k,)), drop_axis=2)
    counts = counts[np.flatnonzero(done)].compute(scheduler="threads")
    sizes = counts / float(grid * grid)
    nonempty = sizes[sizes > 0]
    return {"images": int(done.sum()), "empty_share": float((counts == 0).mean()),
            "size_quantiles": {f"p{int(q * 100)}": float(np.quantile(nonempty, q)) for q in QUANTILES}}


def cache_info(url: str) -> dict:
    """Everything `oczss cache info` shows, as a JSON-ready dict."""
    cache = MaskCache.open(url)
    out = {"cache": url, "params": cache.params.to_dict(), "random_weights": cache.random_weights,
           "created": cache.meta.get("created"), "oczss_version": cache.meta.get("oczss_version"), "splits": []}
    for dataset, split in cache.splits():
        sc = cache.split(dataset, split)
        records = sc.records()
        status = sc.status(records)
        nbytes = sum(a.nbytes_stored() for _, a in sc.group.arrays())
        entry = {"dataset": dataset, "split": split, "data_root": sc.meta.get("data_root"), "images": sc.n,
                 "done": int((status == DONE).sum()), "missing": int((status == MISSING).sum()),
                 "failed": int((status == FAILED).sum()),
                 "shards_done": sum(r is not None for r in records), "shards": sc.num_shards,
                 "bytes": int(nbytes), "bytes_per_image": nbytes / max(int((status != MISSING).sum()), 1),
                 "failed_images": {i: why for r in records if r for i, why in r["failed"].items()},
                 "clusters": {str(k): cluster_stats(sc, k, status == DONE) for k in cache.params.ks}}
        out["splits"].append(entry)
    return out
