"""Datasets: class lists, seen/unseen splits, on-disk layouts and label decoding.

Facts from `reference/otseg-protocol.md` §1 (OTSeg / ZegCLIP, mmseg layouts). Every class index is 0-based
after label reduction; 255 is ignore everywhere.

    voc      VOC 2012 + SBD aug: JPEGImages/*.jpg; train = SegmentationClass + ImageSets/Segmentation/train.txt
             concatenated with SegmentationClassAug + ImageSets/Segmentation/trainaug.txt; val = SegmentationClass
             + ImageSets/Segmentation/val.txt. Palette PNGs, reduce_zero_label.
    context  PASCAL Context 59: JPEGImages/*.jpg, SegmentationClassContext/*.png, train.txt / val.txt directly
             under the root. reduce_zero_label.
    coco     COCO-Stuff 164k: {train,val}2017/*.jpg, annotations/{train,val}2017/*_labelTrainIds.png, no split
             files (every image in the folder). Train IDs 0..170 as stored.
    demo     generated shapes dataset (`oczss.pipeline.data.demo_scenes`) in the COCO-Stuff layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from oczss.errors import OCZSSError
from oczss.model import IGNORE

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
CONTEXT_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door",
    "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain",
    "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign",
    "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tv monitor", "wall", "water", "window",
    "wood",
)
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet",
    "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter",
    "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other",
    "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass",
    "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw", "structural-other", "table",
    "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other",
    "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind",
    "window-other", "wood",
)
DEMO_CLASSES = ("sky", "grass", "sand", "water", "circle", "square", "triangle", "star")

SPLITS = ("train", "val")


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

    @property
    def seen(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.classes)) if i not in set(self.unseen))


SPECS = {
    "voc": DatasetSpec("voc", VOC_CLASSES, (15, 16, 17, 18, 19), "VOC2012", True, templates=6),
    "context": DatasetSpec("context", CONTEXT_CLASSES, (0, 6, 7, 14, 19, 24, 31, 33, 48, 54), "VOC2010", True,
                           crop=480, train_scale=(520, 520), test_short=520, slide_stride=80),
    "coco": DatasetSpec("coco", COCO_CLASSES, (19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160),
                        "MSCOCO", False),
    "demo": DatasetSpec("demo", DEMO_CLASSES, (3, 6), "demo", False, crop=128, train_scale=(512, 128),
                        test_short=128, slide_stride=96, templates=2),
}


def spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise OCZSSError(f"unknown dataset {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


def default_root(name: str) -> Path:
    """`$OCZSS_DATA/<folder>` if set, else `./data/<folder>` (VOC2012, VOC2010, MSCOCO, demo)."""
    return Path(os.environ.get("OCZSS_DATA", "data")) / spec(name).folder


class Dataset:
    """A benchmark on disk. `samples(split)` lists what training/eval iterate over; `image_ids(split)` the
    distinct images (what Stage 1 caches)."""

    def __init__(self, name: str, root: str | os.PathLike | None = None):
        self.spec = spec(name)
        self.root = Path(root) if root is not None else default_root(name)

    # -- layout ---------------------------------------------------------------------------------------------
    def _lists(self, split: str) -> list[tuple[Path, Path, str, str]]:
        """(split file or image folder, label folder, image suffix, label suffix) parts of a split."""
        r, n = self.root, self.spec.name
        if n == "voc":
            seg = r / "ImageSets" / "Segmentation"
            if split == "train":
                return [(seg / "train.txt", r / "SegmentationClass", ".jpg", ".png"),
                        (seg / "trainaug.txt", r / "SegmentationClassAug", ".jpg", ".png")]
            return [(seg / "val.txt", r / "SegmentationClass", ".jpg", ".png")]
        if n == "context":
            return [(r / f"{split}.txt", r / "SegmentationClassContext", ".jpg", ".png")]
        return [(r / f"{split}2017", r / "annotations" / f"{split}2017", ".jpg", "_labelTrainIds.png")]

    def _image_dir(self, split: str) -> Path:
        return self.root / f"{split}2017" if self.spec.name in ("coco", "demo") else self.root / "JPEGImages"

    def check(self, split: str, labels: bool = True) -> None:
        """Fail before any work if the root or a split's folders and files are missing, naming them."""
        if split not in SPLITS:
            raise OCZSSError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if not self.root.is_dir():
            raise OCZSSError(f"dataset root {self.root} does not exist. {self.expected_layout()}")
        missing = [] if self._image_dir(split).is_dir() else [self._image_dir(split)]
        for lst, label_dir, _, _ in self._lists(split):
            if not lst.exists():
                missing.append(lst)
            if labels and not label_dir.is_dir():
                missing.append(label_dir)
        if missing:
            names = ", ".join(str(m) for m in missing)
            raise OCZSSError(f"{self.spec.name} {split} split: missing {names}. {self.expected_layout()}")

    def expected_layout(self) -> str:
        n = self.spec.name
        if n == "voc":
            return ("Expected a VOC 2012 + SBD aug root with JPEGImages/, SegmentationClass/, SegmentationClassAug/ and "
                    "ImageSets/Segmentation/{train,trainaug,val}.txt (mmseg voc_aug layout).")
        if n == "context":
            return ("Expected a PASCAL Context root (VOC2010) with JPEGImages/, SegmentationClassContext/, "
                    "train.txt and val.txt (mmseg pascal_context converter).")
        return ("Expected a COCO-Stuff 164k style root with {train,val}2017/*.jpg and "
                "annotations/{train,val}2017/*_labelTrainIds.png (mmseg coco_stuff164k converter)"
                + ("; `oczss demo` or `--dataset demo` generates it." if n == "demo" else "."))

    def samples(self, split: str) -> list[Sample]:
        """Samples in the reference order; VOC train concatenates train and trainaug (duplicates kept)."""
        self.check(split)
        out = []
        for lst, label_dir, img_sfx, lab_sfx in self._lists(split):
            for image_id in self._read_ids(lst, img_sfx):
                out.append(Sample(image_id, self._image_dir(split) / f"{image_id}{img_sfx}",
                                  label_dir / f"{image_id}{lab_sfx}"))
        return out

    def image_ids(self, split: str) -> list[str]:
        """Distinct image ids of a split, sorted: the row order of the mask cache."""
        self.check(split, labels=False)
        ids = set()
        for lst, _, img_sfx, _ in self._lists(split):
            ids.update(self._read_ids(lst, img_sfx))
        return sorted(ids)

    def image_path(self, split: str, image_id: str) -> Path:
        return self._image_dir(split) / f"{image_id}.jpg"

    @staticmethod
    def _read_ids(lst: Path, img_sfx: str) -> list[str]:
        if lst.is_dir():
            return sorted(p.name[: -len(img_sfx)] for p in lst.iterdir() if p.name.endswith(img_sfx))
        ids = [line.strip() for line in lst.read_text().splitlines() if line.strip()]
        if not ids:
            raise OCZSSError(f"split file {lst} lists no images")
        return ids

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
