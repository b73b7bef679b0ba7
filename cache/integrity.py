"""The one check of a shard against its completion record, used by `verify`, `info` and every reader of labels.

A shard is sound when its record names its own shard and rows, its ids hash to the record's ids_sha256 (the
labels belong to these images), each of its arrays (labels_k{K}, features, feature_shape) decodes and hashes to
the record's sha256 for it, the record covers exactly the arrays the cache's parameters describe, labels hold values
< K, token grids (feature_shape) fit the stored features, every failed image it lists lies in the shard with
all-zero rows, and the cache's parameters and the dataset's compact-features basis hash to what the record bound
when it was written. A shard without a record is unfinished.
"""

from __future__ import annotations

import hashlib

import numpy as np

from oczss.cache.schema import ids_digest


def digest(array: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (its dtype as stored)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def basis_digest(mean: np.ndarray, basis: np.ndarray) -> str:
    """sha256 of a compact-features basis: mean float32 [C] and basis float32 [C, D], shapes included."""
    h = hashlib.sha256()
    for array in (mean, basis):
        a = np.ascontiguousarray(array, dtype=np.float32)
        h.update(f"{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def label_k(name: str) -> int | None:
    """K of a `labels_k{K}` array name, None for any other array."""
    return int(name[len("labels_k"):]) if name.startswith("labels_k") else None


def shard_problems(shapes: dict[str, tuple], ids: list[str], rows: tuple[int, int], shard: int,
                   record: dict | None, data: dict[str, np.ndarray], errors: dict[str, Exception],
                   arrays: set[str] | None = None, bound: dict[str, tuple[str | None, str]] | None = None) -> list[str]:
    """Every problem of one shard, as 'shard N (rows a:b) ...: what is wrong' lines ([] when sound).

    shapes: {array name: its per-image shape}; ids: the shard's ids in row order; data: {array name: its rows}
    that decoded; errors: {array name: the exception} for those that did not; record: its completion record, or
    None (then only unfinished is reported); arrays: every array name the cache's parameters describe (the
    record's sha256 must cover exactly these); bound: {record key: (the sha256 it must hold, what that is)} for
    the metadata the record binds (parameters, basis).
    """
    a, b = rows
    tag = f"shard {shard} (rows {a}:{b})"
    out = [f"{tag} {name}: cannot be read ({type(e).__name__}: {str(e)[:120]})" for name, e in errors.items()]
    for name, array in data.items():
        k = label_k(name)
        if array.shape != (b - a, *shapes[name]):
            out.append(f"{tag} {name}: shape {array.shape}, expected {(b - a, *shapes[name])}")
        elif k is not None and array.size and int(array.max()) >= k:
            out.append(f"{tag} {name}: {int((array >= k).sum())} label values >= K={k} (max {int(array.max())})")
        elif name == "feature_shape" and "features" in shapes and array.size:
            short, long = shapes["features"][:2]
            over = (array.min(1) > short) | (array.max(1) > long)
            if over.any():
                out.append(f"{tag} {name}: {int(over.sum())} token grids larger than the stored {short} x {long}")
    if record is None:
        return out + [f"{tag}: not finished (no completion record; run precompute again to finish it)"]
    if record.get("rows") != [a, b] or record.get("shard") != shard:
        out.append(f"{tag}: completion record says shard {record.get('shard')} rows {record.get('rows')}")
    if record.get("ids_sha256") != ids_digest(ids):
        out.append(f"{tag} ids: the image ids do not match the completion record (sha256); rows may belong to "
                   f"other images")
    position = {image_id: i for i, image_id in enumerate(ids)}
    for image_id in record.get("failed", {}):
        if image_id not in position:
            out.append(f"{tag}: completion record lists failed image {image_id!r} that is not in this shard")
        elif any(array[position[image_id]].any() for array in data.values()):
            out.append(f"{tag}: failed image {image_id!r} has non-zero data")
    for name, array in data.items():
        if record.get("sha256", {}).get(name) != digest(array):
            out.append(f"{tag} {name}: data does not match its completion record (sha256)")
    recorded = set(record.get("sha256", {}))
    if arrays is not None and recorded != arrays:
        out.append(f"{tag}: the completion record covers the arrays {', '.join(sorted(recorded)) or 'none'}, the "
                   f"cache's parameters describe {', '.join(sorted(arrays))} (its K list or feature width changed)")
    for key, (value, what) in (bound or {}).items():
        if key in record and record[key] != value:
            out.append(f"{tag}: {what} does not match the completion record (sha256): changed after the shard was "
                       f"written")
    return out


def count_problems(name: str, meta: dict, n: int, shard_size: int, records: list) -> list[str]:
    """What a split's metadata (`meta`: num_images, num_shards) says against what it holds: `n` ids, shards of
    `shard_size`, `records` (one entry per stored record row)."""
    out, shards = [], -(-n // shard_size)
    if meta.get("num_images") != n:
        out.append(f"{name}: metadata says {meta.get('num_images')} images, its ids hold {n}")
    if meta.get("num_shards") != shards:
        out.append(f"{name}: metadata says {meta.get('num_shards')} shards, {n} images in shards of {shard_size} "
                   f"make {shards}")
    if len(records) != meta.get("num_shards"):
        out.append(f"{name}/records: {len(records)} entries for {meta.get('num_shards')} shards")
    return out


def unbound(records: list, bound: dict[str, tuple[str | None, str]]) -> list[str]:
    """What of `bound` ({record key: (sha256, what)}) differs from what any done shard's record bound: metadata
    changed after the shards were written (records without the key are not checked)."""
    return [what for key, (value, what) in bound.items()
            if any(r is not None and key in r and r[key] != value for r in records)]
