"""One (dataset, split) of the mask cache: its ids, per-image arrays and per-shard completion records; reading a
shard checked against its record (cache/integrity.py), writing a shard durably and then its record.

The split's group (<cache>/<dataset>/<split>/, cache/store.py) holds its metadata under attrs["oczss"]: dataset,
split, data_root, num_images, num_shards, created. A group without metadata was being created when its run stopped:
`SplitNotCreated`, which precompute's next run creates again.
"""

from __future__ import annotations

import datetime
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr
from zarr.storage import LocalStore

from oczss.cache.integrity import digest, shard_problems
from oczss.cache.schema import RECORD_BYTES, CacheParams, SourceParams, decode_ids, decode_record, encode_record, ids_digest
from oczss.errors import OCZSSError

if TYPE_CHECKING:
    from oczss.cache.store import MaskCache

MISSING, DONE, FAILED = 0, 1, 2
WRITE_ALL = {"write_empty_chunks": True}  # every shard object exists, all-zero ones included


def array_layouts(params: CacheParams | SourceParams) -> dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]]:
    """{array name: (per-image shape, dtype, dimension names)} of every per-image array a cache of `params` has."""
    return params.layouts()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class SplitNotCreated(OCZSSError):
    """A split group without metadata: its creation was interrupted; precompute creates it again."""


def damaged(url: str, where: str, error: Exception) -> OCZSSError:
    return OCZSSError(f"cache {url}: {where} is damaged ({type(error).__name__}: {str(error)[:160]}); "
                      f"run `oczss cache verify --cache {url}`, or rebuild the cache")


class SplitCache:
    """One (dataset, split): ids, the source's per-image arrays (cluster maps per K, ...), shard records."""

    def __init__(self, cache: MaskCache, group: zarr.Group):
        self.cache, self.group = cache, group
        try:
            attrs = dict(group.attrs)
            if "oczss" not in attrs:
                raise SplitNotCreated(
                    f"cache {cache.url}: {group.path} was still being created when its precompute stopped (nothing "
                    f"of it was computed); run `oczss precompute --split {group.path.rsplit('/', 1)[-1]} "
                    f"--cache {cache.url} ...` again to create it")
            self.meta = attrs["oczss"]
            self.ids: list[str] = decode_ids(group["ids"][:]) if self.meta["num_images"] else []
            self.num_shards = self.meta["num_shards"]
        except (KeyError, ValueError, TypeError) as e:
            raise damaged(cache.url, f"{group.path} (ids or metadata)", e) from None
        self.n = len(self.ids)
        self.shard_size = cache.params.shard_size

    @property
    def name(self) -> str:
        return f"{self.meta['dataset']}/{self.meta['split']}"

    def rows(self, shard: int) -> tuple[int, int]:
        return shard * self.shard_size, min((shard + 1) * self.shard_size, self.n)

    def shard_of(self, row: int) -> int:
        return row // self.shard_size

    def labels(self, k: int) -> zarr.Array:
        if k not in self.cache.params.ks:
            raise OCZSSError(f"cache {self.cache.url} has no K={k} labels (it has K in "
                             f"{','.join(map(str, self.cache.params.ks))}); rerun precompute with --ks including {k} "
                             f"into a new cache")
        return self.array(f"labels_k{k}")

    def array(self, name: str) -> zarr.Array:
        """One of the split's per-image arrays (`labels_k{K}`, `features`, or another source's, cache/schema.py)."""
        try:
            return self.group[name]
        except (KeyError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise damaged(self.cache.url, f"{self.group.path}/{name}/zarr.json", e) from None

    def records(self) -> list[dict | None]:
        """Completion record per shard (None where the shard is not done); damaged records raise."""
        rows = self.raw_records()
        out = []
        for shard, row in enumerate(rows):
            try:
                out.append(decode_record(row))
            except ValueError as e:
                raise damaged(self.cache.url, f"{self.name} shard {shard}'s completion record", e) from None
        return out

    def raw_records(self) -> np.ndarray:
        """uint8 [shards, RECORD_BYTES] as stored."""
        if not self.num_shards:
            return np.zeros((0, RECORD_BYTES), np.uint8)
        try:
            return np.asarray(self.group["records"][:])
        except Exception as e:  # noqa: BLE001 - a garbled records object fails in the codec
            raise damaged(self.cache.url, f"{self.name}/records", e) from None

    def status(self, records: list[dict | None] | None = None) -> np.ndarray:
        """uint8 [N]: MISSING (shard not done), DONE, or FAILED per row (from `records` if already read)."""
        out = np.full(self.n, MISSING, np.uint8)
        for shard, rec in enumerate(self.records() if records is None else records):
            if rec is not None:
                a, b = self.rows(shard)
                out[a:b] = DONE
                for image_id in rec["failed"]:
                    if image_id in self.index:
                        out[self.index[image_id]] = FAILED
        return out

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """image id -> row."""
        return {image_id: i for i, image_id in enumerate(self.ids)}

    def row(self, image_id: str) -> int:
        if image_id not in self.index:
            raise OCZSSError(f"image {image_id!r} is not in cache {self.cache.url} {self.name}")
        return self.index[image_id]

    def read_shard(self, shard: int, names, record: dict | None) -> tuple[dict, list[str]]:
        """The shard's rows of the arrays `names` ({name: [rows, ...]}) and every problem found checking them against
        `record` (cache/integrity.py); an array whose data cannot be read is absent from the dict."""
        a, b = self.rows(shard)
        layouts = array_layouts(self.cache.params)
        data, errors = {}, {}
        for name in names:
            try:
                data[name] = np.asarray(self.array(name)[a:b])
            except Exception as e:  # noqa: BLE001 - a truncated or garbled shard object fails to decode
                errors[name] = e
        shapes = {name: layouts[name][0] for name in names if name in layouts}
        problems = shard_problems(shapes, self.ids[a:b], (a, b), shard, record, data, errors, set(layouts),
                                  self.bound("features" in names))
        return data, problems

    def bound(self, features: bool) -> dict[str, tuple[str | None, str]]:
        """{record key: (the sha256 it must hold, what that is)}: the parameters, and with `features` the basis."""
        bound = {"params_sha256": (self.cache.params.digest(), "the cache's parameters (its zarr.json)")}
        if features:
            bound["basis_sha256"] = (self.cache.basis_digest(self.meta["dataset"]),
                                     "the compact features' basis (feature_mean, feature_basis)")
        return bound

    def write_shard(self, shard: int, arrays: dict[str, np.ndarray], failed: dict[str, str],
                    before_commit=None) -> None:
        """Write a shard's rows of every array ({name: [rows, ...]}: labels_k{K} uint8 [rows, S, S], features
        float16 [rows, T, L, D], feature_shape uint16 [rows, 2], or another source's arrays; failed rows zero), make
        them durable, then its record.

        `before_commit()` runs between the two (the writer's lease check)."""
        a, b = self.rows(shard)
        digests = {}
        for name, (shape, dtype, _) in array_layouts(self.cache.params).items():
            arr = np.ascontiguousarray(arrays[name], dtype=dtype)
            if arr.shape != (b - a, *shape):
                raise ValueError(f"shard {shard} {name}: {arr.shape}, expected {(b - a, *shape)}")
            self.array(name).with_config(WRITE_ALL)[a:b] = arr
            digests[name] = digest(arr)
        self._sync(shard)
        if before_commit is not None:
            before_commit()
        record = {"shard": shard, "rows": [a, b], "failed": failed, "sha256": digests,
                  "ids_sha256": ids_digest(self.ids[a:b]), "params_sha256": self.cache.params.digest(),
                  "written": now()}
        if "features" in arrays:
            record["basis_sha256"] = self.cache.basis_digest(self.meta["dataset"])
        self.group["records"][shard] = encode_record(record)

    def _sync(self, shard: int) -> None:
        """fsync the shard objects on a local disk (object stores acknowledge a PUT once it is durable)."""
        store = self.group.store
        if not isinstance(store, LocalStore):
            return
        for name, (shape, _, _) in array_layouts(self.cache.params).items():
            path = Path(store.root) / self.group.path / name / "c" / str(shard) / "/".join("0" * len(shape))
            for target in (path, path.parent):
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

