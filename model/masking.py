"""Which patches each object prompt sees: the additive attention mask (§3.2 eqs. 5-6, App. C Alg. 1) and the
fixed square-grid regions of the `region` mask source (CLIP-RC, Table 7).

Token order (App. C): [CLS, VPT_1..P, patch_1..M, obj_1..n_o]; indices below are 0-based, so patch i sits at
1 + P + i and object prompt j at 1 + P + M + j, as in eqs. 5-6.
"""

from __future__ import annotations

import math

import torch

ALIGN = 8  # SDPA's memory-efficient kernel wants mask rows whose stride is a multiple of 8 elements


def attention_mask(labels: torch.Tensor, num_vpt: int, num_objects: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive attention mask of §3.2, the same for every encoder layer.

    Zeros among CLS, VPT and patch tokens; every object-prompt row and column is -inf except
    prompt j -> patch i and patch i -> prompt j for i in cluster c_j (eqs. 5, 6) and prompt j -> itself (Alg. 1,
    line 11). Alg. 1 line 8 initialises the whole mask to -inf; we follow §3.2's text instead
    (zeros for CLS/VPT/patches), since otherwise the frozen CLIP tokens could not attend to one another.

    Args:
        labels: LongTensor[B, M], cluster index of every patch in [0, num_objects); a value outside that range
            leaves the patch connected to no object prompt.
        num_vpt: P. num_objects: n_o. dtype: the attention's compute dtype (SDPA wants the query's dtype).
    Returns:
        [B, L, L] with entries 0 and -inf, L = 1 + P + M + n_o. Rows are padded in storage to a multiple of 8
        elements (a view, so SDPA's memory-efficient kernel takes it without a copy).
    """
    b, m = labels.shape
    start = 1 + num_vpt + m  # first object prompt
    size = start + num_objects
    storage = torch.zeros(b, size, -(-size // ALIGN) * ALIGN, dtype=dtype, device=labels.device)
    mask = storage[..., :size]
    member = labels.unsqueeze(-1) == torch.arange(num_objects, device=labels.device)  # [B, M, n_o]: i in c_j
    edges = torch.zeros(member.shape, dtype=dtype, device=labels.device).masked_fill_(~member, float("-inf"))
    mask[:, start:, :] = float("-inf")
    mask[:, :, start:] = float("-inf")
    mask[:, 1 + num_vpt:start, start:] = edges  # eq. 6: patch i attends to prompt j
    mask[:, start:, 1 + num_vpt:start] = edges.transpose(1, 2)  # eq. 5: prompt j attends to patch i
    mask[:, start:, start:].diagonal(dim1=-2, dim2=-1).zero_()  # the prompt self-edge
    return mask


def region_labels(height: int, width: int, num_regions: int, device=None) -> torch.Tensor:
    """Fixed square-grid regions (CLIP-RC's region prompts) on an h x w patch grid: LongTensor[h * w].

    The grid has rows x cols = num_regions cells, the factorisation closest to square (rows <= cols: 6 -> 2 x 3,
    4 -> 2 x 2, 5 -> 1 x 5); patch (y, x) belongs to cell (y * rows // h, x * cols // w), numbered row-major.
    """
    rows = max(d for d in range(1, math.isqrt(num_regions) + 1) if num_regions % d == 0)
    cols = num_regions // rows
    y = torch.arange(height, device=device) * rows // height
    x = torch.arange(width, device=device) * cols // width
    return (y[:, None] * cols + x[None, :]).flatten()
