"""Schema 4's layout of the view mode's features (each image's token grid at its aspect ratio, short side first,
with its shape), what verifies it, and the refusal of older caches."""

import numpy as np
import pytest
import zarr

from oczss.cache.integrity import shard_problems
from oczss.cache.schema import SCHEMA_VERSION, CacheParams, pack_grid, unpack_grid
from oczss.cache.store import MaskCache
from oczss.cache.verify import verify
from oczss.errors import OCZSSError

PARAMS = CacheParams(dino_model="tiny", fingerprint="f" * 64, input_size=32, grid=4, ks=(3,), seed=0, device="cpu",
                     dtype="float32", shard_size=2, feature_dim=3, feature_grid=2, feature_long=4)


def test_pack_and_unpack_keep_every_orientation():
    rng = np.random.default_rng(0)
    for rows, cols in ((2, 3), (3, 2), (2, 2), (4, 2)):
        grid = rng.normal(size=(rows, cols, 3)).astype(np.float16)
        stored = pack_grid(grid, 2, 4)
        assert stored.shape == (2, 4, 3) and np.abs(stored).sum() == np.abs(grid).sum()  # the rest is zero
        assert np.array_equal(unpack_grid(stored, (rows, cols)), grid)


def _split(url: str):
    cache = MaskCache.create_or_open(url, PARAMS, random_weights=True)
    cache.set_basis("demo", np.zeros(5, np.float32), np.zeros((5, 3), np.float32))
    return cache.require_split("demo", "val", ["a", "b", "c"], "/data")


def test_features_and_their_shapes_are_recorded_and_verified(tmp_path):
    url = str(tmp_path / "c.zarr")
    sc = _split(url)
    rng = np.random.default_rng(1)
    grids = [rng.normal(size=shape).astype(np.float16) for shape in ((2, 3, 3), (4, 2, 3), (2, 2, 3))]
    for shard, rows in ((0, [0, 1]), (1, [2])):
        sc.write_shard(shard, {"labels_k3": np.zeros((len(rows), 4, 4), np.uint8),
                               "features": np.stack([pack_grid(grids[r], 2, 4) for r in rows]),
                               "feature_shape": np.array([grids[r].shape[:2] for r in rows], np.uint16)}, {})
    assert verify(url) == []
    data, problems = sc.read_shard(0, ["features", "feature_shape"], sc.records()[0])
    assert problems == [] and np.array_equal(unpack_grid(data["features"][1], data["feature_shape"][1]), grids[1])
    bad = {**data, "feature_shape": np.array([[3, 3], [2, 4]], np.uint16)}  # 3 x 3 cannot fit 2 x 4
    found = shard_problems({"features": (2, 4, 3), "feature_shape": (2,)}, ["a", "b"], (0, 2), 0,
                           sc.records()[0], bad, {})
    assert any("token grids larger than the stored 2 x 4" in f for f in found)
    assert any("feature_shape: data does not match its completion record" in f for f in found)


def test_an_older_cache_is_refused_saying_what_to_run(tmp_path):
    url = str(tmp_path / "old.zarr")
    _split(url)
    root = zarr.open_group(url, mode="r+")
    root.attrs["oczss"] = {**root.attrs["oczss"], "schema_version": SCHEMA_VERSION - 1}
    with pytest.raises(OCZSSError, match=r"schema version 3, this oczss reads 4 .*aspect ratio.*`oczss precompute "
                                         r"--dataset demo --split all --cache NEW_CACHE`$"):
        MaskCache.open(url)
