"""The frozen vision tower f_v: DINOv2 (timm) by name, local path or random weights, and its CLS and patch tokens.

Poster, "Obtaining pairs of vision-language concept-level representations": f_v(x_v) = z_v. SimZSS projects nothing
on the vision side: the text tower maps into the vision width (768 for ViT-B/14, 384 for ViT-S/14), and the
losses use the last layer's normalised tokens (timm's final LayerNorm), CLS for L_g and the patches for L_l; the
register tokens of the `_reg4_` variants are dropped (the public code's `ViTWrapper` returns CLS and patches).
These tokens are the same in every epoch for a given view of an image: what Stage 1 caches.
"""

from __future__ import annotations

import torch

from oczss.model.dino import DinoFeatures, load_dino


def load_vision(name: str, weights: str, image_size: int) -> "VisionTokens":
    """The frozen tower for R x R inputs (R = `image_size`), also run at any other multiple of its patch size.

    weights: `pretrained` (timm's hub cache; fails at once, naming the cache and what to pass instead, when it
    cannot be reached), `random` (tests; announced) or a local checkpoint path (timm or original DINOv2 key names,
    position embeddings resized by timm)."""
    return VisionTokens(load_dino(name, weights, image_size, dynamic=True))


class VisionTokens(DinoFeatures):
    """uint8 images [B, H, W, 3] (H, W multiples of the patch p) -> (CLS fp32 [B, C], patches fp32 [B, H/p * W/p, C],
    row-major), under no_grad (not inference mode: the online training step feeds them to autograd); bf16
    autocast on CUDA."""

    def __init__(self, model: torch.nn.Module):
        super().__init__(model, grid=0)

    @property
    def width(self) -> int:
        return self.model.embed_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens(self.normalise(images))

    @torch.no_grad()
    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ImageNet-normalised float images [B, 3, H, W] -> (CLS [B, C], patches [B, N, C]), fp32."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            out = self.model.forward_features(x)
        return out[:, 0].float(), out[:, self.model.num_prefix_tokens:].float()
