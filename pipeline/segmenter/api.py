"""`oczss.load` and the `Segmenter` it returns: one entry point for every method.

    seg = oczss.load("cass")                                  # or a checkpoint path, weights="random", device=...
    result = seg("photo.jpg", classes=["cat", "sofa|couch"])  # a path, PIL image, numpy array or tensor
    for result in seg(paths, classes, batch_size=8):          # a list or iterator: results as they finish
        result.save("preds/")

Weights are loaded once, by `load`; the text embeddings of a class list are computed once and reused by every
later call with the same list (the last CACHED_CLASS_LISTS lists are kept). Random weights warn once, through
`warnings`, when loaded, and every result records them.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from oczss.errors import ImageInputError, OCZSSError
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.segmenter import methods
from oczss.pipeline.segmenter.classes import parse_classes
from oczss.pipeline.segmenter.inputs import Decoded, as_batch, decode, is_batch
from oczss.pipeline.segmenter.result import Result
from oczss.pipeline.segmenter.stream import batches, decoded

log = logging.getLogger(__name__)
CACHED_CLASS_LISTS = 8


def load(source: str | Path, *, device: str = "auto", **options) -> Segmenter:
    """A segmenter for a method name (`cass`) or a trained checkpoint file (`runs/voc/last.pt`).

    device: auto, cpu or cuda[:N]. options: the method's own, e.g. weights ("pretrained", "random" or a local
    file), dino_weights, config (a CASS recipe), backbone, dino_model (CASS); weights, dino_weights, text, mode,
    cluster_mode (OC-ZSS). An option the method does not take is refused before anything is loaded.
    """
    source = str(source)
    checkpoint = None
    if source.lower() in methods.names(by_name=True):
        name = source.lower()
    elif Path(source).is_file():
        from oczss.pipeline.stage2.checkpoint import load as read_checkpoint

        checkpoint = read_checkpoint(source)
        name = checkpoint.get("method", "oczss")
    else:
        raise OCZSSError(f"{source!r} is neither a method ({', '.join(methods.names(by_name=True))}) nor a checkpoint "
                         f"file")
    cls = methods.method_class(name)
    methods.check_options(cls, options, source)
    with _HeldBackNotices():
        method = cls.load(source, device=device, **options, **({"_checkpoint": checkpoint} if checkpoint else {}))
    if method.random_weights:
        what = name if source.lower() == name else f"{source} ({name})"
        warnings.warn(f"{RANDOM_NOTE}: {what} runs on randomly initialised weights; its results mean "
                      f"nothing, and every result and file says so", UserWarning, stacklevel=2)
    return Segmenter(method)


class _HeldBackNotices:
    """Holds back the model loaders' own random-weights log lines while `load` runs: it warns once itself."""

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return RANDOM_NOTE not in record.getMessage()

    def __enter__(self):
        self.filter, self.logger = self._Drop(), logging.getLogger("oczss.model.weights")
        self.logger.addFilter(self.filter)

    def __exit__(self, *exc):
        self.logger.removeFilter(self.filter)


class Segmenter:
    """A loaded method: call it on one image (returns a Result) or on several (yields Results in input order)."""

    def __init__(self, method: methods.Method):
        self._method = method
        self._texts: OrderedDict = OrderedDict()

    method = property(lambda self: self._method.name, doc="the method's name (cass, oczss, ...)")
    weights = property(lambda self: dict(self._method.weights), doc="what made the results, recorded in each")
    random_weights = property(lambda self: self._method.random_weights, doc="True for random (test) weights")
    device = property(lambda self: self._method.device, doc="where it runs")

    def __repr__(self) -> str:
        return f"Segmenter({self.method!r}, device={str(self.device)!r}" + (", RANDOM WEIGHTS)" if
                                                                           self.random_weights else ")")

    def __call__(self, images, classes, *, batch_size: int = 1, scores: bool = False, workers: int = 0,
                 skip_unreadable: bool = False) -> Result | Iterator[Result]:
        """Segment `images` (one image, or a list / iterable / 4-D batch) into `classes` ("cat,sofa|couch" or
        ["cat", "sofa|couch"]; | separates synonyms of one class).

        batch_size: images handed to the method at a time; workers: threads decoding files ahead of the model;
        scores: keep the per-class scores in each result; skip_unreadable: log and skip files that cannot be
        decoded instead of raising. Bad class names are refused at the call, before any image is read.
        """
        text = self.text(classes)
        if batch_size < 1 or workers < 0:
            raise OCZSSError(f"batch_size must be >= 1 and workers >= 0 (got {batch_size}, {workers})")
        if not is_batch(images):
            return self._segment([decode(images)], text, scores)[0]
        return self._yield(self.stream(as_batch(images), text, batch_size, workers, scores), skip_unreadable)

    def evaluate(self, dataset: str, *, split: str = "val", data_root: str | None = None, workers: int = 2,
                 limit: int | None = None, progress: bool = True) -> dict:
        """This method on a whole benchmark split (first `limit` images) -> the report `oczss eval --json` writes
        (pipeline/segmenter/evaluate.py): per-class IoU, mIoU, pixel accuracy, and mIoU(S) / mIoU(U) / hIoU on the
        zero-shot benchmarks."""
        from oczss.pipeline.segmenter.evaluate import evaluate_method

        return evaluate_method(self._method, dataset, split=split, data_root=data_root, workers=workers, limit=limit,
                               trained=self._method.trained, progress=progress)

    def text(self, classes) -> tuple:
        """(parsed classes, the method's text for them), from the cache when this class list was seen before."""
        parsed = parse_classes(classes)
        if parsed not in self._texts:
            self._texts[parsed] = self._method.embed(parsed)
            if len(self._texts) > CACHED_CLASS_LISTS:
                self._texts.popitem(last=False)
        self._texts.move_to_end(parsed)
        return parsed, self._texts[parsed]

    def stream(self, items: Iterable, text: tuple, batch_size: int, workers: int,
               scores: bool) -> Iterator[Result | ImageInputError]:
        """A Result, or the error naming an unreadable input, per item in order (what predict builds on)."""
        for chunk in batches(decoded(items, workers, ahead=max(2 * batch_size, workers)), batch_size):
            good = [d for d in chunk if isinstance(d, Decoded)]
            done = iter(self._segment(good, text, scores) if good else [])
            for d in chunk:
                yield next(done) if isinstance(d, Decoded) else d

    @staticmethod
    def _yield(results: Iterator, skip: bool) -> Iterator[Result]:
        for r in results:
            if isinstance(r, ImageInputError):
                if not skip:
                    raise r
                log.warning("skipped unreadable image %s", r)
                continue
            yield r

    def _segment(self, images: list[Decoded], text: tuple, keep_scores: bool) -> list[Result]:
        classes, embedded = text
        m, start = self._method, time.perf_counter()
        with torch.no_grad():
            all_scores = m.segment([d.rgb for d in images], embedded, [d.image_id for d in images])
            maps = [m.labels(s, embedded) for s in all_scores]
        seconds = (time.perf_counter() - start) / len(images)
        dtype = np.uint8 if len(classes) <= 256 else np.uint16
        palette = m.palette(embedded)
        return [Result(labels=labels.cpu().numpy().astype(dtype), classes=[c[0] for c in classes],
                       class_names=list(classes), method=m.name, weights=dict(m.weights),
                       random_weights=m.random_weights, image=d.rgb, source=d.source,
                       scores=s.float().cpu().numpy() if keep_scores else None, seconds=seconds, palette=palette)
                for d, s, labels in zip(images, all_scores, maps)]
