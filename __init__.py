"""oczss: zero-shot and open-vocabulary semantic segmentation (OC-ZSS, ICLR 2026; CASS, CVPR 2025).

    import oczss
    seg = oczss.load("cass")                                # or a trained checkpoint: oczss.load("runs/voc/last.pt")
    result = seg("photo.jpg", classes=["cat", "sofa|couch"])
    result.labels                                           # numpy [H, W] class indices; result.save("preds/")

The public names are `load`, `Segmenter`, `Result` and `OCZSSError`; they are imported on first use, so
`import oczss` stays cheap (no torch). The pipeline behind them: Stage 1 (`oczss.pipeline.stage1`) writes DINO
FPS-Voronoi cluster labels into a sharded Zarr cache (`oczss.cache`); Stage 2 trains and evaluates the OC-ZSS
model (`oczss.model`) from that cache.
"""

import importlib.metadata

from oczss.errors import OCZSSError

__version__ = importlib.metadata.version("oczss")  # one source: pyproject.toml
__all__ = ["OCZSSError", "Result", "Segmenter", "load"]
_API = {"load", "Segmenter", "Result"}  # from oczss.pipeline.segmenter, imported when first asked for


def __getattr__(name: str):
    if name in _API:
        from oczss.pipeline import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module 'oczss' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
