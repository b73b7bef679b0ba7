"""`oczss cache verify`: read every shard and check it against the metadata and its completion record.

Per (dataset, split): array shapes, dtypes, shard layout and dimension names against the cache parameters, and no
per-image array the parameters do not describe; image and shard counts against the metadata; the ids (no
duplicates); then every shard through cache/integrity.py (decodes, values < K, record, sha256 of its arrays and ids,
of the parameters and of the compact-features basis). The same for every source: the arrays checked are those
the cache's parameters list. A shard without a record, or a split whose creation was
interrupted, is unfinished: a problem unless `partial` accepts an unfinished but otherwise sound cache.
"""

from __future__ import annotations

import numpy as np

from oczss.cache.integrity import count_problems
from oczss.cache.schema import CacheParams
from oczss.cache.split import SplitNotCreated, array_layouts
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
        except SplitNotCreated as e:
            problems += [] if partial else [f"{where}: {e}"]
            continue
        except OCZSSError as e:
            problems.append(f"{where}: {e}")
            continue
        layouts = array_layouts(p)
        try:
            extra = sorted(set(sc.group.array_keys()) - set(layouts) - {"ids", "records"})
        except (ValueError, KeyError, TypeError):  # a garbled array zarr.json: named by the checks below
            extra = []
        if extra:
            problems.append(f"{where}: arrays {', '.join(extra)} are not described by the cache's parameters (its "
                            f"{cache.source} arrays are {', '.join(layouts)}): its metadata was changed")
        for name, (shape, dtype, _) in layouts.items():
            try:
                a = sc.group[name]
            except KeyError:
                problems.append(f"{where}: {name} is missing")
                continue
            except (ValueError, TypeError) as e:  # a garbled zarr.json (JSONDecodeError is a ValueError)
                problems.append(f"{where}/{name}/zarr.json is damaged ({type(e).__name__}: {str(e)[:120]})")
                continue
            if a.shape != (sc.n, *shape) or a.dtype != np.dtype(dtype):
                problems.append(f"{where}/{name}: shape {a.shape} dtype {a.dtype}, expected {(sc.n, *shape)} {dtype}")
            if a.shards != (p.shard_size, *shape) or a.chunks != (1, *shape):
                problems.append(f"{where}/{name}: shards {a.shards} chunks {a.chunks}, expected "
                                f"{(p.shard_size, *shape)} and {(1, *shape)}")
        if isinstance(p, CacheParams) and p.feature_dim and cache.basis(dataset) is None:
            problems.append(f"{dataset}: the compact features' basis (feature_basis) is missing")
        if len(set(sc.ids)) != sc.n:
            problems.append(f"{where}/ids: {sc.n - len(set(sc.ids))} duplicate ids")
        problems += count_problems(sc.name, sc.meta, sc.n, sc.shard_size, records)
        for shard in range(sc.num_shards):
            record = records[shard] if shard < len(records) else None
            _, found = sc.read_shard(shard, list(layouts), record)
            if partial and record is None:
                found = [f for f in found if "not finished" not in f]
            problems += [f"{where} {f}" for f in found]
            if on_shard:
                on_shard()
    return problems
