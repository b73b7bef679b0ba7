"""PrecomputeConfig: the flags of `oczss precompute`, checked when made. Light on imports (no torch, no zarr), so
the command line takes its defaults from here while it parses.

`masks` names the source (pipeline/stage1/sources/): dino-fps (default), clip-kmeans or dinov2-tokens. Settings of
one source only (SOURCE_FIELDS) are refused for another when given a value other than their default; R and S
default per source (DEFAULT_INPUT_SIZE, DEFAULT_GRID)."""

from __future__ import annotations

import logging
import os
import dataclasses
from dataclasses import dataclass

from oczss.errors import OCZSSError
from oczss.model.names import CLIP_B16, DINO_B16, DINOV2_B14, check_name
from oczss.pipeline.data.names import DATASETS, canonical, images_of
from oczss.pipeline.stage1.sources import SOURCES

log = logging.getLogger(__name__)
FEATURE_DIM = 32  # D of the compact features of the `view` cluster mode
CAPTIONS = "coco-captions"  # the caption dataset (pipeline/data/captions.py): dinov2-tokens only
DEFAULT_INPUT_SIZE = {"dino-fps": 448, "clip-kmeans": 512, "dinov2-tokens": 224}  # dino-fps: the short side,
# chosen from bench/view_features.py (README); clip-kmeans: Split Matching's 512 crops; dinov2-tokens: SimZSS's 224
DEFAULT_GRID = {"dino-fps": 64, "clip-kmeans": 32}
SOURCE_FIELDS = {  # field: the sources it belongs to (its flag is --field with dashes)
    "ks": ("dino-fps",), "seed": ("dino-fps",), "feature_dim": ("dino-fps",), "dino_model": ("dino-fps",),
    "grid": ("dino-fps", "clip-kmeans"), "clip_model": ("clip-kmeans",), "windows": ("clip-kmeans",),
    "kmeans_iters": ("clip-kmeans",), "threshold": ("clip-kmeans",), "max_candidates": ("clip-kmeans",),
    "region": ("clip-kmeans",), "crop_size": ("clip-kmeans",), "vision_model": ("dinov2-tokens",)}


@dataclass(frozen=True)
class PrecomputeConfig:
    """The flags of `oczss precompute`. split: 'train', 'val' or 'all'. dataset: any case; a variant (voc21,
    context59, coco-object, ...) becomes the dataset whose images it reads (`names.images_of`): one cache of the
    base serves every variant; coco-captions (dinov2-tokens only) reads COCO's images that have captions.
    weights: the source's frozen model's (DINO, CLIP image tower or DINOv2), `pretrained`, `random` or a
    checkpoint path. input_size / grid: None takes the source's default."""

    dataset: str
    cache: str
    data_root: str | None = None
    split: str = "train"
    masks: str = "dino-fps"
    ks: tuple[int, ...] = (6, 8)
    input_size: int | None = None
    grid: int | None = None
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
    clip_model: str = CLIP_B16
    windows: tuple[int, ...] = (8, 16)  # the K-Means settings of clip-kmeans: CandidateParams (model/sm/candidates.py)
    kmeans_iters: int = 10
    threshold: float = 0.9
    max_candidates: int = 50
    region: str = "mask"
    crop_size: int = 224
    vision_model: str = DINOV2_B14

    def __post_init__(self):
        """Refuse bad flags before any work starts."""
        if self.masks not in SOURCES:
            raise OCZSSError(f"--masks {self.masks}: choose one of {', '.join(SOURCES)}")
        self._refuse_other_sources()
        name = canonical(self.dataset, DATASETS + (CAPTIONS,), "--dataset")
        if name == CAPTIONS and self.masks != "dinov2-tokens":
            raise OCZSSError(f"--dataset {CAPTIONS} is a caption dataset: only --masks dinov2-tokens caches it "
                             f"(SimZSS); --masks {self.masks} needs a segmentation dataset")
        base = images_of(name) if name != CAPTIONS else name
        if base != name:
            log.info("%s reads the images of %s: caching them as %s, which serves both", name, base, base)
        object.__setattr__(self, "dataset", base)
        object.__setattr__(self, "input_size", self.input_size or DEFAULT_INPUT_SIZE[self.masks])
        object.__setattr__(self, "grid", DEFAULT_GRID.get(self.masks, 0) if self.grid is None else self.grid)
        for kind, field in (("dino", "dino_model"), ("clip", "clip_model"), ("dino", "vision_model")):
            if self.masks in SOURCE_FIELDS[field]:
                check_name(kind, getattr(self, field), "--" + field.replace("_", "-"))
        if self.split not in ("train", "val", "all"):
            raise OCZSSError(f"--split {self.split!r}: choose train, val or all")
        for flag, v in (("--input-size", self.input_size), ("--batch-size", self.batch_size),
                        ("--shard-size", self.shard_size), ("--decode-threads", self.decode_threads)):
            if v < 1:
                raise OCZSSError(f"{flag} {v}: must be at least 1")
        if self.grid < 0:
            raise OCZSSError(f"--grid {self.grid}: must be at least 0")
        if self.masks == "dino-fps":
            self._check_dino()

    def _check_dino(self) -> None:
        """The settings of dino-fps."""
        if self.grid < 1:
            raise OCZSSError(f"--grid {self.grid}: must be at least 1")
        if self.seed < 0:
            raise OCZSSError(f"--seed {self.seed}: must be at least 0")
        if not 0 <= self.feature_dim <= 256:
            raise OCZSSError(f"--feature-dim {self.feature_dim}: must lie in 0..256 (0: store no features)")
        top = min(255, self.grid * self.grid)
        if not self.ks or min(self.ks) < 1 or max(self.ks) > top:
            raise OCZSSError(f"--ks {','.join(map(str, self.ks))}: every K must lie in 1..{top} (at most 255, and at "
                             f"most the S x S = {self.grid}x{self.grid} cells of --grid)")

    def _refuse_other_sources(self) -> None:
        """A setting of another source given a value other than its default: refused, naming its flags."""
        given = [f.name for f in dataclasses.fields(self) if f.name in SOURCE_FIELDS
                 and self.masks not in SOURCE_FIELDS[f.name] and getattr(self, f.name) not in (f.default, None)]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            owners = sorted({s for name in given for s in SOURCE_FIELDS[name]})
            raise OCZSSError(f"--masks {self.masks} takes no {flags} (only --masks {' or '.join(owners)} does)")
