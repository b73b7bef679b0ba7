"""The OC-ZSS model: prompted frozen CLIP with object prompts, ORA with granular attention, OTSeg decoder.

The names below load on first use (PEP 562), so that importing a light module of this package (`model.names`)
does not import torch and open_clip: the command line parses its flags without them.
"""

import importlib

_FROM = {"IGNORE": "losses", "OCZSSConfig": "config", "attention_mask": "masking", "region_labels": "masking",
         "OCZSS": "segmentor", "build_model": "segmentor", "probabilities": "segmentor", "sinkhorn": "transport"}
_MODULES = ("losses", "text")

__all__ = ["IGNORE", "OCZSS", "OCZSSConfig", "attention_mask", "build_model", "losses", "probabilities",
           "region_labels", "sinkhorn", "text"]


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FROM:
        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
