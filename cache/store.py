"""The mask cache on disk: a Zarr v3 hierarchy with sharded label arrays and per-shard completion records.

    <cache>/                      root group, attrs["oczss"] = metadata (cache/schema.py)
      <dataset>/                  feature_mean, feature_basis: the compact features' PCA (attrs feature_basis)
      <dataset>/<split>/          one split (cache/split.py): ids, labels_k{K}, features and feature_shape (compact
                                  DINO tokens at each image's aspect, cache/schema.py), records
    <cache>.lock                  the writer's lease while a precompute runs (cache/lock.py)

`MaskCache` opens or creates the root (refusing other parameters), records a dataset's basis, and creates a split's
group: its arrays first, its metadata last, so a group without metadata was being created when its run stopped
(nothing of it was computed) and the next run creates it again. Every store error is one line
(cache/location.py).
"""

from __future__ import annotations

import importlib.metadata
import os

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from oczss.cache.integrity import basis_digest
from oczss.cache.location import filesystem, is_backend_error, open_store, reaching, unreachable
from oczss.cache.schema import (DINO_FPS, RECORD_BYTES, SCHEMA_VERSION, CacheParams, SourceParams, check_params,
                                encode_ids)
from oczss.cache.split import WRITE_ALL, SplitCache, array_layouts, damaged, now
from oczss.errors import OCZSSError

COMPRESSOR = ZstdCodec(level=9)


def default_cache_url(source: str = DINO_FPS) -> str:
    """$OCZSS_CACHE or oczss-cache.zarr for dino-fps; for another source the same name with `-<source>` before
    its `.zarr` (oczss-cache-clip-kmeans.zarr), so each source has a cache of its own."""
    url = os.environ.get("OCZSS_CACHE", "oczss-cache.zarr")
    if source == DINO_FPS:
        return url
    stem = url.rstrip("/")
    stem = stem[:-len(".zarr")] if stem.endswith(".zarr") else stem
    return f"{stem}-{source}.zarr"


def _group_names(root: zarr.Group) -> list[str]:
    """The dataset groups of a cache, sorted ([] if its metadata cannot be read)."""
    try:
        return sorted(name for name, _ in root.groups())
    except (ValueError, KeyError, TypeError, OSError):
        return []


class MaskCache:
    """A whole cache: its source, parameters (CacheParams for dino-fps, else SourceParams) and the (dataset, split)
    groups it holds."""

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
        self.meta, self._basis_digests = meta, {}
        self.source = meta.get("source", DINO_FPS)
        try:
            self.params = (CacheParams(**meta["params"]) if self.source == DINO_FPS
                           else SourceParams.from_dict(self.source, meta["params"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise damaged(url, "zarr.json (root metadata)", e) from None

    @classmethod
    def open(cls, url: str, writable: bool = False) -> "MaskCache":
        store = open_store(url, read_only=not writable)
        try:
            root = zarr.open_group(store=store, mode="r+" if writable else "r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
            raise OCZSSError(f"no mask cache at {url}: run `oczss precompute --cache {url} ...` first") from e
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise damaged(url, "zarr.json (root metadata)", e) from None
        except Exception as e:
            if is_backend_error(e):
                raise unreachable(url, e) from None
            raise
        return cls(url, root)

    @classmethod
    def existing(cls, url: str) -> "MaskCache | None":
        """The cache at `url` opened read-only, None if nothing is there yet; writes nothing either way."""
        fs, path = filesystem(url)
        with reaching(url):
            if not fs.exists(f"{path.rstrip('/')}/zarr.json"):
                return None
        return cls.open(url)

    @classmethod
    def create_or_open(cls, url: str, params: CacheParams | SourceParams, random_weights: bool) -> "MaskCache":
        """Open the cache at `url` for writing, creating it if absent; refuse other parameters."""
        try:
            root = zarr.open_group(store=open_store(url, read_only=False), mode="a")
        except (ValueError, KeyError, TypeError) as e:
            raise damaged(url, "zarr.json (root metadata)", e) from None
        except Exception as e:
            if is_backend_error(e):
                raise unreachable(url, e) from None
            raise
        if "oczss" not in root.attrs:
            if len(list(root.keys())):
                raise OCZSSError(f"{url} already holds a Zarr hierarchy that is not an oczss cache")
            with reaching(url):
                root.attrs["oczss"] = {"schema_version": SCHEMA_VERSION, "source": params.source,
                                       "params": params.to_dict(),
                                       "random_weights": random_weights, "created": now(),
                                       "oczss_version": importlib.metadata.version("oczss")}
        cache = cls(url, root)
        check_params(url, cache.params, params)
        return cache

    def expect(self, source: str, use: str) -> None:
        """Refuse, in one line, a cache of another source than the one `use` (what reads it) needs."""
        if self.source != source:
            raise OCZSSError(f"cache {self.url} holds {self.source} outputs, but {use} reads {source} outputs: pass "
                             f"the cache `oczss precompute --masks {source}` wrote")

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
            raise damaged(self.url, "a group's zarr.json", e) from None
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
        self.expect(DINO_FPS, f"a model with {k} object prompts")
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
            raise damaged(self.url, f"{dataset}/feature_basis", e) from None

    def basis_digest(self, dataset: str) -> str | None:
        """sha256 of `dataset`'s basis as stored (what every shard record of its compact features carries)."""
        if dataset not in self._basis_digests:
            basis = self.basis(dataset)
            self._basis_digests[dataset] = None if basis is None else basis_digest(*basis)
        return self._basis_digests[dataset]

    def set_basis(self, dataset: str, mean: np.ndarray, basis: np.ndarray) -> None:
        """Record `dataset`'s PCA basis (model/compaction.py); the flag that makes it visible is written last."""
        group = self.root.require_group(dataset)
        for name, array in (("feature_mean", mean), ("feature_basis", basis)):
            group.create_array(name, shape=array.shape, dtype="float32", fill_value=0, overwrite=True,
                               dimension_names=("channel",) if array.ndim == 1 else ("channel", "component"))[...] = array
        group.attrs["feature_basis"] = True
        self._basis_digests.pop(dataset, None)

    def require_split(self, dataset: str, split: str, ids: list[str], data_root: str) -> "SplitCache":
        """The group for (dataset, split), created with its arrays if absent; refused if its ids differ."""
        path = f"{dataset}/{split}"
        if (dataset, split) in self.splits() and "oczss" in self.root[path].attrs:
            sc = SplitCache(self, self.root[path])
            if sc.ids != ids:
                raise OCZSSError(f"cache {self.url} holds {path} for {sc.n} images that differ from the "
                                 f"{len(ids)} images now at {data_root}; use a new --cache for this dataset copy")
            return sc
        # absent, or left without metadata by a run stopped while creating it: (re)create every array
        p, n = self.params, len(ids)
        group = self.root.require_group(path)
        encoded = encode_ids(ids)
        group.create_array("ids", shape=encoded.shape, dtype="uint8", chunks=(max(n, 1), encoded.shape[1]),
                           dimension_names=("image", "id_byte"), fill_value=0, overwrite=True)[:] = encoded
        for name, (shape, dtype, dims) in array_layouts(p).items():
            group.create_array(name, shape=(n, *shape), dtype=dtype, chunks=(1, *shape),
                               shards=(p.shard_size, *shape), compressors=COMPRESSOR, fill_value=0,
                               dimension_names=("image", *dims), config=WRITE_ALL, overwrite=True)
        num_shards = -(-n // p.shard_size)
        group.create_array("records", shape=(num_shards, RECORD_BYTES), dtype="uint8", chunks=(1, RECORD_BYTES),
                           compressors=COMPRESSOR, fill_value=0, dimension_names=("shard", "record_byte"),
                           overwrite=True)
        group.attrs["oczss"] = {"dataset": dataset, "split": split, "data_root": str(data_root), "num_images": n,
                                "num_shards": num_shards, "created": now()}
        return SplitCache(self, group)
