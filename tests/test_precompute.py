"""Stage 1 end to end with a tiny random DINO: round trip, resume after SIGKILL, corrupt images, refusals,
DINO loading by name and path, and a real dask LocalCluster."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oczss.cache.split import DONE, FAILED
from oczss.cache.store import MaskCache
from oczss.cache.verify import verify
from oczss.errors import OCZSSError
from oczss.model.clustering import first_centres, fps_voronoi
from oczss.model.dino import DinoFeatures, load_dino
from oczss.cache.schema import unpack_grid
from oczss.model.compaction import compact
from oczss.pipeline.stage1.tokens import load_input
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute

TINY = dict(dataset="demo", weights="random", dino_model="tiny", input_size=64, grid=8, ks=(3, 5),
            shard_size=4, batch_size=3, decode_threads=2)
FLAGS = ["--dataset", "demo", "--dino-weights", "random", "--dino-model", "tiny", "--input-size", "64", "--grid", "8",
         "--ks", "3,5", "--shard-size", "4", "--batch-size", "3", "--decode-threads", "2", "--device", "cpu"]


def tiny(root, cache, **kw) -> PrecomputeConfig:
    return PrecomputeConfig(**{**TINY, "data_root": str(root), "cache": str(cache), **kw})


def snapshot(url: str) -> dict:
    """Every array of every split, and the records without their timestamps."""
    cache = MaskCache.open(url)
    out = {}
    for d, s in cache.splits():
        sc = cache.split(d, s)
        for name, arr in sc.group.arrays():
            if name != "records":
                out[f"{d}/{s}/{name}"] = np.asarray(arr[:])
        out[f"{d}/{s}/records"] = [{k: v for k, v in r.items() if k != "written"} for r in sc.records()]
        basis = cache.basis(d)
        if basis is not None:
            out[f"{d}/feature_mean"], out[f"{d}/feature_basis"] = basis
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_round_trip_equals_direct_computation(demo_root, tmp_path):
    summary = precompute(tiny(demo_root, tmp_path / "c.zarr", split="val"), progress=False)
    assert summary.images == 16 and summary.shards_run == 4 and summary.random_weights
    sc = MaskCache.open(str(tmp_path / "c.zarr")).split("demo", "val")
    assert (sc.status() == DONE).all() and sc.ids == sorted(sc.ids)
    extract = DinoFeatures(load_dino("tiny", "random", 64, dynamic=True), 8)
    mean, basis = (torch.from_numpy(a) for a in MaskCache.open(str(tmp_path / "c.zarr")).basis("demo"))
    features, shapes = sc.array("features")[:], sc.array("feature_shape")[:]
    assert features.shape == (16, 4, 8, 32) and shapes.dtype == np.uint16
    for row, i in enumerate(sc.ids):  # each image on its own, at its aspect ratio (demo images are 4:3, 3:4, 1:1)
        image = torch.from_numpy(load_input(demo_root / "val2017" / f"{i}.jpg", 64, 16, 8))[None]
        tokens = extract.token_grid(extract.normalise(image))
        direct = fps_voronoi(extract.on_grid(tokens), [3, 5], first_centres([i], 0, 64))
        for k in (3, 5):
            assert np.array_equal(sc.labels(k)[row], direct[k].view(8, 8).numpy())
        grid = compact(tokens.permute(0, 2, 3, 1), mean, basis)[0].numpy()
        assert tuple(shapes[row]) == grid.shape[:2] and grid.shape[:2] in ((4, 5), (5, 4), (4, 4), (4, 6))
        assert np.array_equal(unpack_grid(features[row], shapes[row]), grid)
    assert verify(str(tmp_path / "c.zarr")) == []


def test_resume_after_sigkill_gives_identical_cache(demo_root, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    blocked = root / "val2017" / "val_0010.jpg"  # after the basis is fitted on train images
    original = blocked.read_bytes()
    blocked.unlink()
    os.mkfifo(blocked)  # reading it blocks: the run stalls in val shard 2 until it is killed
    cache = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "oczss", "precompute", *FLAGS, "--data-root", str(root),
                             "--split", "all", "--cache", str(cache)], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            done = [r for r in _records(cache) if r]
            if len(done) >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    records = _records(cache)
    assert 2 <= sum(bool(r) for r in records) < len(records)  # killed mid-run
    blocked.unlink()
    blocked.write_bytes(original)
    summary = precompute(tiny(root, cache, split="all"), progress=False)
    assert summary.shards_skipped >= 2 and summary.shards_run >= 1
    precompute(tiny(root, tmp_path / "whole.zarr", split="all"), progress=False)
    assert_same(snapshot(str(cache)), snapshot(str(tmp_path / "whole.zarr")))
    again = precompute(tiny(root, cache, split="all"), progress=False)
    assert again.shards_run == 0 and again.images == 0


def _records(cache: Path) -> list:
    try:
        return MaskCache.open(str(cache)).split("demo", "val").records()
    except OCZSSError:
        return []


def test_corrupt_images_reported_recorded_and_skipped(demo_root, tmp_path, caplog):
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    d = root / "val2017"
    data = (d / "val_0001.jpg").read_bytes()
    (d / "val_0001.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (d / "val_0002.jpg").write_bytes(b"\x00garbage" * 50)  # not an image
    Image.open(d / "val_0003.jpg").convert("CMYK").save(d / "val_0003.jpg")
    Image.open(d / "val_0004.jpg").convert("L").save(d / "val_0004.jpg")
    Image.open(d / "val_0005.jpg").convert("P").save(d / "val_0005.jpg", format="PNG")  # palette, misnamed
    summary = precompute(tiny(root, tmp_path / "c.zarr", split="val"), progress=False)
    err = caplog.text
    assert "val_0001.jpg" in err and "val_0002.jpg" in err
    assert set(summary.failed["val"]) == {"val_0001", "val_0002"}
    sc = MaskCache.open(str(tmp_path / "c.zarr")).split("demo", "val")
    status = sc.status()
    assert [status[sc.row(f"val_000{i}")] for i in range(1, 6)] == [FAILED, FAILED, DONE, DONE, DONE]
    assert (status == DONE).sum() == 14
    assert not sc.labels(5)[sc.row("val_0001")].any()
    assert "cannot decode" in sc.records()[0]["failed"]["val_0001"]
    assert verify(str(tmp_path / "c.zarr")) == []


def test_other_parameters_refused_naming_them(demo_root, tmp_path):
    cache = tmp_path / "c.zarr"
    precompute(tiny(demo_root, cache, split="val"), progress=False)
    with pytest.raises(OCZSSError, match=r"grid: cache has 8, this run has 16") as e:
        precompute(tiny(demo_root, cache, split="val", grid=16), progress=False)
    assert "seed" not in str(e.value)
    with pytest.raises(OCZSSError, match=r"seed: cache has 0, this run has 3"):
        precompute(tiny(demo_root, cache, split="val", seed=3), progress=False)
    with pytest.raises(OCZSSError, match=r"ks: cache has 3,5, this run has 6"):
        precompute(tiny(demo_root, cache, split="val", ks=(6,)), progress=False)


def test_dino_pretrained_offline_and_local_path(tmp_path):
    import timm

    with pytest.raises(OCZSSError, match="--dino-weights PATH"):
        load_dino("vit_small_patch16_224.dino", "pretrained", 128)
    src = timm.create_model("vit_small_patch16_224.dino", pretrained=False, num_classes=0)
    torch.save(src.state_dict(), tmp_path / "dino.pth")
    model = load_dino("vit_small_patch16_224.dino", str(tmp_path / "dino.pth"), 128)
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 384)  # resized from 14x14 to the 128/16 grid
    assert torch.equal(model.blocks[3].mlp.fc1.weight, src.blocks[3].mlp.fc1.weight)
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(OCZSSError, match="no such checkpoint"):
        load_dino("vit_small_patch16_224.dino", str(tmp_path / "none.pth"), 128)
    with pytest.raises(OCZSSError, match="multiple of the patch size"):
        load_dino("tiny", "random", 100)


def test_local_cluster_gives_the_same_cache(demo_root, tmp_path):
    from distributed import LocalCluster

    precompute(tiny(demo_root, tmp_path / "local.zarr", split="val"), progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=2, host="127.0.0.1", dashboard_address=None,
                      processes=True) as cluster:
        summary = precompute(tiny(demo_root, tmp_path / "dist.zarr", split="val", scheduler=cluster.scheduler_address),
                             progress=False)
    assert summary.shards_run == 4
    assert_same(snapshot(str(tmp_path / "local.zarr")), snapshot(str(tmp_path / "dist.zarr")))
    with pytest.raises(OCZSSError, match="cannot reach a dask scheduler"):
        precompute(tiny(demo_root, tmp_path / "x.zarr", split="val", scheduler="tcp://127.0.0.1:9"), progress=False)
