"""What a cache was made with, and the byte formats of its ids and completion records.

Root group attributes (`oczss` key): schema_version, source (what Stage 1 stored: `dino-fps`, `clip-kmeans` or
`dinov2-tokens`; a cache without the key is `dino-fps`), params (CacheParams for dino-fps, SourceParams.to_dict()
for every other source, which also lists its per-image arrays), random_weights, created, oczss_version.
Per (dataset, split) group attributes (`oczss` key): dataset, split, data_root, num_images, num_shards, created.

Every array is a plain unsigned-integer Zarr v3 array with named dimensions, so any Zarr v3 implementation
(tensorstore, xarray, zarr-python) reads the whole cache:
    ids          uint8 [N, W]           (image, id_byte): UTF-8 image ids, NUL-padded to the longest
    labels_k{K}  uint8 [N, S, S]        (image, y, x)
    features     float16 [N, T, L, D]   (image, short, long, component): compact DINO tokens (only if feature_dim > 0),
                                        each image's grid stored short side first (`pack_grid`), zero-padded to L
    feature_shape uint16 [N, 2]         (image, grid_axis): each image's token grid (rows, cols) as DINO saw it
    records      uint8 [shards, 65536]  (shard, record_byte): one UTF-8 JSON completion record per shard, NUL-padded
A cache of another source holds, instead of labels_k{K} and features, the arrays its params list (pipeline/stage1/
sources/: clip-kmeans' candidate_labels, candidate_embeddings, candidate_counts; dinov2-tokens' cls, patches), with
the same ids, records, shards and checks.
Per dataset group, when features are stored: feature_mean float32 [C] and feature_basis float32 [C, D], the PCA
that made them (model/compaction.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from oczss.errors import OCZSSError

SCHEMA_VERSION = 4  # 4: DINO sees each image at its aspect ratio; features [N, T, L, D] with feature_shape
DINO_FPS = "dino-fps"  # the source of every cache written before sources existed
RECORD_BYTES = 65536
REASON_CHARS = 200


@dataclass(frozen=True)
class CacheParams:
    """Everything that changes the cluster labels; two runs into one cache must agree on all of it.

    dino_model: timm model name; fingerprint: sha256 of the loaded DINO weights; input_size: R (DINO sees each
    image with its short side resized to R and its long side to the nearest multiple of the patch, at most
    feature_long patches); grid: S (cluster maps are S x S over the whole image); ks: cluster counts; seed:
    first-FPS-centre seed; device: device type the features were computed on ("cpu"/"cuda"); dtype: DINO compute
    dtype; shard_size: images per shard object; feature_dim: D, the width of the stored compact DINO tokens (0:
    none stored); feature_grid: T = R / the DINO patch, the tokens of an image's short side; feature_long: L, the
    most tokens of its long side (longer images are squeezed to it).
    """

    dino_model: str
    fingerprint: str
    input_size: int
    grid: int
    ks: tuple[int, ...]
    seed: int
    device: str
    dtype: str
    shard_size: int
    feature_dim: int = 0
    feature_grid: int = 0
    feature_long: int = 0
    source: ClassVar[str] = DINO_FPS

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(self.ks))  # a JSON list when read back from the metadata

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks"] = list(self.ks)
        return d

    def layouts(self) -> dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]]:
        """{array name: (per-image shape, dtype, dimension names)} of every per-image array the cache has."""
        out = {f"labels_k{k}": ((self.grid, self.grid), "uint8", ("y", "x")) for k in self.ks}
        if self.feature_dim:
            out["features"] = ((self.feature_grid, self.feature_long, self.feature_dim), "float16",
                               ("short", "long", "component"))
            out["feature_shape"] = ((2,), "uint16", ("grid_axis",))
        return out

    def digest(self) -> str:
        """sha256 of the parameters as the metadata stores them (every shard record carries it)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: "CacheParams") -> list[str]:
        """Human-readable 'name: cache has X, this run has Y' lines for every differing field."""
        return _differences(self.to_dict(), other.to_dict())


@dataclass(frozen=True)
class SourceParams:
    """Everything that changes the arrays of a cache of a source other than dino-fps (pipeline/stage1/sources/).

    source: its name; values: the source's own settings, JSON-ready (model name, weights fingerprint, R, device,
    dtype, the model function's parameters ...); arrays: {name: (per-image shape, dtype, dimension names)} of its
    per-image arrays; shard_size: images per shard object. Two runs into one cache must agree on all of it.
    """

    source: str
    values: dict
    arrays: dict
    shard_size: int

    def __post_init__(self):  # tuples, however given (JSON gives lists)
        object.__setattr__(self, "arrays", {name: (tuple(shape), str(dtype), tuple(dims))
                                            for name, (shape, dtype, dims) in self.arrays.items()})

    def layouts(self) -> dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]]:
        return dict(self.arrays)

    def to_dict(self) -> dict:
        """As the root metadata's `params` stores it (the source is its own key there)."""
        return {**self.values, "shard_size": self.shard_size,
                "arrays": {name: {"shape": list(shape), "dtype": dtype, "dims": list(dims)}
                           for name, (shape, dtype, dims) in self.arrays.items()}}

    @classmethod
    def from_dict(cls, source: str, d: dict) -> "SourceParams":
        values = {k: v for k, v in d.items() if k not in ("shard_size", "arrays")}
        arrays = {name: (a["shape"], a["dtype"], a["dims"]) for name, a in d["arrays"].items()}
        return cls(source, values, arrays, d["shard_size"])

    def digest(self) -> str:
        """sha256 of the source and the parameters as the metadata stores them (every shard record carries it)."""
        return hashlib.sha256(json.dumps({"source": self.source, **self.to_dict()}, sort_keys=True).encode()).hexdigest()

    def differences(self, other: "SourceParams") -> list[str]:
        return _differences(self.to_dict(), other.to_dict())


def _differences(a: dict, b: dict) -> list[str]:
    """'name: cache has X, this run has Y' for every key whose values differ."""
    return [f"{name}: cache has {_show(a.get(name))}, this run has {_show(b.get(name))}"
            for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]


def _show(v) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    if isinstance(v, str) and len(v) > 16:
        return v[:12] + "…"
    return str(v)


def check_params(url: str, stored: CacheParams, wanted: CacheParams) -> None:
    """Refuse to add to a cache made with other parameters (or by another source), naming each one that differs."""
    if stored.source != wanted.source:
        raise OCZSSError(f"cache {url} holds {stored.source} outputs, this run makes {wanted.source}: write them to "
                         f"another --cache")
    diff = stored.differences(wanted)
    if diff:
        raise OCZSSError(f"cache {url} was made with other parameters:\n  " + "\n  ".join(diff)
                         + "\nRun with the cache's parameters, or write to a new --cache.")


def pack_grid(grid: np.ndarray, short: int, long: int) -> np.ndarray:
    """An image's token grid [rows, cols, D] as stored: short side first, zero-padded to [short, long, D]."""
    out = np.zeros((short, long, grid.shape[-1]), grid.dtype)
    upright = grid if grid.shape[0] <= grid.shape[1] else grid.transpose(1, 0, 2)
    out[:upright.shape[0], :upright.shape[1]] = upright
    return out


def unpack_grid(stored: np.ndarray, shape) -> np.ndarray:
    """The inverse of pack_grid: the stored [T, L, D] of an image whose grid is `shape` = (rows, cols)."""
    rows, cols = int(shape[0]), int(shape[1])
    return stored[:rows, :cols] if rows <= cols else stored[:cols, :rows].transpose(1, 0, 2)


def encode_ids(ids: list[str]) -> np.ndarray:
    """uint8 [N, W]: each id's UTF-8 bytes, NUL-padded to the longest (W >= 1)."""
    raw = [i.encode() for i in ids]
    if any(b"\0" in r for r in raw):
        raise OCZSSError("image ids must not contain NUL characters")
    width = max((len(r) for r in raw), default=1) or 1
    out = np.zeros((len(raw), width), np.uint8)
    for row, r in enumerate(raw):
        out[row, :len(r)] = np.frombuffer(r, np.uint8)
    return out


def decode_ids(array: np.ndarray) -> list[str]:
    return [bytes(row).rstrip(b"\0").decode() for row in np.asarray(array, np.uint8)]


def ids_digest(ids: list[str]) -> str:
    """sha256 of a shard's ids in row order: what binds the labels to their images."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def encode_record(record: dict) -> np.ndarray:
    """uint8 [RECORD_BYTES]: the record as UTF-8 JSON, NUL-padded. Failure reasons are shortened if the record
    would not fit; a record that still does not fit is an error."""
    for limit in (None, REASON_CHARS, 40, 0):
        if limit is not None:
            record = {**record, "failed": {i: why[:limit] for i, why in record["failed"].items()}}
        raw = json.dumps(record, sort_keys=True).encode()
        if len(raw) <= RECORD_BYTES:
            out = np.zeros(RECORD_BYTES, np.uint8)
            out[:len(raw)] = np.frombuffer(raw, np.uint8)
            return out
    raise OCZSSError(f"a completion record of {len(raw)} bytes does not fit in {RECORD_BYTES}; use a smaller "
                     f"--shard-size")


def decode_record(row: np.ndarray) -> dict | None:
    """The record of one row (None where the shard has none); ValueError if the bytes are not a record."""
    raw = bytes(np.asarray(row, np.uint8)).rstrip(b"\0")
    if not raw:
        return None
    record = json.loads(raw.decode())
    if not isinstance(record, dict) or not {"shard", "rows", "failed", "sha256", "ids_sha256"} <= set(record):
        raise ValueError("not a completion record")
    return record
