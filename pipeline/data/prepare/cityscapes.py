"""Cityscapes (19 train ids) from the official `leftImg8bit_trainvaltest.zip` and `gtFine_trainvaltest.zip`.

Inputs in `--raw`, extracted or as the zips: leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png and
gtFine/{train,val}/<city>/..._gtFine_labelIds.png. Output (`--out`, the `cityscapes` root): the images under
leftImg8bit/ as published and gtFine/{train,val}/<city>/..._gtFine_labelTrainIds.png, the label ids mapped by
cityscapesScripts' `labels.py` table (TRAIN_IDS; every other id, void included, -> 255). 2,975 train and 500 val
images on the real data; the test split has no labels and is left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.data.prepare.remap import remap
from oczss.pipeline.data.prepare.runner import Plan, Task
from oczss.pipeline.data.prepare.sources import locate, require

# label id -> train id 0..18 (road, sidewalk, building, wall, fence, pole, traffic light, traffic sign, vegetation,
# terrain, sky, person, rider, car, truck, bus, train, motorcycle, bicycle)
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_IDS = 34  # ids 0..33 exist; the license plate (-1) is never stored in a labelIds PNG
_LUT = np.full(256, IGNORE, np.uint8)
_LUT[list(TRAIN_IDS)] = list(TRAIN_IDS.values())
_ALLOWED = np.arange(256) < LABEL_IDS
IMAGE, LABEL_IN, LABEL_OUT = "_leftImg8bit.png", "_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"


def convert(ref) -> bytes:
    """A `*_gtFine_labelIds.png` (a Ref) -> the `*_gtFine_labelTrainIds.png` bytes ('L', uint8 [H, W])."""
    return remap(ref, _LUT, _ALLOWED, "the Cityscapes label ids 0..33")


def plan(raw: Path, out: Path) -> Plan:
    images = locate(raw, "Cityscapes images", "", "leftImg8bit", ("leftImg8bit_trainvaltest.zip",))
    labels = locate(raw, "Cityscapes fine annotations", "", "gtFine", ("gtFine_trainvaltest.zip",))
    tasks = []
    for split in ("train", "val"):
        stems = [n[: -len(IMAGE)] for n in images.files(f"leftImg8bit/{split}") if n.endswith(IMAGE)]
        if not stems:
            raise OCZSSError(f"Cityscapes: no leftImg8bit/{split}/<city>/*{IMAGE} in {images.label}")
        ids = [s.split("/", 2)[2] for s in stems]  # "<city>/<city>_<seq>_<frame>"
        labelled = [n.split("/", 2)[2][: -len(LABEL_IN)] for n in labels.files(f"gtFine/{split}")
                    if n.endswith(LABEL_IN)]
        require(labels, [f"gtFine/{split}/{i}{LABEL_IN}" for i in ids], f"Cityscapes {split} fine annotations")
        require(images, [f"leftImg8bit/{split}/{i}{IMAGE}" for i in labelled], f"Cityscapes {split} images")
        tasks.append(Task([(f"{s}{IMAGE}", out / f"{s}{IMAGE}") for s in stems], tree=images))
        tasks.append(Task([(f"gtFine/{split}/{i}{LABEL_IN}", out / "gtFine" / split / f"{i}{LABEL_OUT}") for i in ids],
                          convert, labels))
    return Plan(tasks)
