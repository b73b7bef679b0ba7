"""`oczss predict --method oczss`: segment any images with any class names with a trained checkpoint, no cache.

Text embeddings for the given names are computed on the fly (or read from `--text`); DINO clusters are computed
on the fly with the same DINO, input size, grid and seed the checkpoint's training cache used. An inductive
model's calibration applies to the given classes whose names it was trained on. The outputs are those of
pipeline/prediction.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from oczss.model.clustering import cluster_maps
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import RANDOM_NOTE, fingerprint
from oczss.pipeline.data.datasets import spec as dataset_spec
from oczss.pipeline.data.images import load_resized
from oczss.pipeline.prediction import class_list, plan_outputs, predict_images
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.inference import INDUCTIVE_CALIBRATION, segment
from oczss.pipeline.stage2.text import class_text

log = logging.getLogger(__name__)


class OnTheFlyClusters:
    """The training cache's DINO FPS-Voronoi clustering, computed per image: uint8 [S, S]."""

    def __init__(self, source: dict, k: int, weights: str | None, device: torch.device):
        weights = weights or ("random" if source["random_weights"] else "pretrained")
        model = load_dino(source["dino_model"], weights, source["input_size"])
        if fingerprint(model) != source["fingerprint"]:
            log.warning("DINO weights %r differ from those of the model's training cache; clusters (and results) "
                        "will differ", weights)
        self.extract = DinoFeatures(model, source["grid"]).to(device)
        self.size, self.seed, self.k, self.device = source["input_size"], source["seed"], k, device

    def __call__(self, path: Path) -> np.ndarray:
        image = torch.from_numpy(load_resized(path, self.size))[None].to(self.device)
        return cluster_maps(self.extract(image), [path.stem], self.seed, [self.k])[self.k][0].cpu().numpy()


def predict(images: list[str], checkpoint: str, classes: list[str], out_dir: str | Path, *, device: str = "auto",
            weights: str | None = None, dino_weights: str | None = None, text: str | None = None,
            mode: str = "slide", overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write overlay and label PNGs for every readable image; corrupt ones are reported and skipped."""
    classes = class_list(classes)
    out_dir = Path(out_dir)
    jobs = plan_outputs(images, out_dir, overwrite)
    dev = resolve_device(device)
    model, ckpt = ckpt_io.restore_model(checkpoint, dev, weights)
    spec = dataset_spec(ckpt["dataset"])
    emb = class_text(classes, spec.templates, model.config, text, dev)
    trained_seen = {n.lower() for i, n in enumerate(ckpt["classes"]) if i not in set(ckpt["unseen"])}
    seen = [i for i, c in enumerate(classes) if c.lower() in trained_seen]
    calibration = INDUCTIVE_CALIBRATION if ckpt["setting"] == "inductive" else 0.0
    clusters = None
    if model.config.mask_source == "dino":
        clusters = OnTheFlyClusters(ckpt["cluster_source"], model.config.num_objects, dino_weights, dev)

    def segmenter(path: Path, image: np.ndarray) -> torch.Tensor:
        probs = segment(model, image, clusters(path) if clusters else None, emb, seen, calibration,
                        short=spec.test_short, crop=spec.crop, stride=spec.slide_stride, mode=mode)
        return probs.argmax(0)

    return predict_images(jobs, segmenter, classes, out_dir, RANDOM_NOTE if ckpt["random_weights"] else "", progress)
