"""Class text embeddings [classes, templates, C]: computed with open_clip's text tower and OTSeg's templates and
cached on disk, or loaded from OTSeg's shipped .npy arrays (docs/protocol.md §3).

Every template is kept (no averaging): each prompt embedding is L2-normalised, reshaped to (K, N, C) and
normalised again, as the reference does. VOC uses the first 6 templates, Context and COCO all 8.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.clip import Tower, load_tower

TEMPLATES = (
    "a photo of a {}.", "a portrait of a {}.", "a part of a {}.", "a segment of a {}.",
    "a photo of small {}.", "a photo of medium {}.", "a photo of large {}.", "a background of a {}.",
)
BATCH = 256


def templates(count: int) -> tuple[str, ...]:
    """OTSeg's first `count` templates (6 for VOC, 8 for Context and COCO)."""
    if not 1 <= count <= len(TEMPLATES):
        raise OCZSSError(f"there are {len(TEMPLATES)} prompt templates, asked for {count}")
    return TEMPLATES[:count]


def class_embeddings(class_names: list[str], prompt_templates: tuple[str, ...], cache_dir: str | Path, *,
                     backbone: str = "ViT-B-16", weights: str = "pretrained", device: str = "cpu",
                     tower: Tower | None = None) -> torch.Tensor:
    """Text embeddings fp32 [len(class_names), len(prompt_templates), C] from the CLIP text tower, cached.

    The cache file in `cache_dir` is keyed by the backbone, the fingerprint of the loaded text weights, the class
    names and the templates, so any change to one of them computes afresh (the weights are loaded either way, to
    be fingerprinted; `tower`: the text tower of `backbone` and `weights`, when the caller holds it loaded).
    Written atomically.
    """
    tower = tower or load_tower(backbone, weights, "text")
    identity = {"backbone": backbone, "fingerprint": tower.fingerprint, "classes": list(class_names),
                "templates": list(prompt_templates)}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    path = Path(cache_dir) / f"text-{backbone}-{key[:24]}.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached["identity"] == identity:
            return cached["embeddings"]
    embeddings = _encode(tower.module.to(device), class_names, prompt_templates)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({"identity": identity, "embeddings": embeddings}, partial)
    os.replace(partial, path)
    return embeddings


@torch.no_grad()
def _encode(clip: torch.nn.Module, class_names: list[str], prompt_templates: tuple[str, ...]) -> torch.Tensor:
    tokenizer = open_clip.get_tokenizer("ViT-B-16")  # OpenAI CLIP's BPE tokenizer, shipped with open_clip
    prompts = [t.format(name) for name in class_names for t in prompt_templates]
    device = next(clip.parameters()).device
    out = torch.cat([clip.encode_text(tokenizer(prompts[i:i + BATCH]).to(device), normalize=True).float().cpu()
                     for i in range(0, len(prompts), BATCH)])
    return F.normalize(out.view(len(class_names), len(prompt_templates), -1), dim=-1)


def load_text_embeddings(path: str | Path) -> torch.Tensor:
    """OTSeg's shipped arrays (e.g. voc12_otseg.npy, fp16 20 x 6 x 512) as fp32 [K, N, C]."""
    try:
        array = np.load(path)
    except (OSError, ValueError) as e:
        raise OCZSSError(f"cannot read text embeddings {path}: {e}") from e
    if array.ndim != 3:
        raise OCZSSError(f"text embeddings {path} have shape {array.shape}; expected [classes, templates, dim]")
    return torch.from_numpy(array.astype(np.float32))
