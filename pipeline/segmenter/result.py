"""What a segmenter returns for one image."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.render import colours, render
from oczss.pipeline.segmenter import outputs


@dataclass(eq=False)
class Result:
    """One image segmented.

    labels: the class-index map, numpy [H, W] in the input's size and orientation (uint8 up to 256 classes, uint16
        beyond); value i is `classes[i]`.
    classes: the name shown for each class (its first synonym); class_names: every name of each class.
    scores: the method's per-class scores, float32 [K, H, W], when asked for (`scores=True`), else None.
    method, weights: what made it (method name; weights and fingerprints by part); random_weights: made with
        random weights (tests and the demo only: the pictures and files say so).
    image: the input as RGB uint8 [H, W, 3]; source: its path (None for in-memory images); seconds: time spent on
        segmenting it (its share of its batch).
    """

    labels: np.ndarray
    classes: list[str]
    class_names: list[tuple[str, ...]]
    method: str
    weights: dict
    random_weights: bool
    image: np.ndarray = field(repr=False)
    source: str | None = None
    scores: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0
    palette: np.ndarray | None = field(default=None, repr=False)

    def colours(self) -> np.ndarray:
        """uint8 [K, 3]: the colour of each class in the overlay and the label PNG."""
        return colours(len(self.classes)) if self.palette is None else self.palette

    def shares(self) -> dict[str, float]:
        """Share of the pixels of each class, in class order (0 for classes not present)."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.classes))[:len(self.classes)]
        return {name: float(c) / self.labels.size for name, c in zip(self.classes, counts)}

    def overlay(self) -> Image.Image:
        """The picture `predict` writes: the image beside its colour-coded segmentation, with a legend, under a
        title (the source and the classes) and, for random weights, the notice."""
        title = f"{self.source or 'image'}  ({len(self.classes)} classes, {self.method})"
        return render(Image.fromarray(self.image), self.labels, self.classes, title,
                      RANDOM_NOTE if self.random_weights else "", self.colours())

    def save(self, out_dir: str | Path, save: Iterable[str] = outputs.DEFAULT_SAVE,
             name: str | None = None) -> dict[str, Path]:
        """Write `<name>_overlay.png`, `<name>_labels.png` and / or `<name>_probs.npy` (`save` chooses; probs need
        scores=True) into `out_dir`, as `predict` does; name defaults to the source's stem ('image' in memory).
        Returns kind -> path."""
        return outputs.write(self, out_dir, name or (Path(self.source).stem if self.source else "image"), save)
