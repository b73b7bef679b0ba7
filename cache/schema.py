"""What a cache was made with, and the byte formats of its ids and completion records.

Root group attributes (`oczss` key): schema_version, params (CacheParams), random_weights, created, oczss_version.
Per (dataset, split) group attributes (`oczss` key): dataset, split, data_root, num_images, num_shards, created.

Every array is a plain unsigned-integer Zarr v3 array with named dimensions, so any Zarr v3 implementation
(tensorstore, xarray, zarr-python) reads the whole cache:
    ids          uint8 [N, W]           (image, id_byte): UTF-8 image ids, NUL-padded to the longest
    labels_k{K}  uint8 [N, S, S]        (image, y, x)
    features     float16 [N, T, T, D]   (image, ty, tx, component): compact DINO tokens (only if feature_dim > 0)
    records      uint8 [shards, 65536]  (shard, record_byte): one UTF-8 JSON completion record per shard, NUL-padded
Per dataset group, when features are stored: feature_mean float32 [C] and feature_basis float32 [C, D], the PCA
that made them (model/compaction.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from oczss.errors import OCZSSError

SCHEMA_VERSION = 3
RECORD_BYTES = 65536
REASON_CHARS = 200


@dataclass(frozen=True)
class CacheParams:
    """Everything that changes the cluster labels; two runs into one cache must agree on all of it.

    dino_model: timm model name; fingerprint: sha256 of the loaded DINO weights; input_size: R (whole image
    resized to R x R); grid: S (cluster maps are S x S); ks: cluster counts; seed: first-FPS-centre seed;
    device: device type the features were computed on ("cpu"/"cuda"); dtype: DINO compute dtype;
    shard_size: images per shard object; feature_dim: D, the width of the stored compact DINO tokens (0: none
    stored); feature_grid: T, their grid (R / the DINO patch).
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

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(self.ks))  # a JSON list when read back from the metadata

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks"] = list(self.ks)
        return d

    def digest(self) -> str:
        """sha256 of the parameters as the metadata stores them (every shard record carries it)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: "CacheParams") -> list[str]:
        """Human-readable 'name: cache has X, this run has Y' lines for every differing field."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"{f.name}: cache has {_show(a)}, this run has {_show(b)}")
        return out


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    if isinstance(v, str) and len(v) > 16:
        return v[:12] + "…"
    return str(v)


def check_params(url: str, stored: CacheParams, wanted: CacheParams) -> None:
    """Refuse to add to a cache made with other parameters, naming each one that differs."""
    diff = stored.differences(wanted)
    if diff:
        raise OCZSSError(f"cache {url} was made with other parameters:\n  " + "\n  ".join(diff)
                         + "\nRun with the cache's parameters, or write to a new --cache.")


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
