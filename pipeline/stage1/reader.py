"""Stage 1's outputs for training: `open_source` reads one (dataset, split) of a cache made by a given source.

    rows = open_source(cache_url, dataset, split, "clip-kmeans")
    rows.ids                     the split's image ids whose rows are done (computed, not failed), in row order
    rows.has(image_id)           whether `image_id` is one of them
    rows.get(image_id)           {array name: numpy array of the image} (below); None if its shard is damaged and
                                 skip_damaged asks to skip it (else that is an error naming the shard)
    rows.params                  the source's parameters (SourceParams.values, or CacheParams.to_dict() for dino-fps)
    rows.random_weights          whether the cache was made with random weights

Per image, by source (cache/schema.py; the sources' docstrings in pipeline/stage1/sources/):
    dino-fps       labels_k{K} uint8 [S, S]; features float16 [T, L, D] and feature_shape uint16 [2] (if stored)
    clip-kmeans    candidate_labels uint8 [S, S] (255 = none); candidate_embeddings float16 [M, C] (zero rows past
                   the count); candidate_counts uint8 [] (a 0-d array)
    dinov2-tokens  cls float16 [C]; patches float16 [T*T, C] (row-major, T = R / patch)
Each shard is read whole on first use in a process and checked against its completion record (cache/reader.py);
the reader is picklable (a DataLoader worker's copy opens the cache again). A cache of another source, a missing
split, or parameters changed after the shards were written are refused in one line when it opens.
"""

from __future__ import annotations

import numpy as np

from oczss.cache.integrity import unbound
from oczss.cache.reader import ShardReader
from oczss.cache.split import DONE
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError


class SourceRows(ShardReader):
    """The done rows of one (dataset, split) of a cache (module docstring)."""

    def __init__(self, url: str, dataset: str, split: str, names: tuple[str, ...], ids: list[str], params: dict,
                 random_weights: bool, skip_damaged: bool = False):
        super().__init__(url, dataset, split, names, skip_damaged)
        self.ids, self.params, self.random_weights = ids, params, random_weights
        self._done = frozenset(ids)

    def has(self, image_id: str) -> bool:
        return image_id in self._done

    def get(self, image_id: str) -> dict[str, np.ndarray] | None:
        if image_id not in self._done:
            raise OCZSSError(f"image {image_id!r} has no done row in cache {self.url} {self.dataset}/{self.split}")
        shard, i = self.locate(image_id)
        return None if shard is None else {name: shard[name][i].copy() for name in self.names}


def open_source(url: str, dataset: str, split: str, source: str, skip_damaged: bool = False) -> SourceRows:
    """The reader of (dataset, split) in the cache at `url`, made by `source` (dino-fps, clip-kmeans or
    dinov2-tokens); `dataset` as the cache names it (a base dataset, or coco-captions)."""
    cache = MaskCache.open(url)
    cache.expect(source, f"open_source(..., {source!r})")
    sc = cache.split(dataset, split)
    records = sc.records()
    changed = unbound(records, sc.bound(features=False))
    if changed:
        raise OCZSSError(f"cache {url} {sc.name}: {' and '.join(changed)} changed after its shards were written; "
                         f"run `oczss cache verify --cache {url}`")
    status = sc.status(records)
    ids = [i for i, s in zip(sc.ids, status) if s == DONE]
    params = cache.params.to_dict()
    values = {k: v for k, v in params.items() if k != "arrays"}
    return SourceRows(url, dataset, split, tuple(cache.params.layouts()), ids, values, cache.random_weights,
                      skip_damaged)
