"""The files a result becomes, the same from `Result.save`, `oczss predict` and the app:

    <name>_overlay.png   the image beside its colour-coded segmentation, with a legend (pipeline/render.py)
    <name>_labels.png    the class-index map: a palette PNG (index i = the i-th class, colours as in the overlay) up
                         to 256 classes, a 16-bit greyscale PNG beyond (a palette holds 256 colours at most)
    <name>_probs.npy     the method's per-class scores, float16 [K, H, W]

Both PNGs carry the class names (with synonyms), the method, the weights and the random-weights flag as PNG text
chunks (`Image.open(path).text`). Every file is written to a temporary name beside it and renamed, so an
interrupted write (Ctrl-C, a full disk, a kill) never leaves a partial file under the final name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from oczss.errors import OCZSSError
from oczss.model.weights import RANDOM_NOTE

if TYPE_CHECKING:
    from oczss.pipeline.segmenter.result import Result

SUFFIXES = {"overlay": "_overlay.png", "labels": "_labels.png", "probs": "_probs.npy"}
DEFAULT_SAVE = ("overlay", "labels")
PARTIAL = ".oczss-partial"  # temporary files end so; a rerun removes ones a killed run left


def parse_save(value: str | Iterable[str], what: str = "save") -> tuple[str, ...]:
    """'overlay,labels' or an iterable of kinds -> a tuple of known kinds; anything else refused in one line."""
    kinds = [k.strip() for k in (value.split(",") if isinstance(value, str) else value) if k.strip()]
    unknown = [k for k in kinds if k not in SUFFIXES]
    if unknown or not kinds:
        raise OCZSSError(f"{what} {','.join(kinds) or '(nothing)'}: choose one or more of {', '.join(SUFFIXES)}")
    return tuple(dict.fromkeys(kinds))


def output_paths(out_dir: Path, name: str, save: Iterable[str]) -> dict[str, Path]:
    """kind -> the file it goes to; `name` may hold sub-folders (a/b/photo)."""
    return {kind: Path(out_dir) / f"{name}{SUFFIXES[kind]}" for kind in save}


def identity(class_names, method: str, weights: dict) -> dict[str, str]:
    """What made a result, as PNG text chunks: its classes (synonyms joined by |), method and weights."""
    return {"oczss:classes": json.dumps(["|".join(names) for names in class_names], ensure_ascii=False),
            "oczss:method": method, "oczss:weights": json.dumps(weights, ensure_ascii=False, sort_keys=True)}


def describe(result: Result) -> dict[str, str]:
    """The PNG text chunks of a result's pictures: its identity, the random-weights flag (and notice), the
    version that wrote it."""
    from oczss import __version__

    info = {**identity(result.class_names, result.method, result.weights),
            "oczss:random_weights": "true" if result.random_weights else "false", "Software": f"oczss {__version__}"}
    if result.random_weights:
        info["oczss:notice"] = RANDOM_NOTE
    return info


def label_image(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """uint8 labels -> palette PNG image ('P'); uint16 (more than 256 classes) -> 16-bit greyscale ('I;16')."""
    if labels.dtype == np.uint8:
        image = Image.fromarray(labels, mode="P")
        image.putpalette(palette[:256].reshape(-1).tolist())
        return image
    return Image.fromarray(labels.astype(np.uint16))


def write(result: Result, out_dir: str | Path, name: str, save: Iterable[str] = DEFAULT_SAVE) -> dict[str, Path]:
    """Write the chosen files of `result`; returns kind -> path. Each appears complete or not at all."""
    paths = output_paths(Path(out_dir), name, parse_save(save))
    info = PngInfo()
    for key, value in describe(result).items():
        info.add_text(key, value)
    for kind, path in paths.items():
        if kind == "overlay":
            atomic(path, lambda f: result.overlay().save(f, format="PNG", pnginfo=info))
        elif kind == "labels":
            atomic(path, lambda f: label_image(result.labels, result.colours()).save(f, format="PNG", pnginfo=info))
        else:
            if result.scores is None:
                raise OCZSSError("probs: this result holds no scores; segment with scores=True")
            atomic(path, lambda f: np.save(f, result.scores.astype(np.float16)))
    return paths


def atomic(path: Path, write_to: Callable) -> None:
    """Call write_to(open binary file) on a temporary name beside `path`, then rename it to `path`; on any failure
    (Ctrl-C included) the temporary file is removed. Folders are made; OS errors become one line naming the path."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write_to(f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OCZSSError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
