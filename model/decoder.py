"""OTSeg's decoder, unchanged (§3.1 eqs. 1-2, App. B, docs/protocol.md §5): relationship descriptor, MPS path, MPSA layers.

Notation: B images, K classes, N text prompts per class, M patches, C = 512 (the CLIP embedding width).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.model.transport import sinkhorn


def prompt_scores(queries: torch.Tensor, keys: torch.Tensor, eps: float, max_iters: int):
    """Multi-prompt Sinkhorn between pixels and prompts (App. B).

    queries [B, K, N, C], keys [B, M, C] -> (plan T [B, K, M, N], score map [B, K, M]) where cos = <q/|q|, k/|k|>,
    T = Sinkhorn(1 - cos) with uniform marginals, and score[m] = sum_n M * N * T_mn * cos_mn: N times a per-pixel
    convex combination of prompt cosines, used as logits. In fp32 (autocast off), as in the reference: the plan
    is exp(-cost / 0.05), so bf16's ~3 significant digits in cos would shift it by a few percent.
    """
    with torch.autocast(queries.device.type, enabled=False):
        cos = torch.einsum("bknc,bmc->bkmn", F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1))
    plan = sinkhorn(1.0 - cos, eps=eps, max_iters=max_iters)
    m, n = cos.shape[-2:]
    return plan, (plan * cos).sum(-1) * (m * n)


class MPSA(nn.Module):
    """Multi-prompt Sinkhorn attention (eq. 1): single head, attention weights are the Sinkhorn plan itself.

    Q = Linear(tgt), K = Linear(memory), V = Linear(memory); T = Sinkhorn(1 - cos(Q, K)); attention dropout 0.1;
    out_n = Linear(sum_m T_mn V_m). Also returns this layer's score map (same form as MPS).
    """

    def __init__(self, dim: int, eps: float, max_iters: int):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.attn_drop = nn.Dropout(0.1)
        self.eps, self.max_iters = eps, max_iters

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor):
        """tgt [B, K, N, C], memory [B, M, C] -> (out [B, K, N, C], score [B, K, M])."""
        plan, score = prompt_scores(self.q(tgt), self.k(memory), self.eps, self.max_iters)
        v = self.v(memory)
        out = torch.einsum("bkmn,bmc->bknc", self.attn_drop(plan).to(v.dtype), v)
        return self.out(out), score


class DecoderLayer(nn.Module):
    """Post-norm layer without self-attention (the reference never calls its `self_attn`/`norm1`, so they are not
    built): tgt = norm_attn(tgt + drop(MPSA(tgt, memory))); tgt = norm_ffn(tgt + drop(FFN(tgt))), FFN = Linear(C,
    4C), ReLU, dropout, Linear(4C, C); dropout 0.1 throughout."""

    def __init__(self, dim: int, eps: float, max_iters: int):
        super().__init__()
        self.attn = MPSA(dim, eps, max_iters)
        self.norm_attn, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4 * dim, dim))
        self.drop_attn, self.drop_ffn = nn.Dropout(0.1), nn.Dropout(0.1)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor):
        out, score = self.attn(tgt, memory)
        tgt = self.norm_attn(tgt + self.drop_attn(out))
        return self.norm_ffn(tgt + self.drop_ffn(self.ffn(tgt))), score


class Decoder(nn.Module):
    """Relationship descriptor + MPS path + stacked MPSA layers (docs/protocol.md §5).

    q = q_proj(concat(g ⊙ t, t)) [B, K, N, C] (§3.1, shared by both paths). MPS logits (eq. 2 before the sigmoid)
    from q and the MPS features; decoder logits from the layers' score maps A_1..A_L as
    A_L * prod_{l<L} sigmoid(A_l)^(1 / (L - 1)) (the reference's gating; A_1 alone for one layer).

    Only A_L is read from the last layer: its attention output, norms and FFN feed nothing in the reference (their
    weights never receive a gradient), so the last layer is built as its Q and K projections alone.
    """

    def __init__(self, dim: int, layers: int, eps: float, max_iters: int):
        super().__init__()
        self.q_proj = nn.Linear(2 * dim, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, eps, max_iters) for _ in range(layers - 1))
        self.last_q, self.last_k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.eps, self.max_iters = eps, max_iters

    def forward(self, text: torch.Tensor, g: torch.Tensor, memory: torch.Tensor, mps_memory: torch.Tensor):
        """text [K, N, C], g [B, C], memory [B, M, C] (the MPSA keys/values), mps_memory [B, M, C]
        -> (decoder logits [B, K, M], MPS logits [B, K, M])."""
        t = text.to(g.dtype).unsqueeze(0).expand(g.shape[0], -1, -1, -1)
        q = self.q_proj(torch.cat([g[:, None, None, :] * t, t], dim=-1))
        _, mps = prompt_scores(q, mps_memory, self.eps, self.max_iters)
        gates = []
        for layer in self.layers:
            q, score = layer(q, memory)
            gates.append(score)
        _, logits = prompt_scores(self.last_q(q), self.last_k(memory), self.eps, self.max_iters)
        for score in gates:
            logits = logits * torch.sigmoid(score) ** (1.0 / len(gates))
        return logits, mps
