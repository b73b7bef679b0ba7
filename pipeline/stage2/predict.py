"""`oczss predict --method oczss`: segment any images with any class names with a trained checkpoint, no cache.

Text embeddings for the given names are computed on the fly (or read from `--text`); the object prompts' clusters
are made as in the checkpoint's cluster mode, with what Stage 1 would have cached computed on the fly (the same
DINO, input size, grid, seed and basis the checkpoint's training cache used) or DINO on each window (online). An inductive
model's calibration applies to the given classes whose names it was trained on. The outputs are those of
pipeline/prediction.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from oczss.errors import OCZSSError
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import RANDOM_NOTE, fingerprint
from oczss.pipeline.data.datasets import spec as dataset_spec
from oczss.pipeline.data.palettes import palette
from oczss.pipeline.prediction import class_list, plan_outputs, predict_images
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage1.tokens import MAX_ASPECT, image_arrays, load_input
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.inference import INDUCTIVE_CALIBRATION, segment
from oczss.pipeline.stage2.text import class_text
from oczss.pipeline.stage2.window_clusters import factory, online_dino, trained_mode

log = logging.getLogger(__name__)


class OnTheFlyCache:
    """What Stage 1 would have cached for an image, computed on the fly with the training cache's DINO, input size,
    grid and seed (pipeline/stage1/tokens.py): the cluster map uint8 [S, S] (whole mode) or the compact tokens
    float16 [T_h, T_w, D] with the cache's basis (view mode)."""

    def __init__(self, source: dict, k: int, weights: str | None, device: torch.device):
        weights = weights or ("random" if source["random_weights"] else "pretrained")
        model = load_dino(source["dino_model"], weights, source["input_size"], dynamic=True)
        if fingerprint(model) != source["fingerprint"]:
            log.warning("DINO weights %r differ from those of the model's training cache; clusters (and results) "
                        "will differ", weights)
        self.extract = DinoFeatures(model, source["grid"]).to(device)
        self.size = source["input_size"]
        self.long = source.get("feature_long") or MAX_ASPECT * self.size // self.extract.patch  # older checkpoints
        self.seed, self.k, self.device = source["seed"], k, device
        self.basis = None
        if source["mode"] == "view":
            self.basis = tuple(torch.as_tensor(b).to(device) for b in (source["feature_mean"], source["feature_basis"]))

    def __call__(self, path: Path) -> np.ndarray:
        image = load_input(path, self.size, self.extract.patch, self.long)
        maps, features = image_arrays(self.extract, torch.from_numpy(image)[None].to(self.device), [path.stem],
                                      self.seed, [self.k], self.basis)
        return features[0] if self.basis is not None else maps[self.k][0]


def predict(images: list[str], checkpoint: str, classes: list[str], out_dir: str | Path, *, device: str = "auto",
            weights: str | None = None, dino_weights: str | None = None, text: str | None = None,
            mode: str = "slide", overwrite: bool = False, cluster_mode: str | None = None,
            progress: bool = True) -> list[Path]:
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
    k, cached, dino = model.config.num_objects, None, None
    cluster_mode = trained_mode(ckpt, cluster_mode) if model.config.mask_source == "dino" else None
    if cluster_mode in ("whole", "view"):
        source = {**ckpt["cluster_source"], "mode": cluster_mode}
        if cluster_mode == "view" and "feature_basis" not in source:
            raise OCZSSError("this checkpoint was trained without compact features; use --cluster-mode whole or online")
        cached = OnTheFlyCache(source, k, dino_weights, dev)
    elif cluster_mode == "online":
        dino = online_dino(ckpt["cluster_source"], dino_weights, spec.crop, dev)
    make = factory(cluster_mode, dino)
    seed = ckpt["train_config"].get("seed", 0)  # seeds the first FPS centres (converted checkpoints carry none)

    def segmenter(path: Path, image: np.ndarray) -> torch.Tensor:
        clusters = make(cached(path) if cached else None, k) if make else None
        probs = segment(model, image, emb, seen, calibration, short=spec.test_short, crop=spec.crop,
                        stride=spec.slide_stride, mode=mode, clusters=clusters, image_id=path.stem, seed=seed)
        return probs.argmax(0)

    same = [c.lower() for c in classes] == [c.lower() for c in ckpt["classes"]]  # its dataset's own colours then
    return predict_images(jobs, segmenter, classes, out_dir, RANDOM_NOTE if ckpt["random_weights"] else "", progress,
                          palette(ckpt["dataset"]) if same else None)
