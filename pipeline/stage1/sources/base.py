"""What a Stage 1 source is (pipeline/stage1/sources/__init__.py lists them): the client's half and the worker's half.

Client (pipeline/stage1/precompute.py), once per run, before any byte is written:
    load(cfg)                         -> the frozen model as loaded on the client (random weights announced)
    params(cfg, model, device_type)   -> CacheParams | SourceParams: everything that changes the arrays, bound in
                                         the cache's metadata and every shard record (cache/schema.py)
    prepare(cfg, model, params, existing, paths) -> extra: per-dataset state every shard needs (dino-fps: the
                                         compact features' basis, fitted on `paths`), or None
    created(cache, dataset, extra)    -> record that state in the cache once it exists
Worker (pipeline/stage1/shards.py), per process and per shard:
    worker(params, weights, device, model) -> the frozen model on `device`, checked against params' fingerprint
                                         (`model`: the client's, reused when the client computes itself)
    decode(path, params)              -> uint8 [h, w, 3], the image as the model sees it (ImageError if unreadable)
    compute(runner, images, ids, params, extra) -> {array name: numpy [B, ...]} for same-sized uint8 images
                                         [B, h, w, 3] on the device, in params.layouts()'s shapes and dtypes
The settings of one source only are listed in pipeline/stage1/config.py (SOURCE_FIELDS), refused for another one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oczss.errors import OCZSSError
from oczss.pipeline.data.images import load_rgb
from oczss.pipeline.data.resize import bilinear


class Source:
    """The default halves every source shares (module docstring); a source overrides what it needs."""

    name: str = ""
    default_input_size: int = 0

    def prepare(self, cfg, model, params, existing, paths: list[Path]):
        return None

    def created(self, cache, dataset: str, extra) -> None:
        return None

    def decode(self, path: str | Path, params) -> np.ndarray:
        """The whole image resized to R x R (R = params.values["input_size"]), bilinear as everywhere in oczss."""
        size = params.values["input_size"]
        return bilinear(np.asarray(load_rgb(path)), (size, size))


def fingerprint_mismatch(what: str, weights: str, wanted: str) -> OCZSSError:
    """The error of a worker whose weights are not those the cache was made with."""
    return OCZSSError(f"{what} weights {weights!r} on this worker differ from the cache's (fingerprint "
                      f"{wanted[:12]}…); give every worker the same checkpoint")
