"""COCO run-length masks, as PASCAL in Detail's `trainval_merged.json` stores them (no pycocotools needed).

An RLE is `{"size": [h, w], "counts": ...}`. `counts` lists run lengths over the pixels in column-major order,
alternating 0 and 1 and starting with a run of zeros (which may be empty). The compressed string form packs each
run length into characters of 5 bits each (char - 48), least significant group first; bit 0x20 says another
character follows and bit 0x10 of the last character is the sign. From the fourth value on, each value is stored
as the difference to the value two places before it (COCO maskApi `rleFrString` / `rleDecode`).
"""

from __future__ import annotations

import numpy as np


def string_to_counts(s: str) -> np.ndarray:
    """Compressed counts string -> int64 [n] run lengths."""
    c = np.frombuffer(s.encode("ascii"), np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("RLE counts string holds characters outside '0'..'o'")
    last = (c & 0x20) == 0  # a value ends at each character without the continuation bit
    if not last[-1]:
        raise ValueError("RLE counts string ends inside a value")
    group = np.concatenate([[0], np.cumsum(last)[:-1]])  # value index of every character
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    k = np.arange(c.size) - starts[group]  # position of the character within its value
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    length = np.diff(np.append(starts, c.size))
    negative = (c[last] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * length[negative])  # sign-extend: x |= -1 << 5 * length
    counts = x.copy()
    # counts[i] = x[i] + counts[i - 2] for i >= 3: a running sum over each parity, from index 3 (odd) and 2 (even)
    if x.size > 3:
        counts[3::2] = x[1] + np.cumsum(x[3::2])
    if x.size > 4:
        counts[4::2] = x[2] + np.cumsum(x[4::2])
    return counts


def decode(rle: dict) -> np.ndarray:
    """RLE dict -> bool [h, w]. `counts` may be the compressed string or a list of ints. Raises ValueError for
    counts that do not cover exactly h * w pixels or that hold a negative run."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = string_to_counts(counts) if isinstance(counts, str) else np.asarray(counts, np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError("RLE holds a negative run length")
    if int(counts.sum()) != h * w:
        raise ValueError(f"RLE runs cover {int(counts.sum())} pixels, size {h}x{w} has {h * w}")
    flat = np.repeat(np.arange(counts.size) % 2 == 1, counts)
    return flat.reshape(w, h).T
