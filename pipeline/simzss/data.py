"""SimZSS's training samples: one (image view, caption) per captioned image and epoch, as the loader's batches.

Sample order: the shared `Positions` stream (pipeline/stage2/loader.py), a permutation of the images per epoch
seeded by (seed, epoch), so a batch never holds an image twice (L_g would count its own caption as a negative).
Each (image, epoch) draws one of the image's captions with a generator seeded by (seed, epoch, image), so a run
sees every caption over the epochs and a resumed run draws the same ones. The public code instead streams
shuffled (image, caption) pairs.

Concepts (pipeline/data/concepts.py, the run's ConceptConfig) are found when the sample is made, in the loader's
worker (the extractor is built once per process), and mapped to CLIP token spans (caption_tokens.py).

Views at R x R (SimZSSConfig.image_size), uint8: `crop`, the public code's RandomResizedCrop (area `crop_scale`,
aspect 3/4..4/3, bicubic; open_clip's training transform), seeded by (seed, position); `whole`, the whole image
resized to R x R (bilinear, pipeline/data/resize.py), exactly what Stage 1's dinov2-tokens cache holds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from oczss.pipeline.data.caption_tokens import TokenAligner, collate as collate_text
from oczss.pipeline.data.captions import CaptionSample
from oczss.pipeline.data.concepts import ConceptConfig, build
from oczss.pipeline.data.images import load_rgb
from oczss.pipeline.data.resize import bilinear
from oczss.pipeline.workers import Failure, guarded

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect range


def caption_index(seed: int, epoch: int, image: int, count: int) -> int:
    """Which of an image's `count` captions the (image, epoch) sample uses."""
    return int(np.random.default_rng([seed, epoch, image]).integers(count))


def crop_box(width: int, height: int, scale: tuple[float, float], rng: np.random.Generator) -> tuple[int, ...]:
    """RandomResizedCrop's box (left, top, right, bottom): area in `scale` of the image's, aspect in RATIO
    (log-uniform), 10 tries, else the central crop of the nearest allowed aspect."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    aspect = min(max(width / height, RATIO[0]), RATIO[1])
    w, h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
    w, h = min(w, width), min(h, height)
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def view(path, size: int, kind: str, scale: tuple[float, float], rng: np.random.Generator) -> torch.Tensor:
    """The training view of an image file: uint8 [size, size, 3] (`crop` or `whole`, module docstring)."""
    image = load_rgb(path)
    if kind == "whole":
        return torch.from_numpy(bilinear(np.asarray(image), (size, size)))
    box = crop_box(*image.size, scale, rng)
    return torch.from_numpy(np.asarray(image.resize((size, size), Image.BICUBIC, box=box)).copy())


class CaptionViews(torch.utils.data.Dataset):
    """Item (image index, stream position) -> {"caption": EncodedCaption, and either "image" uint8 [size, size, 3]
    (the view; online tokens) or, with a token cache's `rows` (pipeline/stage1/reader.py, dinov2-tokens),
    "cls" float16 [C] and "patches" float16 [T*T, C] of the whole image}."""

    def __init__(self, samples: list[CaptionSample], concepts: ConceptConfig, seed: int, size: int = 224,
                 kind: str = "crop", scale: tuple[float, float] = (0.9, 1.0), rows=None):
        self.samples, self.concepts, self.seed = samples, concepts, seed
        self.size, self.kind, self.scale, self.rows = size, kind, scale, rows
        self._extract = self._aligner = None  # built in the process that makes the samples

    def __len__(self) -> int:
        return len(self.samples)

    def caption(self, index: int, epoch: int):
        """The EncodedCaption of image `index` in `epoch`."""
        if self._extract is None:
            self._extract, self._aligner = build(self.concepts), TokenAligner()
        sample = self.samples[index]
        text = self._aligner.clean(sample.captions[caption_index(self.seed, epoch, index, len(sample.captions))])
        return self._aligner.encode(text, self._extract([text])[0], self.concepts.max_concepts,
                                    self.concepts.max_tokens)

    @guarded
    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, position = key
        item = {"caption": self.caption(index, position // len(self.samples))}
        if self.rows is not None:
            tokens = self.rows.get(self.samples[index].image_id)  # a damaged shard: an error naming it
            return {**item, "cls": torch.from_numpy(tokens["cls"]), "patches": torch.from_numpy(tokens["patches"])}
        rng = np.random.default_rng([self.seed, position])
        return {**item, "image": view(self.samples[index].image, self.size, self.kind, self.scale, rng)}


def collate(items: list):
    """Items -> {"tokens" [B, L], "spans" [B, M, T], "labels" [B, M] (TextBatch's fields), and "image" [B, R, R, 3]
    or "cls" [B, C] and "patches" [B, N, C]}; a worker's Failure is the batch (pipeline/workers.py)."""
    for item in items:
        if isinstance(item, Failure):
            return item
    text = collate_text([item["caption"] for item in items])
    batch = default_collate([{k: v for k, v in item.items() if k != "caption"} for item in items])
    return {**batch, "tokens": text.tokens, "spans": text.spans, "labels": text.labels}
