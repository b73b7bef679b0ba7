"""SimZSS end to end on the tiny caption fixture: `train --method simzss` through the shared loop (loss falls,
exact resume, torchrun), its caption views, and eval / predict / `oczss.load` from its checkpoint, random weights
said in every output; OC-ZSS's flags refused."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_coco_captions

import oczss
from oczss.cli import main
from oczss.errors import OCZSSError
from oczss.pipeline.simzss.data import CaptionViews, caption_index, crop_box
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.stage2.recipes import RECIPES, resolve
from oczss.pipeline.training.loop import train

DEMO = RECIPES["simzss-demo"][1]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    return make_coco_captions(tmp_path_factory.mktemp("captions") / "MSCOCO", train=8, val=1)


@pytest.fixture(scope="module")
def trained(captions, tmp_path_factory):
    """16 steps of the demo recipe (batch 4, online crops), logged every step."""
    out = tmp_path_factory.mktemp("simzss") / "run"
    cfg = dataclasses.replace(DEMO, iters=16, log_every=1)
    train(cfg, out=out, data_root=str(captions), cache=None, device="cpu", progress=False)
    return out


def test_a_short_run_lowers_the_loss_and_records_its_method(trained):
    losses = [m["loss"] for m in metrics(trained)]
    assert len(losses) == 16 and np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    ckpt = load(trained / "last.pt")
    assert ckpt["method"] == "simzss" and ckpt["dataset"] == "coco-captions" and ckpt["random_weights"] is True
    assert set(ckpt["model"]) >= {"logit_scale", "text.text_projection"} and ckpt["vision"]["tokens"] == "online"
    assert all(m["logit_scale"] <= 100 + 1e-3 for m in metrics(trained))


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(captions, tmp_path):
    cfg = dataclasses.replace(DEMO, iters=4, save_every=1)
    train(cfg, out=tmp_path / "whole", data_root=str(captions), cache=None, device="cpu", progress=False)
    (tmp_path / "cut").mkdir()
    torch.save(load(tmp_path / "whole" / "checkpoints" / "iter_000002.pt"), tmp_path / "cut" / "last.pt")
    train(cfg, out=tmp_path / "cut", data_root=str(captions), cache=None, device="cpu", progress=False, resume=True)
    a, b = load(tmp_path / "whole" / "last.pt"), load(tmp_path / "cut" / "last.pt")
    assert a["step"] == b["step"] == 4 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [m["loss"] for m in metrics(tmp_path / "whole")][-1] == [m["loss"] for m in metrics(tmp_path / "cut")][-1]


def test_views_and_captions_are_drawn_from_the_seed(captions):
    from oczss.pipeline.data.captions import CaptionDataset
    from oczss.pipeline.data.concepts import ConceptConfig

    rng = np.random.default_rng(0)
    for w, h in ((40, 32), (10, 200), (300, 7)):
        left, top, right, bottom = crop_box(w, h, (0.9, 1.0), rng)
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
    counts = [caption_index(0, epoch, 3, 5) for epoch in range(40)]
    assert counts == [caption_index(0, epoch, 3, 5) for epoch in range(40)] and len(set(counts)) == 5
    views = CaptionViews(CaptionDataset(captions).samples("train"), ConceptConfig(source="vocabulary"), 0, 28)
    one, again, other = views[(2, 10)], views[(2, 10)], views[(2, 11)]
    assert one["image"].shape == (28, 28, 3) and torch.equal(one["image"], again["image"])
    assert not torch.equal(one["image"], other["image"]) and one["caption"].labels  # fixture captions name classes


def test_eval_and_predict_from_the_checkpoint_say_random_weights(trained, demo_root, tmp_path):
    r = cli("eval", "--checkpoint", trained / "last.pt", "--dataset", "demo", "--data-root", demo_root,
            "--limit", 2, "--workers", 0, "--device", "cpu", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert "simzss" in r.output and "RANDOM WEIGHTS" in r.output and report["method"] == "simzss"
    assert report["random_weights"] is True and report["images"] == 2 and len(report["iou"]) == 8
    image = next((demo_root / "val2017").glob("*.jpg")) if (demo_root / "val2017").is_dir() else \
        next(demo_root.rglob("*.jpg"))
    r = cli("predict", image, "--classes", "dog,sofa|couch", "--checkpoint", trained / "last.pt", "--out",
            tmp_path / "p", "--device", "cpu")
    assert r.exit_code == 0 and "RANDOM WEIGHTS" in r.output, r.output
    row = json.loads((tmp_path / "p" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["method"] == "simzss" and row["random_weights"] is True
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        seg = oczss.load(trained / "last.pt", device="cpu")
    result = seg(np.zeros((30, 50, 3), np.uint8), classes=["cat", "person|man"], scores=True)
    assert result.scores.shape == (2, 30, 50) and result.random_weights and "RANDOM" in repr(seg)
    assert seg._method.trained is None and seg.weights["vision"] == "tiny-p14"


def test_oczss_flags_and_labelled_datasets_are_refused_for_simzss(trained, captions, tmp_path):
    r = cli("train", "--method", "simzss", "--dataset", "coco-captions", "--cluster-mode", "online")
    assert r.exit_code == 2 and "--method simzss takes no --cluster-mode" in r.output and "\n" == r.output[-1:]
    assert len(r.output.strip().splitlines()) == 1
    r = cli("eval", "--checkpoint", trained / "last.pt", "--dataset", "demo", "--mode", "whole")
    assert r.exit_code == 2 and "--method simzss takes no --mode" in r.output
    with pytest.raises(OCZSSError, match="--dataset coco-captions, not voc"):
        train(dataclasses.replace(DEMO, dataset="voc"), out=tmp_path / "unused", data_root=None, cache=None, device="cpu")
    public = resolve(None, "coco-captions", "simzss")  # the public code's ViT-B run: spaCy's en_core_web_trf
    with pytest.raises(OCZSSError, match="spaCy model 'en_core_web_trf' is not installed: python -m spacy download"):
        train(public, out=tmp_path / "unused", data_root=str(captions), cache=None, device="cpu")
    r = cli("data", "check", "coco-captions", "--data-root", captions, "--workers", 1)
    assert r.exit_code == 0 and "8 images" in r.output and "a subset" in r.output


def test_torchrun_trains_on_two_cpu_processes(captions, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523", "-m",
         "oczss", "train", "--method", "simzss", "--config", "simzss-demo", "--data-root", captions, "--out", run,
         "--iters", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu"],
        capture_output=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert json.loads((run / "config.json").read_text())["runtime"]["world_size"] == 2
    ckpt = load(run / "last.pt")
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_cached_tokens_give_the_loss_of_the_tower_in_the_step(captions, tmp_path):
    from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute

    url = str(tmp_path / "tokens.zarr")
    precompute(PrecomputeConfig(masks="dinov2-tokens", dataset="coco-captions", split="train", vision_model="tiny-p14",
                                weights="random", input_size=56, shard_size=4, batch_size=4, decode_threads=1,
                                device="cpu", data_root=str(captions), cache=url), progress=False)
    losses = {}
    for tokens in ("cache", "online"):  # online on the whole image, as the cache holds it
        cfg = dataclasses.replace(DEMO, iters=2, log_every=1, model={**DEMO.model, "tokens": tokens, "view": "whole"})
        train(cfg, out=tmp_path / tokens, data_root=str(captions), cache=url, device="cpu", progress=False)
        losses[tokens] = [m["loss"] for m in metrics(tmp_path / tokens)]
    assert np.allclose(losses["cache"], losses["online"], rtol=1e-3, atol=0), losses  # fp16 storage
    assert load(tmp_path / "cache" / "last.pt")["vision"]["tokens"] == "cache"
    other = dataclasses.replace(DEMO, model={**DEMO.model, "tokens": "cache",
                                             "simzss": {**DEMO.model["simzss"], "image_size": 70}})
    with pytest.raises(OCZSSError, match="its tokens are tiny-p14 at 56, this run's vision is tiny-p14 at 70"):
        train(other, out=tmp_path / "other", data_root=str(captions), cache=url, device="cpu", progress=False)
    crop = dataclasses.replace(DEMO, iters=1, log_every=1)
    train(crop, out=tmp_path / "crop", data_root=str(captions), cache=None, device="cpu", progress=False)
    assert metrics(tmp_path / "crop")[0]["loss"] != losses["online"][0]  # the views do matter
