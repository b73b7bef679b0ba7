"""The methods behind `oczss.load`: one `Method` subclass per method, found through a registry of import paths, so
a method's code (torch, its towers) is imported only when it is loaded, and a new method plugs in with one
`register` line and no change elsewhere.

A method does three things (the `Segmenter` around it decodes inputs, caches text per class list, batches, makes
results):

    method = SomeMethod.load(source, device=..., **options)   # weights loaded once
    text = method.embed(classes)                              # once per class list (tuple of synonym tuples)
    scores = method.segment(images, text, image_ids)          # fp32 [K, H, W] per RGB uint8 [H, W, 3] image
    labels = method.labels(scores, text)                      # [H, W] class indices (default: argmax)

Training-free methods are loaded by name (`oczss.load("cass")`); trained ones from a checkpoint file, whose
`method` entry names its method (absent: OC-ZSS).
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import torch

from oczss.errors import OCZSSError


class Method:
    """Base of every method. Subclasses set `name`, and in `load`: `device`, `weights` (what made the results: a
    dict of plain strings, recorded in every result), `random_weights`, and for trained methods `trained`."""

    name: str = ""
    device: torch.device
    weights: dict
    random_weights: bool
    trained: dict | None = None  # a checkpoint's {"dataset", "unseen"}: its unseen classes apply on its dataset

    @classmethod
    def load(cls, source: str, *, device: str = "auto", **options) -> Method:
        """The method with its weights loaded (`source`: its name, or the checkpoint path)."""
        raise NotImplementedError

    def embed(self, classes: tuple[tuple[str, ...], ...]):
        """Whatever the method needs for these classes (text embeddings); the Segmenter keeps it per class list."""
        raise NotImplementedError

    def segment(self, images: list[np.ndarray], text, image_ids: list[str]) -> list[torch.Tensor]:
        """Per-class scores fp32 [K, H, W] at each image's size; image_ids seed per-image random choices."""
        raise NotImplementedError

    def labels(self, scores: torch.Tensor, text) -> torch.Tensor:
        """The class map [H, W] from `scores` [K, H, W]: argmax unless the method adds a rule (a threshold)."""
        return scores.argmax(0)

    def palette(self, text) -> np.ndarray | None:
        """Class colours uint8 [K, 3] (a dataset's own for its own classes), or None for generated ones."""
        return None


_REGISTRY: dict[str, tuple[str, bool]] = {}  # name -> ("module:Class", loaded by name?)


def register(name: str, target: str, by_name: bool) -> None:
    """Make `target` ("package.module:Class", a Method subclass) the method `name`; `by_name`: loaded by its
    name (training-free), else from checkpoints whose `method` entry is `name`."""
    _REGISTRY[name] = (target, by_name)


register("cass", "oczss.pipeline.cass.predict:CassMethod", by_name=True)
register("oczss", "oczss.pipeline.stage2.predict:OCZSSMethod", by_name=False)
register("simzss", "oczss.pipeline.simzss.predict:SimZSSMethod", by_name=False)
register("sm", "oczss.pipeline.sm.predict:SMMethod", by_name=False)


def names(by_name: bool | None = None) -> list[str]:
    """Registered methods (only those loaded by name, or only checkpoint ones)."""
    return [n for n, (_, b) in _REGISTRY.items() if by_name is None or b == by_name]


def method_class(name: str) -> type[Method]:
    if name not in _REGISTRY:
        raise OCZSSError(f"unknown method {name!r}: choose one of {', '.join(names())}")
    module, _, attr = _REGISTRY[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)


def check_options(cls: type[Method], options: dict, source: str) -> None:
    """Refuse, in one line, keywords that a method's `load` does not take (before any weights are loaded)."""
    taken = [p for p in inspect.signature(cls.load).parameters if p not in ("source", "device") and
             not p.startswith("_")]
    unknown = [k for k in options if k not in taken]
    if unknown:
        raise OCZSSError(f"{source} ({cls.name}) takes no {', '.join(unknown)}; its options are "
                         f"{', '.join(['device', *taken])}")
