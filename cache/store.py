"""The mask cache on disk: a Zarr v3 hierarchy with sharded label arrays and per-shard completion records.

    <cache>/                      root group, attrs["oczss"] = metadata (cache/schema.py)
      <dataset>/<split>/          attrs["oczss"] = dataset, split, data_root, num_images, ...
        ids          uint8 [N, W]            image ids (UTF-8), the row order
        labels_k{K}  uint8 [N, S, S]         cluster maps; inner chunk = 1 image, shard = shard_size images
        features, feature_shape              compact DINO tokens at each image's aspect (cache/schema.py)
        records      uint8 [shards, 65536]   one JSON completion record per shard (chunk = 1 record = 1 object)
    <cache>.lock                  the writer's lease while a precompute runs (cache/lock.py)

A shard's record is written only after every labels_k{K} shard object is written and, on a local disk,
fsynced: a record present means its rows are durable. Every shard object exists on disk, even all-zero ones.
The record lists the shard's failed images with the reason, the sha256 of each K's labels and of the shard's
ids; `read_shard` checks all of it (cache/integrity.py). Rows of failed images stay 0 and count as not done.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from oczss.cache.integrity import digest, shard_problems
from oczss.cache.location import open_store, unreachable
from oczss.cache.schema import (RECORD_BYTES, SCHEMA_VERSION, CacheParams, check_params, decode_ids, decode_record,
                                encode_ids, encode_record, ids_digest)
from oczss.errors import OCZSSError

MISSING, DONE, FAILED = 0, 1, 2
COMPRESSOR = ZstdCodec(level=9)
WRITE_ALL = {"write_empty_chunks": True}  # every shard object exists, all-zero ones included


def array_layouts(params: CacheParams) -> dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]]:
    """{array name: (per-image shape, dtype, dimension names)} of every per-image array a cache of `params` has."""
    out = {f"labels_k{k}": ((params.grid, params.grid), "uint8", ("y", "x")) for k in params.ks}
    if params.feature_dim:
        out["features"] = ((params.feature_grid, params.feature_long, params.feature_dim), "float16",
                           ("short", "long", "component"))
        out["feature_shape"] = ((2,), "uint16", ("grid_axis",))
    return out


def default_cache_url() -> str:
    return os.environ.get("OCZSS_CACHE", "oczss-cache.zarr")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _damaged(url: str, where: str, error: Exception) -> OCZSSError:
    return OCZSSError(f"cache {url}: {where} is damaged ({type(error).__name__}: {str(error)[:160]}); "
                      f"run `oczss cache verify --cache {url}`, or rebuild the cache")


def _group_names(root: zarr.Group) -> list[str]:
    """The dataset groups of a cache, sorted ([] if its metadata cannot be read)."""
    try:
        return sorted(name for name, _ in root.groups())
    except (ValueError, KeyError, TypeError, OSError):
        return []


class MaskCache:
    """A whole cache: parameters and the (dataset, split) groups it holds."""

    def __init__(self, url: str, root: zarr.Group):
        self.url, self.root = url, root
        meta = dict(root.attrs).get("oczss")
        if not meta:
            raise OCZSSError(f"{url} is a Zarr store but not an oczss mask cache (no oczss metadata)")
        if meta.get("schema_version") != SCHEMA_VERSION:
            names = _group_names(root)
            which = names[0] if len(names) == 1 else "NAME"
            each = f" for each NAME of {', '.join(names)}" if len(names) > 1 else ""
            raise OCZSSError(f"cache {url} has schema version {meta.get('schema_version')}, this oczss reads "
                             f"{SCHEMA_VERSION} (DINO now sees each image at its aspect ratio); rebuild it: `oczss "
                             f"precompute --dataset {which} --split all --cache NEW_CACHE`{each}")
        self.meta = meta
        try:
            self.params = CacheParams(**meta["params"])
        except (KeyError, TypeError) as e:
            raise _damaged(url, "zarr.json (root metadata)", e) from None

    @classmethod
    def open(cls, url: str, writable: bool = False) -> "MaskCache":
        store = open_store(url, read_only=not writable)
        try:
            root = zarr.open_group(store=store, mode="r+" if writable else "r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
            raise OCZSSError(f"no mask cache at {url}: run `oczss precompute --cache {url} ...` first") from e
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise _damaged(url, "zarr.json (root metadata)", e) from None
        except OSError as e:
            raise unreachable(url, e) from None
        return cls(url, root)

    @classmethod
    def create_or_open(cls, url: str, params: CacheParams, random_weights: bool) -> "MaskCache":
        """Open the cache at `url` for writing, creating it if absent; refuse other parameters."""
        try:
            root = zarr.open_group(store=open_store(url, read_only=False), mode="a")
        except (ValueError, KeyError, TypeError) as e:
            raise _damaged(url, "zarr.json (root metadata)", e) from None
        except OSError as e:
            raise unreachable(url, e) from None
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
        try:
            for name, group in self.root.groups():
                out.extend((name, split) for split, _ in group.groups())
        except (ValueError, KeyError, TypeError) as e:
            raise _damaged(self.url, "a group's zarr.json", e) from None
        return sorted(out)

    def shard_count(self) -> int:
        """Shards over every split, from the splits' metadata alone (no ids decoded); damaged metadata counts 0."""
        total = 0
        for dataset, split in self.splits():
            try:
                total += int(dict(self.root[f"{dataset}/{split}"].attrs)["oczss"]["num_shards"])
            except (KeyError, ValueError, TypeError):
                pass
        return total

    def split(self, dataset: str, split: str) -> "SplitCache":
        path = f"{dataset}/{split}"
        if (dataset, split) not in self.splits():
            have = ", ".join(f"{d}/{s}" for d, s in self.splits()) or "nothing yet"
            raise OCZSSError(f"cache {self.url} has no {path} (it holds {have}); run "
                             f"`oczss precompute --dataset {dataset} --split {split} --cache {self.url}`")
        return SplitCache(self, self.root[path])

    def require(self, dataset: str, split: str, k: int, min_grid: int = 1) -> "SplitCache":
        """The split, refused unless it exists, has K = k and a grid at least `min_grid` (the message says what
        to run)."""
        fix = f"run `oczss precompute --dataset {dataset} --split {split} --ks {k} --cache NEW_CACHE`"
        if k not in self.params.ks:
            raise OCZSSError(f"cache {self.url} has no K={k} clusters (it has K in "
                             f"{','.join(map(str, self.params.ks))}) but the model has {k} object prompts; {fix}")
        if self.params.grid < min_grid:
            raise OCZSSError(f"cache {self.url} has a {self.params.grid}x{self.params.grid} grid, coarser than the "
                             f"model's {min_grid}x{min_grid} patch grid; {fix} --grid {min_grid}")
        return self.split(dataset, split)

    def basis(self, dataset: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean float32 [C], basis float32 [C, D]) of `dataset`'s compact features, None if not fitted yet."""
        if dataset not in self.root or not dict(self.root[dataset].attrs).get("feature_basis"):
            return None
        group = self.root[dataset]
        try:
            return np.asarray(group["feature_mean"][:]), np.asarray(group["feature_basis"][:])
        except Exception as e:  # noqa: BLE001 - a damaged basis object
            raise _damaged(self.url, f"{dataset}/feature_basis", e) from None

    def set_basis(self, dataset: str, mean: np.ndarray, basis: np.ndarray) -> None:
        """Record `dataset`'s PCA basis (model/compaction.py); the flag that makes it visible is written last."""
        group = self.root.require_group(dataset)
        for name, array in (("feature_mean", mean), ("feature_basis", basis)):
            group.create_array(name, shape=array.shape, dtype="float32", fill_value=0, overwrite=True,
                               dimension_names=("channel",) if array.ndim == 1 else ("channel", "component"))[...] = array
        group.attrs["feature_basis"] = True

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
        encoded = encode_ids(ids)
        group.create_array("ids", shape=encoded.shape, dtype="uint8", chunks=(max(n, 1), encoded.shape[1]),
                           dimension_names=("image", "id_byte"), fill_value=0)[:] = encoded
        for name, (shape, dtype, dims) in array_layouts(p).items():
            group.create_array(name, shape=(n, *shape), dtype=dtype, chunks=(1, *shape),
                               shards=(p.shard_size, *shape), compressors=COMPRESSOR, fill_value=0,
                               dimension_names=("image", *dims), config=WRITE_ALL)
        num_shards = -(-n // p.shard_size)
        group.create_array("records", shape=(num_shards, RECORD_BYTES), dtype="uint8", chunks=(1, RECORD_BYTES),
                           compressors=COMPRESSOR, fill_value=0, dimension_names=("shard", "record_byte"))
        group.attrs["oczss"] = {"dataset": dataset, "split": split, "data_root": str(data_root), "num_images": n,
                                "num_shards": num_shards, "created": _now()}
        return SplitCache(self, group)


class SplitCache:
    """One (dataset, split): ids, cluster maps per K, shard records."""

    def __init__(self, cache: MaskCache, group: zarr.Group):
        self.cache, self.group = cache, group
        try:
            self.meta = dict(group.attrs)["oczss"]
            self.ids: list[str] = decode_ids(group["ids"][:]) if self.meta["num_images"] else []
            self.num_shards = self.meta["num_shards"]
        except (KeyError, ValueError, TypeError) as e:
            raise _damaged(cache.url, f"{group.path} (ids or metadata)", e) from None
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
        """One of the split's per-image arrays (`labels_k{K}`, `features`)."""
        try:
            return self.group[name]
        except (KeyError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise _damaged(self.cache.url, f"{self.group.path}/{name}/zarr.json", e) from None

    def records(self) -> list[dict | None]:
        """Completion record per shard (None where the shard is not done); damaged records raise."""
        rows = self.raw_records()
        out = []
        for shard, row in enumerate(rows):
            try:
                out.append(decode_record(row))
            except ValueError as e:
                raise _damaged(self.cache.url, f"{self.name} shard {shard}'s completion record", e) from None
        return out

    def raw_records(self) -> np.ndarray:
        """uint8 [shards, RECORD_BYTES] as stored."""
        if not self.num_shards:
            return np.zeros((0, RECORD_BYTES), np.uint8)
        try:
            return np.asarray(self.group["records"][:])
        except Exception as e:  # noqa: BLE001 - a garbled records object fails in the codec
            raise _damaged(self.cache.url, f"{self.name}/records", e) from None

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
        problems = shard_problems(shapes, self.ids[a:b], (a, b), shard, record, data, errors)
        return data, problems

    def write_shard(self, shard: int, arrays: dict[str, np.ndarray], failed: dict[str, str],
                    before_commit=None) -> None:
        """Write a shard's rows of every array ({name: [rows, ...]}: labels_k{K} uint8 [rows, S, S], features
        float16 [rows, T, L, D], feature_shape uint16 [rows, 2]; failed rows zero), make them durable, then its
        record.

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
                  "ids_sha256": ids_digest(self.ids[a:b]), "written": _now()}
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

