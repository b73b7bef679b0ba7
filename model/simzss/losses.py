"""SimZSS's losses as functions of the text tower's outputs and the frozen vision tokens (cached or computed in
the step: the same function either way). Equations: seeds/simzss-poster.txt.

L = L_g + lambda L_l.
- L_g (LiT / CLIP): symmetric InfoNCE between the normalised image CLS tokens and caption embeddings.
- L_l (poster, "Obtaining pairs ..." and "Object-level cross-modal alignment"):
    c_t^l = 1/|S_l| sum_{i in S_l} z_t^i,  c~_t^l = g(c_t^l)            (`span_means`, then the text projection g)
    s = softmax(z_v c~_t^l / tau)  over the image's patches,   c_v = z_v^T s
    h_i = sum_j 1{q_j = i} g(C_t)_j   (one classifier row per unique concept of the batch, k rows)
    p = softmax_k(C_v h^T),   L_l = 1/b~ sum_i sum_j -1{q_i = j} log p_ij
  Every vector is L2-normalised before use (z_v, c~_t, c_v and the rows of h), and p carries a fixed logit
  scale, as in the public code; the poster writes neither.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def global_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, image_all: torch.Tensor | None = None,
                text_all: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """L_g: image CLS [B, D] and caption embeddings [B, D] (normalised here), scale: the logit scale (a scalar).

    Data parallel (open_clip's `local_loss`): image_all / text_all [B_all, D] are every process's features with
    this process's B rows at `offset`; the mean over processes of this loss is the loss of the whole batch.
    """
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    image_all = image if image_all is None else F.normalize(image_all, dim=-1)
    text_all = text if text_all is None else F.normalize(text_all, dim=-1)
    labels = torch.arange(image.shape[0], device=image.device) + offset
    per_image = F.cross_entropy(scale * image @ text_all.T, labels)
    return (per_image + F.cross_entropy(scale * text @ image_all.T, labels)) / 2


def gather_rows(*features: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    """Every process's rows of each [B, D] tensor under torch.distributed -> ([B * world, D] each, in rank order,
    gradients flowing back to this process's rows (torch.distributed.nn.all_gather), this process's first row).
    Every process must hold the same B."""
    import torch.distributed as dist
    import torch.distributed.nn as dist_nn

    return [torch.cat(dist_nn.all_gather(f), 0) for f in features], dist.get_rank() * features[0].shape[0]


def span_means(tokens: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """c_t: token features [B, L, d] and spans [B, M, T] (token positions of each concept, -1 = padding) -> the mean
    feature of each concept's tokens [B, M, d] (zeros where a concept slot is empty)."""
    b, m, t = spans.shape
    valid = spans >= 0
    index = spans.clamp(min=0).reshape(b, m * t, 1).expand(-1, -1, tokens.shape[-1])
    picked = torch.gather(tokens, 1, index).reshape(b, m, t, -1) * valid[..., None]
    return picked.sum(2) / valid.sum(2, keepdim=True).clamp(min=1)


def concept_loss(patches: torch.Tensor, concepts: torch.Tensor, labels: torch.Tensor, tau: float, scale: float,
                 query: str = "concept", targets: str = "caption") -> tuple[torch.Tensor, torch.Tensor]:
    """L_l and its accuracy (the fraction of concepts whose c_v ranks its own class first).

    patches: z_v [B, N, D]; concepts: c~_t = g(c_t) [B, M, D] per caption; labels [B, M]: the concept's identity
    (an id shared by every occurrence of the same concept, -1 = empty slot). query and targets: SimZSSConfig's
    concept_query / concept_targets (poster or public code). No concept in the batch: a zero loss, still in the graph.
    """
    valid = labels >= 0
    z, c = F.normalize(patches, dim=-1), F.normalize(concepts, dim=-1)
    if not valid.any():
        zero = (c.sum() + patches.sum()) * 0
        return zero, zero.detach()
    _, q = torch.unique(labels[valid], return_inverse=True)  # q in 0..k-1
    k = int(q.max()) + 1
    h = F.normalize(torch.zeros(k, c.shape[-1], dtype=c.dtype, device=c.device).index_add(0, q, c[valid]), dim=-1)
    queries = c if query == "concept" else c.masked_scatter(valid[..., None], h[q])
    s = torch.softmax(torch.einsum("bmd,bnd->bmn", queries, z) / tau, dim=-1)  # over the patches
    c_v = F.normalize(torch.einsum("bmn,bnd->bmd", s, z)[valid], dim=-1)  # [b~, D]
    logits = scale * c_v @ h.T  # [b~, k]
    predicted = logits.detach().argmax(-1)
    loss = F.cross_entropy(logits, q if targets == "caption" else predicted)
    return loss, (predicted == q).float().mean()
