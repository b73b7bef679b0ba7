"""Reading images robustly: any mode to RGB, the right way up, and a clear error naming the file when it cannot
be decoded.

What every image becomes (Stage 1, training, eval, predict, pictures):
- EXIF orientation is applied, so phone photos are processed and drawn upright.
- Transparency (RGBA, LA, palette with a transparent index) is composited onto the ImageNet mean colour
  (124, 116, 104): after normalisation a transparent pixel is ~0, "no signal", instead of black.
- 16-bit and 32-bit grayscale is scaled by its own maximum to 0..255, then replicated to RGB.
- Grayscale, CMYK and palette images are converted to RGB.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


TRANSPARENT_FILL = (124, 116, 104)  # the ImageNet mean, what transparent pixels become


class ImageError(Exception):
    """An image that cannot be used: missing, unreadable, corrupt or truncated. str() = 'PATH: reason'."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def load_rgb(path: Path | str) -> Image.Image:
    """Decode an image fully and return it as RGB (grayscale, CMYK, palette, 16-bit and alpha converted).

    Raises ImageError for a missing, unreadable, corrupt or truncated file (PIL's truncated-image check stays on).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return to_rgb(ImageOps.exif_transpose(im))
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            EOFError) as e:
        raise ImageError(path, f"cannot decode image ({type(e).__name__}: {e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any decoded image as RGB, as the module docstring says (a new image; `im` is left as it is)."""
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = max(float(arr.max()), 1.0)
        return Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*TRANSPARENT_FILL, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")

