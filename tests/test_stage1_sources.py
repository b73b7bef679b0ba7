"""Stage 1's sources other than dino-fps (clip-kmeans, dinov2-tokens) with tiny random towers: round trip against a
direct call of the model function, resume, damaged shards, wrong-source refusals, flags refused before work,
verify / info / export per source, and old dino-fps caches still opening as dino-fps."""

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from conftest import make_coco_captions
from oczss.cache.store import MaskCache, default_cache_url
from oczss.cache.verify import verify
from oczss.cli import main
from oczss.errors import OCZSSError
from oczss.pipeline.data.images import load_rgb
from oczss.pipeline.data.resize import bilinear
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.stage1.reader import open_source

CLIP = dict(masks="clip-kmeans", dataset="demo", split="val", clip_model="tiny", weights="random", input_size=64,
            grid=8, windows=(2, 4), max_candidates=6, shard_size=4, batch_size=1, decode_threads=2, device="cpu")
TOKENS = dict(masks="dinov2-tokens", dataset="coco-captions", split="all", vision_model="tiny-p14", weights="random",
              input_size=56, shard_size=2, batch_size=1, decode_threads=2, device="cpu")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def square(path, size: int) -> torch.Tensor:
    """The image as the two sources see it: uint8 [1, R, R, 3]."""
    return torch.from_numpy(bilinear(np.asarray(load_rgb(path)), (size, size)))[None]


@pytest.fixture(scope="module")
def clip_cache(demo_root, tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("clip") / "clip.zarr")
    summary = precompute(PrecomputeConfig(**CLIP, data_root=str(demo_root), cache=url), progress=False)
    assert summary.images == 16 and summary.shards_run == 4 and summary.random_weights
    return url


@pytest.fixture(scope="module")
def captions_root(tmp_path_factory) -> Path:
    return make_coco_captions(tmp_path_factory.mktemp("coco") / "MSCOCO")


@pytest.fixture(scope="module")
def tokens_cache(captions_root, tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("tokens") / "tokens.zarr")
    summary = precompute(PrecomputeConfig(**TOKENS, data_root=str(captions_root), cache=url), progress=False)
    assert summary.images == 6 and summary.shards_run == 3
    return url


def test_clip_kmeans_round_trip_equals_unseen_candidates(clip_cache, demo_root):
    from oczss.model.clip import load_tower
    from oczss.model.sm.candidates import CandidateParams, clip_normalise, unseen_candidates

    rows = open_source(clip_cache, "demo", "val", "clip-kmeans")
    assert len(rows.ids) == 16 and rows.random_weights and rows.params["candidates"]["windows"] == [2, 4]
    visual = load_tower("tiny", "random", "visual").module
    params = CandidateParams(grid=8, windows=(2, 4), max_candidates=6)
    for image_id in rows.ids[:5]:
        direct = unseen_candidates(clip_normalise(square(demo_root / "val2017" / f"{image_id}.jpg", 64)), visual,
                                   params)
        got = rows.get(image_id)
        assert got["candidate_labels"].shape == (8, 8) and got["candidate_embeddings"].shape == (6, 32)
        assert np.array_equal(got["candidate_labels"], direct.labels[0].numpy())
        assert int(got["candidate_counts"]) == int(direct.counts[0]) >= 1
        assert np.array_equal(got["candidate_embeddings"], direct.embeddings[0].numpy().astype(np.float16))


def test_dinov2_tokens_round_trip_equals_the_vision_tower(tokens_cache, captions_root):
    from oczss.model.simzss.vision import load_vision
    from oczss.pipeline.data.captions import CaptionDataset

    vision = load_vision("tiny-p14", "random", 56)
    for split in ("train", "val"):
        samples = CaptionDataset(captions_root).samples(split)
        rows = open_source(tokens_cache, "coco-captions", split, "dinov2-tokens")
        assert rows.ids == [s.image_id for s in samples]  # the row order SimZSS's loader relies on
        for sample in samples:
            cls, patches = vision(square(sample.image, 56))
            got = rows.get(sample.image_id)
            assert got["cls"].dtype == np.float16 and got["patches"].shape == (16, 48)
            assert np.array_equal(got["cls"], cls[0].half().numpy())
            assert np.array_equal(got["patches"], patches[0].half().numpy())
    assert open_source(tokens_cache, "coco-captions", "val", "dinov2-tokens").params["view"].startswith("the whole")


def test_resume_recomputes_only_the_unfinished_shard(clip_cache, demo_root, tmp_path):
    import shutil

    copy = str(tmp_path / "c.zarr")
    shutil.copytree(clip_cache, copy)
    before = np.asarray(zarr.open_array(f"{copy}/demo/val/candidate_embeddings", mode="r")[:])
    records = zarr.open_array(f"{copy}/demo/val/records", mode="r+")
    records[1] = 0  # shard 1 written but not recorded: what a killed run leaves
    zarr.open_array(f"{copy}/demo/val/candidate_embeddings", mode="r+")[4:8] = 0
    summary = precompute(PrecomputeConfig(**CLIP, data_root=str(demo_root), cache=copy), progress=False)
    assert (summary.shards_run, summary.shards_skipped) == (1, 3)
    assert np.array_equal(np.asarray(zarr.open_array(f"{copy}/demo/val/candidate_embeddings", mode="r")[:]), before)
    assert verify(copy) == []


def test_a_damaged_shard_is_detected_on_read(tokens_cache, tmp_path):
    import shutil

    copy = str(tmp_path / "t.zarr")
    shutil.copytree(tokens_cache, copy)
    array = zarr.open_array(f"{copy}/coco-captions/train/patches", mode="r+")
    array[0] = np.asarray(array[0]) + np.float16(1)  # rewritten in place: the record's sha256 no longer matches
    rows = open_source(copy, "coco-captions", "train", "dinov2-tokens")
    with pytest.raises(OCZSSError, match=r"damaged: shard 0 \(rows 0:2\) patches: data does not match"):
        rows.get(rows.ids[0])
    skipping = open_source(copy, "coco-captions", "train", "dinov2-tokens", skip_damaged=True)
    assert skipping.get(rows.ids[0]) is None and skipping.get(rows.ids[2]) is not None  # shard 1 is sound
    assert any("patches: data does not match" in p for p in verify(copy))


def test_a_cache_of_another_source_is_refused(clip_cache, tokens_cache, demo_root, tmp_path):
    with pytest.raises(OCZSSError, match="holds clip-kmeans outputs, but .* reads dinov2-tokens outputs"):
        open_source(clip_cache, "demo", "val", "dinov2-tokens")
    with pytest.raises(OCZSSError, match="holds dinov2-tokens outputs, but a model with 4 object prompts reads"):
        MaskCache.open(tokens_cache).require("coco-captions", "train", 4)
    result = run("precompute", "--masks", "dinov2-tokens", "--dataset", "demo", "--data-root", demo_root, "--split",
                 "val", "--vision-model", "tiny-p14", "--vision-weights", "random", "--input-size", "56", "--device",
                 "cpu", "--cache", clip_cache)
    assert result.exit_code == 2 and "holds clip-kmeans outputs, this run makes dinov2-tokens" in result.output
    result = run("cache", "show", "x", "--dataset", "demo", "--out", tmp_path / "x.png", "--cache", clip_cache)
    assert result.exit_code == 2 and "reads dino-fps outputs" in result.output


@pytest.mark.parametrize("args, message", [
    (["--masks", "clip-kmeans", "--ks", "3"], "--masks clip-kmeans takes no --ks (only --masks dino-fps does)"),
    (["--masks", "dino-fps", "--clip-weights", "random", "--windows", "2"],
     "--masks dino-fps takes no --clip-weights, --windows (only --masks clip-kmeans does)"),
    (["--masks", "dinov2-tokens", "--grid", "8"], "takes no --grid (only --masks dino-fps or --masks clip-kmeans do)"),
    (["--masks", "clip-kmeans", "--clip-model", "ViT-Nope"], "--clip-model ViT-Nope: open_clip has no such model"),
    (["--masks", "clip-kmeans", "--dataset", "coco-captions"], "only --masks dinov2-tokens caches it"),
    (["--masks", "clip-kmeans", "--windows", "0"], "--masks clip-kmeans: candidate params: windows must be >= 1"),
])
def test_flags_of_another_source_are_refused_before_work(demo_root, tmp_path, args, message):
    dataset = [] if "--dataset" in args else ["--dataset", "demo"]
    result = run("precompute", *args, *dataset, "--data-root", demo_root, "--device", "cpu", "--cache",
                 tmp_path / "c.zarr")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c.zarr").exists()


def test_verify_info_and_export_per_source(clip_cache, tokens_cache, tmp_path):
    import json

    for url, source, arrays in ((clip_cache, "clip-kmeans", "candidate_embeddings float16 [6, 32]"),
                                (tokens_cache, "dinov2-tokens", "patches float16 [16, 48]")):
        assert run("cache", "verify", "--cache", url).output.endswith(f"{url}: ok\n")
        text = run("cache", "info", "--cache", url).output
        assert f"source {source}: tiny" in text and arrays in text and "RANDOM WEIGHTS" in text
        data = json.loads(run("cache", "info", "--json", "--cache", url).stdout)
        assert data["source"] == source and all(s["done"] == s["images"] for s in data["splits"])
    assert "coco-captions/val: 2 images: 2 done" in run("cache", "info", "--cache", tokens_cache).output
    out = tmp_path / "t.h5"
    assert run("cache", "export", out, "--cache", tokens_cache).exit_code == 0
    import h5py

    with h5py.File(out) as f:
        rows = open_source(tokens_cache, "coco-captions", "train", "dinov2-tokens")
        assert np.array_equal(f["coco-captions/train/cls"][1], rows.get(rows.ids[1])["cls"])


def test_dino_fps_caches_record_their_source_and_old_ones_open_as_dino_fps(demo_stage1, tmp_path, monkeypatch):
    import shutil

    assert MaskCache.open(demo_stage1["cache"]).meta["source"] == "dino-fps"
    copy = str(tmp_path / "old.zarr")
    shutil.copytree(demo_stage1["cache"], copy)
    root = zarr.open_group(copy, mode="r+")
    root.attrs["oczss"] = {k: v for k, v in root.attrs["oczss"].items() if k != "source"}  # as before sources
    cache = MaskCache.open(copy)
    assert cache.source == "dino-fps" and cache.require("demo", "train", 4).n > 0 and verify(copy) == []
    assert open_source(copy, "demo", "val", "dino-fps").get(cache.split("demo", "val").ids[0])["labels_k4"].shape
    monkeypatch.setenv("OCZSS_CACHE", "/data/c.zarr")
    assert [default_cache_url(s) for s in ("dino-fps", "clip-kmeans")] == ["/data/c.zarr", "/data/c-clip-kmeans.zarr"]


def test_data_check_coco_captions(captions_root):
    result = run("data", "check", "coco-captions", "--data-root", captions_root, "--workers", "1")
    assert result.exit_code == 0 and "train" in result.output and "4 images" in result.output
