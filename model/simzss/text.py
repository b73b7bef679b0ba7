"""The text tower f_t: CLIP's text transformer at the paper's size, trained from scratch, and its tokenizer.

f_t(x_t) = z_t (poster): every token's feature after the final LayerNorm, width d_t ([B, L, d_t]), and the
caption's embedding, the EOT token's feature projected to the vision width d_v (argmax pooling: the EOT id is the
highest of the vocabulary). The projection is g of the poster: `project` applies it to concept features.
"""

from __future__ import annotations

from functools import lru_cache

import open_clip
import torch
from open_clip.transformer import TextTransformer

from oczss.model.simzss.config import SimZSSConfig

TOKENIZER = "ViT-B-16"  # any open_clip CLIP name: OpenAI's 49,408-token BPE, 77 tokens, lower-cased


def build_text_tower(config: SimZSSConfig, out_dim: int) -> TextTransformer:
    """open_clip's TextTransformer (causal mask, GELU, argmax pooling, no bias on the projection) with open_clip's
    initialisation under `config.seed`; forward(tokens [B, L]) -> (EOT embedding [B, out_dim], tokens [B, L, d_t])."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return TextTransformer(context_length=config.context_length, vocab_size=config.vocab_size,
                               width=config.text_width, heads=config.text_heads, layers=config.text_layers,
                               output_dim=out_dim, output_tokens=True, act_layer=torch.nn.GELU)


@lru_cache(maxsize=1)
def tokenizer() -> open_clip.tokenizer.SimpleTokenizer:
    """OpenAI CLIP's BPE tokenizer as open_clip ships it (one per process): texts -> int64 [N, 77] (SOT, tokens,
    EOT, zeros)."""
    return open_clip.get_tokenizer(TOKENIZER)


def count_parameters(config: SimZSSConfig, out_dim: int) -> int:
    """Parameters of the text tower (projection included), counted without allocating its weights."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_text_tower(config, out_dim).parameters())
