"""The built-in demo dataset: simple shapes and textures on backgrounds, generated deterministically.

Written in the COCO-Stuff 164k layout (`train2017/*.jpg`, `annotations/train2017/*_labelTrainIds.png`, same for
val) with the class list `DEMO_CLASSES` (sky, grass, sand, water backgrounds; circle, square, triangle, star
shapes) and the unseen classes water and triangle. A one-pixel outline around every shape is 255 (ignore), as
VOC's object boundaries are. Each shape class has its own colour (with jitter), so a tiny model learns the seen
classes in a few hundred steps even from random weights.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.data.datasets import DEMO_CLASSES

VERSION = "3"
MARKER, WORK_MARKER = ".oczss-demo", ".oczss-demo-work"
CONTENT = ("train2017", "val2017", "annotations", "classes.txt")  # everything a generation writes but the marker
COUNTS = {"train": 48, "val": 16}
SIZES = ((256, 192), (192, 256), (224, 224), (288, 192))
_BG = {0: (110, 160, 230), 1: (60, 150, 60), 2: (220, 200, 130), 3: (40, 90, 170)}
_SHAPE_COLOURS = {4: (220, 40, 40), 5: (230, 40, 220), 6: (150, 60, 200), 7: (250, 140, 20)}  # per shape class


def ensure_demo(root: str | Path) -> Path:
    """Generate the demo dataset at `root` unless a complete copy of this version is already there.

    Never deletes anything oczss did not create: `root` must be missing, an empty folder, or a complete demo
    (marker file `.oczss-demo`) of this or an older version, which is the only thing replaced. Anything else is
    refused, naming the folder. Generation goes to a sibling working folder that carries its own marker, and the
    finished entries are moved into `root` with the marker last, so an interrupted run never looks complete.
    """
    root = Path(root)
    marker = root / MARKER
    if root.exists() and not root.is_dir():
        raise OCZSSError(f"--data-root {root} is a file; the demo dataset needs a folder")
    if marker.is_file() and marker.read_text().strip() == VERSION:
        return root
    if root.is_dir() and any(root.iterdir()) and not marker.is_file():
        raise OCZSSError(f"{root} is not empty and is not an oczss demo dataset; refusing to write the demo there "
                         f"(nothing was changed). Pass an empty or new folder as --data-root")
    work = root.with_name(f".{root.name}.oczss-demo-work")
    if work.exists():
        if not (work / WORK_MARKER).is_file():
            raise OCZSSError(f"{work} exists and was not made by oczss; move it away to generate the demo at {root}")
        shutil.rmtree(work)  # our own unfinished working folder from an interrupted run
    work.mkdir(parents=True)
    (work / WORK_MARKER).write_text(VERSION + "\n")
    rng = np.random.default_rng(20260)
    for split, n in COUNTS.items():
        (work / f"{split}2017").mkdir(parents=True)
        (work / "annotations" / f"{split}2017").mkdir(parents=True)
        for i in range(n):
            image, label = scene(rng, SIZES[i % len(SIZES)])
            name = f"{split}_{i:04d}"
            image.save(work / f"{split}2017" / f"{name}.jpg", quality=92)
            Image.fromarray(label, mode="L").save(work / "annotations" / f"{split}2017" / f"{name}_labelTrainIds.png")
    (work / "classes.txt").write_text("\n".join(DEMO_CLASSES) + "\n")
    root.mkdir(parents=True, exist_ok=True)
    if marker.is_file():  # an older demo: remove exactly what an earlier generation wrote, marker first
        marker.unlink()
        for entry in CONTENT:
            target = root / entry
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    for entry in CONTENT:
        os.replace(work / entry, root / entry)
    (work / WORK_MARKER).unlink()
    work.rmdir()
    marker.write_text(VERSION + "\n")
    return root


def scene(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """One image (RGB) and its label map (uint8 [H, W]): two background bands and one to three shapes."""
    w, h = size
    label = np.zeros((h, w), np.uint8)
    top, bottom = rng.choice(4, size=2, replace=False)
    horizon = int(h * rng.uniform(0.35, 0.65))
    label[:horizon], label[horizon:] = top, bottom
    pixels = np.zeros((h, w, 3), np.float32)
    for cls in (top, bottom):
        pixels[label == cls] = _texture(rng, cls, h, w)[label == cls]
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    lab_img = Image.fromarray(label)
    draw, ldraw = ImageDraw.Draw(image), ImageDraw.Draw(lab_img)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(4, 8))
        r = int(rng.uniform(0.12, 0.22) * min(w, h))
        cx, cy = int(rng.uniform(r, w - r)), int(rng.uniform(r, h - r))
        colour = tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in _SHAPE_COLOURS[cls])
        poly = _outline(cls, cx, cy, r, rng.uniform(0, np.pi))
        if poly is None:
            box = (cx - r, cy - r, cx + r, cy + r)
            draw.ellipse(box, fill=colour)
            ldraw.ellipse(box, fill=cls, outline=IGNORE)
        else:
            draw.polygon(poly, fill=colour)
            ldraw.polygon(poly, fill=cls, outline=IGNORE)
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    return image, np.asarray(lab_img).copy()


def _texture(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """Background texture [H, W, 3] for a background class: sky gradient, grass/sand noise, water waves."""
    base = np.array(_BG[int(cls)], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if cls == 0:
        shade = (yy / h * 40.0)[..., None]
        return base + shade
    if cls == 3:
        waves = (12.0 * np.sin(xx / 7.0 + 3.0 * np.sin(yy / 11.0)))[..., None]
        return base + waves
    return base + rng.normal(0.0, 18.0 if cls == 1 else 10.0, size=(h, w, 1)).astype(np.float32)


def _outline(cls: int, cx: int, cy: int, r: int, angle: float) -> list[tuple[float, float]] | None:
    """Polygon vertices of a shape class (None for the circle, drawn as an ellipse)."""
    if cls == 4:
        return None
    if cls == 5:
        n, radii = 4, [r]
    elif cls == 6:
        n, radii = 3, [r]
    else:
        n, radii = 10, [r, r * 0.45]
    pts = []
    for i in range(n):
        t = angle + 2 * np.pi * i / n
        rad = radii[i % len(radii)]
        pts.append((cx + rad * np.cos(t), cy + rad * np.sin(t)))
    return pts
