"""`oczss cache export --format hdf5`: the cache's arrays and metadata in one HDF5 file (h5py).

    /                       attrs: oczss_metadata (JSON of the cache metadata)
    /<dataset>/<split>/     attrs: oczss_split (JSON), failed (JSON {image id: reason})
        ids          vlen str [N]
        status       uint8 [N]          0 missing, 1 done, 2 failed
        labels_k{K}  uint8 [N, S, S]    chunks of one image, gzip
        features     float16 [N, T, L, D], feature_shape uint16 [N, 2]   (when the cache stores them;
                                        cache/schema.py's layout)
Every array carries its dimension names as HDF5 dimension labels, the Zarr arrays' own (`image`, `y`, `x`, ...),
and `ids` is attached as the dimension scale of every `image` axis (h5py: `dset.dims[0].label`, `dset.dims[0][0]`).
Copied one shard at a time, each checked against its record first (a damaged shard stops the export). The file
is written beside its target (a local temporary file for an fsspec URL target) and renamed or uploaded when
complete, so no half-written file is ever left at the target.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from oczss.cache.location import filesystem, is_local, local_path
from oczss.cache.split import array_layouts
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError


def export_hdf5(url: str, out: str, on_shard=None) -> str:
    """Write the HDF5 file to `out` (a path or an fsspec URL) and return `out`. on_shard(): after each shard."""
    cache = MaskCache.open(url)
    if is_local(out):
        target = local_path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
    else:
        fs, remote = filesystem(out)
        tmp = Path(tempfile.mkstemp(suffix=".h5")[1])
    try:
        with h5py.File(tmp, "w") as f:
            _write(cache, f, on_shard)
        if is_local(out):
            os.replace(tmp, target)
        else:
            fs.put(str(tmp), remote)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _write(cache: MaskCache, f: h5py.File, on_shard) -> None:
    p = cache.params
    f.attrs["oczss_metadata"] = json.dumps(cache.meta, sort_keys=True)
    for dataset in {d for d, _ in cache.splits()}:
        basis = cache.basis(dataset)
        if basis is not None:
            _label(f.create_dataset(f"{dataset}/feature_mean", data=basis[0]), ("channel",))
            _label(f.create_dataset(f"{dataset}/feature_basis", data=basis[1]), ("channel", "component"))
    for dataset, split in cache.splits():
        sc = cache.split(dataset, split)
        g = f.create_group(f"{dataset}/{split}")
        g.attrs["oczss_split"] = json.dumps(sc.meta, sort_keys=True)
        records = sc.records()
        g.attrs["failed"] = json.dumps({i: why for r in records if r for i, why in r["failed"].items()})
        ids = g.create_dataset("ids", data=np.array(sc.ids, dtype=object), dtype=h5py.string_dtype())
        _label(ids, ("image",))
        ids.make_scale("image")
        _label(g.create_dataset("status", data=sc.status(records)), ("image",), ids)
        layouts = array_layouts(p)
        dsets = {name: _label(g.create_dataset(name, shape=(sc.n, *shape), dtype=dtype, compression="gzip",
                                               chunks=(1, *shape) if sc.n else None), ("image", *dims), ids)
                 for name, (shape, dtype, dims) in layouts.items()}
        for shard in range(sc.num_shards):
            a, b = sc.rows(shard)
            if records[shard] is not None:
                data, problems = sc.read_shard(shard, list(layouts), records[shard])
                if problems:
                    raise OCZSSError(f"cache {cache.url} {dataset}/{split} is damaged: {problems[0]}; nothing was "
                                     f"exported (run `oczss cache verify --cache {cache.url}`)")
                for name in layouts:
                    dsets[name][a:b] = data[name]
            if on_shard:
                on_shard()


def _label(dset: h5py.Dataset, dims: tuple[str, ...], image_scale: h5py.Dataset | None = None) -> h5py.Dataset:
    """Name every dimension of `dset`; attach `image_scale` (the ids) to its first, `image`, axis."""
    for axis, name in zip(dset.dims, dims):
        axis.label = name
    if image_scale is not None:
        dset.dims[0].attach_scale(image_scale)
    return dset
