"""Split Matching (Chen et al.): a Mask2Former whose queries split into seen and candidate groups, each matched
to its own targets (§3.2), Multi-scale Feature Enhancement (§3.3), random queries at inference (§3.4), and the
candidates' source: multi-scale K-Means on a frozen CLIP's dense features and the CLS of each pseudo-masked region.

Needs the `sm` extra (transformers' Mask2Former)."""

import importlib

_HOME = {"CandidateParams": "candidates", "Candidates": "candidates", "unseen_candidates": "candidates",
         "ABLATIONS": "config", "SMConfig": "config", "ablation": "config", "resnet50": "config", "Batch": "objective",
         "MASK2FORMER_SCHEDULE": "optim", "param_groups": "optim", "SplitMatching": "segmentor",
         "build_sm": "segmentor", "restore_sm": "segmentor"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    """Each name from its own module on first use: the config and the schedule (what the recipes read) import
    neither transformers nor open_clip."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
