"""Class text embeddings [K, N, C] for a run: from a .npy file (e.g. OTSeg's shipped arrays) or computed with the
model's CLIP text tower and cached on disk under `$OCZSS_HOME/text` (default ~/.cache/oczss/text)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from oczss.errors import OCZSSError
from oczss.model import text as text_mod


def text_cache_dir() -> Path:
    return Path(os.environ.get("OCZSS_HOME", Path.home() / ".cache" / "oczss")) / "text"


def class_text(classes: list[str], template_count: int, model_config, text_path: str | None,
               device: torch.device, tower=None, cache_dir: Path | None = None) -> torch.Tensor:
    """Class x template embeddings fp32 [K, N, C] on `device`: from `text_path` (.npy, e.g. OTSeg's shipped
    arrays) or computed with the model's CLIP text tower (`tower` when loaded already; cached on disk by
    oczss.model.text in `cache_dir`, default text_cache_dir())."""
    if text_path:
        emb = text_mod.load_text_embeddings(text_path)
        if emb.shape[0] != len(classes):
            raise OCZSSError(f"text embeddings {text_path} hold {emb.shape[0]} classes, the dataset has {len(classes)}")
    else:
        emb = text_mod.class_embeddings(list(classes), text_mod.templates(template_count),
                                        cache_dir or text_cache_dir(), backbone=model_config.backbone,
                                        weights=model_config.weights, device=str(device), tower=tower)
    return emb.to(device)
