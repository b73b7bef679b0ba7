"""The one check of a shard against its completion record, used by `verify`, `info` and every reader of labels.

A shard is sound when its record names its own shard and rows, its ids hash to the record's ids_sha256 (the
labels belong to these images), each K's labels decode, hold values < K and hash to the record's sha256, and
every failed image it lists lies in the shard with all-zero rows. A shard without a record is unfinished.
"""

from __future__ import annotations

import hashlib

import numpy as np

from oczss.cache.schema import ids_digest


def labels_digest(labels: np.ndarray) -> str:
    """sha256 of uint8 [rows, S, S] labels in C order."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).hexdigest()


def shard_problems(grid: int, ids: list[str], rows: tuple[int, int], shard: int, record: dict | None,
                   data: dict[int, np.ndarray], errors: dict[int, Exception]) -> list[str]:
    """Every problem of one shard, as 'shard N (rows a:b) ...: what is wrong' lines ([] when sound).

    ids: the shard's ids in row order; data: {k: uint8 [rows, S, S]} that decoded; errors: {k: the exception}
    for those that did not; record: its completion record, or None (then only unfinished is reported).
    """
    a, b = rows
    tag = f"shard {shard} (rows {a}:{b})"
    out = [f"{tag} labels_k{k}: cannot be read ({type(e).__name__}: {str(e)[:120]})" for k, e in errors.items()]
    for k, labels in data.items():
        if labels.shape != (b - a, grid, grid):
            out.append(f"{tag} labels_k{k}: shape {labels.shape}, expected {(b - a, grid, grid)}")
        elif labels.size and int(labels.max()) >= k:
            out.append(f"{tag} labels_k{k}: {int((labels >= k).sum())} label values >= K={k} "
                       f"(max {int(labels.max())})")
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
        elif any(labels[position[image_id]].any() for labels in data.values()):
            out.append(f"{tag}: failed image {image_id!r} has non-zero labels")
    for k, labels in data.items():
        if record.get("sha256", {}).get(str(k)) != labels_digest(labels):
            out.append(f"{tag} labels_k{k}: data does not match its completion record (sha256)")
    return out
