"""PASCAL VOC 2012 with the SBD augmentation (the mmseg `voc_aug` layout) from the two official downloads.

Inputs in `--raw`, extracted or as the archives:
    VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}   or VOCtrainval_11-May-2012.tar
    benchmark_RELEASE/dataset/{cls/*.mat,train.txt,val.txt}                   or benchmark.tgz
Output (`--out`, the root of voc, voc20 and voc21): JPEGImages/ (every image of train, val and trainaug),
SegmentationClass/ (VOC's own masks of train and val, copied), SegmentationClassAug/ (a mask for every trainaug
image: VOC's own where VOC has one, else SBD's `GTcls.Segmentation` as a palette PNG with the VOC colours),
ImageSets/Segmentation/{train,val,trainaug}.txt with trainaug = (SBD train | SBD val | VOC train) - VOC val,
sorted (10,582 images on the real data).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.data.palettes import voc_colormap
from oczss.pipeline.data.prepare.runner import Plan, Task, texts
from oczss.pipeline.data.prepare.sources import Tree, locate, require

VOC = "VOCdevkit/VOC2012/"
SBD = "benchmark_RELEASE/dataset/"
_PALETTE = voc_colormap().ravel().tolist()


def trainaug(voc_train: list[str], voc_val: list[str], sbd_train: list[str], sbd_val: list[str]) -> list[str]:
    """(SBD train | SBD val | VOC train) - VOC val, sorted."""
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))


def mat_to_png(ref) -> bytes:
    """SBD `cls/<id>.mat` (a Ref) -> a palette PNG of its `GTcls.Segmentation` (uint8 [H, W], values 0..20)."""
    try:
        mat = scipy.io.loadmat(io.BytesIO(ref.read()), squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except (KeyError, AttributeError) as e:
        raise OCZSSError(f"no GTcls.Segmentation in this .mat ({e})") from None
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise OCZSSError(f"GTcls.Segmentation is {seg.dtype} {seg.shape}, expected a 2-D integer class map")
    if ((seg > 20) & (seg != IGNORE)).any() or (seg < 0).any():
        raise OCZSSError(f"GTcls.Segmentation holds values {sorted(set(np.unique(seg)) - set(range(21)))} "
                         f"outside the VOC classes 0..20 (and 255)")
    im = Image.fromarray(seg.astype(np.uint8), mode="P")
    im.putpalette(_PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _ids(tree: Tree, name: str) -> list[str]:
    require(tree, [name], "split list")
    return [line.strip() for line in tree.read(name).decode().splitlines() if line.strip()]


def plan(raw: Path, out: Path) -> Plan:
    voc = locate(raw, "VOC 2012", "", "VOCdevkit/VOC2012", ("VOCtrainval_11-May-2012.tar",))
    sbd = locate(raw, "SBD (benchmark.tgz)", "", "benchmark_RELEASE/dataset", ("benchmark.tgz",))
    train, val = _ids(voc, VOC + "ImageSets/Segmentation/train.txt"), _ids(voc, VOC + "ImageSets/Segmentation/val.txt")
    aug = trainaug(train, val, _ids(sbd, SBD + "train.txt"), _ids(sbd, SBD + "val.txt"))
    in_voc = set(train) | set(val)
    from_sbd = [i for i in aug if i not in in_voc]
    images = sorted(in_voc | set(aug))
    require(voc, [f"{VOC}JPEGImages/{i}.jpg" for i in images], "VOC 2012 images")
    require(voc, [f"{VOC}SegmentationClass/{i}.png" for i in sorted(in_voc)], "VOC 2012 masks")
    require(sbd, [f"{SBD}cls/{i}.mat" for i in from_sbd], "SBD masks of trainaug images that VOC has no mask for")
    seg = out / "ImageSets" / "Segmentation"
    return Plan([
        Task([(f"{VOC}JPEGImages/{i}.jpg", out / "JPEGImages" / f"{i}.jpg") for i in images], tree=voc),
        Task([(f"{VOC}SegmentationClass/{i}.png", out / "SegmentationClass" / f"{i}.png") for i in sorted(in_voc)],
             tree=voc),
        Task([(f"{VOC}SegmentationClass/{i}.png", out / "SegmentationClassAug" / f"{i}.png")
              for i in aug if i in in_voc], tree=voc),
        Task([(f"{SBD}cls/{i}.mat", out / "SegmentationClassAug" / f"{i}.png") for i in from_sbd], mat_to_png, sbd),
    ], texts({seg / "train.txt": train, seg / "val.txt": val, seg / "trainaug.txt": aug}))
