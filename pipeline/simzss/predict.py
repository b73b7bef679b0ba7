"""SimZSS behind `oczss.load("runs/simzss/last.pt")`, `oczss eval --checkpoint` and `oczss predict --checkpoint`:
any images, any class names (open vocabulary: the checkpoint has no seen / unseen split, every class counts).

Protocol (poster, "Zero-shot foreground segmentation": patch tokens projected on the class names' text
embeddings, then up-sampled; the public code has no segmentation evaluation, so the resolution is ours):
- class embeddings: each name in open_clip's 80 OpenAI ImageNet templates (the public code's zero-shot
  templates), the mean of the normalised caption embeddings; a class with synonyms ("sofa|couch") takes the
  normalised mean of its names' embeddings;
- the image resized (bilinear) to a short side of `short_side` (448 = 32 patches of 14 by default), the long side
  the nearest multiple of 14 keeping the aspect (at most twice the short side, as Stage 1 does), the frozen tower
  run once on the whole image (no sliding window), cosine of every patch token with every class, bilinear
  up-sampling to the image's own size: fp32 [K, H, W]; the label is the argmax (no background threshold: the
  benchmarks of the paper's table are evaluated on their foreground classes, e.g. voc20, context59).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from oczss.errors import OCZSSError
from oczss.model.simzss import SimZSS, SimZSSConfig, load_vision, segment
from oczss.model.weights import fingerprint
from oczss.pipeline.configs import from_dict
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.segmenter.methods import Method
from oczss.pipeline.stage1.tokens import MAX_ASPECT, dino_input
from oczss.pipeline.stage2 import checkpoint as ckpt_io

log = logging.getLogger(__name__)
TEMPLATES = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)  # "a photo of a {}." ...


class SimZSSMethod(Method):
    """A trained SimZSS checkpoint: its text tower, and its frozen vision tower loaded once."""

    name = "simzss"

    @classmethod
    def load(cls, source: str, *, device: str = "auto", weights: str | None = None, short_side: int = 448,
             _checkpoint: dict | None = None) -> SimZSSMethod:
        """weights: the frozen vision tower's (pretrained, random or a file; default: as in training);
        short_side: the inference resolution (module docstring), a multiple of the patch size."""
        self = cls()
        self.device = resolve_device(device)
        ckpt = _checkpoint if _checkpoint is not None else ckpt_io.load(source)
        ckpt_io.require(ckpt, source, ("model", "model_config", "vision"))
        cfg = from_dict(SimZSSConfig, ckpt["model_config"], f"{source}: model_config")
        weights = weights or cfg.vision_weights
        self.vision = load_vision(cfg.vision, weights, cfg.image_size).to(self.device)
        if short_side < 1 or short_side % self.vision.patch:
            raise OCZSSError(f"short_side {short_side}: must be a positive multiple of the patch size "
                             f"{self.vision.patch}")
        if fingerprint(self.vision.model) != ckpt["vision"]["fingerprint"]:
            log.warning("vision weights %r differ from those %s was trained with; results will differ", weights,
                        source)
        self.model = SimZSS(cfg, self.vision.width)
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise OCZSSError(f"{source}: its weights do not fit its own model_config ({str(e).splitlines()[0]})") \
                from None
        self.model.to(self.device).eval()
        self.short = short_side
        self.weights = {"checkpoint": str(source), "vision": cfg.vision, "vision_weights": str(weights),
                        "trained_on": str(ckpt.get("dataset")), "step": str(ckpt.get("step")),
                        "short_side": str(short_side)}
        self.random_weights = weights == "random"
        return self

    def embed(self, classes: tuple[tuple[str, ...], ...]) -> torch.Tensor:
        """Class embeddings fp32 [K, D] (synonyms: the normalised mean of their names')."""
        per_name = self.model.embed_classes([n for names in classes for n in names], TEMPLATES)
        ends = np.cumsum([len(names) for names in classes])
        return torch.stack([F.normalize(per_name[e - len(names):e].mean(0), dim=-1)
                            for e, names in zip(ends, classes)])

    @torch.no_grad()
    def segment(self, images: list[np.ndarray], text: torch.Tensor, image_ids: list[str]) -> list[torch.Tensor]:
        """uint8 [H, W, 3] images -> fp32 [K, H, W] each (module docstring)."""
        out = []
        for image in images:
            resized = dino_input(image, self.short, self.vision.patch, MAX_ASPECT * self.short // self.vision.patch)
            x = self.vision.normalise(torch.from_numpy(resized)[None].to(self.device))
            out.append(segment(self.vision, x, text, tuple(image.shape[:2]))[0])
        return out
