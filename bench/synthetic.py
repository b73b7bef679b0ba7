"""Synthetic benchmark data in the COCO-Stuff 164k layout: demo-style scenes (640 x 480, the COCO size) with
`_labelTrainIds.png` labels, under `root`. Shared by the bench scripts; not a test fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from oczss.pipeline.data.demo_scenes import scene


def make_coco_like(root: Path, n: int, split: str = "train", size=(640, 480), labels: bool = True) -> Path:
    rng = np.random.default_rng(0)
    images, anns = root / f"{split}2017", root / "annotations" / f"{split}2017"
    images.mkdir(parents=True, exist_ok=True)
    anns.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, label = scene(rng, size)
        image.save(images / f"{i:012d}.jpg", quality=90)
        if labels:
            Image.fromarray(label, mode="L").save(anns / f"{i:012d}_labelTrainIds.png")
    return root
