"""`oczss eval`: a checkpoint on a whole split: per-class IoU, mIoU(S), mIoU(U), hIoU, mIoU, pixel accuracy.

Same dataset as training: the checkpoint's seen/unseen classes and its own text embeddings, calibration on seen
classes for an inductive model (0 transductive). Another dataset (Table 3, cross-dataset): the target's class
names and its standard split for S/U, no calibration (the target's classes were never the model's seen set);
mIoU over all target classes is the Table 3 figure.

The report never passes a subset off as the split: it records the images evaluated against the images in the
split, and images without cached clusters (shards not done) are refused unless `allow_subset` is given.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from oczss.cache.store import default_cache_url
from oczss.errors import OCZSSError
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.console import progress as progress_bar
from oczss.pipeline.data.datasets import Dataset, spec as dataset_spec
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.data.pairs import check_pairs
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.clusters import with_clusters
from oczss.pipeline.stage2.inference import INDUCTIVE_CALIBRATION, segment
from oczss.pipeline.stage2.metrics import confusion, scores
from oczss.pipeline.stage2.text import class_text

log = logging.getLogger(__name__)


def _as_is(item):
    return item


class _EvalImages(torch.utils.data.Dataset):
    """(image id, uint8 [H, W, 3] or an error message, label uint8 [H, W], cluster map uint8 [S, S] or None)."""

    def __init__(self, dataset: Dataset, samples, maps):
        self.dataset, self.samples, self.maps = dataset, samples, maps

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        try:
            image = np.asarray(load_rgb(s.image))
        except ImageError as e:
            return s.image_id, str(e), None, None
        cluster_map = self.maps.cluster_map(s.image_id) if self.maps is not None else None
        return s.image_id, image, self.dataset.read_label(s.label), cluster_map


def evaluate(checkpoint: str, dataset_name: str, *, split: str = "val", mode: str = "slide",
             data_root: str | None = None, cache: str | None = None, device: str = "auto", weights: str | None = None,
             text: str | None = None, workers: int = 2, limit: int | None = None, allow_subset: bool = False,
             progress: bool = True) -> dict:
    """Evaluate and return the report (also what `--json` writes)."""
    if mode not in ("slide", "whole"):
        raise OCZSSError(f"--mode {mode!r}: choose slide or whole")
    if limit is not None and limit < 1:
        raise OCZSSError(f"--limit {limit}: must be at least 1")
    dev = resolve_device(device)
    dataset = Dataset(dataset_name, data_root)
    in_split = dataset.samples(split)
    samples = in_split[:limit]
    check_pairs(samples, f"{dataset_name} {split}", show_progress=progress)
    model, ckpt = ckpt_io.restore_model(checkpoint, dev, weights)
    same = dataset_name == ckpt["dataset"]
    spec = dataset.spec
    unseen = ckpt["unseen"] if same else list(spec.unseen)
    seen = [c for c in range(len(spec.classes)) if c not in set(unseen)]
    calibration = INDUCTIVE_CALIBRATION if same and ckpt["setting"] == "inductive" else 0.0
    templates = dataset_spec(ckpt["dataset"]).templates  # the model was trained with this many templates
    if same and not text:
        emb = ckpt["text"].to(dev)  # what it was trained with, whatever folder this runs in
    else:
        emb = class_text(list(spec.classes), templates, model.config, text, dev)
    maps, without_clusters = None, 0
    if model.config.mask_source == "dino":
        cache = cache or ckpt.get("cache") or default_cache_url()  # by default the cache it was trained with
        kept, maps, without_clusters = with_clusters(samples, cache, dataset_name, split, model.config.num_objects)
        if without_clusters and not allow_subset:
            raise OCZSSError(f"{without_clusters} of {len(samples)} {dataset_name}/{split} images have no cluster "
                             f"labels in {cache}; finish the cache (`oczss precompute --dataset {dataset_name} "
                             f"--split {split} --cache {cache}`, with --retry-failed for failed images) or pass "
                             f"--allow-subset to evaluate the others only")
        samples = kept
    loader = torch.utils.data.DataLoader(_EvalImages(dataset, samples, maps), batch_size=None, num_workers=workers,
                                         collate_fn=_as_is)
    k = len(spec.classes)
    conf = torch.zeros(k, k, dtype=torch.int64, device=dev)
    failed, start = {}, time.perf_counter()
    with progress_bar(len(samples), desc=f"eval {dataset_name} {split}", unit="img", enabled=progress) as bar:
        for image_id, image, label, cluster_map in loader:
            bar.update(1)
            if isinstance(image, str):
                failed[image_id] = image
                log.warning("skipped corrupt image %s", image)
                continue
            probs = segment(model, image, cluster_map, emb, seen, calibration, short=spec.test_short, crop=spec.crop,
                            stride=spec.slide_stride, mode=mode)
            conf += confusion(probs.argmax(0), torch.from_numpy(np.asarray(label)).to(dev), k)
    seconds = time.perf_counter() - start
    evaluated = len(samples) - len(failed)
    return {"checkpoint": str(checkpoint), "dataset": dataset_name, "split": split, "mode": mode,
            "images": evaluated, "images_in_split": len(in_split), "limit": limit, "cache": cache,
            "without_clusters": without_clusters, "failed": failed, "seconds": seconds,
            "images_per_second": evaluated / seconds if seconds else 0.0,
            "classes": list(spec.classes), "seen": seen, "unseen": unseen, "calibration": calibration,
            "cross_dataset": not same, "trained_on": ckpt["dataset"], "setting": ckpt["setting"],
            "step": ckpt["step"], "random_weights": ckpt["random_weights"], "model_config": ckpt["model_config"],
            "train_config": ckpt["train_config"], "weights": weights or ckpt["model_config"]["weights"],
            "device": str(dev), "date": datetime.date.today().isoformat(), **scores(conf.cpu().numpy(), seen, unseen)}


def format_report(r: dict) -> str:
    subset = "" if r["images"] == r["images_in_split"] else f" of the {r['images_in_split']} in the split (A SUBSET)"
    lines = [f"{r['checkpoint']} (step {r['step']}, {r['setting']}, trained on {r['trained_on']}) on "
             f"{r['dataset']}/{r['split']}, {r['mode']}, {r['images']} images{subset}"
             + (f", {RANDOM_NOTE}" if r["random_weights"] else "")]
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
