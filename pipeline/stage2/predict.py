"""`oczss predict`: segment any images with any class names, no cache needed.

Text embeddings for the given names are computed on the fly (or read from `--text`); DINO clusters are computed
on the fly with the same DINO, input size, grid and seed the checkpoint's training cache used. An inductive
model's 0.1 calibration applies to the given classes whose names it was trained on. Per image: a colour overlay
with a legend (`<name>_overlay.png`) and the raw class-index map as a palette PNG (`<name>_labels.png`, index i =
the i-th class given, colours as in the overlay).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oczss.pipeline.render import colours, render
from oczss.errors import OCZSSError
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.model.clustering import cluster_maps
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.data.datasets import spec as dataset_spec
from oczss.pipeline.data.images import ImageError, load_resized, load_rgb
from oczss.pipeline.stage2.inference import segment
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2.text import class_text


class OnTheFlyClusters:
    """The training cache's DINO FPS-Voronoi clustering, computed per image: uint8 [S, S]."""

    def __init__(self, clusters: dict, k: int, weights: str | None, device: torch.device):
        weights = weights or ("random" if clusters["random_weights"] else "pretrained")
        model = load_dino(clusters["dino_model"], weights, clusters["input_size"])
        if fingerprint(model) != clusters["fingerprint"]:
            print(f"warning: DINO weights {weights!r} differ from those of the model's training cache; "
                  f"clusters (and results) will differ", file=sys.stderr)
        self.extract = DinoFeatures(model, clusters["grid"]).to(device)
        self.size, self.seed, self.k, self.device = clusters["input_size"], clusters["seed"], k, device

    def __call__(self, path: Path) -> np.ndarray:
        image = torch.from_numpy(load_resized(path, self.size))[None].to(self.device)
        return cluster_maps(self.extract(image), [path.stem], self.seed, [self.k])[self.k][0].cpu().numpy()


def predict(images: list[str], checkpoint: str, classes: list[str], out_dir: str | Path, *, device: str = "auto",
            weights: str | None = None, dino_weights: str | None = None, text: str | None = None,
            mode: str = "slide") -> list[Path]:
    """Write overlay and label PNGs for every readable image; corrupt ones are reported and skipped."""
    classes = [c.strip() for c in classes if c.strip()]
    if len(classes) < 1 or len(set(classes)) != len(classes):
        raise OCZSSError(f"--classes: give distinct, non-empty class names (got {classes})")
    missing = [p for p in images if not Path(p).exists()]
    if missing:
        raise OCZSSError(f"no such image file(s): {', '.join(missing)}")
    dev = resolve_device(device)
    model, ckpt = ckpt_io.restore_model(checkpoint, dev, weights)
    spec = dataset_spec(ckpt["dataset"])
    emb = class_text(classes, spec.templates, model.config, text, dev)
    trained_seen = {n.lower() for i, n in enumerate(ckpt["classes"]) if i not in set(ckpt["unseen"])}
    seen = [i for i, c in enumerate(classes) if c.lower() in trained_seen]
    calibration = 0.1 if ckpt["setting"] == "inductive" else 0.0
    clusters = None
    if model.config.mask_source == "dino":
        clusters = OnTheFlyClusters(ckpt["clusters"], model.config.num_objects, dino_weights, dev)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    note = "RANDOM WEIGHTS (tests/demo only)" if ckpt["random_weights"] else ""
    for name in images:
        path = Path(name)
        try:
            image = np.asarray(load_rgb(path))
            grid = clusters(path) if clusters else None
        except ImageError as e:
            print(f"skipped corrupt image {e}", file=sys.stderr)
            continue
        probs = segment(model, image, grid, emb, seen, calibration, short=spec.test_short, crop=spec.crop,
                        stride=spec.slide_stride, mode=mode)
        labels = probs.argmax(0).to(torch.uint8).cpu().numpy()
        palette = colours(len(classes))
        raw = Image.fromarray(labels, mode="P")
        raw.putpalette(palette.reshape(-1).tolist())
        raw.save(out_dir / f"{path.stem}_labels.png")
        picture = render(Image.fromarray(image), labels, classes, f"{path.name}  {note}")
        picture.save(out_dir / f"{path.stem}_overlay.png")
        written += [out_dir / f"{path.stem}_overlay.png", out_dir / f"{path.stem}_labels.png"]
    return written

