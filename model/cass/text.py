"""Query embeddings for CASS (Eq. 4's T): one per query name (a class's synonyms are separate names), from CLIP's
text tower with the 80 OpenAI ImageNet templates, as the authors' code does: each prompt embedding L2-normalised,
the 80 averaged, the mean L2-normalised.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

TEMPLATES = OPENAI_IMAGENET_TEMPLATES  # 80 callables name -> prompt, in the authors' order
NAMES_PER_BATCH = 8  # 640 prompts per text-tower call


@torch.no_grad()
def query_embeddings(clip: torch.nn.Module, tokenizer: Callable, names: list[str]) -> torch.Tensor:
    """open_clip CLIP with a text tower (`encode_text`), its tokenizer, Q names -> fp32 [Q, C] unit vectors on
    the tower's device. Names are used as given (the authors keep e.g. PASCAL Context's trailing space in
    "wood ")."""
    device = next(clip.parameters()).device
    out = []
    for i in range(0, len(names), NAMES_PER_BATCH):
        chunk = names[i:i + NAMES_PER_BATCH]
        prompts = [template(name) for name in chunk for template in TEMPLATES]
        embedded = F.normalize(clip.encode_text(tokenizer(prompts).to(device)).float(), dim=-1)
        out.append(F.normalize(embedded.view(len(chunk), len(TEMPLATES), -1).mean(1), dim=-1))
    return torch.cat(out)
