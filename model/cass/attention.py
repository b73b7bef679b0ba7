"""CLIP's modified last block (§3.1, Eqs. 1-3): Z* = SA(LN(Z)) over the N patch tokens, no residual, no FFN.

Eq. 2 per head i: M^i = softmax(A^i + G), A^i the key-key graph s K^i K^iᵀ (graphs.py) or the distilled A_ψ^i
(Eq. 7, distill.py), G the Gaussian window (the authors' code; `gaussian_window`). Eq. 3: Z* = [M^1 V^1, ...,
M^H V^H] W_O (out_proj with its bias). [CLS] takes no part: its query, key and value are dropped. Eq. 4's patch
features are then ln_post(Z*) W_proj, L2-normalised (segmentor.py).

The Gaussian window is NACLIP's: G[p, q] = exp(-|pos_p - pos_q|² / (2σ²)) with pos the (row, column) of a patch
on the h x w grid and σ = 5 patches; 1 on the diagonal, never truncated, the same for every head.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def gaussian_window(grid: tuple[int, int], std: float, device=None) -> torch.Tensor:
    """G [N, N] float32 for the h x w patch grid, N = h*w row-major."""
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=-1).float()
    return torch.exp(-torch.cdist(pos, pos).square() / (2 * std ** 2))


def keys_values(block: nn.Module, last_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip's last ResidualAttentionBlock on its input [B, 1 + N, W] -> the patch keys and values of
    LN(Z) (ln_1, in_proj with bias; [CLS] dropped), each [B, H, N, d]."""
    attn = block.attn
    b, length, width = last_input.shape
    qkv = nn.functional.linear(block.ln_1(last_input), attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.view(b, length, 3, attn.num_heads, width // attn.num_heads)[:, 1:]
    return qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)


def attend(graph: torch.Tensor, values: torch.Tensor, out_proj: nn.Module, window: torch.Tensor | None):
    """Eqs. 2-3: graphs [B, H, N, N] (pre-softmax), values [B, H, N, d], window [N, N] or None -> Z* [B, N, W]."""
    logits = graph if window is None else graph + window
    heads = torch.softmax(logits, dim=-1) @ values
    b, h, n, d = heads.shape
    return out_proj(heads.transpose(1, 2).reshape(b, n, h * d))
