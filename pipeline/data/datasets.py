"""Datasets: splits, on-disk layouts and label decoding of every benchmark; class lists live in `classes`.

Every class index is 0-based after label decoding; 255 is ignore everywhere. Two protocols share the layouts:

OC-ZSS zero-shot (docs/protocol.md §1; no background class, seen/unseen splits):
    voc      VOC 2012 + SBD aug: JPEGImages/*.jpg; train = SegmentationClass + ImageSets/Segmentation/train.txt
             concatenated with SegmentationClassAug + ImageSets/Segmentation/trainaug.txt; val = SegmentationClass
             + ImageSets/Segmentation/val.txt. Palette PNGs, reduce_zero_label.
    context  PASCAL Context 59: JPEGImages/*.jpg, SegmentationClassContext/*.png, train.txt / val.txt directly
             under the root. reduce_zero_label.
    coco     COCO-Stuff 164k: {train,val}2017/*.jpg, annotations/{train,val}2017/*_labelTrainIds.png, no split
             files (every image in the folder). Train IDs 0..170 as stored.
    demo     generated shapes dataset (`oczss.pipeline.data.demo_scenes`) in the COCO-Stuff layout.

Training-free open-vocabulary benchmarks (SCLIP / NACLIP conventions; every class evaluated, `unseen` empty):
    voc20 / voc21          the voc layout; voc20 reduces the zero label, voc21 keeps background as class 0.
    context59 / context60  the context layout; context59 = context's labels, context60 keeps background as class 0.
    coco-object            the coco layout with annotations/{train,val}2017/*_instanceTrainIds.png: background 0 and
                           COCO's 80 thing classes 1..80.
    ade                    ADEChallengeData2016: images/{training,validation}/*.jpg, annotations/.../*.png (0..150),
                           reduce_zero_label.
    cityscapes             leftImg8bit/{train,val}/<city>/*_leftImg8bit.png, gtFine/{train,val}/<city>/
                           *_gtFine_labelTrainIds.png: 19 train ids, 255 ignore.
`oczss data prepare NAME` makes each layout from the publishers' downloads (`oczss.pipeline.data.prepare`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.data.classes import (ADE_CLASSES, CITYSCAPES_CLASSES, COCO_CLASSES, COCO_OBJECT_CLASSES,
                                         CONTEXT_CLASSES, DEMO_CLASSES, VOC_CLASSES)
from oczss.pipeline.data.names import canonical

SPLITS = ("train", "val")
__all__ = ["DEMO_CLASSES", "SPECS", "SPLITS", "Dataset", "DatasetSpec", "Part", "Sample", "default_root",
           "reduce_zero_label", "spec"]


@dataclass(frozen=True)
class Sample:
    """One training/evaluation sample: an image and its label file."""

    image_id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class DatasetSpec:
    """Everything about a benchmark that does not depend on where it lies on disk.

    crop: training crop and encoder input size (512; 480 for Context). train_scale: the Resize img_scale that the
    U(0.5, 2) ratio multiplies ((2048, 512); (520, 520) for Context). test_short: test-time short side.
    slide_stride: sliding-window stride at test time. templates: OTSeg prompt-template count (6 VOC, 8 others).
    layout: the on-disk family (voc, context, coco, ade, cityscapes); label_suffix: the label file ending of the coco
    layout. background: index of the background class, or None when background is ignored or absent.
    """

    name: str
    classes: tuple[str, ...]
    unseen: tuple[int, ...]
    folder: str
    reduce_zero_label: bool
    crop: int = 512
    train_scale: tuple[int, int] = (2048, 512)
    test_short: int = 512
    slide_stride: int = 426
    templates: int = 8
    layout: str = "coco"
    label_suffix: str = "_labelTrainIds.png"
    background: int | None = None

    @property
    def seen(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.classes)) if i not in set(self.unseen))


_VOC = dict(folder="VOC2012", templates=6, layout="voc")
_CONTEXT = dict(folder="VOC2010", crop=480, train_scale=(520, 520), test_short=520, slide_stride=80, layout="context")
SPECS = {
    "voc": DatasetSpec("voc", VOC_CLASSES, (15, 16, 17, 18, 19), reduce_zero_label=True, **_VOC),
    "context": DatasetSpec("context", CONTEXT_CLASSES, (0, 6, 7, 14, 19, 24, 31, 33, 48, 54), reduce_zero_label=True,
                           **_CONTEXT),
    "coco": DatasetSpec("coco", COCO_CLASSES, (19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160),
                        "MSCOCO", False),
    "demo": DatasetSpec("demo", DEMO_CLASSES, (3, 6), "demo", False, crop=128, train_scale=(512, 128),
                        test_short=128, slide_stride=96, templates=2),
    "voc20": DatasetSpec("voc20", VOC_CLASSES, (), reduce_zero_label=True, **_VOC),
    "voc21": DatasetSpec("voc21", ("background",) + VOC_CLASSES, (), reduce_zero_label=False, background=0, **_VOC),
    "context59": DatasetSpec("context59", CONTEXT_CLASSES, (), reduce_zero_label=True, **_CONTEXT),
    "context60": DatasetSpec("context60", ("background",) + CONTEXT_CLASSES, (), reduce_zero_label=False,
                             background=0, **_CONTEXT),
    "coco-object": DatasetSpec("coco-object", COCO_OBJECT_CLASSES, (), "MSCOCO", False,
                               label_suffix="_instanceTrainIds.png", background=0),
    "ade": DatasetSpec("ade", ADE_CLASSES, (), "ADEChallengeData2016", True, layout="ade"),
    "cityscapes": DatasetSpec("cityscapes", CITYSCAPES_CLASSES, (), "cityscapes", False, layout="cityscapes"),
}


def spec(name: str) -> DatasetSpec:
    """The spec of `name`, in any case; an unknown name is refused naming the closest ones."""
    return SPECS[canonical(name)]


def default_root(name: str) -> Path:
    """`$OCZSS_DATA/<folder>` if set, else `./data/<folder>` (VOC2012, VOC2010, MSCOCO, ADEChallengeData2016, ...)."""
    return Path(os.environ.get("OCZSS_DATA", "data")) / spec(name).folder


@dataclass(frozen=True)
class Part:
    """One list of samples: where its ids, images and labels lie. A split is one part, or two for VOC train.

    name: what the publisher calls the list (train, trainaug, val): the figure `data check` compares against.
    ids: the split file, or the image folder whose files make the list. nested: files lie in a sub-folder named by
    the id's first "_"-separated field (Cityscapes: the city).
    """

    name: str
    ids: Path
    images: Path
    labels: Path
    image_suffix: str
    label_suffix: str
    nested: bool = False

    def _sub(self, image_id: str) -> str:
        return image_id.split("_", 1)[0] if self.nested else ""

    def image(self, image_id: str) -> Path:
        return self.images / self._sub(image_id) / f"{image_id}{self.image_suffix}"

    def label(self, image_id: str) -> Path:
        return self.labels / self._sub(image_id) / f"{image_id}{self.label_suffix}"

    def read_ids(self) -> list[str]:
        """The ids in list order (split file) or sorted (folder). Raises OCZSSError for an empty split file."""
        if self.ids.is_dir():
            return files_with_suffix(self.ids, self.image_suffix, self.nested)
        ids = [line.strip() for line in self.ids.read_text().splitlines() if line.strip()]
        if not ids:
            raise OCZSSError(f"split file {self.ids} lists no images")
        return ids


def files_with_suffix(folder: Path, suffix: str, nested: bool = False) -> list[str]:
    """Sorted names (suffix removed) of the files in `folder` (or in its sub-folders if nested) ending in suffix."""
    dirs = sorted(p for p in folder.iterdir() if p.is_dir()) if nested else [folder]
    return sorted(p.name[: -len(suffix)] for d in dirs for p in d.iterdir() if p.name.endswith(suffix))


class Dataset:
    """A benchmark on disk. `samples(split)` lists what training/eval iterate over; `image_ids(split)` the
    distinct images (what Stage 1 caches)."""

    def __init__(self, name: str, root: str | os.PathLike | None = None):
        self.spec = spec(name)
        self.root = Path(root) if root is not None else default_root(name)

    # -- layout ---------------------------------------------------------------------------------------------
    def parts(self, split: str) -> list[Part]:
        """The lists that make up a split, in sample order."""
        r, lay = self.root, self.spec.layout
        if lay == "voc":
            seg, jpg = r / "ImageSets" / "Segmentation", r / "JPEGImages"
            if split == "train":
                return [Part("train", seg / "train.txt", jpg, r / "SegmentationClass", ".jpg", ".png"),
                        Part("trainaug", seg / "trainaug.txt", jpg, r / "SegmentationClassAug", ".jpg", ".png")]
            return [Part("val", seg / "val.txt", jpg, r / "SegmentationClass", ".jpg", ".png")]
        if lay == "context":
            return [Part(split, r / f"{split}.txt", r / "JPEGImages", r / "SegmentationClassContext", ".jpg", ".png")]
        if lay == "ade":
            sub = {"train": "training", "val": "validation"}[split]
            return [Part(split, r / "images" / sub, r / "images" / sub, r / "annotations" / sub, ".jpg", ".png")]
        if lay == "cityscapes":
            return [Part(split, r / "leftImg8bit" / split, r / "leftImg8bit" / split, r / "gtFine" / split,
                         "_leftImg8bit.png", "_gtFine_labelTrainIds.png", nested=True)]
        images = r / f"{split}2017"
        return [Part(split, images, images, r / "annotations" / f"{split}2017", ".jpg", self.spec.label_suffix)]

    def check(self, split: str, labels: bool = True) -> None:
        """Fail before any work if the root or a split's folders and files are missing, naming them."""
        if split not in SPLITS:
            raise OCZSSError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if not self.root.is_dir():
            raise OCZSSError(f"dataset root {self.root} does not exist. {self.expected_layout()}")
        missing = []
        for part in self.parts(split):
            for path in (part.images, part.ids) + ((part.labels,) if labels else ()):
                if not path.exists() and path not in missing:
                    missing.append(path)
        if missing:
            names = ", ".join(str(m) for m in missing)
            raise OCZSSError(f"{self.spec.name} {split} split: missing {names}. {self.expected_layout()}")

    def expected_layout(self) -> str:
        n, lay = self.spec.name, self.spec.layout
        prepare = f" `oczss data prepare {n}` makes it from the official downloads."
        if lay == "voc":
            return ("Expected a VOC 2012 + SBD aug root with JPEGImages/, SegmentationClass/, SegmentationClassAug/ "
                    "and ImageSets/Segmentation/{train,trainaug,val}.txt (mmseg voc_aug layout)." + prepare)
        if lay == "context":
            return ("Expected a PASCAL Context root (VOC2010) with JPEGImages/, SegmentationClassContext/, "
                    "train.txt and val.txt (mmseg pascal_context converter)." + prepare)
        if lay == "ade":
            return ("Expected ADEChallengeData2016/ with images/{training,validation}/*.jpg and "
                    "annotations/{training,validation}/*.png." + prepare)
        if lay == "cityscapes":
            return ("Expected a Cityscapes root with leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
                    "gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png." + prepare)
        if n == "demo":
            return ("Expected the demo dataset in the COCO-Stuff layout; `oczss demo`, `--dataset demo` or "
                    "`oczss data prepare demo` generates it.")
        return (f"Expected a COCO-Stuff 164k style root with {{train,val}}2017/*.jpg and "
                f"annotations/{{train,val}}2017/*{self.spec.label_suffix} (mmseg coco_stuff164k layout)." + prepare)

    def samples(self, split: str) -> list[Sample]:
        """Samples in the reference order; VOC train concatenates train and trainaug (duplicates kept)."""
        self.check(split)
        return [Sample(i, part.image(i), part.label(i)) for part in self.parts(split) for i in part.read_ids()]

    def image_ids(self, split: str) -> list[str]:
        """Distinct image ids of a split, sorted: the row order of the mask cache."""
        self.check(split, labels=False)
        return sorted({i for part in self.parts(split) for i in part.read_ids()})

    def image_path(self, split: str, image_id: str) -> Path:
        return self.parts(split)[0].image(image_id)

    # -- labels ---------------------------------------------------------------------------------------------
    def read_label(self, path: Path) -> np.ndarray:
        """Label PNG -> uint8 [H, W] class indices (0-based), 255 = ignore. Palette PNGs are read as indices."""
        try:
            with Image.open(path) as im:
                if im.mode not in ("P", "L", "I;16", "I"):
                    raise OCZSSError(f"label {path}: mode {im.mode} is not an index image (expected a palette "
                                     f"or grayscale PNG of class indices)")
                lab = np.asarray(im)
        except OCZSSError:
            raise
        except (OSError, SyntaxError, ValueError) as e:
            raise OCZSSError(f"label {path}: cannot be read ({e})") from e
        return reduce_zero_label(lab) if self.spec.reduce_zero_label else lab.astype(np.uint8)


def reduce_zero_label(lab: np.ndarray) -> np.ndarray:
    """mmseg reduce_zero_label: 0 -> 255 (ignored), v -> v - 1, 255 stays 255."""
    lab = lab.astype(np.int32)
    out = lab - 1
    out[(lab == 0) | (lab == IGNORE)] = IGNORE
    return out.astype(np.uint8)
