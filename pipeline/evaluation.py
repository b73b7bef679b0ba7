"""The evaluation loop both methods share: images and labels of a split through a segmenter into one confusion
matrix, and the JSON report.

A segmenter is any callable (image uint8 [H, W, 3], the image's cached array (cluster map or compact features) or
None, image id) -> class map int64 [H, W] on the device; OC-ZSS (pipeline/stage2/evaluate.py) and CASS (pipeline/cass/evaluate.py) each bring theirs.
Images load in `workers` processes; a corrupt image is reported, counted and skipped; any other error of a worker
(a damaged cache shard) arrives as its own one-line message (pipeline/workers.py).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from oczss.pipeline.console import progress as progress_bar
from oczss.pipeline.data.datasets import Dataset, Sample
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.metrics import confusion
from oczss.pipeline.outputs import writing
from oczss.pipeline.workers import guarded, ignore_signals, stopping, unwrap

log = logging.getLogger(__name__)


def _as_is(item):
    return item


class EvalImages(torch.utils.data.Dataset):
    """(image id, uint8 [H, W, 3] or an error message, label uint8 [H, W], its cached array or None)."""

    def __init__(self, dataset: Dataset, samples: list[Sample], maps=None):
        self.dataset, self.samples, self.maps = dataset, samples, maps

    def __len__(self):
        return len(self.samples)

    @guarded
    def __getitem__(self, i):
        s = self.samples[i]
        try:
            image = np.asarray(load_rgb(s.image))
        except ImageError as e:
            return s.image_id, str(e), None, None
        cached = self.maps.get(s.image_id) if self.maps is not None else None
        return s.image_id, image, self.dataset.read_label(s.label), cached


def run_split(dataset: Dataset, samples: list[Sample], segmenter: Callable, device: torch.device, *, maps=None,
              workers: int = 2, progress: bool = True, desc: str = "eval") -> tuple[np.ndarray, dict, float]:
    """(confusion int64 [K, K] rows = ground truth, {failed image id: reason}, seconds) over `samples`."""
    loader = torch.utils.data.DataLoader(EvalImages(dataset, samples, maps), batch_size=None, num_workers=workers,
                                         collate_fn=_as_is, worker_init_fn=ignore_signals)
    k = len(dataset.spec.classes)
    conf = torch.zeros(k, k, dtype=torch.int64, device=device)
    failed, start = {}, time.perf_counter()
    items = iter(loader)
    with progress_bar(len(samples), desc=desc, unit="img", enabled=progress) as bar, stopping(items):
        for image_id, image, label, cached in unwrap(items):
            bar.update(1)
            if isinstance(image, str):
                failed[image_id] = image
                log.warning("skipped corrupt image %s", image)
                continue
            prediction = segmenter(image, cached, image_id)
            conf += confusion(prediction, torch.from_numpy(np.array(label)).to(device), k)
    return conf.cpu().numpy(), failed, time.perf_counter() - start


def subset_note(report: dict) -> str:
    """'' when the report covers its whole split, else ' of the N in the split (A SUBSET)'."""
    if report["images"] == report["images_in_split"]:
        return ""
    return f" of the {report['images_in_split']} in the split (A SUBSET)"


def write_json(report: dict, path: str | Path) -> None:
    """The report as JSON (NaN, e.g. the IoU of a class absent from the split, written as null)."""
    path = Path(path)
    with writing(path):
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
