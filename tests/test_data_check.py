"""`oczss data check`: counts against the official figures, every injected problem found, subsets only warned."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from conftest import make_voc, write_jpeg, write_palette_png
from oczss.cli import main
from oczss.pipeline.data.check import OFFICIAL, check, format_report


def write_label(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def coco_root(root: Path) -> dict[str, list[np.ndarray]]:
    """A COCO-Stuff layout with 3 train and 2 val images; returns the labels written per split."""
    rng = np.random.default_rng(0)
    labels = {"train": [], "val": []}
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            stem = f"{i + (0 if split == 'train' else 100):012d}"
            write_jpeg(root / f"{split}2017" / f"{stem}.jpg", rng)
            lab = rng.choice([0, 5, 80, 170, 255], (32, 40))
            write_label(root / "annotations" / f"{split}2017" / f"{stem}_labelTrainIds.png", lab)
            labels[split].append(lab)
    return labels


def test_a_clean_subset_is_only_warned_and_the_histogram_is_exact(tmp_path):
    root = tmp_path / "MSCOCO"
    labels = coco_root(root)
    report = check("coco", root, workers=2)
    assert report["ok"] and report["problems"] == []
    assert report["warnings"] == ["train: 3 images, the official figure is 118,287 (a subset)",
                                  "val: 2 images, the official figure is 5,000 (a subset)"]
    for entry, split in zip(report["splits"], ("train", "val")):
        counts = np.bincount(np.concatenate([lab.ravel() for lab in labels[split]]), minlength=256)
        assert entry["histogram"] == counts[:171].tolist()
        assert (entry["ignore"], entry["out_of_range"], entry["labelled"]) == (counts[255], 0, len(labels[split]))
    result = CliRunner().invoke(main, ["data", "check", "coco", "--data-root", str(root)])  # NAME, as data prepare
    assert result.exit_code == 0, result.output
    assert "(a subset)" in result.output and "wall-concrete" in result.output and result.output.endswith("ok\n")
    as_json = CliRunner().invoke(main, ["data", "check", "--dataset", "COCO", "--data-root", str(root), "--json",
                                        "--workers", "1"])  # the older --dataset, and a name in any case
    assert json.loads(as_json.output)["splits"][1]["histogram"] == report["splits"][1]["histogram"]


def test_every_injected_problem_is_reported_and_exits_non_zero(tmp_path):
    root = tmp_path / "MSCOCO"
    coco_root(root)
    ann = root / "annotations" / "train2017"
    (ann / "000000000000_labelTrainIds.png").unlink()  # image without label
    (root / "train2017" / "000000000001.jpg").write_bytes(b"not a jpeg")  # unreadable image
    write_label(ann / "000000000002_labelTrainIds.png", np.zeros((10, 10)))  # size mismatch
    write_label(root / "annotations" / "val2017" / "000000000100_labelTrainIds.png", np.full((32, 40), 200))
    (root / "annotations" / "val2017" / "000000000101_labelTrainIds.png").write_bytes(b"\x89PNG broken")
    write_label(ann / "000000000009_labelTrainIds.png", np.zeros((32, 40)))  # label without image
    report = check("coco", root, workers=1)
    problems = "\n".join(report["problems"])
    expected = [
        r"train: image without label: .*train2017/000000000000\.jpg \(no .*000000000000_labelTrainIds\.png\)",
        r"label without image: .*000000000009_labelTrainIds\.png",
        r"train: unreadable image: .*train2017/000000000001\.jpg: cannot decode",
        r"train: size mismatch: image .*000000000002\.jpg is 40x32, label .*000000000002_labelTrainIds\.png is 10x10",
        r"val: label values outside 0\.\.170 \(and 255\): .*000000000100_labelTrainIds\.png holds 200",
        r"val: unreadable label: label .*000000000101_labelTrainIds\.png: cannot be read",
    ]
    for pattern in expected:
        assert re.search(pattern, problems), pattern
    assert len(report["problems"]) == len(expected) and not report["ok"]
    assert report["splits"][1]["out_of_range"] == 32 * 40
    result = CliRunner().invoke(main, ["data", "check", "--dataset", "coco", "--data-root", str(root)])
    assert result.exit_code == 1
    for p in report["problems"]:
        assert p in result.output
    assert "6 problem(s)" in result.output


def test_voc_lists_against_their_figures_with_each_decoding(tmp_path):
    root = make_voc(tmp_path / "VOC2012")  # train a, b; trainaug a, c; val d; values 0, 1, 15, 20, 255
    v21 = check("voc21", root, workers=1)
    assert [(s["split"], s["images"], s["official"]) for s in v21["splits"]] == [
        ("train", 2, 1464), ("trainaug", 2, 10582), ("val", 1, 1449)]
    assert v21["ok"] and len(v21["warnings"]) == 3
    bg = v21["splits"][2]["histogram"][0]
    v20 = check("voc20", root, workers=1)
    assert bg > 0 and v20["splits"][2]["ignore"] == v21["splits"][2]["ignore"] + bg
    assert v20["splits"][2]["histogram"] == v21["splits"][2]["histogram"][1:]
    write_palette_png(root / "SegmentationClass" / "d.png", np.full((32, 40), 21))  # a class VOC does not have
    (root / "JPEGImages" / "c.jpg").unlink()
    report = check("voc", root, workers=1)
    assert any("val: label values outside 0..19 (and 255)" in p and "d.png holds 20" in p for p in report["problems"])
    assert any(p.startswith("trainaug: image missing:") and "c.jpg" in p for p in report["problems"])
    assert any(p.startswith("label without image:") and "SegmentationClassAug/c.png" in p for p in report["problems"])
    text = format_report(report)
    assert "tvmonitor" in text and "problems (3):" in text


def test_cityscapes_nested_folders_and_a_count_above_the_figure(tmp_path, demo_root):
    rng = np.random.default_rng(1)
    root = tmp_path / "cityscapes"
    for split, city in (("train", "aachen"), ("val", "lindau"), ("val", "munster")):
        stem = f"{city}_000000_000019"
        write_jpeg(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rng, size=(16, 8))
        lab = rng.choice([0, 18, 255], (8, 16))
        write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", lab)
    write_label(root / "gtFine" / "val" / "lindau" / "lindau_000001_000019_gtFine_labelTrainIds.png", np.zeros((8, 16)))
    report = check("cityscapes", root, workers=1)
    assert [s["images"] for s in report["splits"]] == [1, 2]
    assert report["problems"] == [f"label without image: {root}/gtFine/val/lindau/lindau_000001_000019_gtFine_"
                                  f"labelTrainIds.png (no {root}/leftImg8bit/val/lindau/lindau_000001_000019_"
                                  f"leftImg8bit.png)"]
    demo = shutil.copytree(demo_root, tmp_path / "demo")
    shutil.copy(demo / "val2017" / "val_0000.jpg", demo / "val2017" / "extra.jpg")
    shutil.copy(demo / "annotations" / "val2017" / "val_0000_labelTrainIds.png",
                demo / "annotations" / "val2017" / "extra_labelTrainIds.png")
    report = check("demo", demo)
    assert report["problems"] == [f"val: 17 images, more than the official {OFFICIAL['demo']['val']}"]
    assert report["warnings"] == [] and sum(report["splits"][0]["histogram"]) > 0
