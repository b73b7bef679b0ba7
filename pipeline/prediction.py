"""What `predict` writes for each image, whichever method segments it: a colour overlay with a legend
(`<name>_overlay.png`) and the raw class-index map as a palette PNG (`<name>_labels.png`, index i = the i-th
class given, colours as in the overlay).

Nothing is overwritten unless asked, inputs that share a file name get distinct outputs (said on stderr), and a
run where no image could be read is an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from oczss.errors import OCZSSError
from oczss.pipeline.console import progress
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.render import colours, render

log = logging.getLogger(__name__)
SUFFIXES = ("_overlay.png", "_labels.png")


def class_list(classes: list[str]) -> list[str]:
    """The user's class names, stripped; refused when empty or repeated."""
    classes = [c.strip() for c in classes if c.strip()]
    if len(classes) < 1 or len(set(classes)) != len(classes):
        raise OCZSSError(f"--classes: give distinct, non-empty class names (got {classes})")
    return classes


def output_names(paths: list[Path]) -> list[str]:
    """A distinct output name per input: its stem, then stem_suffix, then parent_stem_suffix, then an index."""
    names = [p.stem for p in paths]
    for widen in (lambda p: f"{p.stem}_{p.suffix.lstrip('.')}",
                  lambda p: f"{p.parent.name}_{p.stem}_{p.suffix.lstrip('.')}"):
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
                  title: str, notice: str, palette: np.ndarray | None = None) -> list[Path]:
    """The overlay picture and the palette label PNG of one image; labels uint8 [H, W]; palette uint8 [K, 3]
    (default: distinct generated colours)."""
    palette = colours(len(classes)) if palette is None else palette
    raw = Image.fromarray(labels, mode="P")
    raw.putpalette(palette.reshape(-1).tolist())
    written = [out_dir / f"{name}{s}" for s in SUFFIXES]
    render(Image.fromarray(image), labels, classes, title, notice, palette).save(written[0])
    raw.save(written[1])
    return written


def predict_images(jobs: list[tuple[Path, str]], segmenter: Callable, classes: list[str], out_dir: Path,
                   notice: str, show_progress: bool = True, palette: np.ndarray | None = None) -> list[Path]:
    """Run `segmenter(path, image uint8 [H, W, 3]) -> class map [H, W]` on every job and write its outputs;
    corrupt images are reported and skipped, and a run with none readable is an error."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with progress(len(jobs), desc="predict", unit="img", enabled=show_progress) as bar:
        for path, name in jobs:
            bar.update(1)
            try:
                image = np.asarray(load_rgb(path))
                labels = segmenter(path, image)
            except ImageError as e:
                log.warning("skipped corrupt image %s", e)
                continue
            labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).astype(np.uint8)
            written += write_outputs(image, labels, classes, out_dir, name, f"{path}  ({len(classes)} classes)",
                                     notice, palette)
    if not written:
        raise OCZSSError(f"none of the {len(jobs)} image(s) could be read (see the warnings above); nothing written")
    return written
