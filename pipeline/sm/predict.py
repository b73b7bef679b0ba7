"""Split Matching behind `oczss.load("run/last.pt")`, `oczss eval --checkpoint` and `oczss predict --checkpoint`:
any images, any class names, from a trained checkpoint alone (no cache: the candidates serve training only).

Test time (ZegCLIP's protocol, as OC-ZSS's eval): the image's short side resized to the dataset's test size
(mmseg's resize, pipeline/data/resize.py), sliding crop x crop windows at the dataset's stride (each padded to a
multiple of 32, the backbone's stride), the model in eval mode (the random queries of §3.4 on), per window
P = Σ_q σ(V_q · A_n) σ(M_q) (SplitMatching.probabilities), overlapping windows averaged, resized bilinearly to the
image's size. Scores, not probabilities: the class map is their argmax (no seen-class calibration in the paper).

Text: the class names through the checkpoint's CLIP text tower, template-averaged (synonyms "sofa|couch": the mean
of the names' embeddings); a class list equal to the training dataset's classes takes the embeddings the model
was trained with (the checkpoint's `text`), so it evaluates the same wherever it runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.clip import load_tower
from oczss.model.sm import SMConfig, restore_sm
from oczss.pipeline.configs import from_dict
from oczss.pipeline.data.datasets import spec as dataset_spec
from oczss.pipeline.data.palettes import palette
from oczss.pipeline.data.resize import rescale
from oczss.pipeline.data.transforms import normalise, windows
from oczss.pipeline.runtime import autocast, resolve_device
from oczss.pipeline.segmenter.methods import Method
from oczss.pipeline.sm.train import clip_text
from oczss.pipeline.stage2 import checkpoint as ckpt_io

USED = ("model", "model_config", "weights_fingerprint", "random_weights", "dataset", "classes", "unseen", "text")
WINDOWS_PER_FORWARD = 8
STRIDE = 32  # the backbone's: windows are padded to a multiple of it


@dataclasses.dataclass(eq=False)
class _Text:
    """A class list's embeddings fp32 [K, T, C] and its colours (the training dataset's for its own classes)."""

    embeddings: torch.Tensor
    colours: np.ndarray | None


class SMMethod(Method):
    """A trained Split Matching checkpoint and (for class lists of its own) the CLIP text tower."""

    name = "sm"

    @classmethod
    def load(cls, source: str, *, device: str = "auto", weights: str | None = None,
             cache_dir: str | Path | None = None, _checkpoint: dict | None = None) -> SMMethod:
        """weights: the CLIP text tower's weights for new class names (default: the checkpoint's clip_weights);
        cache_dir: where text embeddings are kept on disk."""
        self = cls()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.device = resolve_device(device)
        ckpt = ckpt_io.load(source) if _checkpoint is None else _checkpoint
        ckpt_io.require(ckpt, source, USED)
        config = from_dict(SMConfig, ckpt["model_config"], f"checkpoint {source}: model_config")
        if weights:
            config = dataclasses.replace(config, clip_weights=weights)
        try:
            model = restore_sm(config, ckpt["model"], bool(ckpt["random_weights"]), ckpt["weights_fingerprint"])
        except RuntimeError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise OCZSSError(f"checkpoint {source}: its weights do not fit its model_config ({first})") from None
        self.model, self.ckpt, self.config = model.to(self.device), ckpt, config
        self.spec = dataset_spec(ckpt["dataset"])
        self._tower = None
        self.weights = {"checkpoint": str(source), "backbone": config.backbone, "clip": config.clip,
                        "clip_weights": str(config.clip_weights), "trained_on": ckpt["dataset"],
                        "backbone_fingerprint": ckpt["weights_fingerprint"]}
        self.trained = {"dataset": ckpt["dataset"], "unseen": list(ckpt["unseen"])}
        self.random_weights = bool(ckpt["random_weights"]) or config.clip_weights == "random"
        return self

    def embed(self, classes: tuple[tuple[str, ...], ...]) -> _Text:
        flat = [n for names in classes for n in names]
        if [n.lower() for n in flat] == [c.lower() for c in self.ckpt["classes"]]:  # its training classes
            return _Text(self.ckpt["text"].float().to(self.device), palette(self.ckpt["dataset"]))
        if self._tower is None:
            self._tower = load_tower(self.config.clip, self.config.clip_weights, "text")
        per_name = clip_text(flat, self.spec.templates, self.config, None, self.device, self._tower, self.cache_dir)
        ends = np.cumsum([len(names) for names in classes])
        return _Text(torch.stack([F.normalize(per_name[e - len(names):e].mean(0), dim=-1)
                                  for e, names in zip(ends, classes)]), None)

    @torch.no_grad()
    def segment(self, images: list[np.ndarray], text: _Text, image_ids: list[str]) -> list[torch.Tensor]:
        return [self._slide(image, text.embeddings) for image in images]

    def _slide(self, image: np.ndarray, text: torch.Tensor) -> torch.Tensor:
        """Scores fp32 [K, H, W] of one uint8 [H, W, 3] image over sliding windows (module docstring)."""
        spec, dev = self.spec, self.device
        h0, w0 = image.shape[:2]
        resized = rescale(image, (2048, spec.test_short), min_size=spec.test_short)
        sh, sw = resized.shape[:2]
        x = torch.from_numpy(normalise(resized)).to(dev)
        boxes = windows(sw, sh, spec.crop, spec.slide_stride)
        ph, pw = (-(-boxes[0][i] // STRIDE) * STRIDE for i in (3, 2))
        scores = torch.zeros(len(text), sh, sw, device=dev)
        count = torch.zeros(1, sh, sw, device=dev)
        for start in range(0, len(boxes), WINDOWS_PER_FORWARD):
            part = boxes[start:start + WINDOWS_PER_FORWARD]
            batch = torch.zeros(len(part), 3, ph, pw, device=dev)
            for i, (left, top, w, h) in enumerate(part):
                batch[i, :, :h, :w] = x[:, top:top + h, left:left + w]
            with autocast(dev):
                p = self.model.probabilities(self.model(batch), text).float()
            for j, (left, top, w, h) in enumerate(part):
                scores[:, top:top + h, left:left + w] += p[j, :, :h, :w]
                count[:, top:top + h, left:left + w] += 1
        return F.interpolate((scores / count)[None], size=(h0, w0), mode="bilinear", align_corners=False)[0]

    def palette(self, text: _Text) -> np.ndarray | None:
        return text.colours
