"""CASS through the pipeline: the training-free protocol per image (resize, prior, windows, synonyms, background
threshold), `eval --method cass` on a benchmark fixture and `predict --method cass` without any checkpoint."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from conftest import make_voc
from oczss.cli import main
from oczss.errors import OCZSSError
from oczss.model.cass import ablation, build_cass, for_benchmark
from oczss.pipeline.cass.recipes import PREDICT_BENCHMARK, recipes, resolve
from oczss.pipeline.cass.segment import CassSegmenter

TINY = ["--weights", "random", "--dino-weights", "random", "--backbone", "tiny", "--dino-model", "tiny-p8",
        "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_cass():
    config = for_benchmark("voc21", short_side=64, window=32, stride=16, slide=True)
    return build_cass(config, "random", "random", backbone="tiny", dino_model="tiny-p8"), config


def test_class_probabilities_take_the_best_synonym_and_the_threshold_makes_background(tiny_cass):
    cass, config = tiny_cass
    classes = [("sky", "wall"), ("cat",), ("dog", "puppy", "hound")]
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    whole = CassSegmenter(cass, config.__class__(**{**config.__dict__, "slide": False}), classes, torch.device("cpu"))
    probs = whole.probabilities(image)
    # independently: resize to short side 64 (80x48 -> 107x64) as mmcv does (cv2), CLIP-normalise, one window,
    # softmax over 6 names
    resized = cv2.resize(image, (107, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    mean = np.array([0.48145466, 0.4578275, 0.40821073]) * 255
    std = np.array([0.26862954, 0.26130258, 0.27577711]) * 255
    x = torch.from_numpy(((resized - mean) / std).transpose(2, 0, 1)).float()[None]
    prior = cass.prior(x)
    logits = F.interpolate(cass.window_logits(x, prior), size=(48, 80), mode="bilinear", align_corners=False)[0]
    names = torch.softmax(logits * config.logit_scale, 0)
    expected = torch.stack([names[0:2].amax(0), names[2], names[3:6].amax(0)])
    assert torch.allclose(probs, expected, atol=1e-5)
    strict = CassSegmenter(cass, config.__class__(**{**config.__dict__, "slide": False, "prob_threshold": 0.99}),
                           classes, torch.device("cpu"))
    labels = strict(image)
    assert (labels[probs.amax(0) < 0.99] == 0).all()
    assert torch.equal(labels[probs.amax(0) >= 0.99], probs.argmax(0)[probs.amax(0) >= 0.99])


def test_sliding_windows_cover_the_image_and_change_the_result(tiny_cass):
    cass, config = tiny_cass
    image = np.random.default_rng(1).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    sliding = CassSegmenter(cass, config, [("a",), ("b",), ("c",)], torch.device("cpu")).probabilities(image)
    whole = CassSegmenter(cass, config.__class__(**{**config.__dict__, "slide": False}), [("a",), ("b",), ("c",)],
                          torch.device("cpu")).probabilities(image)
    assert sliding.shape == whole.shape == (3, 48, 80) and not torch.allclose(sliding, whole)
    assert torch.allclose(sliding.sum(0), torch.ones(48, 80), atol=1e-5)  # one name per class: a distribution


def test_whole_image_mode_runs_clips_trunk_once_with_the_same_result(tiny_cass):
    cass, config = tiny_cass
    image = np.random.default_rng(2).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    calls = []
    hook = cass.visual.transformer.resblocks[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        whole = CassSegmenter(cass, dataclasses.replace(config, slide=False), [("a",), ("b",)], torch.device("cpu"))
        once = whole.probabilities(image)
        assert len(calls) == 1  # the prior and the logits from one pass
        # the old way: a sliding window larger than the image is the whole image, prior from its own pass
        twice = CassSegmenter(cass, dataclasses.replace(config, window=4096), [("a",), ("b",)],
                              torch.device("cpu")).probabilities(image)
        assert len(calls) == 3
    finally:
        hook.remove()
    assert torch.allclose(once, twice, atol=1e-6)


def test_recipes_cover_table_1_and_table_3():
    names = recipes()
    assert {f"cass-t3-exp{n}" for n in range(1, 9)} <= set(names) and "cass-cityscapes" in names
    assert resolve("cass-t3-exp1", "context59").vfm is False
    assert resolve("cass-t3-exp6", "voc20").eigenscaling is False  # DE is off on voc20 in the authors' code
    assert resolve(None, "cityscapes").short_side == 560 and resolve(None, "voc21").slide is False
    assert resolve("cass-paper", "voc21").head_pairing == "matched"
    with pytest.raises(OCZSSError, match="not voc20's"):
        resolve("cass-voc21", "voc20")
    # predict's own classes: Context59's constants, or another benchmark's by name
    assert resolve(None, "custom") == for_benchmark(PREDICT_BENCHMARK) == for_benchmark("context59")
    assert resolve("cass-voc21", "custom") == for_benchmark("voc21")
    assert resolve("cass-t3-exp4", "custom") == ablation(4, "context59")


def test_eval_method_cass_on_a_benchmark_fixture(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    out = tmp_path / "r.json"
    result = run("eval", "--method", "cass", "--dataset", "voc21", "--data-root", root, "--json", out, *TINY)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["method"] == "cass" and report["images"] == 1 and len(report["iou"]) == 21
    assert report["config"]["prob_threshold"] == 0.1 and report["random_weights"] is True
    assert report["class_names"][0][:2] == ["sky", "wall"] and report["paper_mIoU"] == 65.8
    assert 0 <= report["pAcc"] <= 100 and "RANDOM WEIGHTS" in result.output
    result = run("eval", "--method", "cass", "--dataset", "demo", *TINY)
    assert result.exit_code == 2 and "class-name files" in result.output
    result = run("eval", "--dataset", "voc21", "--data-root", root, *TINY[:4])
    assert result.exit_code == 2 and "--checkpoint" in result.output
    result = run("eval", "--dataset", "voc21", "--data-root", root, *TINY)  # CASS's towers with OC-ZSS
    assert result.exit_code == 2 and "--method oczss takes no --backbone, --dino-model" in result.output


def test_predict_method_cass_needs_no_checkpoint(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "p.jpg")
    result = run("predict", tmp_path / "p.jpg", "--method", "cass", "--classes", "cat,sofa|couch,window",
                 "--out", tmp_path / "out", *TINY)
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(tmp_path / "out" / "p_labels.png"))
    assert labels.shape == (40, 60) and labels.max() < 3
    result = run("predict", tmp_path / "p.jpg", "--method", "cass", "--classes", "cat", "--checkpoint",
                 tmp_path / "p.jpg", "--out", tmp_path / "o2", *TINY)
    assert result.exit_code == 2 and "--method cass takes no --checkpoint" in result.output
    for args, message in ((["--classes", "cat,|"], "class 2 ('|') has an empty name"),
                          (["--classes", "cat,cat|cat"], "'cat' is given twice"),
                          (["--classes", "cat", "--mode", "whole"], "--method cass takes no --mode"),
                          (["--classes", "cat", "--save", "overlay,pdf"], "choose one or more of overlay")):
        result = run("predict", tmp_path / "p.jpg", "--method", "cass", *args, "--out", tmp_path / "o3", *TINY)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, args
    assert not (tmp_path / "o3").exists()  # refused before any work
