"""`oczss predict`: segment any images with any class names, no cache needed.

Text embeddings for the given names are computed on the fly (or read from `--text`); DINO clusters are computed
on the fly with the same DINO, input size, grid and seed the checkpoint's training cache used. An inductive
model's calibration applies to the given classes whose names it was trained on. Per image: a colour overlay with
a legend (`<name>_overlay.png`) and the raw class-index map as a palette PNG (`<name>_labels.png`, index i = the
i-th class given, colours as in the overlay).

Nothing is overwritten unless asked, inputs that share a file name get distinct outputs (said on stderr), and a
run where no image could be read is an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oczss.errors import OCZSSError
from oczss.model.clustering import cluster_maps
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import RANDOM_NOTE, fingerprint
from oczss.pipeline.console import progress
from oczss.pipeline.data.datasets import spec as dataset_spec
from oczss.pipeline.data.images import ImageError, load_resized, load_rgb
from oczss.pipeline.render import colours, render
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.inference import INDUCTIVE_CALIBRATION, segment
from oczss.pipeline.stage2.text import class_text

log = logging.getLogger(__name__)
SUFFIXES = ("_overlay.png", "_labels.png")


class OnTheFlyClusters:
    """The training cache's DINO FPS-Voronoi clustering, computed per image: uint8 [S, S]."""

    def __init__(self, source: dict, k: int, weights: str | None, device: torch.device):
        weights = weights or ("random" if source["random_weights"] else "pretrained")
        model = load_dino(source["dino_model"], weights, source["input_size"])
        if fingerprint(model) != source["fingerprint"]:
            log.warning("DINO weights %r differ from those of the model's training cache; clusters (and results) "
                        "will differ", weights)
        self.extract = DinoFeatures(model, source["grid"]).to(device)
        self.size, self.seed, self.k, self.device = source["input_size"], source["seed"], k, device

    def __call__(self, path: Path) -> np.ndarray:
        image = torch.from_numpy(load_resized(path, self.size))[None].to(self.device)
        return cluster_maps(self.extract(image), [path.stem], self.seed, [self.k])[self.k][0].cpu().numpy()


def output_names(paths: list[Path]) -> list[str]:
    """A distinct output name per input: its stem, then stem_suffix, then parent_stem_suffix, then an index."""
    names = [p.stem for p in paths]
    for widen in (lambda p: f"{p.stem}_{p.suffix.lstrip('.')}", lambda p: f"{p.parent.name}_{p.stem}_{p.suffix.lstrip('.')}"):
        counts = Counter(names)
        names = [widen(p) if counts[n] > 1 else n for p, n in zip(paths, names)]
    counts, seen = Counter(names), Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(f"{n}_{seen[n]}" if counts[n] > 1 else n)
    return out


def plan_outputs(images: list[str], out_dir: Path, overwrite: bool) -> list[tuple[Path, str]]:
    """(input, output name) pairs; refuses missing inputs and existing outputs (unless `overwrite`)."""
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        raise OCZSSError(f"no such image file(s): {', '.join(missing)}")
    paths = [Path(p) for p in images]
    names = output_names(paths)
    for path, name in zip(paths, names):
        if name != path.stem:
            log.info("%s -> %s_*.png (another input has the same file name)", path, out_dir / name)
    existing = [str(out_dir / f"{n}{s}") for n in names for s in SUFFIXES if (out_dir / f"{n}{s}").exists()]
    if existing and not overwrite:
        raise OCZSSError(f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; pass --overwrite to "
                         f"replace them or choose another --out")
    return list(zip(paths, names))


def write_outputs(image: np.ndarray, labels: np.ndarray, classes: list[str], out_dir: Path, name: str,
                  title: str, notice: str) -> list[Path]:
    """The overlay picture and the palette label PNG of one image."""
    palette = colours(len(classes))
    raw = Image.fromarray(labels, mode="P")
    raw.putpalette(palette.reshape(-1).tolist())
    written = [out_dir / f"{name}{s}" for s in SUFFIXES]
    render(Image.fromarray(image), labels, classes, title, notice, palette).save(written[0])
    raw.save(written[1])
    return written


def predict(images: list[str], checkpoint: str, classes: list[str], out_dir: str | Path, *, device: str = "auto",
            weights: str | None = None, dino_weights: str | None = None, text: str | None = None,
            mode: str = "slide", overwrite: bool = False, progress_bar: bool = True) -> list[Path]:
    """Write overlay and label PNGs for every readable image; corrupt ones are reported and skipped."""
    classes = [c.strip() for c in classes if c.strip()]
    if len(classes) < 1 or len(set(classes)) != len(classes):
        raise OCZSSError(f"--classes: give distinct, non-empty class names (got {classes})")
    out_dir = Path(out_dir)
    jobs = plan_outputs(images, out_dir, overwrite)
    dev = resolve_device(device)
    model, ckpt = ckpt_io.restore_model(checkpoint, dev, weights)
    spec = dataset_spec(ckpt["dataset"])
    emb = class_text(classes, spec.templates, model.config, text, dev)
    trained_seen = {n.lower() for i, n in enumerate(ckpt["classes"]) if i not in set(ckpt["unseen"])}
    seen = [i for i, c in enumerate(classes) if c.lower() in trained_seen]
    calibration = INDUCTIVE_CALIBRATION if ckpt["setting"] == "inductive" else 0.0
    clusters = None
    if model.config.mask_source == "dino":
        clusters = OnTheFlyClusters(ckpt["cluster_source"], model.config.num_objects, dino_weights, dev)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    notice = RANDOM_NOTE if ckpt["random_weights"] else ""
    with progress(len(jobs), desc="predict", unit="img", enabled=progress_bar) as bar:
        for path, name in jobs:
            bar.update(1)
            try:
                image = np.asarray(load_rgb(path))
                cluster_map = clusters(path) if clusters else None
            except ImageError as e:
                log.warning("skipped corrupt image %s", e)
                continue
            probs = segment(model, image, cluster_map, emb, seen, calibration, short=spec.test_short,
                            crop=spec.crop, stride=spec.slide_stride, mode=mode)
            labels = probs.argmax(0).to(torch.uint8).cpu().numpy()
            written += write_outputs(image, labels, classes, out_dir, name, f"{path}  ({len(classes)} classes)", notice)
    if not written:
        raise OCZSSError(f"none of the {len(jobs)} image(s) could be read (see the warnings above); nothing written")
    return written
