"""The mask cache on disk: a Zarr v3 hierarchy with sharded label arrays and per-shard completion records.

    <cache>/                      root group, attrs["oczss"] = metadata (cache/schema.py)
      <dataset>/<split>/          attrs["oczss"] = dataset, split, data_root, num_images, ...
        ids          str   [N]            image ids, the row order
        labels_k{K}  uint8 [N, S, S]      cluster labels; inner chunk = 1 image, shard = shard_size images
        records      str   [num_shards]   one JSON completion record per shard (chunk = 1 record = 1 object)

A shard's record is written only after every labels_k{K} shard object is written and, on a local disk,
fsynced: a record present means its rows are durable. The record lists the shard's failed images with the
reason and the sha256 of each K's labels, which `oczss cache verify` checks against the data. Rows of
failed images stay 0 and count as not done.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import FsspecStore, LocalStore

from oczss.cache.schema import SCHEMA_VERSION, CacheParams, check_params
from oczss.errors import OCZSSError

MISSING, DONE, FAILED = 0, 1, 2
COMPRESSOR = ZstdCodec(level=9)


def default_cache_url() -> str:
    return os.environ.get("OCZSS_CACHE", "oczss-cache.zarr")


def _store(url: str, read_only: bool):
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" not in url:
        if read_only and not (Path(url) / "zarr.json").exists():
            raise OCZSSError(f"no mask cache at {url}: run `oczss precompute --cache {url} ...` first")
        return LocalStore(url, read_only=read_only)
    return FsspecStore.from_url(url, read_only=read_only)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class MaskCache:
    """A whole cache: parameters and the (dataset, split) groups it holds."""

    def __init__(self, url: str, root: zarr.Group):
        self.url, self.root = url, root
        meta = dict(root.attrs).get("oczss")
        if not meta:
            raise OCZSSError(f"{url} is a Zarr store but not an oczss mask cache (no oczss metadata)")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise OCZSSError(f"cache {url} has schema version {meta.get('schema_version')}, this oczss reads "
                             f"{SCHEMA_VERSION}; rebuild it with `oczss precompute`")
        self.meta = meta
        self.params = CacheParams(**meta["params"])

    @classmethod
    def open(cls, url: str, writable: bool = False) -> "MaskCache":
        try:
            root = zarr.open_group(store=_store(url, read_only=not writable), mode="r+" if writable else "r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
            raise OCZSSError(f"no mask cache at {url}: run `oczss precompute --cache {url} ...` first") from e
        return cls(url, root)

    @classmethod
    def create_or_open(cls, url: str, params: CacheParams, random_weights: bool) -> "MaskCache":
        """Open the cache at `url` for writing, creating it if absent; refuse other parameters."""
        root = zarr.open_group(store=_store(url, read_only=False), mode="a")
        if "oczss" not in root.attrs:
            if len(list(root.keys())):
                raise OCZSSError(f"{url} already holds a Zarr hierarchy that is not an oczss cache")
            root.attrs["oczss"] = {"schema_version": SCHEMA_VERSION, "params": params.to_dict(),
                                   "random_weights": random_weights, "created": _now(),
                                   "oczss_version": importlib.metadata.version("oczss")}
        cache = cls(url, root)
        check_params(url, cache.params, params)
        return cache

    @property
    def random_weights(self) -> bool:
        return bool(self.meta.get("random_weights"))

    def splits(self) -> list[tuple[str, str]]:
        """(dataset, split) pairs present, sorted."""
        out = []
        for name, group in self.root.groups():
            out.extend((name, split) for split, _ in group.groups())
        return sorted(out)

    def split(self, dataset: str, split: str) -> "SplitCache":
        path = f"{dataset}/{split}"
        if (dataset, split) not in self.splits():
            have = ", ".join(f"{d}/{s}" for d, s in self.splits()) or "nothing yet"
            raise OCZSSError(f"cache {self.url} has no {path} (it holds {have}); run "
                             f"`oczss precompute --dataset {dataset} --split {split} --cache {self.url}`")
        return SplitCache(self, self.root[path])

    def require_split(self, dataset: str, split: str, ids: list[str], data_root: str) -> "SplitCache":
        """The group for (dataset, split), created with its arrays if absent; refused if its ids differ."""
        path = f"{dataset}/{split}"
        if (dataset, split) in self.splits():
            sc = SplitCache(self, self.root[path])
            if sc.ids != ids:
                raise OCZSSError(f"cache {self.url} holds {path} for {sc.n} images that differ from the "
                                 f"{len(ids)} images now at {data_root}; use a new --cache for this dataset copy")
            return sc
        p, n = self.params, len(ids)
        group = self.root.require_group(path)
        group.create_array("ids", shape=(n,), dtype=str, chunks=(max(n, 1),))[:] = np.array(ids, dtype=object)
        for k in p.ks:
            group.create_array(f"labels_k{k}", shape=(n, p.grid, p.grid), dtype="uint8",
                               chunks=(1, p.grid, p.grid), shards=(p.shard_size, p.grid, p.grid),
                               compressors=COMPRESSOR, fill_value=0)
        num_shards = -(-n // p.shard_size)
        group.create_array("records", shape=(num_shards,), dtype=str, chunks=(1,))
        group.attrs["oczss"] = {"dataset": dataset, "split": split, "data_root": str(data_root), "num_images": n,
                                "num_shards": num_shards, "created": _now()}
        return SplitCache(self, group)


class SplitCache:
    """One (dataset, split): ids, labels per K, shard records."""

    def __init__(self, cache: MaskCache, group: zarr.Group):
        self.cache, self.group = cache, group
        self.meta = dict(group.attrs)["oczss"]
        self.ids: list[str] = [str(i) for i in group["ids"][:]] if self.meta["num_images"] else []
        self.n = len(self.ids)
        self.shard_size = cache.params.shard_size
        self.num_shards = self.meta["num_shards"]

    @property
    def name(self) -> str:
        return f"{self.meta['dataset']}/{self.meta['split']}"

    def rows(self, shard: int) -> tuple[int, int]:
        return shard * self.shard_size, min((shard + 1) * self.shard_size, self.n)

    def labels(self, k: int) -> zarr.Array:
        if k not in self.cache.params.ks:
            raise OCZSSError(f"cache {self.cache.url} has no K={k} labels (it has K in "
                             f"{','.join(map(str, self.cache.params.ks))}); rerun precompute with --ks including {k} "
                             f"into a new cache")
        return self.group[f"labels_k{k}"]

    def records(self) -> list[dict | None]:
        """Completion record per shard (None where the shard is not done)."""
        if not self.num_shards:
            return []
        return [json.loads(r) if r else None for r in self.group["records"][:]]

    def status(self, records: list[dict | None] | None = None) -> np.ndarray:
        """uint8 [N]: MISSING (shard not done), DONE, or FAILED per row (from `records` if already read)."""
        out = np.full(self.n, MISSING, np.uint8)
        for shard, rec in enumerate(self.records() if records is None else records):
            if rec is not None:
                a, b = self.rows(shard)
                out[a:b] = DONE
                for image_id in rec["failed"]:
                    out[self.row(image_id)] = FAILED
        return out

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """image id -> row."""
        return {image_id: i for i, image_id in enumerate(self.ids)}

    def row(self, image_id: str) -> int:
        if image_id not in self.index:
            raise OCZSSError(f"image {image_id!r} is not in cache {self.cache.url} {self.name}")
        return self.index[image_id]

    def write_shard(self, shard: int, labels: dict[int, np.ndarray], failed: dict[str, str]) -> None:
        """Write a shard's labels (uint8 [rows, S, S] per K; failed rows zero), make them durable, then its record."""
        a, b = self.rows(shard)
        digests = {}
        for k in self.cache.params.ks:
            arr = np.ascontiguousarray(labels[k], dtype=np.uint8)
            if arr.shape != (b - a, self.cache.params.grid, self.cache.params.grid):
                raise ValueError(f"shard {shard} K={k}: labels {arr.shape}, expected {(b - a,) + (self.cache.params.grid,) * 2}")
            self.labels(k)[a:b] = arr
            digests[str(k)] = hashlib.sha256(arr.tobytes()).hexdigest()
        self._sync(shard)
        record = {"shard": shard, "rows": [a, b], "failed": failed, "sha256": digests, "written": _now()}
        self.group["records"][shard] = json.dumps(record, sort_keys=True)

    def _sync(self, shard: int) -> None:
        """fsync the shard objects on a local disk (object stores acknowledge a PUT once it is durable)."""
        store = self.group.store
        if not isinstance(store, LocalStore):
            return
        for k in self.cache.params.ks:
            path = Path(store.root) / self.group.path / f"labels_k{k}" / "c" / str(shard) / "0" / "0"
            for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY)):
                fd = os.open(target, flags)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
