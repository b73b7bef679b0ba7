"""`oczss precompute` and `oczss cache info|verify|show|export` through click; verify catches damage."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from oczss.cache.info import split_report
from oczss.cache.schema import CacheParams
from oczss.cache.store import MaskCache
from oczss.cli import main
from test_precompute import FLAGS


@pytest.fixture(scope="module")
def built(demo_root, tmp_path_factory) -> str:
    """A tiny cache of the demo's val split, built once through the CLI."""
    url = str(tmp_path_factory.mktemp("cache") / "c.zarr")
    result = CliRunner().invoke(main, ["precompute", *FLAGS, "--data-root", str(demo_root), "--split", "val",
                                       "--cache", url])
    assert result.exit_code == 0, result.output
    assert "16 images in 4 shards" in result.output and "RANDOM WEIGHTS" in result.output
    return url


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_bad_flags_refused_before_any_work(demo_root, tmp_path):
    url = str(tmp_path / "c.zarr")
    for extra, message in ((["--ks", "0"], "every K must lie in"), (["--ks", "6,x"], "comma-separated"),
                           (["--input-size", "100"], "multiple of the patch size 16"), (["--device", "cuda"], "CUDA is not available"),
                           (["--split", "test"], "Invalid value for '--split'")):
        args = [*FLAGS, "--data-root", str(demo_root), "--cache", url]
        args[args.index("--device") + 1:args.index("--device") + 2] = ["cpu"]
        result = run("precompute", *args, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output
        assert not Path(url).exists()
    result = run("precompute", "--dataset", "voc", "--data-root", str(tmp_path / "nope"), "--cache", url)
    assert result.exit_code == 2 and "JPEGImages" in result.output and not Path(url).exists()


def test_info_text_and_json(built):
    result = run("cache", "info", "--cache", built)
    assert result.exit_code == 0, result.output
    assert "demo/val: 16 images: 16 done, 0 missing, 0 failed; shards 4/4" in result.output
    assert "RANDOM WEIGHTS" in result.output and "K=3: empty clusters" in result.output
    data = json.loads(run("cache", "info", "--cache", built, "--json").output)
    (split,) = data["splits"]
    assert split["done"] == 16 and split["bytes"] > 0 and data["params"]["grid"] == 8
    assert 0 <= split["clusters"]["5"]["empty_share"] < 1
    q = split["clusters"]["5"]["size_quantiles"]
    assert 0 < q["p5"] <= q["p50"] <= q["p95"] <= 1


def test_cluster_stats_on_known_labels(tmp_path):
    params = CacheParams("tiny", "f" * 64, 64, 2, (3,), 0, "cpu", "float32", 2)
    cache = MaskCache.create_or_open(str(tmp_path / "c.zarr"), params, random_weights=True)
    sc = cache.require_split("demo", "val", ["a", "b", "c"], "/data")
    sc.write_shard(0, {"labels_k3": np.array([[[0, 0], [1, 1]], [[0, 1], [2, 2]]], np.uint8)}, {})
    records = sc.records()
    report = split_report(sc, records, sc.status(records))  # shard 1 (image c) is not done: not counted
    assert report["damaged"] == []
    stats = report["clusters"]["3"]
    assert stats["images"] == 2
    assert stats["empty_share"] == pytest.approx(1 / 6)
    assert stats["size_quantiles"]["p50"] == pytest.approx(0.5)
    assert stats["size_quantiles"]["p5"] == pytest.approx(0.25)


def test_verify_ok_then_catches_wrong_values_and_truncated_shard(built, tmp_path):
    import shutil

    assert run("cache", "verify", "--cache", built).exit_code == 0
    url = str(tmp_path / "damaged.zarr")
    shutil.copytree(built, url)
    sc = MaskCache.open(url, writable=True).split("demo", "val")
    bad = np.asarray(sc.labels(3)[4:8]).copy()
    bad[1, 2, 3] = 7
    sc.labels(3)[4:8] = bad  # wrong value written behind the record's back
    shard_file = Path(url) / "demo" / "val" / "labels_k5" / "c" / "2" / "0" / "0"
    shard_file.write_bytes(shard_file.read_bytes()[:-40])  # truncated shard object
    result = run("cache", "verify", "--cache", url)
    assert result.exit_code == 1
    out = result.output
    assert "shard 1 (rows 4:8) labels_k3: 1 label values >= K=3" in out
    assert "shard 1 (rows 4:8) labels_k3: data does not match its completion record" in out
    assert "shard 2 (rows 8:12) labels_k5: cannot be read" in out
    assert "shard 0" not in out and "shard 3" not in out


def test_show_writes_picture(built, demo_root, tmp_path):
    out = tmp_path / "fig" / "show.png"
    result = run("cache", "show", "val_0003", "--dataset", "demo", "--k", "5", "--out", str(out), "--cache", built)
    assert result.exit_code == 0, result.output
    im = np.asarray(Image.open(out).convert("RGB"))
    src = Image.open(demo_root / "val2017" / "val_0003.jpg")
    w = round(src.width * 480 / max(src.size))
    assert im.shape[1] == max(2 * w + 12, 480)
    head = im[:48]
    assert ((head[..., 0] > 150) & (head[..., 1] < 60) & (head[..., 2] < 60)).any()  # the red random-weights notice
    rows = im[60:60 + 100]
    left, right = rows[:, (im.shape[1] - 2 * w - 12) // 2:][:, :w], rows[:, (im.shape[1] - 2 * w - 12) // 2 + w + 12:][:, :w]
    assert not np.array_equal(left, right)  # the overlay changes the picture
    result = run("cache", "show", "nope", "--dataset", "demo", "--k", "3", "--out", str(out), "--cache", built)
    assert result.exit_code == 2 and "none of the cached demo splits" in result.output
    result = run("cache", "show", "val_0003", "--dataset", "demo", "--k", "6", "--out", str(out), "--cache", built)
    assert result.exit_code == 2 and "K in 3,5" in result.output


def test_export_hdf5_equals_cache(built, tmp_path):
    out = tmp_path / "c.h5"
    assert run("cache", "export", "--format", "hdf5", str(out), "--cache", built).exit_code == 0
    sc = MaskCache.open(built).split("demo", "val")
    with h5py.File(out) as f:
        g = f["demo/val"]
        assert [i.decode() for i in g["ids"][:]] == sc.ids
        for k in (3, 5):
            assert np.array_equal(g[f"labels_k{k}"][:], sc.labels(k)[:])
        assert (g["status"][:] == 1).all()
        for name, dims in (("labels_k3", ["image", "y", "x"]), ("features", ["image", "short", "long", "component"]),
                           ("feature_shape", ["image", "grid_axis"]), ("status", ["image"])):  # the Zarr arrays' dimension names, as HDF5 dimension labels
            assert [d.label for d in g[name].dims] == dims, name
            assert g[name].dims[0][0] == g["ids"]  # the ids are the image axis' dimension scale
        assert [d.label for d in f["demo/feature_basis"].dims] == ["channel", "component"]
        assert json.loads(f.attrs["oczss_metadata"])["params"]["ks"] == [3, 5]


def test_missing_cache_is_a_clear_error(tmp_path):
    result = run("cache", "info", "--cache", str(tmp_path / "none.zarr"))
    assert result.exit_code == 2 and "no mask cache at" in result.output and "oczss precompute" in result.output


def test_fsspec_url_cache(demo_root):
    """Any fsspec URL works as a cache location: here fsspec's in-memory filesystem."""
    from oczss.cache.info import cache_info
    from oczss.cache.verify import verify
    from oczss.pipeline.stage1.precompute import precompute
    from test_precompute import tiny

    url = "memory://oczss-test/cache.zarr"
    assert precompute(tiny(demo_root, url, split="val"), progress=False).images == 16
    assert cache_info(url)["splits"][0]["done"] == 16 and verify(url) == []
    assert precompute(tiny(demo_root, url, split="val"), progress=False).shards_skipped == 4
