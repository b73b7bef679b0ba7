"""Cluster maps from the mask cache for Stage 2: checked shard by shard, the first time a process reads a shard.

Every reader of cluster labels goes through `ClusterMaps`: a shard is read whole on first use in a process and
checked against its completion record (cache/integrity.py: sha256 of its labels and ids, values < K). A damaged
shard is an error naming it and `oczss cache verify`, unless `skip_damaged` asks to skip its images (with one
warning per shard). Checked shards stay in a small in-memory LRU, so most reads cost no decoding at all.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from oczss.cache.store import DONE, MaskCache
from oczss.errors import OCZSSError
from oczss.pipeline.data.datasets import Sample

log = logging.getLogger(__name__)
KEEP_SHARDS = 16


class ClusterMaps:
    """The S x S cluster maps of one (dataset, split) at one K, opened lazily in each process (picklable).

    `source`: the cache's parameters and random-weights flag (what a checkpoint records to redo the clustering).
    """

    def __init__(self, url: str, dataset: str, split: str, k: int, source: dict, skip_damaged: bool = False):
        self.url, self.dataset, self.split, self.k, self.source = url, dataset, split, k, source
        self.skip_damaged = skip_damaged
        self._sc = self._records = None
        self._shards: OrderedDict[int, np.ndarray] = OrderedDict()
        self._damaged: set[int] = set()

    def __getstate__(self):
        return {**self.__dict__, "_sc": None, "_records": None, "_shards": OrderedDict(), "_damaged": set()}

    def cluster_map(self, image_id: str) -> np.ndarray | None:
        """uint8 [S, S] for `image_id`; None if its shard is damaged and damaged shards are skipped."""
        if self._sc is None:
            self._sc = MaskCache.open(self.url).split(self.dataset, self.split)
            self._records = self._sc.records()
        row = self._sc.row(image_id)
        shard = self._sc.shard_of(row)
        if shard in self._damaged:
            return None
        if shard not in self._shards:
            data, problems = self._sc.read_shard(shard, [self.k], self._records[shard])
            if problems:
                where = f"cache {self.url} {self._sc.name}"
                if not self.skip_damaged:
                    raise OCZSSError(f"{where} is damaged: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                     if len(problems) > 1 else "") + f". Run `oczss cache verify --cache "
                                     f"{self.url}`, rebuild the shard, or pass --skip-damaged to skip its images")
                log.warning("%s: skipping the images of damaged shard %d: %s", where, shard, problems[0])
                self._damaged.add(shard)
                return None
            self._shards[shard] = data[self.k]
            if len(self._shards) > KEEP_SHARDS:
                self._shards.popitem(last=False)
        self._shards.move_to_end(shard)
        return self._shards[shard][row - self._sc.rows(shard)[0]]


def with_clusters(samples: list[Sample], url: str, dataset: str, split: str, k: int, min_grid: int = 1,
                  skip_damaged: bool = False) -> tuple[list[Sample], ClusterMaps, int]:
    """(samples with cluster maps, their ClusterMaps, how many were dropped).

    Refused before any work: a cache without this (dataset, split), without K = k, or whose grid is coarser
    than `min_grid` (the message says what to run). Samples whose rows are missing or failed are dropped; the
    caller decides whether that is acceptable.
    """
    cache = MaskCache.open(url)
    sc = cache.require(dataset, split, k, min_grid)
    status = sc.status()
    kept = [s for s in samples if s.image_id in sc.index and status[sc.index[s.image_id]] == DONE]
    if not kept:
        raise OCZSSError(f"no {dataset}/{split} sample has cluster labels in {url}; run `oczss precompute "
                         f"--dataset {dataset} --split {split} --ks {k} --cache {url}`")
    source = {**cache.params.to_dict(), "random_weights": cache.random_weights}
    return kept, ClusterMaps(url, dataset, split, k, source, skip_damaged), len(samples) - len(kept)
