"""Table 8's "Slot Attention" row: ORA replaced by slot attention as Locatello et al. (2020, Algorithm 1) define it,
with the object features as the slots and the patch features as the inputs.

OF [B, n_o, D] and PF [B, M, D] live in ORA's space (OCZSSConfig `ora_space`); D is their width.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from oczss.model.refinement import update

EPS = 1e-8  # Locatello et al.'s epsilon in the weighted mean


class SlotAttention(nn.Module):
    """Slot attention over the object prompts, S iterations (ORA's count), then one read-out into the patches.

    Per iteration (Locatello et al., Alg. 1): inputs = LN(PF) (once); q = W_q LN(OF), k = W_k inputs,
    v = W_v inputs; A = softmax over the slots of k q^T / sqrt(D) [B, M, n_o] (the slots compete for each patch);
    updates = (A / sum over the patches of A)^T v, a weighted mean per slot; OF = GRU(input = updates, hidden = OF);
    OF = OF + MLP(LN(OF)) (hidden width 2 D, ReLU, as their 128 for 64-d slots). Single head, shared weights over
    the iterations.

    The decoder needs patch features, which slot attention does not produce: the paper says the variant "refines
    patch features from coarse object representations" (App. D), so the patches read the final slots through the
    same competitive assignment, PF = PF + W_o (A' OF), A' = softmax over the slots of W_k LN(PF) (W_q LN(OF))^T /
    sqrt(D) with the final OF (paper silent; the residual as in ORA w/o GRU and the cross-attention rows, since a
    plain replacement would reduce every patch to a mixture of n_o slots). `gate_bias` sets the GRU's update-gate
    bias as ORA's (refinement.ORA_GATE_BIAS; None: PyTorch's initialisation).
    """

    def __init__(self, dim: int, iterations: int, gate_bias: float | None):
        super().__init__()
        self.iterations, self.scale = iterations, dim ** -0.5
        self.norm_inputs, self.norm_slots, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.out = nn.Linear(dim, dim)
        if gate_bias is not None:
            with torch.no_grad():
                self.gru.bias_ih[dim:2 * dim].fill_(gate_bias)

    def assign(self, keys: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """keys [B, M, D], slots [B, n_o, D] -> A [B, M, n_o], softmax over the slots."""
        logits = torch.einsum("bmd,bkd->bmk", keys, self.q(self.norm_slots(slots))) * self.scale
        return logits.softmax(dim=-1)

    def forward(self, of: torch.Tensor, pf: torch.Tensor, patch_grid: tuple[int, int]):
        """of [B, n_o, D], pf [B, M, D] -> (refined slots, refined patches)."""
        inputs = self.norm_inputs(pf)
        keys, values = self.k(inputs), self.v(inputs)
        for _ in range(self.iterations):
            attn = self.assign(keys, of)
            weights = attn / (attn.sum(dim=1, keepdim=True) + EPS)  # a weighted mean over the patches per slot
            of = update(self.gru, of, torch.einsum("bmk,bmd->bkd", weights, values))
            of = of + self.mlp(self.norm_mlp(of))
        return of, pf + self.out(torch.einsum("bmk,bkd->bmd", self.assign(keys, of), of))
