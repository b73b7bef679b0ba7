"""`oczss cache verify`: read every shard and check it against the metadata and its completion record.

Checks per (dataset, split): array shapes, dtypes and shard layout against the cache parameters; the ids;
every shard of every labels_k{K} decodes; label values < K; for every completion record, its rows, its
failed ids (which must lie in the shard and have all-zero rows) and the sha256 of each K's labels.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from oczss.cache.store import MaskCache


def verify(url: str, on_shard=None) -> list[str]:
    """Every problem found, as 'dataset/split …: what is wrong' lines (empty list: the cache is sound)."""
    cache = MaskCache.open(url)
    p = cache.params
    problems = []
    for dataset, split in cache.splits():
        where = f"{dataset}/{split}"
        try:
            sc = cache.split(dataset, split)
        except Exception as e:  # noqa: BLE001 - report any damage, keep checking the rest
            problems.append(f"{where}: cannot be opened ({type(e).__name__}: {e})")
            continue
        arrays = dict(sc.group.arrays())
        for k in p.ks:
            a = arrays.get(f"labels_k{k}")
            if a is None:
                problems.append(f"{where}: labels_k{k} is missing")
                continue
            if a.shape != (sc.n, p.grid, p.grid) or a.dtype != np.uint8:
                problems.append(f"{where}/labels_k{k}: shape {a.shape} dtype {a.dtype}, expected "
                                f"{(sc.n, p.grid, p.grid)} uint8")
            if a.shards != (p.shard_size, p.grid, p.grid) or a.chunks != (1, p.grid, p.grid):
                problems.append(f"{where}/labels_k{k}: shards {a.shards} chunks {a.chunks}, expected "
                                f"{(p.shard_size, p.grid, p.grid)} and {(1, p.grid, p.grid)}")
        if len(set(sc.ids)) != sc.n:
            problems.append(f"{where}/ids: {sc.n - len(set(sc.ids))} duplicate ids")
        try:
            raw = sc.group["records"][:]
        except Exception as e:  # noqa: BLE001
            problems.append(f"{where}/records: cannot be read ({type(e).__name__}: {e})")
            raw = [""] * sc.num_shards
        if len(raw) != sc.num_shards:
            problems.append(f"{where}/records: {len(raw)} entries for {sc.num_shards} shards")
        for shard in range(sc.num_shards):
            problems += _check_shard(sc, shard, raw[shard] if shard < len(raw) else "", where)
            if on_shard:
                on_shard()
    return problems


def _check_shard(sc, shard: int, raw: str, where: str) -> list[str]:
    p, (a, b) = sc.cache.params, sc.rows(shard)
    out, data = [], {}
    tag = f"{where} shard {shard} (rows {a}:{b})"
    for k in p.ks:
        try:
            data[k] = np.asarray(sc.group[f"labels_k{k}"][a:b])
        except Exception as e:  # noqa: BLE001 - a truncated or garbled shard object fails to decode
            out.append(f"{tag} labels_k{k}: cannot be read ({type(e).__name__}: {str(e)[:120]})")
            continue
        if data[k].size and int(data[k].max()) >= k:
            bad = int((data[k] >= k).sum())
            out.append(f"{tag} labels_k{k}: {bad} label values >= K={k} (max {int(data[k].max())})")
    if not raw:
        return out
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as e:
        return out + [f"{tag}: completion record is not valid JSON ({e})"]
    if rec.get("rows") != [a, b] or rec.get("shard") != shard:
        out.append(f"{tag}: completion record says shard {rec.get('shard')} rows {rec.get('rows')}")
    shard_ids = set(sc.ids[a:b])
    for image_id in rec.get("failed", {}):
        if image_id not in shard_ids:
            out.append(f"{tag}: completion record lists failed image {image_id!r} that is not in this shard")
            continue
        row = sc.row(image_id) - a
        if any(k in data and data[k][row].any() for k in p.ks):
            out.append(f"{tag}: failed image {image_id!r} has non-zero labels")
    for k in p.ks:
        want = rec.get("sha256", {}).get(str(k))
        if k in data and want != hashlib.sha256(np.ascontiguousarray(data[k]).tobytes()).hexdigest():
            out.append(f"{tag} labels_k{k}: data does not match its completion record (sha256)")
    return out
