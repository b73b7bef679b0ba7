"""What a segmenter accepts as an image, and what it makes of it: uint8 RGB [H, W, 3].

- a path (str or Path): decoded as every oczss command decodes (pipeline/data/images.py: EXIF orientation applied,
  so the map is the right way up as viewers show the photo; transparency, 16-bit, CMYK, palette converted);
- a PIL image: its pixels as they are (no EXIF rotation: the image as the caller holds it), converted to RGB;
- a numpy array [H, W] (grey), [H, W, 3] (RGB) or [H, W, 4] (RGBA), uint8 or floating point in [0, 1];
- a torch tensor [3, H, W] or [1, H, W] (channels first, as torchvision has them) or [H, W], same dtypes.
The class map a segmenter returns has the [H, W] of that RGB image.

Several images: a list, tuple or any iterable of the above, or a 4-D array / tensor (a batch along its first axis).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from oczss.errors import ImageInputError
from oczss.pipeline.data.images import ImageError, load_rgb, to_rgb


@dataclass
class Decoded:
    """One input made ready: `rgb` uint8 [H, W, 3]; `source` the path it came from (None for in-memory images);
    `image_id` what seeds a method's random choices for it (the file's stem, as eval seeds by image id)."""

    rgb: np.ndarray
    source: str | None
    image_id: str


def is_batch(images) -> bool:
    """Several images (a list, tuple, iterable, or a 4-D array / tensor) rather than one."""
    if isinstance(images, (str, Path, Image.Image)):
        return False
    if hasattr(images, "ndim"):  # numpy array or torch tensor
        return images.ndim == 4
    return isinstance(images, Iterable)


def as_batch(images) -> Iterable:
    """The items of several images (a 4-D array / tensor is split along its first axis)."""
    return iter(images) if not hasattr(images, "ndim") else (images[i] for i in range(images.shape[0]))


def decode(item) -> Decoded:
    """One image as RGB; raises ImageInputError naming the file or what is wrong with the array."""
    if isinstance(item, (str, Path)):
        try:
            rgb = np.asarray(load_rgb(item))
        except ImageError as e:
            raise ImageInputError(str(e)) from None
        return Decoded(rgb, str(item), Path(item).stem)
    if isinstance(item, Image.Image):
        return Decoded(np.asarray(to_rgb(item)), None, "")
    if type(item).__module__.startswith("torch"):
        item = _channels_last(item.detach().cpu().numpy(), tuple(item.shape))
    if isinstance(item, np.ndarray):
        return Decoded(_array_rgb(item), None, "")
    raise ImageInputError(f"cannot segment a {type(item).__name__}: give a path, a PIL image, a numpy array or a "
                          f"torch tensor")


def _channels_last(array: np.ndarray, shape: tuple) -> np.ndarray:
    """A tensor's [C, H, W] (C = 1 or 3) or [H, W] as numpy [H, W, C] / [H, W]."""
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)
        return array[..., 0] if array.shape[2] == 1 else array
    if array.ndim == 2:
        return array
    raise ImageInputError(f"an image tensor must be [3, H, W], [1, H, W] or [H, W], got {list(shape)}")


def _array_rgb(array: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from an array as the module docstring lists them."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape[:2]:
        raise ImageInputError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4] and not empty, got "
                              f"{list(array.shape)}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ImageInputError("a floating-point image must hold values in [0, 1] (uint8 arrays take 0..255)")
        array = np.round(array * 255)
    elif array.dtype != np.uint8:
        raise ImageInputError(f"an image array must be uint8 or floating point in [0, 1], got {array.dtype}")
    return np.asarray(to_rgb(Image.fromarray(np.ascontiguousarray(array).astype(np.uint8))))
