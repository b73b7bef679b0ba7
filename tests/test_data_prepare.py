"""`oczss data prepare`: every family from fixtures in the publishers' raw formats, written here.

Expected labels are computed pixel by pixel from the published tables (class names, id lists), not with the
package's lookup tables; archives must give the same bytes as extracted folders; a SIGKILL mid-run followed by a
rerun must give the same files as an uninterrupted run and leave no temporary files.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from oczss.errors import OCZSSError
from oczss.pipeline.data.classes import COCO_CLASSES, class_names
from oczss.pipeline.data.datasets import SPECS, Dataset
from oczss.pipeline.data.palettes import palette, voc_colormap
from oczss.pipeline.data.prepare import prepare
from oczss.pipeline.data.prepare.rle import decode

# COCO-Stuff labels.txt, ids 1..182 (a stuffthingmaps value v is id v + 1)
STUFF_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk", "toilet", "door", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator",
    "blender", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush", "banner",
    "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
# cityscapesScripts labels.py: names of label ids 0..33, and the 19 evaluated classes in train-id order
CITY_ID_NAMES = (
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground", "road",
    "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel", "pole",
    "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)
CITY_19 = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# mmseg pascal_context.py `_mapping` as published (unsorted); label = rank in the sorted list
CONTEXT_IDS = (0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454,
               295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355,
               85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115)


def jpeg(rng, size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def png(values: np.ndarray, palette_png: bool = False) -> bytes:
    im = Image.fromarray(values.astype(np.uint8), mode="P" if palette_png else "L")
    if palette_png:
        im.putpalette(voc_colormap().ravel().tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write(files: dict[str, bytes], root: Path) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def archive(files: dict[str, bytes], path: Path) -> None:
    """A zip, tar or tgz (by suffix) holding `files` under their names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
        return
    with tarfile.open(path, "w:gz" if path.suffix == ".tgz" else "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# -- COCO-Stuff and COCO-Object -----------------------------------------------------------------------------------
def coco_files(n: int = 2, size=(16, 12)) -> tuple[dict, dict, dict]:
    """(train images, val images, stuffthingmaps) as {member name: bytes}; every map holds every value 0..181, 255."""
    rng = np.random.default_rng(1)
    imgs = {"train": {}, "val": {}}
    maps = {}
    for split in ("train", "val"):
        for k in range(n):
            stem = f"{k + (0 if split == 'train' else 500):012d}"
            values = np.concatenate([np.arange(182), [255], rng.integers(0, 182, size[0] * size[1] - 183)])
            imgs[split][f"{split}2017/{stem}.jpg"] = jpeg(rng, size)
            maps[f"{split}2017/{stem}.png"] = png(rng.permutation(values).reshape(size[1], size[0]))
    return imgs["train"], imgs["val"], maps


def coco_raw(root: Path, zipped: bool = False, n: int = 2) -> Path:
    train, val, maps = coco_files(n)
    if zipped:
        archive(train, root / "train2017.zip")
        archive(val, root / "val2017.zip")
        archive(maps, root / "stuffthingmaps_trainval2017.zip")
    else:
        write({**train, **val}, root / "images")
        write(maps, root / "annotations")
    return root


def expected_stuff(v: int) -> int:
    if v == 255:
        return 255
    return COCO_CLASSES.index(STUFF_NAMES[v]) if STUFF_NAMES[v] in COCO_CLASSES else 255


def expected_object(v: int) -> int:
    if v == 255 or v >= 91:  # unlabelled and stuff -> background
        return 0
    things = COCO_CLASSES[:80]
    return 1 + things.index(STUFF_NAMES[v]) if STUFF_NAMES[v] in things else 255


def test_coco_stuff_and_object_labels_match_a_per_pixel_computation(tmp_path):
    raw, out = coco_raw(tmp_path / "raw"), tmp_path / "MSCOCO"
    s = prepare("coco", raw, out, workers=2)
    assert s.written == 8 and s.skipped == 0
    prepare("coco-object", raw, out, workers=1)
    for split in ("train", "val"):
        for src in sorted((raw / "annotations" / f"{split}2017").glob("*.png")):
            raw_v = read(src)
            stuff = read(out / "annotations" / f"{split}2017" / f"{src.stem}_labelTrainIds.png")
            obj = read(out / "annotations" / f"{split}2017" / f"{src.stem}_instanceTrainIds.png")
            assert Image.open(out / "annotations" / f"{split}2017" / f"{src.stem}_labelTrainIds.png").mode == "L"
            for (y, x), v in np.ndenumerate(raw_v):
                assert stuff[y, x] == expected_stuff(int(v)), (v, stuff[y, x])
                assert obj[y, x] == expected_object(int(v)), (v, obj[y, x])
            assert set(np.unique(stuff)) == set(range(171)) | {255}
            assert (raw / "images" / f"{split}2017" / f"{src.stem}.jpg").read_bytes() == \
                (out / f"{split}2017" / f"{src.stem}.jpg").read_bytes()
    assert [s.image_id for s in Dataset("coco-object", out).samples("val")] == ["000000000500", "000000000501"]
    again = prepare("coco", raw, out, workers=1)
    assert (again.written, again.skipped) == (0, 8)
    assert not (out / ".oczss-prepare").exists()


def test_coco_zips_equal_extracted_folders(tmp_path):
    a = prepare("coco", coco_raw(tmp_path / "dirs"), tmp_path / "a", workers=1)
    prepare("coco", coco_raw(tmp_path / "zips", zipped=True), tmp_path / "b", workers=2)
    assert a.written == 8 and tree(tmp_path / "a") == tree(tmp_path / "b")


@pytest.mark.parametrize("maps", ["zipped", "beside the images", "own folder"])
def test_coco_from_the_archives_extracted_in_place(tmp_path, maps):
    """`unzip train2017.zip` and `unzip val2017.zip` in --raw give train2017/ and val2017/ there; the label maps may
    stay zipped, or extract into the same folders or into a folder of their own."""
    train, val, stuff = coco_files()
    raw = tmp_path / "raw"
    write({**train, **val}, raw)
    if maps == "zipped":
        archive(stuff, raw / "stuffthingmaps_trainval2017.zip")
    else:
        write(stuff, raw if maps == "beside the images" else raw / "stuffthingmaps_trainval2017")
    s = prepare("coco", raw, tmp_path / "a", workers=1)
    prepare("coco", coco_raw(tmp_path / "mmseg"), tmp_path / "b", workers=1)  # images/ and annotations/
    assert s.written == 8 and tree(tmp_path / "a") == tree(tmp_path / "b")


def test_missing_inputs_are_named_before_any_work(tmp_path):
    raw = coco_raw(tmp_path / "raw")
    (raw / "images" / "val2017" / "000000000501.jpg").unlink()
    with pytest.raises(OCZSSError, match=r"missing: .*images/val2017/000000000501\.jpg"):
        prepare("coco", raw, tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()
    with pytest.raises(OCZSSError, match=r"looked for the folder .*annotations/train2017 or .* \(holding \*\.png\) "
                                         r"and for .*stuffthingmaps"):
        prepare("coco", tmp_path / "raw" / "images", tmp_path / "out", workers=1)
    with pytest.raises(OCZSSError, match="VOC 2012: not found.*VOCtrainval_11-May-2012.tar"):
        prepare("voc21", tmp_path, tmp_path / "out", workers=1)


def test_a_bad_input_is_named_and_the_rest_written(tmp_path):
    raw = coco_raw(tmp_path / "raw")
    (raw / "annotations" / "train2017" / "000000000001.png").write_bytes(png(np.full((12, 16), 200)))
    with pytest.raises(OCZSSError, match=r"(?s)1 file\(s\).*train2017/000000000001\.png: holds value 200"):
        prepare("coco", raw, tmp_path / "out", workers=1)
    assert len(list((tmp_path / "out" / "annotations").rglob("*_labelTrainIds.png"))) == 3


# -- SIGKILL mid-run ----------------------------------------------------------------------------------------------
SLOW_RUN = """
import sys, time
import oczss.pipeline.data.prepare.coco as coco
from oczss.pipeline.data.prepare import prepare
fast = coco.convert
def slow(*args):
    time.sleep(0.05)
    return fast(*args)
coco.convert = slow
prepare("coco", sys.argv[1], sys.argv[2], workers=2)
"""


def test_sigkill_then_rerun_gives_the_same_files_and_no_temporary_ones(tmp_path):
    raw = coco_raw(tmp_path / "raw", n=40)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(raw), str(killed)], start_new_session=True,
                            stderr=subprocess.PIPE)
    labels = killed / "annotations"
    deadline = time.monotonic() + 60
    while len(list(labels.rglob("*.png"))) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    written = len(list(labels.rglob("*.png")))
    assert 6 <= written < 80, "the run was not stopped mid-way"
    s = prepare("coco", raw, killed, workers=1)
    assert s.skipped >= written and s.written + s.skipped == 160
    prepare("coco", raw, clean, workers=1)
    assert tree(killed) == tree(clean)
    assert not (killed / ".oczss-prepare").exists()


# -- VOC 2012 + SBD -----------------------------------------------------------------------------------------------
VOC_TRAIN, VOC_VAL = ["a", "b", "c"], ["d", "e"]
SBD_TRAIN, SBD_VAL = ["b", "f", "g", "d"], ["h", "e", "c"]


def sbd_mat(seg: np.ndarray) -> bytes:
    """An SBD `cls/*.mat`: a 1x1 struct GTcls with Segmentation, Boundaries (1x20 cell of sparse matrices) and
    CategoriesPresent."""
    bounds = np.empty((1, 20), object)
    for i in range(20):
        bounds[0, i] = scipy.sparse.csc_matrix(seg == i + 1)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"GTcls": {"Segmentation": seg, "Boundaries": bounds,
                                     "CategoriesPresent": np.unique(seg[seg > 0]).astype(np.uint8)}},
                     do_compression=True)
    return buf.getvalue()


def voc_files() -> tuple[dict, dict, dict, dict]:
    """(VOC members, SBD members, VOC masks by id, SBD masks by id)."""
    rng = np.random.default_rng(2)
    voc, sbd, voc_masks, sbd_masks = {}, {}, {}, {}
    v, s = "VOCdevkit/VOC2012/", "benchmark_RELEASE/dataset/"
    for i in sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL) | {"x"}):  # x: in VOC but in no list
        voc[f"{v}JPEGImages/{i}.jpg"] = jpeg(rng)
    for i in VOC_TRAIN + VOC_VAL:
        voc_masks[i] = rng.choice([0, 3, 15, 20, 255], (12, 16)).astype(np.uint8)
        voc[f"{v}SegmentationClass/{i}.png"] = png(voc_masks[i], palette_png=True)
    for i in SBD_TRAIN + SBD_VAL:
        sbd_masks[i] = rng.integers(0, 21, (12, 16)).astype(np.uint8)
        sbd[f"{s}cls/{i}.mat"] = sbd_mat(sbd_masks[i])
    voc[f"{v}ImageSets/Segmentation/train.txt"] = "\n".join(VOC_TRAIN).encode() + b"\n"
    voc[f"{v}ImageSets/Segmentation/val.txt"] = "\n".join(VOC_VAL).encode() + b"\n"
    sbd[f"{s}train.txt"] = "\n".join(SBD_TRAIN).encode() + b"\n"
    sbd[f"{s}val.txt"] = "\n".join(SBD_VAL).encode() + b"\n"
    return voc, sbd, voc_masks, sbd_masks


def test_voc_sbd_trainaug_set_rule_masks_and_archives(tmp_path):
    voc, sbd, voc_masks, sbd_masks = voc_files()
    write({**voc, **sbd}, tmp_path / "raw")
    prepare("voc", tmp_path / "raw", tmp_path / "out", workers=1)
    out = tmp_path / "out"
    rule = sorted((set(SBD_TRAIN) | set(SBD_VAL) | set(VOC_TRAIN)) - set(VOC_VAL))
    seg = out / "ImageSets" / "Segmentation"
    assert (seg / "trainaug.txt").read_text().split() == rule == ["a", "b", "c", "f", "g", "h"]
    assert (seg / "train.txt").read_text().split() == VOC_TRAIN and (seg / "val.txt").read_text().split() == VOC_VAL
    for i in rule:  # VOC's own mask where VOC has one, else SBD's
        assert np.array_equal(read(out / "SegmentationClassAug" / f"{i}.png"),
                              voc_masks[i] if i in VOC_TRAIN else sbd_masks[i])
        assert Image.open(out / "SegmentationClassAug" / f"{i}.png").mode == "P"
    assert sorted(p.stem for p in (out / "SegmentationClass").iterdir()) == VOC_TRAIN + VOC_VAL
    assert sorted(p.stem for p in (out / "JPEGImages").iterdir()) == sorted(set(rule) | set(VOC_VAL))
    # the 21- and 20-class readings of the prepared root
    lab = voc_masks["d"]
    assert np.array_equal(Dataset("voc21", out).read_label(out / "SegmentationClass" / "d.png"), lab)
    v20 = Dataset("voc20", out).read_label(out / "SegmentationClass" / "d.png")
    assert np.array_equal(v20, np.where((lab == 0) | (lab == 255), 255, lab - 1))
    # the two archives as published: a plain tar and a gzip tar
    archive(voc, tmp_path / "tars" / "VOCtrainval_11-May-2012.tar")
    archive(sbd, tmp_path / "tars" / "benchmark.tgz")
    prepare("voc", tmp_path / "tars", tmp_path / "from-tars", workers=2)
    assert tree(out) == tree(tmp_path / "from-tars")


# -- PASCAL Context ----------------------------------------------------------------------------------------------
def rle_encode(mask: np.ndarray) -> str:
    """bool [h, w] -> COCO compressed counts: column-major runs starting with zeros, each value minus the value
    two before it (from the fourth on), in 5-bit groups with a continuation bit, + 48."""
    counts, current, run = [], False, 0
    for v in mask.T.ravel():
        if bool(v) != current:
            counts.append(run)
            current, run = bool(v), 0
        run += 1
    counts.append(run)
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c, x = x & 0x1F, x >> 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | (0x20 if more else 0)) + 48))
    return "".join(out)


# two RLEs of PASCAL in Detail (detail-api res/inst_seg_toy_correct.json, image 2008000514, 333 x 500)
DETAIL_RLES = (
    r"gQ`31[:1N3M3M4L2L4J6M4L3L5N1O1N2FiNWG02Y1h880N101N2O001DPGXOR9g0PGVOQ9h0RGWOo8LlFh0a9XO_Fg0V:YOSiY1",
    r"YTj29S:3N000001O010M\OMQG2l85RGJn89PGFQ9<mFDR9>mFBS9?lFAT9e0fF[OY9o0N3M1O0000000000A`0M2N3N2N2N5I7Il\n1",
)


def test_rle_decoder_against_an_independent_encoder_and_real_strings():
    rng = np.random.default_rng(3)
    for shape in ((1, 1), (3, 5), (40, 33)):
        for mask in (np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) < 0.5,
                     np.kron(rng.random((1, 3)) < 0.5, np.ones((shape[0], 11)))[:, : shape[1]].astype(bool)):
            assert np.array_equal(decode({"size": list(shape), "counts": rle_encode(mask)}), mask)
    for s in DETAIL_RLES:
        mask = decode({"size": [333, 500], "counts": s})
        assert mask.shape == (333, 500) and 0 < mask.sum() < mask.size
        assert rle_encode(mask) == s  # the published string is the canonical encoding of what we decoded
    with pytest.raises(ValueError, match="cover"):
        decode({"size": [2, 2], "counts": [1, 2]})


def context_raw(root: Path) -> dict:
    """VOC 2010 images + trainval_merged.json; returns {stem: (phase, [(category, mask), ...] in JSON order)}."""
    rng = np.random.default_rng(4)
    cats = sorted(CONTEXT_IDS)[1:]
    spec = {"2008_000001": "train", "2008_000002": "train", "2009_000003": "val", "2010_000004": "test",
            "2010_000005": "val"}
    images, anns, truth = [], [], {}
    for n, (stem, phase) in enumerate(spec.items()):
        h, w = 9 + n, 14
        write({f"VOCdevkit/VOC2010/JPEGImages/{stem}.jpg": jpeg(rng, (w, h))}, root)
        images.append({"image_id": int(stem.replace("_", "")), "file_name": f"{stem}.jpg", "height": h, "width": w,
                       "phase": phase, "date_captured": ""})
        parts = []
        for k in range(0 if stem == "2010_000005" else 6):  # the last image has no annotation
            mask = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
            mask[y: y + rng.integers(2, h), x: x + rng.integers(2, w)] = True
            cat = int(cats[(n * 11 + k * 7) % len(cats)])
            parts.append((cat, mask))
            anns.append({"id": len(anns), "image_id": images[-1]["image_id"], "category_id": cat,
                         "segmentation": {"size": [h, w], "counts": rle_encode(mask)}, "area": int(mask.sum()),
                         "bbox": [0, 0, 1, 1], "iscrowd": 0})
        truth[stem] = (phase, parts)
    data = {"info": {}, "images": images, "annos_segmentation": anns, "annos_occlusion": [], "annos_boundary": [],
            "categories": [{"category_id": c, "name": str(c), "supercategory": "object"} for c in cats], "parts": []}
    (root / "trainval_merged.json").write_text(json.dumps(data))
    return truth


def test_context_labels_from_detail_json_match_painting_by_hand(tmp_path):
    truth = context_raw(tmp_path / "raw")
    out = tmp_path / "VOC2010"
    prepare("context60", tmp_path / "raw", out, workers=2)
    rank = {c: i for i, c in enumerate(sorted(CONTEXT_IDS))}
    for stem, (phase, parts) in truth.items():
        if phase == "test":
            assert not (out / "SegmentationClassContext" / f"{stem}.png").exists()
            continue
        lab = read(out / "SegmentationClassContext" / f"{stem}.png")
        for (y, x), v in np.ndenumerate(lab):
            cat = 0
            for c, mask in parts:  # JSON order, the last one wins
                if mask[y, x]:
                    cat = c
            assert v == rank[cat]
    assert (out / "train.txt").read_text().split() == ["2008_000001", "2008_000002"]
    assert (out / "val.txt").read_text() == "2009_000003\n2010_000005\n"
    assert (out / "ImageSets" / "SegmentationContext" / "val.txt").read_text() == "2009_000003\n2010_000005\n"
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == [f"{s}.jpg" for s in truth if s != "2010_000004"]
    lab = read(out / "SegmentationClassContext" / "2009_000003.png")
    assert np.array_equal(Dataset("context60", out).read_label(out / "SegmentationClassContext" / "2009_000003.png"),
                          lab)
    assert np.array_equal(Dataset("context59", out).read_label(out / "SegmentationClassContext" / "2009_000003.png"),
                          np.where(lab == 0, 255, lab - 1))


# -- Cityscapes and ADE20K ---------------------------------------------------------------------------------------
def test_cityscapes_train_ids_match_the_label_table(tmp_path):
    rng = np.random.default_rng(5)
    files = {}
    for split, city in (("train", "aachen"), ("train", "bremen"), ("val", "lindau")):
        stem = f"{city}_000000_000019"
        ids = rng.permutation(np.concatenate([np.arange(34), rng.integers(0, 34, 16 * 12 - 34)])).reshape(12, 16)
        files[f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"] = png(rng.integers(0, 255, (12, 16)))
        files[f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png"] = png(ids)
        files[f"gtFine/{split}/{city}/{stem}_gtFine_color.png"] = png(ids)
    images = {k: v for k, v in files.items() if k.startswith("leftImg8bit")}
    archive(images, tmp_path / "raw" / "leftImg8bit_trainvaltest.zip")  # images zipped, labels extracted
    write({k: v for k, v in files.items() if k not in images}, tmp_path / "raw")
    out = tmp_path / "cityscapes"
    prepare("cityscapes", tmp_path / "raw", out, workers=1)
    for name in (k for k in files if k.endswith("_labelIds.png")):
        ids = read(tmp_path / "raw" / name)
        got = read(out / name.replace("_labelIds.png", "_labelTrainIds.png"))
        for (y, x), v in np.ndenumerate(ids):
            label = CITY_ID_NAMES[v]
            assert got[y, x] == (CITY_19.index(label) if label in CITY_19 else 255)
    ds = Dataset("cityscapes", out)
    assert [s.image_id for s in ds.samples("train")] == ["aachen_000000_000019", "bremen_000000_000019"]
    val = ds.samples("val")[0]
    assert val.image.read_bytes() == images[f"leftImg8bit/val/lindau/{val.image_id}_leftImg8bit.png"]


def test_ade_is_copied_as_published(tmp_path):
    rng = np.random.default_rng(6)
    files = {}
    for sub, stem in (("training", "ADE_train_00000001"), ("training", "ADE_train_00000002"),
                      ("validation", "ADE_val_00000001")):
        files[f"ADEChallengeData2016/images/{sub}/{stem}.jpg"] = jpeg(rng)
        files[f"ADEChallengeData2016/annotations/{sub}/{stem}.png"] = png(rng.integers(0, 151, (12, 16)))
    archive(files, tmp_path / "raw" / "ADEChallengeData2016.zip")
    prepare("ade", tmp_path / "raw", tmp_path / "ade", workers=1)
    assert tree(tmp_path / "ade") == {k.removeprefix("ADEChallengeData2016/"): v for k, v in files.items()}
    s = Dataset("ade", tmp_path / "ade").samples("val")[0]
    raw = read(s.label)
    assert np.array_equal(Dataset("ade", tmp_path / "ade").read_label(s.label), np.where(raw == 0, 255, raw - 1))


def test_demo_prepare_writes_the_demo(tmp_path):
    prepare("demo", None, tmp_path / "demo")
    assert len(Dataset("demo", tmp_path / "demo").samples("val")) == 16


# -- class names and palettes -------------------------------------------------------------------------------------
def test_class_names_synonym_files_and_palettes():
    for name, spec in SPECS.items():
        names = class_names(name)
        assert names is None if name == "demo" else len(names) == len(spec.classes), name
        pal = palette(name)
        assert pal.dtype == np.uint8 and pal.shape == (len(spec.classes), 3), name
        assert (spec.background is not None) == (spec.classes[0] == "background"), name
        assert name in ("voc", "context", "coco", "demo") or spec.unseen == ()
    assert class_names("voc21")[0][:3] == ("sky", "wall", "tree") and len(class_names("voc21")[0]) == 26
    assert class_names("voc21")[15][1] == "person in shirt" and class_names("context60")[-1] == ("wood ",)
    assert class_names("coco-object")[1][-1] == "body" and class_names("ade")[44] == ("chestofdrawers",)
    cmap = voc_colormap()
    assert cmap[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert cmap[255].tolist() == [224, 224, 192] and palette("voc20")[19].tolist() == [0, 64, 128]
    assert palette("cityscapes")[0].tolist() == [128, 64, 128] and palette("ade")[149].tolist() == [92, 0, 255]
    assert palette("context60")[0].tolist() == [120, 120, 120] and palette("coco-object")[0].tolist() == [0, 0, 0]
