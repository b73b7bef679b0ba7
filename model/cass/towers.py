"""How CASS reads its two frozen towers: CLIP up to its last block and its vanilla [CLS], DINO's last-block keys,
and the DINO input derived from the CLIP-normalised pixels of a window.

Both towers take any input size: their square grid of position embeddings is resized bicubically with the
"+0.1" scale factor of the DINO / NACLIP code (grid g -> (h, w) by scale ((h + 0.1) / g, (w + 0.1) / g),
align_corners False), and left as is at the training grid. A CLIP input's remainder pixels past a multiple of
its patch are dropped by its patch convolution; a DINO input is cropped to a multiple of its patch (top left).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CODE_UNNORMALISE_STD = (0.229, 0.224, 0.255)  # the authors' inverse normalisation (blue: a typo for 0.225)


def resize_positions(grid_pos: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Square grid position embeddings [g*g, W] -> [h*w, W] for the (h, w) grid (bicubic, see module doc)."""
    g = int(round(grid_pos.shape[0] ** 0.5))
    h, w = size
    if (h, w) == (g, g):
        return grid_pos
    grid = grid_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h + 0.1) / g, (w + 0.1) / g), mode="bicubic", align_corners=False,
                         recompute_scale_factor=False)
    return grid.permute(0, 2, 3, 1).reshape(h * w, -1)


def clip_last_input(visual: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """open_clip's ViT up to its last block: images [B, 3, H, W] CLIP-normalised -> the last block's input
    [B, 1 + N, W] ([CLS] first, then the N = h*w patches row-major) and the grid (h, w)."""
    x = visual.conv1(images)
    b, width, h, w = x.shape
    pos = visual.positional_embedding
    x = x.flatten(2).transpose(1, 2) + resize_positions(pos[1:], (h, w)).to(x.dtype)
    cls = (visual.class_embedding + pos[0]).to(x.dtype).expand(b, 1, width)
    x = visual.ln_pre(torch.cat([cls, x], dim=1))
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x, (h, w)


def clip_cls(visual: nn.Module, last_input: torch.Tensor) -> torch.Tensor:
    """The vanilla (unmodified) last block on its input [B, 1 + N, W] -> L2-normalised projected [CLS] [B, C]:
    the visual embedding of the object presence prior (§3.3)."""
    x = visual.transformer.resblocks[-1](last_input)
    return F.normalize(visual.ln_post(x[:, 0]) @ visual.proj, dim=-1)


def dino_keys(dino: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """timm ViT `dino` on ImageNet-normalised pixels [B, 3, H', W'] -> the keys of its last block's attention
    (from norm1 of that block's input, [CLS] dropped) [B, heads, M, head_dim], M = h'*w', and the grid (h', w')."""
    x = dino.patch_embed.proj(pixels)
    b, width, h, w = x.shape
    x = dino.patch_embed.norm(x.flatten(2).transpose(1, 2))
    pos = dino.pos_embed[0]
    x = x + resize_positions(pos[1:], (h, w)).to(x.dtype)
    x = torch.cat([(dino.cls_token[0] + pos[:1]).to(x.dtype).expand(b, 1, width), x], dim=1)
    x = dino.norm_pre(x)
    for block in dino.blocks[:-1]:
        x = block(x)
    last = dino.blocks[-1]
    attn = last.attn
    qkv = attn.qkv(last.norm1(x)).view(b, 1 + h * w, 3, attn.num_heads, attn.head_dim)
    keys = attn.k_norm(qkv[:, :, 1].transpose(1, 2))
    return keys[:, :, 1:], (h, w)


def dino_pixels(windows: torch.Tensor, patch: int, mode: str, square: bool) -> torch.Tensor:
    """DINO's input [B, 3, H', W'] (ImageNet-normalised, H', W' multiples of `patch`) from the same pixels as
    CLIP's CLIP-normalised windows [B, 3, h, w].

    mode `imagenet`: the window's pixels p = x * std_CLIP + mean_CLIP, normalised with ImageNet's mean and std.
    mode `code` (the authors'): x * (0.229, 0.224, 0.255) + ImageNet mean, scaled to 0..255 and truncated to 8
      bits (as their PIL round trip does), then ImageNet-normalised: red and green end up ≈ the CLIP-normalised
      values themselves, blue ≈ 1.13 times them, on a 1/255 grid.
    square: a non-square window is resized to a square of its short side first (bicubic with antialiasing, like
      PIL's; in `code` mode the result is rounded back to 8 bits, as PIL works on 8-bit images).
    """
    shape = (1, 3, 1, 1)
    mean_i = windows.new_tensor(IMAGENET_MEAN).view(shape)
    std_i = windows.new_tensor(IMAGENET_STD).view(shape)
    code = mode == "code"
    if code:
        pixels = torch.floor((windows * windows.new_tensor(CODE_UNNORMALISE_STD).view(shape) + mean_i) * 255)
        pixels = pixels.clamp(0, 255)
    else:
        pixels = windows * windows.new_tensor(OPENAI_DATASET_STD).view(shape) + windows.new_tensor(
            OPENAI_DATASET_MEAN).view(shape)
    h, w = pixels.shape[-2:]
    if square and h != w:
        side = min(h, w)
        pixels = F.interpolate(pixels, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
        if code:
            pixels = pixels.round().clamp(0, 255)
    if code:
        pixels = pixels / 255
    h, w = pixels.shape[-2:]
    return ((pixels - mean_i) / std_i)[..., :h - h % patch, :w - w % patch]
