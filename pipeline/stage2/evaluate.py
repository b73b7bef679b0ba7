"""`oczss eval`: a checkpoint on a whole split: per-class IoU, mIoU(S), mIoU(U), hIoU, mIoU, pixel accuracy.

Same dataset as training: the checkpoint's seen/unseen classes, calibration 0.1 on seen classes for an
inductive model (0 transductive). Another dataset (Table 3, cross-dataset): the target's class names and its
standard split for S/U; no calibration (the target's classes were never the model's seen set); mIoU over all
target classes is the Table 3 figure.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from oczss.errors import OCZSSError
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.loader import with_clusters
from oczss.pipeline.data.datasets import Dataset, spec as dataset_spec
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.stage2.inference import segment
from oczss.pipeline.stage2.metrics import confusion, scores
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2.text import class_text


def _as_is(item):
    return item


class _EvalImages(torch.utils.data.Dataset):
    """(image id, uint8 [H, W, 3] or an error message, label uint8 [H, W], grid uint8 [S, S] or None)."""

    def __init__(self, dataset: Dataset, samples, grids):
        self.dataset, self.samples, self.grids = dataset, samples, grids

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        try:
            image = np.asarray(load_rgb(s.image))
        except ImageError as e:
            return s.image_id, str(e), None, None
        grid = self.grids.grid(s.image_id) if self.grids is not None else None
        return s.image_id, image, self.dataset.read_label(s.label), grid


def evaluate(checkpoint: str, dataset_name: str, *, split: str = "val", mode: str = "slide",
             data_root: str | None = None, cache: str | None = None, device: str = "auto", weights: str | None = None,
             text: str | None = None, workers: int = 2, limit: int | None = None, progress: bool = True) -> dict:
    """Evaluate and return the report (also what `--json` writes)."""
    from tqdm import tqdm

    if mode not in ("slide", "whole"):
        raise OCZSSError(f"--mode {mode!r}: choose slide or whole")
    dev = resolve_device(device)
    dataset = Dataset(dataset_name, data_root)
    samples = dataset.samples(split)[:limit]
    model, ckpt = ckpt_io.restore_model(checkpoint, dev, weights)
    same = dataset_name == ckpt["dataset"]
    spec = dataset.spec
    unseen = ckpt["unseen"] if same else list(spec.unseen)
    seen = [c for c in range(len(spec.classes)) if c not in set(unseen)]
    calibration = 0.1 if same and ckpt["setting"] == "inductive" else 0.0
    templates = dataset_spec(ckpt["dataset"]).templates  # the model was trained with this many templates
    text = text or (ckpt["train_config"]["text"] if same else None)
    emb = class_text(list(spec.classes), templates, model.config, text, dev)
    grids = None
    if model.config.mask_source == "dino":
        if cache is None:
            raise OCZSSError("the model's object prompts need DINO clusters of the eval images: pass --cache")
        samples, grids = with_clusters(samples, cache, dataset_name, split, model.config.num_objects)
    loader = torch.utils.data.DataLoader(_EvalImages(dataset, samples, grids), batch_size=None, num_workers=workers,
                                         collate_fn=_as_is)
    k = len(spec.classes)
    conf = torch.zeros(k, k, dtype=torch.int64, device=dev)
    failed, start = {}, time.perf_counter()
    for image_id, image, label, grid in tqdm(loader, total=len(samples), unit="img", desc=f"eval {dataset_name} {split}",
                                             disable=not progress, file=sys.stderr, dynamic_ncols=True):
        if isinstance(image, str):
            failed[image_id] = image
            print(f"skipped corrupt image {image}", file=sys.stderr)
            continue
        probs = segment(model, image, grid, emb, seen, calibration, short=spec.test_short, crop=spec.crop,
                        stride=spec.slide_stride, mode=mode)
        conf += confusion(probs.argmax(0), torch.from_numpy(np.asarray(label)).to(dev), k)
    seconds = time.perf_counter() - start
    result = scores(conf.cpu().numpy(), seen, unseen)
    return {"checkpoint": str(checkpoint), "dataset": dataset_name, "split": split, "mode": mode,
            "images": len(samples) - len(failed), "failed": failed, "seconds": seconds,
            "images_per_second": (len(samples) - len(failed)) / seconds if seconds else 0.0,
            "classes": list(spec.classes), "seen": seen, "unseen": unseen, "calibration": calibration,
            "cross_dataset": not same, "trained_on": ckpt["dataset"], "setting": ckpt["setting"],
            "step": ckpt["step"], "random_weights": ckpt["random_weights"], "model_config": ckpt["model_config"],
            "train_config": ckpt["train_config"], "weights": weights or ckpt["model_config"]["weights"],
            "device": str(dev), "date": datetime.date.today().isoformat(), **result}


def format_report(r: dict) -> str:
    lines = [f"{r['checkpoint']} (step {r['step']}, {r['setting']}, trained on {r['trained_on']}) on "
             f"{r['dataset']}/{r['split']}, {r['mode']}, {r['images']} images"
             + (", RANDOM WEIGHTS: for tests and the demo only" if r["random_weights"] else "")]
    width = max(len(c) for c in r["classes"])
    for c, name in enumerate(r["classes"]):
        tag = "unseen" if c in set(r["unseen"]) else "seen"
        lines.append(f"  {name:<{width}}  {tag:<6}  {r['iou'][c]:6.2f}")
    lines.append(f"mIoU(S) {r['mIoU_seen']:.2f}  mIoU(U) {r['mIoU_unseen']:.2f}  hIoU {r['hIoU']:.2f}  "
                 f"mIoU {r['mIoU']:.2f}  pAcc {r['pAcc']:.2f}  ({r['images_per_second']:.2f} img/s)")
    return "\n".join(lines)


def write_json(report: dict, path: str | Path) -> None:
    """The report as JSON (NaN, e.g. the IoU of a class absent from the split, written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(report), indent=2) + "\n")


def _finite(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v
