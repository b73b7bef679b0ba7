"""`oczss predict --method cass`: segment any images with any class names right after install, no training and no
checkpoint: the public CLIP ViT-B/16 and DINO ViT-B/8 (hub names, local paths, or `random` for tests).

A class may list synonyms separated by `|` ("person|man|woman"): each name is a query and the class takes the
best of them, as on the benchmarks. The constants are the CASS defaults (`--config` picks another recipe); no
background threshold unless the recipe has one. Outputs: those of pipeline/prediction.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.cass.evaluate import DEFAULT_CLIP, DEFAULT_DINO, build
from oczss.pipeline.prediction import class_list, plan_outputs, predict_images
from oczss.pipeline.runtime import resolve_device


def predict(images: list[str], classes: list[str], out_dir: str | Path, *, recipe: str | None = None,
            device: str = "auto", weights: str = "pretrained", dino_weights: str = "pretrained",
            backbone: str = DEFAULT_CLIP, dino_model: str = DEFAULT_DINO, overwrite: bool = False,
            progress: bool = True) -> list[Path]:
    """Write overlay and label PNGs for every readable image; corrupt ones are reported and skipped."""
    classes = class_list(classes)
    synonyms = [tuple(n.strip() for n in c.split("|") if n.strip()) for c in classes]
    out_dir = Path(out_dir)
    jobs = plan_outputs(images, out_dir, overwrite)
    segmenter, _ = build(recipe, "custom", weights, dino_weights, backbone, dino_model, synonyms,
                         resolve_device(device))
    shown = [s[0] for s in synonyms]

    def segment(path: Path, image: np.ndarray):
        return segmenter(image)

    return predict_images(jobs, segment, shown, out_dir, RANDOM_NOTE if segmenter.cass.random_weights else "",
                          progress)
