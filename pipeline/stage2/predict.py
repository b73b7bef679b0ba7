"""OC-ZSS behind `oczss.load("runs/voc/last.pt")` and `oczss predict --checkpoint`: any images, any class names, with
a trained checkpoint and no cache.

Text embeddings for the given names are computed with the checkpoint's CLIP text tower (loaded once, on the first
class list; or read from `text`). A class with synonyms ("sofa|couch") is prompted with each name and takes the
mean of its names' embeddings per template, renormalised: the decoder's optimal transport spreads a pixel's mass
over the classes it is given, so synonyms as classes of their own would compete for it (and the inductive
calibration counts classes), while a mean keeps one embedding per class as in training. A class is seen (and
calibrated, for an inductive model) when any of its names is a class the model was trained on as seen.

The object prompts' clusters are made in the checkpoint's cluster mode, with what Stage 1 would have cached
computed on the fly (the same DINO, input size, grid, seed and basis the checkpoint's training cache used) or DINO
on each window (online).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from oczss.errors import ClassListError, OCZSSError
from oczss.model.clip import load_tower
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.data.datasets import spec as dataset_spec
from oczss.pipeline.data.palettes import palette
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.segmenter.methods import Method
from oczss.pipeline.stage1.tokens import MAX_ASPECT, dino_input, image_arrays
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

    def __call__(self, image: np.ndarray, image_id: str) -> np.ndarray:
        """image: uint8 [H, W, 3]."""
        resized = dino_input(image, self.size, self.extract.patch, self.long)
        maps, features = image_arrays(self.extract, torch.from_numpy(resized)[None].to(self.device), [image_id],
                                      self.seed, [self.k], self.basis)
        return features[0] if self.basis is not None else maps[self.k][0]


@dataclass(eq=False)
class _Text:
    """A class list's embeddings fp32 [K, N, C], its seen classes (calibrated) and colours."""

    embeddings: torch.Tensor
    seen: list[int]
    colours: np.ndarray | None


class OCZSSMethod(Method):
    """A trained OC-ZSS checkpoint, its frozen CLIP and (for its cluster mode) DINO loaded once."""

    name = "oczss"

    @classmethod
    def load(cls, source: str, *, device: str = "auto", weights: str | None = None, dino_weights: str | None = None,
             text: str | None = None, mode: str = "slide", cluster_mode: str | None = None,
             cache_dir: str | Path | None = None, _checkpoint: dict | None = None) -> OCZSSMethod:
        """weights: where the frozen CLIP comes from (default: as in training); dino_weights: the clusters' DINO;
        text: class x template embeddings (.npy) for the class lists given; mode: slide or whole inference;
        cluster_mode: whole, view or online (default: the checkpoint's); cache_dir: where text embeddings are kept
        on disk."""
        if mode not in ("slide", "whole"):
            raise OCZSSError(f"mode {mode!r}: choose slide or whole")
        if cluster_mode not in (None, "whole", "view", "online"):
            raise OCZSSError(f"cluster_mode {cluster_mode!r}: choose whole, view or online")
        self = cls()
        self.device = resolve_device(device)
        self.model, self.ckpt = ckpt_io.restore_model(source, self.device, weights, _checkpoint)
        self.spec, self.text_path, self.mode = dataset_spec(self.ckpt["dataset"]), text, mode
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._tower = None
        self._clusters(cluster_mode, dino_weights)
        config = self.model.config
        self.weights = {"checkpoint": str(source), "clip": str(config.weights), "backbone": config.backbone,
                        "clip_fingerprint": self.ckpt["weights_fingerprint"], "trained_on": self.ckpt["dataset"],
                        "setting": self.ckpt["setting"], "mode": mode, "cluster_mode": str(self.cluster_mode)}
        self.trained = {"dataset": self.ckpt["dataset"], "unseen": list(self.ckpt["unseen"])}
        self.random_weights = bool(self.ckpt["random_weights"]) or (self.cluster_mode is not None and bool(
            self.ckpt["cluster_source"].get("random_weights")))
        return self

    def _clusters(self, cluster_mode: str | None, dino_weights: str | None) -> None:
        """The per-window cluster maker of the cluster mode, and what it reads (on-the-fly cache or online DINO)."""
        ckpt, k = self.ckpt, self.model.config.num_objects
        self.cluster_mode = trained_mode(ckpt, cluster_mode) if self.model.config.mask_source == "dino" else None
        self.cached, dino = None, None
        if self.cluster_mode in ("whole", "view"):
            source = {**ckpt["cluster_source"], "mode": self.cluster_mode}
            if self.cluster_mode == "view" and "feature_basis" not in source:
                raise OCZSSError("this checkpoint was trained without compact features; use --cluster-mode whole or "
                                 "online")
            self.cached = OnTheFlyCache(source, k, dino_weights, self.device)
        elif self.cluster_mode == "online":
            dino = online_dino(ckpt["cluster_source"], dino_weights, self.spec.crop, self.device)
        self.make = factory(self.cluster_mode, dino)
        self.seed = ckpt["train_config"].get("seed", 0)  # seeds the first FPS centres (converted ones carry none)

    def embed(self, classes: tuple[tuple[str, ...], ...]) -> _Text:
        shown = [names[0] for names in classes]
        if self.text_path:
            if any(len(names) > 1 for names in classes):
                raise ClassListError(f"text embeddings {self.text_path} hold one class per row: give no synonyms "
                                     f"(|) with them")
            emb = class_text(shown, self.spec.templates, self.model.config, self.text_path, self.device)
        else:
            if self._tower is None:  # the text tower, loaded once (a converted checkpoint has none: this refuses)
                self._tower = load_tower(self.model.config.backbone, self.model.config.weights, "text")
            flat = [n for names in classes for n in names]
            per_name = class_text(flat, self.spec.templates, self.model.config, None, self.device, self._tower,
                                  self.cache_dir)
            ends = np.cumsum([len(names) for names in classes])
            emb = torch.stack([F.normalize(per_name[e - len(names):e].mean(0), dim=-1)
                               for e, names in zip(ends, classes)])
        ckpt = self.ckpt
        trained_seen = {n.lower() for i, n in enumerate(ckpt["classes"]) if i not in set(ckpt["unseen"])}
        seen = [i for i, names in enumerate(classes) if any(n.lower() in trained_seen for n in names)]
        same = [c.lower() for c in shown] == [c.lower() for c in ckpt["classes"]]  # its dataset's own colours
        return _Text(emb, seen, palette(ckpt["dataset"]) if same else None)

    def segment(self, images: list[np.ndarray], text: _Text, image_ids: list[str]) -> list[torch.Tensor]:
        calibration = INDUCTIVE_CALIBRATION if self.ckpt["setting"] == "inductive" else 0.0
        k, spec, out = self.model.config.num_objects, self.spec, []
        for image, image_id in zip(images, image_ids):
            clusters = self.make(self.cached(image, image_id) if self.cached else None, k) if self.make else None
            out.append(segment(self.model, image, text.embeddings, text.seen, calibration, short=spec.test_short,
                               crop=spec.crop, stride=spec.slide_stride, mode=self.mode, clusters=clusters,
                               image_id=image_id, seed=self.seed))
        return out

    def palette(self, text: _Text) -> np.ndarray | None:
        return text.colours
