"""`oczss cache verify`: read every shard and check it against the metadata and its completion record.

Per (dataset, split): array shapes, dtypes, shard layout and dimension names against the cache parameters; the
ids (no duplicates); then every shard through cache/integrity.py (decodes, values < K, record, sha256 of labels
and ids). A shard without a record is unfinished: a problem unless `partial` accepts an unfinished but
otherwise sound cache.
"""

from __future__ import annotations

import numpy as np

from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError


def verify(url: str, partial: bool = False, on_shard=None) -> list[str]:
    """Every problem found, as 'dataset/split …: what is wrong' lines (empty list: the cache is sound).

    on_shard(): called after each shard (a progress bar's update)."""
    cache = MaskCache.open(url)
    p = cache.params
    problems = []
    for dataset, split in cache.splits():
        where = f"{dataset}/{split}"
        try:
            sc = cache.split(dataset, split)
            records = sc.records()
        except OCZSSError as e:
            problems.append(f"{where}: {e}")
            continue
        for k in p.ks:
            try:
                a = sc.group[f"labels_k{k}"]
            except KeyError:
                problems.append(f"{where}: labels_k{k} is missing")
                continue
            except (ValueError, TypeError) as e:  # a garbled zarr.json (JSONDecodeError is a ValueError)
                problems.append(f"{where}/labels_k{k}/zarr.json is damaged ({type(e).__name__}: {str(e)[:120]})")
                continue
            if a.shape != (sc.n, p.grid, p.grid) or a.dtype != np.uint8:
                problems.append(f"{where}/labels_k{k}: shape {a.shape} dtype {a.dtype}, expected "
                                f"{(sc.n, p.grid, p.grid)} uint8")
            if a.shards != (p.shard_size, p.grid, p.grid) or a.chunks != (1, p.grid, p.grid):
                problems.append(f"{where}/labels_k{k}: shards {a.shards} chunks {a.chunks}, expected "
                                f"{(p.shard_size, p.grid, p.grid)} and {(1, p.grid, p.grid)}")
        if len(set(sc.ids)) != sc.n:
            problems.append(f"{where}/ids: {sc.n - len(set(sc.ids))} duplicate ids")
        if len(records) != sc.num_shards:
            problems.append(f"{where}/records: {len(records)} entries for {sc.num_shards} shards")
        for shard in range(sc.num_shards):
            record = records[shard] if shard < len(records) else None
            _, found = sc.read_shard(shard, p.ks, record)
            if partial and record is None:
                found = [f for f in found if "not finished" not in f]
            problems += [f"{where} {f}" for f in found]
            if on_shard:
                on_shard()
    return problems
