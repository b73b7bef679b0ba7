"""Reading a split's per-image arrays for training: a shard at a time, each checked against its completion record.

`ShardReader` reads a shard whole on its first use in a process and checks it (cache/integrity.py: sha256 of its
arrays and ids, label values < K, the parameters it was written with). A damaged shard is an error naming it and
`oczss cache verify`, unless `skip_damaged` asks to skip its images (one warning per shard). Checked shards stay in
a small in-memory LRU. The reader is picklable: a copy (a DataLoader worker's) opens the cache again on first use.
Every reader of cached arrays goes through it (Stage 2's CachedMaps, Stage 1's `open_source`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError

log = logging.getLogger(__name__)
KEEP_SHARDS = 16


class ShardReader:
    """The arrays `names` of one (dataset, split) of the cache at `url`, by image id (`locate`). `prepare(data)`
    turns a checked shard's {name: [rows, ...]} into what is kept (a subclass's hook; the dict itself here)."""

    def __init__(self, url: str, dataset: str, split: str, names: tuple[str, ...], skip_damaged: bool = False):
        self.url, self.dataset, self.split, self.names = url, dataset, split, tuple(names)
        self.skip_damaged = skip_damaged
        self._sc = self._records = None
        self._shards: OrderedDict[int, object] = OrderedDict()
        self._damaged: set[int] = set()

    def __getstate__(self):
        return {**self.__dict__, "_sc": None, "_records": None, "_shards": OrderedDict(), "_damaged": set()}

    @property
    def split_cache(self):
        """The split (cache/split.py), opened on first use in this process."""
        if self._sc is None:
            self._sc = MaskCache.open(self.url).split(self.dataset, self.split)
            self._records = self._sc.records()
        return self._sc

    def prepare(self, data: dict):
        return data

    def locate(self, image_id: str) -> tuple[object | None, int]:
        """(the image's shard as `prepare` made it, the image's position in it); (None, -1) if the shard is damaged
        and damaged shards are skipped."""
        sc = self.split_cache
        row = sc.row(image_id)
        shard = sc.shard_of(row)
        if shard in self._damaged:
            return None, -1
        if shard not in self._shards:
            data, problems = sc.read_shard(shard, list(self.names), self._records[shard])
            if problems:
                where = f"cache {self.url} {sc.name}"
                if not self.skip_damaged:
                    raise OCZSSError(f"{where} is damaged: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                     if len(problems) > 1 else "") + f". Run `oczss cache verify --cache "
                                     f"{self.url}`, rebuild the shard, or pass --skip-damaged to skip its images")
                log.warning("%s: skipping the images of damaged shard %d: %s", where, shard, problems[0])
                self._damaged.add(shard)
                return None, -1
            self._shards[shard] = self.prepare(data)
            if len(self._shards) > KEEP_SHARDS:
                self._shards.popitem(last=False)
        self._shards.move_to_end(shard)
        return self._shards[shard], row - sc.rows(shard)[0]
