"""Split Matching through the pipeline: `train --method sm` on the demo data (the shared loop: loss, exact resume),
eval and predict from its checkpoint (CLI and oczss.load), the candidates' view sampling, flag refusals, recipes."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import oczss
from oczss.cli import main
from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.model.clip import load_tower
from oczss.model.sm import SMConfig
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.configs import from_dict
from oczss.pipeline.data.datasets import DEMO_CLASSES, Dataset
from oczss.pipeline.data.transforms import View
from oczss.pipeline.demo import random_text
from oczss.pipeline.sm.data import OnlineCandidates, SMData, online_params, pixel_candidates
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.stage1.reader import open_source
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.stage2.recipes import RECIPES, resolve
from oczss.pipeline.training.loop import train

ITERS = 8


def _config(text, **changes):
    cfg = resolve(None, "demo", "sm")
    return dataclasses.replace(cfg, text=str(text), workers=0, log_every=1, save_every=100, **{"iters": ITERS,
                                                                                            **changes})


def _train(cfg, out, demo_root, **kw):
    return train(cfg, out=out, data_root=str(demo_root), cache=None, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def sm_run(demo_root, tmp_path_factory):
    """A short sm-demo run (random text vectors, tiny random model and CLIP): its folder and config."""
    root = tmp_path_factory.mktemp("sm")
    cfg = _config(random_text(root / "text.npy"))
    _train(cfg, root / "run", demo_root)
    return root / "run", cfg


def test_training_lowers_the_loss_and_records_the_method(sm_run):
    run, cfg = sm_run
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == ITERS and np.mean(losses[-3:]) < np.mean(losses[:3])
    ckpt = load(run / "last.pt")
    assert ckpt["method"] == "sm" and ckpt["step"] == ITERS and ckpt["random_weights"] is True
    assert ckpt["candidate_source"]["mode"] == "online" and ckpt["text"].shape == (len(DEMO_CLASSES), 2, 32)
    assert "mask2former.transformer_module.queries_features.weight" in ckpt["model"]


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(sm_run, demo_root, tmp_path):
    run, cfg = sm_run
    (tmp_path / "cut").mkdir()
    shutil.copy(run / "checkpoints" / f"iter_{ITERS // 2:06d}.pt", tmp_path / "cut" / "last.pt")
    _train(cfg, tmp_path / "cut", demo_root, resume=True)
    a, b = load(run / "last.pt")["model"], load(tmp_path / "cut" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_eval_and_predict_from_the_checkpoint_say_random_weights(sm_run, demo_root, tmp_path):
    last = str(sm_run[0] / "last.pt")
    r = CliRunner().invoke(main, ["eval", "--checkpoint", last, "--dataset", "demo", "--data-root", str(demo_root),
                                  "--limit", "2", "--workers", "0", "--device", "cpu",
                                  "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("sm (") and "hIoU" in r.output and RANDOM_NOTE in r.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["method"] == "sm" and report["images"] == 2 and report["random_weights"] is True
    image = sorted((demo_root / "val2017").glob("*.jpg"))[0]
    r = CliRunner().invoke(main, ["predict", str(image), "--classes", "sky,tree|bush,car", "--checkpoint", last,
                                  "--out", str(tmp_path / "p"), "--device", "cpu", "--workers", "0"])
    assert r.exit_code == 0, r.output
    assert RANDOM_NOTE in r.output and (tmp_path / "p" / "predictions.jsonl").is_file()
    seg = oczss.load(last, device="cpu", cache_dir=tmp_path / "text")  # as the web page loads it
    result = seg(str(image), list(DEMO_CLASSES), scores=True)  # its training classes: the stored embeddings
    assert result.method == "sm" and result.random_weights and result.weights["checkpoint"] == last
    assert result.labels.shape == result.image.shape[:2] and result.scores.shape[0] == len(DEMO_CLASSES)
    assert not (tmp_path / "text").exists()
    assert seg(str(image), ["sky", "car"]).labels.max() <= 1 and any((tmp_path / "text").iterdir())


def test_oczss_only_flags_are_refused_with_sm_in_one_line(sm_run, demo_root):
    for args in (["train", "--method", "sm", "--dataset", "demo", "--cluster-mode", "online"],
                 ["eval", "--checkpoint", str(sm_run[0] / "last.pt"), "--dataset", "demo", "--mode", "whole"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0 and "--method sm takes no" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["train", "--dataset", "demo", "--candidates", "online"])  # OC-ZSS's demo recipe
    assert r.exit_code != 0 and r.output.strip() == ("error: --method oczss takes no --candidates (only --method sm "
                                                     "does)")


@pytest.fixture(scope="module")
def clip_cache(demo_root, tmp_path_factory) -> str:
    """Stage 1's clip-kmeans candidates of the demo train split (tiny random CLIP, 64^2, 8 x 8 grid)."""
    url = str(tmp_path_factory.mktemp("clip") / "clip.zarr")
    precompute(PrecomputeConfig(masks="clip-kmeans", dataset="demo", split="train", clip_model="tiny",
                                weights="random", input_size=64, grid=8, windows=(2, 4), max_candidates=6, crop_size=64,
                                batch_size=8, decode_threads=2, device="cpu", data_root=str(demo_root), cache=url),
               progress=False)
    return url


def test_training_reads_stage1_candidates_from_the_cache(sm_run, clip_cache, demo_root, tmp_path):
    cfg = dataclasses.replace(sm_run[1], candidates="cache", iters=2)
    train(cfg, out=tmp_path / "run", data_root=str(demo_root), cache=clip_cache, device="cpu", progress=False)
    ckpt = load(tmp_path / "run" / "last.pt")
    source = ckpt["candidate_source"]
    assert source["mode"] == "cache" and source["clip"] == "tiny" and source["params"]["max_candidates"] == 6
    rows = open_source(clip_cache, "demo", "train", "clip-kmeans")
    item = SMData(Dataset("demo", str(demo_root)), rows_samples(demo_root, rows), rows, 128, seed=0)[(3, 3)]
    assert item["candidate_embeddings"].shape == (6, 32) and item["candidate_labels"].max() <= 255
    stored = set(np.unique(rows.get(rows_samples(demo_root, rows)[3].image_id)["candidate_labels"]).tolist())
    assert set(item["candidate_labels"].unique().tolist()) <= stored | {IGNORE}
    np.save(tmp_path / "text64.npy", np.ones((len(DEMO_CLASSES), 2, 64), np.float32))  # a 64-d text space
    wide = dataclasses.replace(cfg, text=str(tmp_path / "text64.npy"), model={**cfg.model, "embed_dim": 64})
    with pytest.raises(OCZSSError, match="candidates come from CLIP tiny \\(32-d\\).*64-d"):
        train(wide, out=tmp_path / "wide", data_root=str(demo_root), cache=clip_cache, device="cpu", progress=False)


def rows_samples(demo_root, rows):
    return [s for s in Dataset("demo", str(demo_root)).samples("train") if rows.has(s.image_id)]


def test_stored_candidates_follow_the_view_pixel_by_pixel():
    grid = np.array([[0, 1], [2, 3]], np.uint8)
    # an 8 x 8 resized image, 4 x 4 content cropped at (2, 2), mirrored, in a 6 x 6 view (2 pixels of padding)
    labels = pixel_candidates(View(4, 4, 2, 2, 8, 8, flip=True), grid, 6)
    n = IGNORE
    expected = np.array([[1, 1, 0, 0, n, n]] * 2 + [[3, 3, 2, 2, n, n]] * 2 + [[n] * 6] * 2, np.uint8)
    assert np.array_equal(labels, expected)
    unflipped = pixel_candidates(View(4, 4, 2, 2, 8, 8), grid, 6)
    assert np.array_equal(unflipped[:4, :4], expected[:4, 3::-1])


def test_the_data_carries_the_stored_candidates_through_the_view(demo_root):
    dataset = Dataset("demo", str(demo_root))
    samples = dataset.samples("train")[:2]
    grid = np.zeros((8, 8), np.uint8)
    grid[:, 4:] = 1  # the image's right half is candidate 1, its left half candidate 0
    stored = {s.image_id: {"candidate_labels": grid, "candidate_embeddings": np.eye(3, 32, dtype=np.float16)}
              for s in samples}
    item = SMData(dataset, samples, stored, 128, seed=0)[(0, 0)]
    h, w = item["content"].tolist()
    labels = item["candidate_labels"]
    assert labels.shape == (128, 128) and item["candidate_embeddings"].shape == (3, 32)
    assert set(labels[:h, :w].unique().tolist()) <= {0, 1} and (labels[h:] == IGNORE).all()
    assert (labels[:, w:] == IGNORE).all()


def test_online_candidates_leave_the_padding_out():
    tower = load_tower("tiny", "random", "visual")
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    labels, embeddings = OnlineCandidates(tower.module, online_params(64, 16))(images, torch.tensor([[64, 64],
                                                                                                    [40, 24]]))
    assert labels.shape == (2, 64, 64) and embeddings.shape == (2, 50, 32) and not embeddings.is_inference()
    assert (labels[0] != IGNORE).all() and (labels[1, 40:] == IGNORE).all() and (labels[1, :, 24:] == IGNORE).all()
    assert (labels[1, :40, :24] != IGNORE).all()


def test_recipes_parse_and_name_the_paper_rows():
    sm = {name: cfg for name, (_, cfg) in RECIPES.items() if cfg.method == "sm"}
    assert {"sm-voc", "sm-coco", "sm-coco-r50", "sm-coco-r50-baseline", "sm-coco-r50-mfe-bn", "sm-demo"} <= set(sm)
    for name, cfg in sm.items():
        model = from_dict(SMConfig, cfg.model, name)
        assert cfg.lr == 1e-4 or name == "sm-demo"
        assert (model.backbone == "resnet50.tv_in1k") == name.startswith("sm-coco-r50")
    assert sm["sm-voc"].iters == 20000 and sm["sm-coco"].iters == 80000 and sm["sm-coco-r50-sm"].iters == 40000
    assert not from_dict(SMConfig, sm["sm-coco-r50-baseline"].model, "x").split_matching
    with pytest.raises(OCZSSError, match="no recipe for --dataset context"):
        resolve(None, "context", "sm")


def test_a_transductive_sm_run_is_refused_before_any_work(tmp_path):
    cfg = dataclasses.replace(resolve(None, "demo", "sm"), setting="transductive")
    with pytest.raises(OCZSSError, match="inductive setting only"):
        train(cfg, out=tmp_path / "r", data_root=str(tmp_path / "nothing"), cache=None, device="cpu", progress=False)
