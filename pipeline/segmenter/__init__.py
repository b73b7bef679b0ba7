"""The Python API: `load` a method (by name, or a trained checkpoint) into a `Segmenter`, call it on images, get
`Result`s. Methods plug in through `methods.register` (methods.py); the CLI's `predict` and the app are clients."""

from oczss.pipeline.segmenter.api import Segmenter, load
from oczss.pipeline.segmenter.result import Result

__all__ = ["Result", "Segmenter", "load"]
