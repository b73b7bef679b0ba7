"""Decoding ahead of the model: inputs are decoded by a pool of threads (Pillow's decoders release the GIL) while
the model works on earlier batches, and come back in input order."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

from oczss.errors import ImageInputError
from oczss.pipeline.segmenter.inputs import Decoded, decode


def _decode(item) -> Decoded | ImageInputError:
    try:
        return decode(item)
    except ImageInputError as e:
        return e


def decoded(items: Iterable, workers: int, ahead: int) -> Iterator[Decoded | ImageInputError]:
    """Each item decoded (or the error that names why it could not be), in order; `workers` threads keep up to
    `ahead` items decoded in advance (0 workers: decoded in the caller's thread, one at a time)."""
    if workers <= 0:
        yield from map(_decode, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="oczss-decode")
    pending = deque()
    try:
        for item in items:
            pending.append(pool.submit(_decode, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # also when the consumer stops early or is interrupted: nothing left running
        pool.shutdown(wait=True, cancel_futures=True)


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
