"""eval (same dataset and cross-dataset), predict, configs, and the demo with its learnability bar, via click."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import make_voc
from oczss.cache.store import MaskCache
from oczss.cli import main
from oczss.pipeline.stage2.checkpoint import restore_model
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.stage2.inference import segment
from oczss.pipeline.stage2.window_clusters import FromFeatureMap

DEMO_CLASSES = "sky,grass,sand,water,circle,square,triangle,star"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(demo_stage1, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("run")
    s = demo_stage1
    result = run("train", "--config", "demo", "--data-root", s["root"], "--cache", s["cache"], "--text", s["text"],
                 "--out", out, "--iters", 4, "--batch-size", 4, "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "trained to iteration 4" in result.output and "RANDOM WEIGHTS" in result.output
    return {**s, "ckpt": str(out / "last.pt")}


def test_eval_report_and_json(trained, tmp_path):
    t = trained
    result = run("eval", "--checkpoint", t["ckpt"], "--dataset", "demo", "--data-root", t["root"], "--cache",
                 t["cache"], "--text", t["text"], "--json", tmp_path / "r.json", "--limit", 3, "--workers", 0)
    assert result.exit_code == 0, result.output
    assert "water     unseen" in result.output and "mIoU(S)" in result.output and "RANDOM WEIGHTS" in result.output
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["images"] == 3 and r["unseen"] == [3, 6] and r["calibration"] == 0.1 and len(r["iou"]) == 8
    assert r["random_weights"] and r["train_config"]["iters"] == 4 and r["model_config"]["num_objects"] == 4
    # the same numbers by hand: segment each image, accumulate, pixel accuracy
    model, _ = restore_model(t["ckpt"], torch.device("cpu"))
    ds = Dataset("demo", t["root"])
    text = torch.from_numpy(np.load(t["text"]))
    from oczss.cache.schema import unpack_grid

    sc = MaskCache.open(t["cache"]).split("demo", "val")
    correct = total = 0
    for sample in ds.samples("val")[:3]:
        image = np.asarray(Image.open(sample.image).convert("RGB"))
        row = sc.row(sample.image_id)  # the default `view` cluster mode reads the image's own token grid
        features = unpack_grid(sc.array("features")[row], sc.array("feature_shape")[row])
        pred = segment(model, image, text, [0, 1, 2, 4, 5, 7], 0.1, short=128, crop=128, stride=96,
                       clusters=FromFeatureMap(features, 4), image_id=sample.image_id, seed=0).argmax(0)
        label = torch.from_numpy(ds.read_label(sample.label)).long()
        valid = label != 255
        correct += int((pred[valid] == label[valid]).sum())
        total += int(valid.sum())
    assert r["pAcc"] == pytest.approx(100 * correct / total, rel=1e-6)
    whole = run("eval", "--checkpoint", t["ckpt"], "--dataset", "demo", "--data-root", t["root"], "--cache",
                t["cache"], "--text", t["text"], "--mode", "whole", "--limit", 2, "--workers", 0)
    assert whole.exit_code == 0 and "whole, 2 images" in whole.output
    for mode in ("whole", "online"):  # a view-mode checkpoint evaluated with the other cluster modes
        other = run("eval", "--checkpoint", t["ckpt"], "--dataset", "demo", "--data-root", t["root"], "--cache",
                    t["cache"], "--cluster-mode", mode, "--limit", 2, "--workers", 0, "--json", tmp_path / f"{mode}.json")
        assert other.exit_code == 0, other.output
        assert json.loads((tmp_path / f"{mode}.json").read_text())["cluster_mode"] == mode


def test_cross_dataset_eval_on_voc(trained, tmp_path):
    root = make_voc(tmp_path / "VOC2012", val=("d", "e"))
    cache = tmp_path / "voc.zarr"
    flags = ["--data-root", root, "--split", "val", "--cache", cache, "--ks", 4, "--input-size", 64, "--grid", 8,
             "--dino-weights", "random", "--dino-model", "tiny", "--device", "cpu"]
    elsewhere = run("eval", "--checkpoint", trained["ckpt"], "--dataset", "voc21", "--data-root", root, "--cache",
                    trained["cache"], "--workers", 0)  # a demo cache: the message names a command that runs
    assert elsewhere.exit_code == 2 and "`oczss precompute --dataset voc --split val" in elsewhere.output
    pre = run("precompute", "--dataset", "VOC21", *flags)  # a variant, in any case: voc's images, cached as voc
    assert pre.exit_code == 0, pre.output
    assert MaskCache.open(str(cache)).splits() == [("voc", "val")]
    for name, classes, unseen in (("voc", 20, [15, 16, 17, 18, 19]), ("Voc21", 21, [])):
        result = run("eval", "--checkpoint", trained["ckpt"], "--dataset", name, "--data-root", root, "--cache", cache,
                     "--json", tmp_path / "x.json", "--workers", 0)
        assert result.exit_code == 0, result.output
        r = json.loads((tmp_path / "x.json").read_text())
        assert r["cross_dataset"] and r["trained_on"] == "demo" and r["calibration"] == 0.0
        assert r["dataset"] == name.lower() and len(r["iou"]) == classes and r["unseen"] == unseen
        assert r["images"] == 2


def test_predict_writes_pngs_and_skips_corrupt_images(trained, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    image = Path(trained["root"]) / "val2017" / "val_0002.jpg"
    big = tmp_path / "big.png"
    Image.open(image).resize((333, 201)).save(big)  # any size, any format
    result = run("predict", image, bad, big, "--checkpoint", trained["ckpt"], "--classes", DEMO_CLASSES, "--text",
                 trained["text"], "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "skipped unreadable image" in result.output and "bad.jpg" in result.output
    labels = Image.open(tmp_path / "out" / "big_labels.png")
    assert labels.mode == "P" and labels.size == (333, 201) and np.asarray(labels).max() < 8
    overlay = Image.open(tmp_path / "out" / "val_0002_overlay.png")
    assert overlay.width == 2 * 480 + 12 or overlay.height > 480
    assert not (tmp_path / "out" / "bad_overlay.png").exists()
    dup = run("predict", image, "--checkpoint", trained["ckpt"], "--classes", "cat,cat")
    assert dup.exit_code == 2 and "distinct" in dup.output
    missing = run("predict", tmp_path / "nope.jpg", "--checkpoint", trained["ckpt"], "--classes", "cat")
    assert missing.exit_code == 2 and "no such image" in missing.output


def test_predict_computes_text_for_new_class_names(trained, tmp_path):
    image = Path(trained["root"]) / "val2017" / "val_0003.jpg"
    result = run("predict", image, "--checkpoint", trained["ckpt"], "--classes", "cat, dog ,grass", "--out",
                 tmp_path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "val_0003_labels.png")).max() < 3


def test_configs_and_train_flag_checks(tmp_path):
    listing = run("configs")
    assert listing.exit_code == 0
    names = [line.split()[0] for line in listing.output.splitlines()]
    for name in ("voc-inductive", "coco-transductive", "context-t6-full", "voc-t7-region", "voc-t8-cross4",
                 "voc-t10-s0", "voc-t14-no8", "voc-seen25", "context-seen50", "demo"):
        assert name in names
    bad = run("train", "--config", "voc-t6-full", "--dataset", "coco", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "contradicts" in bad.output
    bad = run("train", "--config", tmp_path / "missing.json", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "neither a recipe" in bad.output


def test_demo_runs_end_to_end_and_learns_seen_classes(tmp_path):
    """Learnability: the demo's tiny random-weight model reaches mIoU(S) >= 30 within 300 iterations."""
    out = tmp_path / "demo"
    result = run("demo", "--out", out, "--iters", 300)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["step"] == 300 and report["random_weights"]
    assert report["mIoU_seen"] >= 30, report["iou"]
    assert len(list((out / "predictions").glob("*_overlay.png"))) == 3
    assert len(list((out / "predictions-cass").glob("*_labels.png"))) == 3  # CASS, training-free
    again = run("demo", "--out", out, "--iters", 300)  # everything is reused
    assert again.exit_code == 0 and json.loads((out / "eval.json").read_text())["mIoU_seen"] == report["mIoU_seen"]


def test_predict_resumes_keeps_same_named_inputs_apart_and_fails_if_nothing_was_read(trained, tmp_path):
    image = Path(trained["root"]) / "val2017" / "val_0002.jpg"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.open(image).save(tmp_path / folder / "photo.jpg")
    Image.open(image).save(tmp_path / "a" / "photo.png")
    inputs = [tmp_path / "a" / "photo.jpg", tmp_path / "b" / "photo.jpg", tmp_path / "a" / "photo.png"]
    args = ["--checkpoint", trained["ckpt"], "--classes", DEMO_CLASSES, "--text", trained["text"], "--out",
            tmp_path / "out", "--device", "cpu"]
    result = run("predict", *inputs, *args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").glob("*_labels.png"))
    assert names == ["a_photo_jpg_labels.png", "b_photo_jpg_labels.png", "photo_png_labels.png"]
    again = run("predict", *inputs, *args)  # resumable: everything is done already
    assert again.exit_code == 0 and "all 3 images are done already" in again.output
    redo = run("predict", *inputs, *args, "--overwrite")
    assert redo.exit_code == 0 and "3 images segmented" in redo.output
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    none = run("predict", tmp_path / "broken.jpg", *args[:-4], "--out", tmp_path / "o2", "--device", "cpu")
    assert none.exit_code == 2 and "none of the 1 image" in none.output


def test_a_checkpoint_evaluates_from_any_folder_without_its_text_file_or_cache_flag(trained, tmp_path, monkeypatch):
    import shutil

    text = tmp_path / "moved-text.npy"
    shutil.copy(trained["text"], text)
    result = run("train", "--config", "demo", "--data-root", trained["root"], "--cache", trained["cache"], "--text",
                 text, "--out", tmp_path / "run", "--iters", 1, "--batch-size", 2, "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output
    text.unlink()  # the text file the run was trained with is gone
    monkeypatch.chdir(tmp_path / "run")  # and eval runs from another folder, without --cache
    result = run("eval", "--checkpoint", "last.pt", "--dataset", "demo", "--data-root", trained["root"], "--limit", 1,
                 "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output


def test_bad_flag_values_are_refused_before_any_work(trained, tmp_path):
    for args, message in ((["precompute", "--dataset", "demo", "--grid", "0"], "--grid"),
                          (["precompute", "--dataset", "demo", "--seed", "-1"], "--seed"),
                          (["train", "--config", "demo", "--workers", "-1"], "--workers"),
                          (["eval", "--checkpoint", trained["ckpt"], "--dataset", "demo", "--limit", "-3"], "--limit"),
                          (["eval", "--checkpoint", trained["ckpt"], "--dataset", "demo", "--limit", "0"], "--limit")):
        result = run(*args, "--cache", tmp_path / "never.zarr")
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, args
        assert not (tmp_path / "never.zarr").exists()


def test_oczss_through_the_api_prompts_synonyms_as_the_mean_of_their_embeddings(trained):
    import torch.nn.functional as F

    import oczss
    from oczss.errors import ClassListError, OCZSSError

    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        seg = oczss.load(trained["ckpt"], device="cpu")
    method = seg._method
    apart, together = method.embed((("sky",), ("heaven",), ("cat",))), method.embed((("sky", "heaven"), ("cat",)))
    assert torch.allclose(together.embeddings[0], F.normalize(apart.embeddings[:2].mean(0), dim=-1), atol=1e-6)
    assert together.seen == [0] and apart.seen == [0]  # sky is a seen demo class; heaven and cat are not
    image = Path(trained["root"]) / "val2017" / "val_0003.jpg"
    result = seg(image, "sky|heaven,grass,cat")
    assert result.labels.shape == Image.open(image).size[::-1] and result.labels.max() < 3
    assert (result.method, result.random_weights, result.weights["trained_on"]) == ("oczss", True, "demo")
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        with_text = oczss.load(trained["ckpt"], device="cpu", text=trained["text"])
    assert with_text(image, DEMO_CLASSES).classes == DEMO_CLASSES.split(",")
    with pytest.raises(ClassListError, match="no synonyms"):
        with_text(image, DEMO_CLASSES.replace("sky", "sky|heaven"))
    with pytest.raises(OCZSSError, match="takes no config"):
        oczss.load(trained["ckpt"], config="cass")
