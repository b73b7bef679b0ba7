"""Stage 1's sources: what `oczss precompute --masks NAME` computes per image into a cache of its own.

    dino-fps       DINO FPS-Voronoi cluster maps and compact DINO tokens (OC-ZSS; every cache written before sources
                   existed is one)                                                     dino_fps.py
    clip-kmeans    a frozen CLIP's multi-scale K-Means pseudo masks and each mask's CLIP CLS embedding (Split
                   Matching, §3.2)                                                     clip_kmeans.py
    dinov2-tokens  a frozen DINOv2's CLS and patch tokens in fp16 (SimZSS)             dinov2_tokens.py

Each module declares one `Source` (base.py): its settings, its per-image arrays, how its frozen model is loaded and
fingerprinted, and how a batch of decoded images becomes its arrays. The shard runner, planner, lease, records,
verify and info (pipeline/stage1/, cache/) are shared and generic over the source's arrays. The modules are imported
when asked for, so naming a source costs no torch import.
"""

from __future__ import annotations

import importlib

from oczss.errors import OCZSSError

SOURCES = ("dino-fps", "clip-kmeans", "dinov2-tokens")


def get_source(name: str):
    """The `Source` registered as `name` (one of SOURCES)."""
    if name not in SOURCES:
        raise OCZSSError(f"--masks {name}: choose one of {', '.join(SOURCES)}")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}").SOURCE
