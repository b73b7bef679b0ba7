"""PrecomputeConfig: the flags of `oczss precompute`, checked when made. Light on imports (no torch, no zarr), so
the command line takes its defaults from here while it parses."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from oczss.errors import OCZSSError
from oczss.model.names import DINO_B16, check_name
from oczss.pipeline.data.names import DATASETS, canonical, images_of

log = logging.getLogger(__name__)
FEATURE_DIM = 32  # D of the compact features of the `view` cluster mode


@dataclass(frozen=True)
class PrecomputeConfig:
    """The flags of `oczss precompute`. split: 'train', 'val' or 'all'. dataset: any case; a variant (voc21,
    context59, coco-object, ...) becomes the dataset whose images it reads (`names.images_of`): one cache of the
    base serves every variant. weights: DINO's, `pretrained`, `random` or a checkpoint path."""

    dataset: str
    cache: str
    data_root: str | None = None
    split: str = "train"
    ks: tuple[int, ...] = (6, 8)
    input_size: int = 448  # the short side; chosen from bench/view_features.py (README)
    grid: int = 64
    batch_size: int = 32
    device: str = "auto"
    weights: str = "pretrained"
    dino_model: str = DINO_B16
    seed: int = 0
    shard_size: int = 256
    decode_threads: int = min(16, os.cpu_count() or 1)
    scheduler: str | None = None
    retry_failed: bool = False
    force_unlock: bool = False
    feature_dim: int = FEATURE_DIM

    def __post_init__(self):
        """Refuse bad flags before any work starts."""
        name = canonical(self.dataset, DATASETS, "--dataset")
        base = images_of(name)
        if base != name:
            log.info("%s reads the images of %s: caching them as %s, which serves both", name, base, base)
        object.__setattr__(self, "dataset", base)
        check_name("dino", self.dino_model, "--dino-model")
        if self.split not in ("train", "val", "all"):
            raise OCZSSError(f"--split {self.split!r}: choose train, val or all")
        for flag, v in (("--input-size", self.input_size), ("--grid", self.grid), ("--batch-size", self.batch_size),
                        ("--shard-size", self.shard_size), ("--decode-threads", self.decode_threads)):
            if v < 1:
                raise OCZSSError(f"{flag} {v}: must be at least 1")
        if self.seed < 0:
            raise OCZSSError(f"--seed {self.seed}: must be at least 0")
        if not 0 <= self.feature_dim <= 256:
            raise OCZSSError(f"--feature-dim {self.feature_dim}: must lie in 0..256 (0: store no features)")
        top = min(255, self.grid * self.grid)
        if not self.ks or min(self.ks) < 1 or max(self.ks) > top:
            raise OCZSSError(f"--ks {','.join(map(str, self.ks))}: every K must lie in 1..{top} (at most 255, and at "
                             f"most the S x S = {self.grid}x{self.grid} cells of --grid)")
