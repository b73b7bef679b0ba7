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


def make_captions(root: Path, n: int, split: str = "train", size=(640, 480)) -> Path:
    """`make_coco_like` images (no labels) with a COCO captions file naming two scene objects per caption (five
    captions per image), the layout `oczss data prepare coco-captions` writes."""
    import json

    make_coco_like(root, n, split, size, labels=False)
    nouns = ("dog", "cat", "person", "horse", "pizza", "bus", "tree", "grass", "table", "sofa", "car", "sky")
    notes = [{"image_id": i, "id": 5 * i + k, "caption": f"A {nouns[(i + k) % 12]} beside a {nouns[(3 * i + k) % 12]}."}
             for i in range(n) for k in range(5)]
    doc = {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(n)], "annotations": notes}
    (root / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(doc))
    return root
