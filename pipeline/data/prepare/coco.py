"""COCO-Stuff 164k and COCO-Object from the COCO 2017 images and the COCO-Stuff `stuffthingmaps`.

Inputs in `--raw`, extracted or as the zips (any mix):
    images/train2017/*.jpg, images/val2017/*.jpg (mmseg's layout), or train2017/, val2017/ as the zips extract
        in `--raw`, or train2017.zip, val2017.zip
    annotations/{train2017,val2017}/*.png (values 0..181, 255 = unlabelled), or the same folders extracted into
        `--raw` itself (beside the images) or into stuffthingmaps_trainval2017/, or stuffthingmaps_trainval2017.zip
Output (`--out`, the `coco` / `coco-object` root): {train,val}2017/*.jpg and annotations/{train,val}2017/
*_labelTrainIds.png (coco) or *_instanceTrainIds.png (coco-object); both fit in one root.

A stuffthingmaps value v is COCO category id v + 1. COCO-Stuff 171 (mmseg `coco_stuff164k.py`): the 11 thing ids
without annotations (DROPPED) are removed and the other 171 values renumbered in order, 255 stays 255. COCO-Object
(GroupViT / SCLIP `cvt_coco_object.py`): the 80 used thing values become 1..80 in order, every stuff value and 255
become background 0. The dropped values never occur in the published maps; here they map to 255 in both.
A value 182..254 is no COCO-Stuff class: the map is refused, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.data.prepare.remap import remap
from oczss.pipeline.data.prepare.runner import Plan, Task
from oczss.pipeline.data.prepare.sources import Tree, locate, require

# stuffthingmaps values of COCO ids 12 street sign, 26 hat, 29 shoe, 30 eye glasses, 45 plate, 66 mirror,
# 68 window, 69 desk, 71 door, 83 blender, 91 hair brush
DROPPED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
THINGS = 91  # values 0..90 are things, 91..181 stuff
VALUES = 182
SUFFIX = {"coco": "_labelTrainIds.png", "coco-object": "_instanceTrainIds.png"}


def lut(kind: str) -> np.ndarray:
    """uint8 [256]: stuffthingmaps value -> label of `kind` (coco: 0..170 / 255, coco-object: 0..80 / 255)."""
    kept = [v for v in range(VALUES) if v not in DROPPED]
    out = np.full(256, IGNORE, np.uint8)
    if kind == "coco":
        out[kept] = np.arange(len(kept))
    else:
        things = [v for v in kept if v < THINGS]
        out[:] = 0
        out[list(DROPPED)] = IGNORE
        out[things] = np.arange(1, len(things) + 1)
    return out


_LUTS = {k: lut(k) for k in SUFFIX}
_ALLOWED = np.zeros(256, bool)
_ALLOWED[:VALUES] = _ALLOWED[IGNORE] = True


def convert(ref, kind: str) -> bytes:
    """One stuffthingmaps PNG (a Ref) -> the `kind` label PNG's bytes ('L' mode, uint8 [H, W])."""
    return remap(ref, _LUTS[kind], _ALLOWED, "the COCO-Stuff values 0..181 and 255")


def plan(kind: str, raw: Path, out: Path) -> Plan:
    maps = locate(raw, "COCO-Stuff label maps", ("annotations", "stuffthingmaps_trainval2017", ""), "train2017",
                  ("stuffthingmaps_trainval2017.zip",), ".png")
    tasks = []
    for split in ("train", "val"):
        sub = f"{split}2017"
        images = locate(raw, f"COCO {sub} images", ("images", ""), sub, (f"{sub}.zip",), ".jpg")
        ids = _pair(maps, images, sub)
        tasks.append(Task([(f"{sub}/{i}.jpg", out / sub / f"{i}.jpg") for i in ids], tree=images))
        tasks.append(Task([(f"{sub}/{i}.png", out / "annotations" / sub / f"{i}{SUFFIX[kind]}") for i in ids],
                          convert, maps, (kind,)))
    return Plan(tasks)


def _pair(maps: Tree, images: Tree, sub: str) -> list[str]:
    """Ids of a split, checked both ways: every map has its image and every image its map."""
    map_ids = {Path(n).stem for n in maps.files(sub) if n.endswith(".png") and "TrainIds" not in n}
    image_ids = {Path(n).stem for n in images.files(sub) if n.endswith(".jpg")}
    if not map_ids:
        raise OCZSSError(f"COCO-Stuff label maps: no {sub}/*.png in {maps.label}")
    require(images, [f"{sub}/{i}.jpg" for i in sorted(map_ids)], f"COCO {sub} images for the label maps")
    require(maps, [f"{sub}/{i}.png" for i in sorted(image_ids)], f"COCO-Stuff label maps for the {sub} images")
    return sorted(map_ids)
