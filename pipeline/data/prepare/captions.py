"""COCO Captions from the official `annotations_trainval2017.zip` and the COCO 2017 images.

Inputs in `--raw`, extracted or as the zips (any mix):
    annotations/captions_{train,val}2017.json     or annotations_trainval2017.zip
    images/train2017/*.jpg, images/val2017/*.jpg   or train2017.zip, val2017.zip   (the images `coco` uses)
Output (`--out`, the MSCOCO root it can share with `coco`): {train,val}2017/*.jpg for every image the captions
list, and the two captions files byte for byte, written last (a run that stopped early has none).
"""

from __future__ import annotations

from pathlib import Path

from oczss.pipeline.data.captions import SPLITS, parse_captions
from oczss.pipeline.data.prepare.runner import Plan, Task
from oczss.pipeline.data.prepare.sources import locate, require

ARCHIVE = "annotations_trainval2017.zip"


def plan(raw: Path, out: Path) -> Plan:
    notes = locate(raw, "COCO caption annotations", ".", "annotations", (ARCHIVE,))
    files = [f"annotations/captions_{split}2017.json" for split in SPLITS]
    require(notes, files, f"COCO caption annotations ({ARCHIVE})")
    tasks, texts = [], {}
    for split, name in zip(SPLITS, files):
        sub = f"{split}2017"
        data = notes.read(name)
        listed = sorted(parse_captions(data, notes.where(name)))
        images = locate(raw, f"COCO {sub} images", "images", sub, (f"{sub}.zip",))
        require(images, [f"{sub}/{f}" for f in listed], f"COCO {sub} images for the captions")
        tasks.append(Task([(f"{sub}/{f}", out / sub / f) for f in listed], tree=images))
        texts[out / name] = data.decode("utf-8")
    return Plan(tasks, texts)
