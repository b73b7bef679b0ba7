"""Datasets: class lists and splits as in the protocol, label decoding, layouts, clear errors, the demo."""

import filecmp
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_voc, write_jpeg, write_palette_png
from oczss.errors import OCZSSError
from oczss.pipeline.data.datasets import SPECS, Dataset, reduce_zero_label
from oczss.pipeline.data.demo_scenes import ensure_demo

EMBEDDINGS = Path("/work/shared/reference/text-embeddings")


def test_class_lists_and_splits():
    voc, ctx, coco = SPECS["voc"], SPECS["context"], SPECS["coco"]
    assert (len(voc.classes), len(ctx.classes), len(coco.classes)) == (20, 59, 171)
    assert [voc.classes[i] for i in voc.unseen] == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]
    assert [ctx.classes[i] for i in ctx.unseen] == ["aeroplane", "bird", "boat", "cat", "cow", "fence", "keyboard",
                                                    "motorbike", "sofa", "tv monitor"]
    assert [coco.classes[i] for i in coco.unseen] == [
        "cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "cardboard", "clouds", "grass",
        "playingfield", "river", "road", "tree", "wall-concrete"]
    assert len(coco.seen) == 156 and len(ctx.seen) == 49 and voc.seen == tuple(range(15))
    assert coco.classes[170] == "wood" and coco.classes[80] == "banner"
    assert (voc.templates, ctx.templates, coco.templates) == (6, 8, 8)
    assert (ctx.crop, voc.crop, coco.crop) == (480, 512, 512)


def test_class_counts_match_shipped_text_embeddings():
    for name, file in (("voc", "voc12_otseg.npy"), ("context", "context_otseg.npy"), ("coco", "coco_otseg.npy")):
        arr = np.load(EMBEDDINGS / file, mmap_mode="r")
        assert arr.shape[:2] == (len(SPECS[name].classes), SPECS[name].templates)


def test_reduce_zero_label():
    lab = np.array([[0, 1, 20], [255, 5, 0]], np.uint8)
    assert reduce_zero_label(lab).tolist() == [[255, 0, 19], [255, 4, 255]]


def test_voc_layout_palette_labels_and_train_concatenation(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    ds = Dataset("voc", root)
    samples = ds.samples("train")
    assert [s.image_id for s in samples] == ["a", "b", "a", "c"]  # train then trainaug, duplicates kept
    assert samples[2].label == root / "SegmentationClassAug" / "a.png"
    assert ds.image_ids("train") == ["a", "b", "c"]
    raw = np.asarray(Image.open(samples[0].label))
    lab = ds.read_label(samples[0].label)
    assert set(np.unique(raw)) <= {0, 1, 15, 20, 255}
    assert np.array_equal(lab == 255, (raw == 0) | (raw == 255))
    assert np.array_equal(lab[raw == 20], np.full((raw == 20).sum(), 19))


def test_context_and_coco_layouts(tmp_path):
    rng = np.random.default_rng(0)
    ctx = tmp_path / "VOC2010"
    (ctx / "train.txt").parent.mkdir(parents=True)
    (ctx / "train.txt").write_text("2008_000001\n")
    write_jpeg(ctx / "JPEGImages" / "2008_000001.jpg", rng)
    write_palette_png(ctx / "SegmentationClassContext" / "2008_000001.png", np.full((32, 40), 59))
    s = Dataset("context", ctx).samples("train")[0]
    assert Dataset("context", ctx).read_label(s.label).max() == 58

    coco = tmp_path / "MSCOCO"
    write_jpeg(coco / "val2017" / "000000000139.jpg", rng)
    lab = np.full((32, 40), 170, np.uint8)
    lab[0, 0] = 255
    (coco / "annotations" / "val2017").mkdir(parents=True)
    Image.fromarray(lab, mode="L").save(coco / "annotations" / "val2017" / "000000000139_labelTrainIds.png")
    ds = Dataset("coco", coco)
    s = ds.samples("val")[0]
    assert s.image_id == "000000000139" and np.array_equal(ds.read_label(s.label), lab)


def test_missing_root_and_files_named(tmp_path):
    with pytest.raises(OCZSSError, match="does not exist.*JPEGImages"):
        Dataset("voc", tmp_path / "nowhere").samples("train")
    root = make_voc(tmp_path / "VOC2012")
    (root / "ImageSets" / "Segmentation" / "trainaug.txt").unlink()
    with pytest.raises(OCZSSError, match="trainaug.txt"):
        Dataset("voc", root).samples("train")
    with pytest.raises(OCZSSError, match="unknown dataset"):
        Dataset("nope", root)


def test_dataset_names_in_any_case_with_the_closest_suggested():
    from oczss.pipeline.data.names import DATASETS, images_of
    from oczss.pipeline.stage2.config import TrainConfig

    assert tuple(SPECS) == DATASETS  # the light list the command line parses with
    assert Dataset("VOC21", "x").spec.name == "voc21" and TrainConfig(dataset="Context").dataset == "context"
    with pytest.raises(OCZSSError, match=r"'pascal'; did you mean voc or context59\?"):
        Dataset("pascal", "x")
    with pytest.raises(OCZSSError, match=r"did you mean cityscapes\?"):
        TrainConfig(dataset="city-scapes")
    assert [images_of(n) for n in ("voc21", "context60", "coco-object", "ade", "voc")] == \
        ["voc", "context", "coco", "ade", "voc"]


def test_rgb_label_refused(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    bad = root / "SegmentationClass" / "b.png"
    Image.new("RGB", (40, 32)).save(bad)
    with pytest.raises(OCZSSError, match="b.png.*RGB"):
        Dataset("voc", root).read_label(bad)


def test_demo_is_deterministic_and_in_coco_layout(demo_root, tmp_path):
    other = ensure_demo(tmp_path / "demo")
    ds = Dataset("demo", demo_root)
    assert len(ds.samples("train")) == 48 and len(ds.samples("val")) == 16
    for s in ds.samples("val")[:4]:
        rel = s.image.relative_to(demo_root)
        assert filecmp.cmp(s.image, other / rel, shallow=False)
        lab = ds.read_label(s.label)
        assert set(np.unique(lab)) <= set(range(8)) | {255}
        assert Image.open(s.image).size[::-1] == lab.shape
    labels = np.concatenate([ds.read_label(s.label).ravel() for s in ds.samples("train")])
    assert set(np.unique(labels)) == set(range(8)) | {255}


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("precious")
    (mine / "sub" / "data.csv").write_text("1,2")
    before = sorted(p.relative_to(mine) for p in mine.rglob("*"))
    with pytest.raises(OCZSSError, match=f"{mine}.*not an oczss demo"):
        ensure_demo(mine)
    assert sorted(p.relative_to(mine) for p in mine.rglob("*")) == before
    assert (mine / "thesis.tex").read_text() == "precious"
    # a foreign folder where the working folder would go is refused too, and kept
    foreign = tmp_path / ".new.oczss-demo-work"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(OCZSSError, match="not made by oczss"):
        ensure_demo(tmp_path / "new")
    assert (foreign / "keep.txt").read_text() == "x"


def test_demo_fills_an_empty_folder_and_replaces_only_an_older_demo(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    ensure_demo(root)
    assert (root / ".oczss-demo").is_file() and len(list((root / "val2017").glob("*.jpg"))) == 16
    (root / ".oczss-demo").write_text("1\n")  # an older version
    (root / "val2017" / "stale.jpg").write_text("old")
    (root / "notes.txt").write_text("user file beside the demo")
    ensure_demo(root)
    assert (root / ".oczss-demo").read_text().strip() != "1"
    assert not (root / "val2017" / "stale.jpg").exists()
    assert (root / "notes.txt").read_text() == "user file beside the demo"


def test_no_command_generates_the_demo_except_the_ones_that_make_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OCZSSError, match="oczss demo"):
        Dataset("demo", None).samples("val")
    assert list(tmp_path.iterdir()) == []
