"""Label PNGs through a lookup table, all in PIL's C code: decode, refuse values outside an allowed set, map, encode.

Used by the COCO-Stuff / COCO-Object and Cityscapes conversions; the mapping costs little next to the PNG codec.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from oczss.errors import OCZSSError


def remap(ref, table: np.ndarray, allowed: np.ndarray, expected: str) -> bytes:
    """An index PNG (a Ref: grayscale, or palette read as its indices) -> an 'L' PNG of table[value], as bytes.

    table: uint8 [256]; allowed: bool [256], the values the input may hold; expected: what they are, for the error.
    """
    with Image.open(io.BytesIO(ref.read())) as im:
        if im.mode not in ("L", "P"):
            raise OCZSSError(f"mode {im.mode}, expected a grayscale index PNG ({expected})")
        values = im if im.mode == "L" else Image.frombytes("L", im.size, im.tobytes())
        counts = np.asarray(values.histogram())
        bad = np.flatnonzero((counts > 0) & ~allowed)
        if bad.size:
            raise OCZSSError(f"holds value {', '.join(map(str, bad))}, outside {expected}")
        buf = io.BytesIO()
        values.point(table.tolist()).save(buf, format="PNG")
    return buf.getvalue()
