"""SimZSS's part of a TrainConfig: its `model` dict, checked when read.

TrainConfig's generic fields keep their meaning for SimZSS: `iters` optimiser steps of `batch_size` captions
(over every process), AdamW at `lr` with `weight_decay` (none on gains, biases and the logit scale), `seed`
(data order, caption draws and crops; the text tower's initialisation is `simzss.seed`). The `model` dict holds:

    {"simzss": {SimZSSConfig fields},          the text tower, the frozen vision tower, the losses
     "concepts": {ConceptConfig fields},       how concepts are found in captions (spacy or vocabulary)
     "tokens": "online" | "cache",             where the frozen tower's CLS and patch tokens come from
     "view": "crop" | "whole",                 online only: the public code's RandomResizedCrop, or the whole image
     "crop_scale": [0.9, 1.0],                 RandomResizedCrop's area range (open_clip's default for training)
     "warmup": 0.1, "betas": [0.9, 0.98], "eps": 1e-6,   the rest of SimZSSSchedule
     "weights": PATH}                          optional, what `train --weights` sets: the vision tower's weights

tokens `online` runs the frozen tower on each step's views under no_grad; `cache` reads Stage 1's tokens of the
whole image resized to R x R (a cache cannot hold a fresh crop per step), so its views are always `whole`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from oczss.errors import OCZSSError
from oczss.model.simzss import SimZSSConfig, SimZSSSchedule
from oczss.pipeline.configs import from_dict
from oczss.pipeline.data.concepts import ConceptConfig

TOKENS = ("online", "cache")
VIEWS = ("crop", "whole")


@dataclass(frozen=True)
class SimZSSRun:
    """The method config of a SimZSS run (module docstring); `simzss` and `concepts` are dicts of their configs'
    fields, read into SimZSSConfig / ConceptConfig by `model_config` / `concept_config`."""

    simzss: dict = field(default_factory=dict)
    concepts: dict = field(default_factory=dict)
    tokens: str = "online"
    view: str = "crop"
    crop_scale: tuple[float, float] = (0.9, 1.0)
    warmup: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weights: str | None = None

    def __post_init__(self):
        if self.tokens not in TOKENS:
            raise OCZSSError(f"simzss: tokens {self.tokens!r} is not one of {', '.join(TOKENS)}")
        if self.view not in VIEWS:
            raise OCZSSError(f"simzss: view {self.view!r} is not one of {', '.join(VIEWS)}")
        if self.tokens == "cache" and self.view != "whole":
            object.__setattr__(self, "view", "whole")  # the cache holds the whole image's tokens only
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise OCZSSError(f"simzss: crop_scale {list(self.crop_scale)} is not two fractions 0 < low <= high <= 1")
        self.model_config(), self.concept_config()  # their own checks, at once

    def model_config(self) -> SimZSSConfig:
        cfg = from_dict(SimZSSConfig, self.simzss, "simzss config")
        return dataclasses.replace(cfg, vision_weights=self.weights) if self.weights else cfg

    def concept_config(self) -> ConceptConfig:
        return from_dict(ConceptConfig, self.concepts, "simzss concepts")

    def schedule(self, iters: int, batch_size: int, lr: float, weight_decay: float) -> SimZSSSchedule:
        """The optimisation of `iters` steps of `batch_size` captions (TrainConfig's generic fields)."""
        return SimZSSSchedule(batch_size=batch_size, samples=iters * batch_size, lr=lr, betas=self.betas,
                              eps=self.eps, weight_decay=weight_decay, warmup=self.warmup)


def run_config(cfg) -> SimZSSRun:
    """The SimZSSRun of a TrainConfig (its `model` dict); one-line errors naming the bad field."""
    return from_dict(SimZSSRun, cfg.model, "training config: model (simzss)")
