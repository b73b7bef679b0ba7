"""`oczss cache export --format hdf5`: the cache's arrays and metadata in one HDF5 file (h5py).

    /                       attrs: oczss_metadata (JSON of the cache metadata)
    /<dataset>/<split>/     attrs: oczss_split (JSON), failed (JSON {image id: reason})
        ids          vlen str [N]
        status       uint8 [N]          0 missing, 1 done, 2 failed
        labels_k{K}  uint8 [N, S, S]    chunks of one image, gzip
Copied one shard at a time; the file is written beside its target and renamed when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from oczss.cache.store import MaskCache


def export_hdf5(url: str, out: str | Path, on_shard=None) -> Path:
    cache = MaskCache.open(url)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    p = cache.params
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["oczss_metadata"] = json.dumps(cache.meta, sort_keys=True)
            for dataset, split in cache.splits():
                sc = cache.split(dataset, split)
                g = f.create_group(f"{dataset}/{split}")
                g.attrs["oczss_split"] = json.dumps(sc.meta, sort_keys=True)
                records = sc.records()
                g.attrs["failed"] = json.dumps({i: why for r in records if r for i, why in r["failed"].items()})
                g.create_dataset("ids", data=np.array(sc.ids, dtype=object), dtype=h5py.string_dtype())
                g.create_dataset("status", data=sc.status(records))
                dsets = {k: g.create_dataset(f"labels_k{k}", shape=(sc.n, p.grid, p.grid), dtype="uint8",
                                             chunks=(1, p.grid, p.grid) if sc.n else None, compression="gzip")
                         for k in p.ks}
                for shard in range(sc.num_shards):
                    a, b = sc.rows(shard)
                    for k in p.ks:
                        dsets[k][a:b] = sc.labels(k)[a:b]
                    if on_shard:
                        on_shard()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
