"""CASS behind `oczss.load("cass")` and `oczss predict --method cass`: any images, any class names, right after
install, no training and no checkpoint: the public CLIP ViT-B/16 and DINO ViT-B/8 (hub names, local paths, or
`random` for tests).

A class may list synonyms separated by `|` ("person|man|woman"): each name is a query and the class takes the
best of them, as on the benchmarks. The constants are a recipe's (`config`, default `cass`: the defaults' row,
pipeline/cass/recipes.py); no background threshold unless the recipe has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from oczss.model.cass import CASSConfig, build_cass
from oczss.pipeline.cass.evaluate import DEFAULT_CLIP, DEFAULT_DINO
from oczss.pipeline.cass.recipes import resolve
from oczss.pipeline.cass.segment import CassSegmenter
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.segmenter.methods import Method
from oczss.pipeline.stage2.text import text_cache_dir


@dataclass(eq=False)
class _Vocabulary:
    """A class list's segmenter (its synonym groups) and its query embeddings, normalised [Q, C]."""

    segmenter: CassSegmenter
    queries: torch.Tensor


class CassMethod(Method):
    """CASS with its two frozen towers loaded once; one query set per class list, switched on use."""

    name = "cass"

    def __init__(self, cass, config: CASSConfig, device: torch.device, cache_dir: Path, weights: dict):
        self.cass, self.config, self.device, self.cache_dir = cass.to(device), config, device, cache_dir
        self.weights, self.random_weights = weights, cass.random_weights
        self._active: _Vocabulary | None = None

    @classmethod
    def load(cls, source: str = "cass", *, device: str = "auto", weights: str = "pretrained",
             dino_weights: str | None = None, config: str | CASSConfig | None = None, backbone: str = DEFAULT_CLIP,
             dino_model: str = DEFAULT_DINO, cache_dir: str | Path | None = None) -> CassMethod:
        """weights: CLIP's ('pretrained', 'random' or a file); dino_weights: DINO's (default: 'random' with random
        CLIP weights, else 'pretrained'); config: a CASS recipe name or a CASSConfig; cache_dir: where query
        embeddings are kept on disk (default ~/.cache/oczss/text, or $OCZSS_HOME/text)."""
        dev = resolve_device(device)
        cfg = config if isinstance(config, CASSConfig) else resolve(config, "custom")
        dino_weights = dino_weights or ("random" if weights == "random" else "pretrained")
        cass = build_cass(cfg, weights, dino_weights, backbone=backbone, dino_model=dino_model)
        described = {"clip": str(weights), "backbone": backbone, "config": config if isinstance(config, str) else
                     "cass" if config is None else "custom", **{f"{k}_fingerprint": v for k, v in
                                                                 cass.fingerprints.items()}}
        if cfg.vfm:
            described.update(dino=str(dino_weights), dino_model=dino_model)
        return cls(cass, cfg, dev, Path(cache_dir) if cache_dir else text_cache_dir(), described)

    def embed(self, classes: tuple[tuple[str, ...], ...]) -> _Vocabulary:
        segmenter = CassSegmenter(self.cass, self.config, list(classes), self.device, self.cache_dir)
        self._active = _Vocabulary(segmenter, self.cass.queries)
        return self._active

    def segment(self, images: list[np.ndarray], text: _Vocabulary, image_ids: list[str]) -> list[torch.Tensor]:
        if self._active is not text:  # another class list was used since: its queries (and Ward clusters) back
            self.cass.set_queries(text.queries)
            self._active = text
        return [text.segmenter.probabilities(image) for image in images]

    def labels(self, scores: torch.Tensor, text: _Vocabulary) -> torch.Tensor:
        return text.segmenter.labels(scores)
