"""The prompted frozen CLIP image encoder: deep VPT (docs/protocol.md §4) and frozen object prompts (§3.2).

Every block of open_clip's ViT runs through `torch.nn.functional.scaled_dot_product_attention` with the
additive mask of §3.2 (the same mask in all L layers); the CLIP weights stay frozen and are used as stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.model.masking import attention_mask


@dataclass
class EncoderOutput:
    """Last-layer tokens after the trainable `prompt_norm` (width-d): cls [B, W], patches [B, M, W] (H^L, row-major
    on the grid), objects [B, n_o, W] (O^L) or None, patch_grid (h, w)."""

    cls: torch.Tensor
    patches: torch.Tensor
    objects: torch.Tensor | None
    patch_grid: tuple[int, int]


class PromptedEncoder(nn.Module):
    """open_clip ViT (frozen) + deep VPT (trainable) + n_o frozen object prompts.

    Deep VPT as in the reference (docs/protocol.md §4): P tokens per layer inserted after `ln_pre` without position
    embedding, shallow `prompt_embeddings` [1, P, W] for layer 0, `deep_prompt_embeddings` [L-1, P, W] replacing
    the prompt slots before layers 1..L-1, all through one shared `prompt_proj` (Linear W -> W, kaiming-normal
    fan_out) and Dropout(0.1); init U(-v, v), v = sqrt(6 / (3 * p * p + W)); a trainable `prompt_norm`
    (LayerNorm, eps 1e-6) after the last block. The reference's CLS quirk is kept: CLS = 2 * class_embedding +
    pos[0]. Position embeddings are resized bilinearly (align_corners=False) from CLIP's grid to the input's.

    Object prompts (§3.2) enter once, after `ln_pre` with the VPT tokens, and flow through all L layers under the
    mask, so O^l "gradually captures" its cluster and OF = O^L. Their frozen value (paper silent) is
    `object_init`:
      - `cls` (default): every prompt is CLIP's own class-token input ln_pre(class_embedding + pos[0]). Cluster
        indices are arbitrary (FPS order), so identical prompts keep the encoder equivariant to relabelling; and
        a class token restricted to one cluster yields CLIP's pooled feature of that region, a meaningful start.
      - `random`: fixed U(-v, v) vectors (a seeded buffer), like the VPT initialisation.
    """

    def __init__(self, visual: nn.Module, num_vpt: int, num_objects: int, object_init: str):
        super().__init__()
        self.clip = visual.requires_grad_(False).eval()
        width = visual.conv1.out_channels
        depth = len(visual.transformer.resblocks)
        patch = visual.patch_size[0]
        bound = math.sqrt(6.0 / (3 * patch * patch + width))
        self.num_vpt, self.num_objects, self.object_init = num_vpt, num_objects, object_init
        self.prompt_embeddings = nn.Parameter(torch.empty(1, num_vpt, width).uniform_(-bound, bound))
        self.deep_prompt_embeddings = nn.Parameter(torch.empty(depth - 1, num_vpt, width).uniform_(-bound, bound))
        self.prompt_proj = nn.Linear(width, width)
        nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode="fan_out")
        self.prompt_dropout = nn.Dropout(0.1)
        self.prompt_norm = nn.LayerNorm(width, eps=1e-6)
        if num_objects and object_init == "random":
            self.register_buffer("object_prompts", torch.empty(num_objects, width).uniform_(-bound, bound))

    @property
    def patch_size(self) -> int:
        return self.clip.patch_size[0]

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # the frozen CLIP never leaves eval mode
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> EncoderOutput:
        """images [B, 3, H, W] (multiples of the patch size); labels LongTensor[B, M] cluster per patch, required
        iff the encoder has object prompts."""
        patches, cls_input, grid = self._embed(images)
        b, m, width = patches.shape
        ln_pre = self.clip.ln_pre
        cls = self.clip.class_embedding + cls_input  # the reference's double class embedding (docs/protocol.md §4)
        prompts = self.prompt_dropout(self.prompt_proj(torch.cat([self.prompt_embeddings,
                                                                  self.deep_prompt_embeddings])))
        parts = [ln_pre(cls).expand(b, 1, width), prompts[0].expand(b, -1, -1), ln_pre(patches)]
        mask = None
        if self.num_objects:
            if labels is None or labels.shape != (b, m):
                raise ValueError(f"object prompts need cluster labels of shape {(b, m)}, got "
                                 f"{None if labels is None else tuple(labels.shape)}")
            objects = ln_pre(cls_input) if self.object_init == "cls" else self.object_prompts
            parts.append(objects.to(parts[-1].dtype).expand(b, self.num_objects, width))
            mask = attention_mask(labels, self.num_vpt, self.num_objects, self._compute_dtype(images)).unsqueeze(1)
        x = torch.cat(parts, dim=1)
        p = self.num_vpt
        for i, block in enumerate(self.clip.transformer.resblocks):
            if i:
                x = torch.cat([x[:, :1], prompts[i].to(x.dtype).expand(b, -1, -1), x[:, 1 + p:]], dim=1)
            x = _block(block, x, mask)
        x = self.prompt_norm(x)
        objects = x[:, 1 + p + m:] if self.num_objects else None
        return EncoderOutput(cls=x[:, 0], patches=x[:, 1 + p:1 + p + m], objects=objects, patch_grid=grid)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """The frozen output head: ln_post, proj W -> C, then L2 normalisation (g and H of docs/protocol.md §4)."""
        return F.normalize(self.clip.ln_post(tokens) @ self.clip.proj, dim=-1)

    def clip_features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP's own last-layer patch tokens [B, M, W] (no prompts, CLIP's CLS = class_embedding +
        pos[0]): the `clip` mask source clusters them, bench/model.py times them as the plain encoder."""
        patches, cls_input, _ = self._embed(images)
        x = self.clip.ln_pre(torch.cat([cls_input.expand(patches.shape[0], 1, -1), patches], dim=1))
        for block in self.clip.transformer.resblocks:
            x = _block(block, x, None)
        return x[:, 1:]

    def _embed(self, images: torch.Tensor):
        """Patch embeddings + resized position embeddings [B, M, W], the CLS input class_embedding + pos[0] [W],
        and the grid (h, w)."""
        v = self.clip
        x = v.conv1(images)
        b, width, h, w = x.shape
        pos = v.positional_embedding
        gh, gw = v.grid_size
        grid_pos = pos[1:]
        if (h, w) != (gh, gw):
            grid_pos = F.interpolate(grid_pos.reshape(1, gh, gw, width).permute(0, 3, 1, 2), size=(h, w),
                                     mode="bilinear", align_corners=False).permute(0, 2, 3, 1).reshape(h * w, width)
        return x.flatten(2).transpose(1, 2) + grid_pos, v.class_embedding + pos[0], (h, w)

    @staticmethod
    def _compute_dtype(images: torch.Tensor) -> torch.dtype:
        device = images.device.type
        return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else images.dtype


def _block(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One open_clip ResidualAttentionBlock (pre-LN) with its own weights, attention through SDPA.

    x [B, L, W]; mask [B, 1, L, L] additive (or None).
    """
    b, length, width = x.shape
    attn = block.attn
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    x = x + block.ls_1(attn.out_proj(y.transpose(1, 2).reshape(b, length, width)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))
