"""Refinement of patch features by object features: ORA (§3.3 eqs. 7-10, with §3.4's granular attention) and the
stacked plain cross-attention of Table 8.

OF [B, n_o, D] and PF [B, M, D] (row-major on the h x w grid) live in one space of width D (see OCZSSConfig's
`ora_space`). Attention is multi-head SDPA without a mask, softmax over the keys, `head_dim` channels per head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.granular import GranularProjections

# The update-gate bias of ora_gate_init="keep": z = sigmoid(5) = 0.993 keeps the previous state, so the untrained
# ViT-B/16 refiner (768-d, 4 iterations) hands on CLIP's patch features with cosine > 0.999 and 97 % of their norm
# (PyTorch's initialisation: cosine 0.59, 11 % of the norm).
ORA_GATE_BIAS = 5.0


def num_heads(dim: int, head_dim: int) -> int:
    """dim // head_dim heads (at least one), which must divide dim."""
    heads = max(1, dim // head_dim)
    if dim % heads:
        raise OCZSSError(f"model config: ora_head_dim={head_dim} splits width {dim} into {heads} unequal heads")
    return heads


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention on projected tensors: q [B, Q, D], k, v [B, T, D] -> [B, Q, D]."""
    b, d = q.shape[0], q.shape[-1]

    def split(x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, heads, T, D / heads]
        return x.reshape(b, x.shape[1], heads, d // heads).transpose(1, 2)

    return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(b, -1, d)


class ORA(nn.Module):
    """Object Refinement Attention: S iterations of object refinement then patch refinement, modules shared across
    iterations (App. A).

    Per iteration: OF_Ref = CrossAttn_OR(q = OF, k, v = PF) (eq. 7); OF = update(OF, OF_Ref) (eq. 8);
    PF_Ref = CrossAttn_PR(q = PF, k, v = OF) (eq. 9); PF = update(PF, PF_Ref) (eq. 10). With `granular`, the K and V
    projections of CrossAttn_OR and the Q projection of CrossAttn_PR are multi-scale (§3.4); all three read the same
    PF of the iteration, so they are computed together at its start. Otherwise they are linear.

    update = `gru`: a GRU cell with the refined features as input and the previous ones as hidden state (as in slot
    attention). `gate_bias` (None: PyTorch's initialisation) sets the update gate's input bias, see ORA_GATE_BIAS. `shared_gru` (paper silent) uses one GRU for both stages: App. A speaks of "the GRU used in ORA",
    and with ora_space `width` it brings the trainable count closest to Table 4 (see the note in segmentor.py).
    update = `residual` is Table 8's "ORA w/o GRU": PF = PF_Prev + PF_Ref; a plain replacement would reduce every
    patch to a mixture of n_o object vectors, which Table 8's modest drop (89.2 -> 86.8 hIoU) rules out.
    """

    def __init__(self, dim: int, iterations: int, head_dim: int, granular: bool, dilations: tuple[int, ...],
                 update: str, shared_gru: bool, gate_bias: float | None = ORA_GATE_BIAS):
        super().__init__()
        self.iterations, self.heads, self.granular = iterations, num_heads(dim, head_dim), granular
        # K_or, V_or, Q_pr: the projections of PF that granular attention replaces
        self.patch_proj = GranularProjections(dim, 3, dilations) if granular else nn.Linear(dim, 3 * dim)
        self.or_q, self.or_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.pr_kv, self.pr_out = nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.gru_objects = nn.GRUCell(dim, dim) if update == "gru" else None
        self.gru_patches = self.gru_objects if shared_gru or update != "gru" else nn.GRUCell(dim, dim)
        if gate_bias is not None:
            for cell in {self.gru_objects, self.gru_patches} - {None}:
                with torch.no_grad():
                    cell.bias_ih[dim:2 * dim].fill_(gate_bias)  # b_iz: PyTorch's GRU weights are (r | z | n)

    def forward(self, of: torch.Tensor, pf: torch.Tensor, patch_grid: tuple[int, int]):
        """of [B, n_o, D], pf [B, M, D] -> refined (of, pf)."""
        for _ in range(self.iterations):
            if self.granular:
                k_or, v_or, q_pr = self.patch_proj(pf, patch_grid)
            else:
                k_or, v_or, q_pr = self.patch_proj(pf).chunk(3, dim=-1)
            of = update(self.gru_objects, of, self.or_out(attend(self.or_q(of), k_or, v_or, self.heads)))
            k_pr, v_pr = self.pr_kv(of).chunk(2, dim=-1)
            pf = update(self.gru_patches, pf, self.pr_out(attend(q_pr, k_pr, v_pr, self.heads)))
        return of, pf


def update(cell: nn.GRUCell | None, prev: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
    """GRU(hidden = prev, input = refined) per token (eqs. 8, 10), or prev + refined without a GRU."""
    if cell is None:
        return prev + refined
    d = prev.shape[-1]
    return cell(refined.reshape(-1, d), prev.reshape(-1, d)).view(prev.shape)


class CrossAttentionStack(nn.Module):
    """Table 8's "1x / 2x / 4x Cross Attention": ORA replaced by `layers` plain cross-attention layers in which the
    patches attend to the (unrefined) object features, PF <- PF + CrossAttn_l(q = PF, k, v = OF), own weights per
    layer, linear projections, no GRU."""

    def __init__(self, dim: int, layers: int, head_dim: int):
        super().__init__()
        self.heads = num_heads(dim, head_dim)
        self.q = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.kv = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(layers))
        self.out = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, of: torch.Tensor, pf: torch.Tensor, patch_grid: tuple[int, int]):
        for q, kv, out in zip(self.q, self.kv, self.out):
            k, v = kv(of).chunk(2, dim=-1)
            pf = pf + out(attend(q(pf), k, v, self.heads))
        return of, pf
