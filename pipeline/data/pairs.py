"""The cheap up-front check of a sample list: every image and label file exists and their sizes agree.

Only file headers are read (PIL opens lazily), on a thread pool with a progress bar, so a whole COCO train list
takes seconds; a run then never fails mid-way, or evaluates wrongly, on a pair that could have been caught at
the start. All bad pairs are named in one error. Sizes are compared as oczss loads the files, EXIF orientation
applied (pipeline/data/images.py), so an image whose EXIF rotation disagrees with its label is caught here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from oczss.errors import OCZSSError
from oczss.pipeline.console import progress
from oczss.pipeline.data.datasets import Sample

SHOWN = 20


ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _size(path) -> tuple[int, int] | str:
    """(width, height) as oczss loads the file (EXIF orientation applied), or what is wrong with it."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            return (h, w) if im.getexif().get(0x0112) in ROTATED else (w, h)
    except FileNotFoundError:
        return "missing"
    except (OSError, SyntaxError, ValueError) as e:
        return f"unreadable ({type(e).__name__})"


def _problem(sample: Sample) -> str | None:
    image, label = _size(sample.image), _size(sample.label)
    if isinstance(label, str):
        return f"{sample.label}: label {label} (image {sample.image})"
    if image == "missing":
        return f"{sample.image}: image missing (label {sample.label})"
    if isinstance(image, tuple) and image != label:
        return (f"{sample.image} is {image[0]}x{image[1]} but its label {sample.label} is "
                f"{label[0]}x{label[1]}")
    return None  # an undecodable image is a corrupt image: reported and skipped where it is read


def check_pairs(samples: list[Sample], what: str, threads: int = 8, show_progress: bool = True) -> None:
    """Raise one OCZSSError naming every pair whose label is missing or unreadable, whose image is missing, or
    whose image and label sizes differ."""
    with progress(len(samples), desc=f"check {what}", unit="pair", enabled=show_progress) as bar, \
            ThreadPoolExecutor(threads) as pool:
        problems = []
        for found in pool.map(_problem, samples, chunksize=64):
            bar.update(1)
            if found:
                problems.append(found)
    if problems:
        more = f"\n  … and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise OCZSSError(f"{what}: {len(problems)} of {len(samples)} image/label pairs are unusable:\n  "
                         + "\n  ".join(problems[:SHOWN]) + more)
