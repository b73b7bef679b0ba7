"""PASCAL Context (59 classes + background) from VOC 2010 and the PASCAL in Detail annotations, without the Detail API.

Inputs in `--raw`: VOCdevkit/VOC2010/JPEGImages (or VOCtrainval_03-May-2010.tar) and trainval_merged.json (in
`--raw` or in VOCdevkit/VOC2010/, where mmseg's instructions put it).
Output (`--out`, the root of context, context59 and context60): JPEGImages/ (the train and val images),
SegmentationClassContext/*.png ('L', values 0..59, 0 = background) and train.txt / val.txt (4,996 / 5,104 on the
real data); the same lists also as ImageSets/SegmentationContext/{train,val}.txt, where mmseg-based tools look.

The label of an image follows Detail's `getMask` and mmseg's `pascal_context.py`: start from 0, paint each of the
image's `annos_segmentation` masks (RLE, decoded by `rle.decode`) with its category id in JSON order (later ones
win), then number the 59 category ids by rank in MAPPING (0 stays 0). The split is each image's `phase`.
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from oczss.errors import OCZSSError
from oczss.pipeline.data.prepare import rle
from oczss.pipeline.data.prepare.runner import Plan, Task, texts
from oczss.pipeline.data.prepare.sources import locate, require

log = logging.getLogger(__name__)
VOC = "VOCdevkit/VOC2010/"
# the 59 Detail category ids of PASCAL Context 59 and 0 (unlabelled); label = rank in this sorted list
MAPPING = (0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144,
           158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355,
           360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)
_LUT = np.zeros(MAPPING[-1] + 1, np.uint8)
_LUT[list(MAPPING)] = np.arange(len(MAPPING))


def paint(image: tuple[int, int, list[tuple[int, dict]]]) -> bytes:
    """(height, width, [(category id, RLE), ...] in JSON order) -> the label PNG's bytes (uint8 [H, W], 0..59)."""
    h, w, anns = image
    cats = np.zeros((h, w), np.int32)
    for cat, segm in anns:
        mask = rle.decode(segm)
        if mask.shape != (h, w):
            raise OCZSSError(f"an annotation's mask is {mask.shape[0]}x{mask.shape[1]}, the image {h}x{w}")
        cats[mask] = cat
    buf = io.BytesIO()
    Image.fromarray(_LUT[cats], mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _find_json(raw: Path) -> Path:
    places = (raw / "trainval_merged.json", raw / VOC / "trainval_merged.json")
    for path in places:
        if path.is_file():
            return path
    raise OCZSSError(f"PASCAL Context annotations: trainval_merged.json not found; looked for {places[0]} and "
                     f"{places[1]}")


def _read_json(path: Path) -> tuple[dict[str, list[str]], dict[int, tuple[str, int, int, list]]]:
    """-> ({phase: [file stem, ...]}, {image_id: (file name, h, w, [(category id, RLE), ...])}) for train and val."""
    log.info("reading %s", path)
    try:
        data = json.loads(path.read_bytes())
        phases, images = defaultdict(list), {}
        for im in data["images"]:
            if im["phase"] in ("train", "val"):
                phases[im["phase"]].append(Path(im["file_name"]).stem)
                images[im["image_id"]] = (im["file_name"], int(im["height"]), int(im["width"]), [])
        for ann in data["annos_segmentation"]:
            if ann["image_id"] in images:
                images[ann["image_id"]][3].append((int(ann["category_id"]), ann["segmentation"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OCZSSError(f"{path}: not a PASCAL in Detail annotation file ({type(e).__name__}: {e})") from None
    unknown = sorted({c for *_, anns in images.values() for c, _ in anns} - set(MAPPING))
    if unknown:
        raise OCZSSError(f"{path}: category ids {unknown} are not among PASCAL Context's 59 (expected the "
                         f"trainval_merged.json of PASCAL in Detail)")
    return phases, images


def plan(raw: Path, out: Path) -> Plan:
    voc = locate(raw, "VOC 2010", "", "VOCdevkit/VOC2010", ("VOCtrainval_03-May-2010.tar",))
    phases, images = _read_json(_find_json(raw))
    files = [f for f, *_ in images.values()]
    require(voc, [f"{VOC}JPEGImages/{f}" for f in files], "VOC 2010 images of the PASCAL Context annotations")
    labels = [((h, w, anns), out / "SegmentationClassContext" / f"{Path(f).stem}.png")
              for f, h, w, anns in images.values()]
    lists = {}
    for s in ("train", "val"):
        lists[out / f"{s}.txt"] = lists[out / "ImageSets" / "SegmentationContext" / f"{s}.txt"] = sorted(phases[s])
    return Plan([Task([(f"{VOC}JPEGImages/{f}", out / "JPEGImages" / f) for f in files], tree=voc),
                 Task(labels, paint)], texts(lists))
