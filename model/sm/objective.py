"""The training objective L = L_SM + L_MFE (§3.4), L_SM = L_match + L_cos (§3.2), on one batch.

Per supervised prediction (every decoder layer's with deep supervision, as Mask2Former; else the last) and per
image: E = cat(A_s, C_u) (A_s the seen classes' text embeddings, C_u the image's kept candidates' embeddings),
S = V Eᵀ (logits of σ(V Eᵀ), for seen and candidate queries alike), the split matching of Eq. 2
(oczss.model.sm.matching), then L_cls on every query of both groups and L_mask, L_cos on the matched pairs.
Normalisation (Mask2Former's): L_cls, L_mask by the number of targets in the batch, L_cos by the number of
candidate targets, each summed over processes and divided by the world size, at least 1. L_MFE is the mean over
the batch's images of CE + focal of F_u's per-pixel scores against Y_p.

C_u (Table 3): `cls` takes the cached CLIP CLS embeddings; `features` average-pools F_u's per-pixel embeddings
over each candidate's pseudo mask (upsampled bilinearly to the mask grid), `features_mlp` passes that through
a 2-layer MLP. The pooled features are detached (paper silent): they are targets, as the CLS tokens are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.model.losses import num_masks
from oczss.model.sm import losses
from oczss.model.sm.config import SMConfig
from oczss.model.sm.matching import match_cost, split_match
from oczss.model.sm.targets import ImageTargets, image_targets, resize_labels


@dataclass
class Batch:
    """What one training step needs besides the images. target LongTensor[B, H, W]: seen-class indices (rows of
    `text`), IGNORE elsewhere; text: the seen classes' embeddings A_s [N_s, C] (or [N_s, T, C], averaged);
    candidate_labels [B, H, W] (uint8 or long): each pixel's candidate or IGNORE, None for the baseline;
    candidate_embeddings [B, U, C]: the cached C_u (row u: candidate u), needed with candidate_embedding `cls`."""

    target: torch.Tensor
    text: torch.Tensor
    candidate_labels: torch.Tensor | None = None
    candidate_embeddings: torch.Tensor | None = None


def class_embeddings(text: torch.Tensor) -> torch.Tensor:
    """Class text embeddings [N, C], or class x template [N, T, C] averaged over the templates, L2-normalised."""
    if text.dim() == 3:
        text = text.mean(1)
    if text.dim() != 2:
        raise ValueError(f"text must be [N, C] or [N, T, C], got shape {tuple(text.shape)}")
    return F.normalize(text.float(), dim=-1)


def sm_loss(outputs: dict, batch: Batch, config: SMConfig, candidate_mlp: nn.Module | None = None) -> dict:
    """The weighted terms `cls`, `iou`, `dice`, `cos`, `mfe_ce`, `mfe_focal` and their sum `total` (0-d fp32).

    outputs: SplitMatching.forward's in training mode (only the first K_s + K_u queries are supervised)."""
    c = config
    seen = class_embeddings(batch.text).to(outputs["features"][-1].device)
    mask_grid = tuple(outputs["masks"][-1].shape[-2:])
    labels = batch.candidate_labels if c.split_matching else None
    if labels is not None and c.candidate_embedding == "cls" and batch.candidate_embeddings is None:
        raise ValueError("split matching with CLS candidate embeddings needs the batch's candidate_embeddings")
    targets = [image_targets(batch.target[b], None if labels is None else labels[b], mask_grid,
                             num_seen=len(seen), limit=c.candidate_queries, unannotated=c.candidates_unannotated,
                             min_fraction=c.min_candidate_fraction) for b in range(len(batch.target))]
    joint = [torch.cat([seen, _candidate_embeddings(b, t, outputs, batch, c, candidate_mlp)])
             for b, t in enumerate(targets)]
    total = num_masks(seen.new_tensor(float(sum(len(t.classes) + len(t.candidates) for t in targets))))
    total_u = num_masks(seen.new_tensor(float(sum(len(t.candidates) for t in targets))))
    layers = range(len(outputs["masks"])) if c.deep_supervision else [len(outputs["masks"]) - 1]
    sums = dict.fromkeys(("cls", "iou", "dice", "cos"), seen.new_zeros(()))
    for layer in layers:
        for b, t in enumerate(targets):
            v = outputs["features"][layer][b, :c.queries].float()
            m = outputs["masks"][layer][b, :c.queries].flatten(1).float()
            for k, value in _image_terms(v, m, t, joint[b], c).items():
                sums[k] = sums[k] + value
    terms = {"cls": c.class_weight * sums["cls"] / total, "iou": c.iou_weight * sums["iou"] / total,
             "dice": c.dice_weight * sums["dice"] / total, "cos": c.cos_weight * sums["cos"] / total_u}
    if "mfe" in outputs:
        terms.update(_mfe_terms(outputs["mfe"], targets, joint, c))
    terms["total"] = sum(terms.values())
    return terms


def match_image(scores: torch.Tensor, masks: torch.Tensor, t: ImageTargets, c: SMConfig) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """Eq. 2 for one image and prediction: scores [K, N_s + T_u] (logits of S against E), mask logits [K, P] ->
    (queries, targets): query indices and target indices (the T_s seen targets, then the T_u candidates)."""
    n_s, k_s = scores.shape[1] - len(t.candidates), c.seen_queries
    cost = dict(class_weight=c.class_weight, bce_weight=c.bce_cost_weight, dice_weight=c.dice_weight,
                alpha=c.focal_alpha, gamma=c.focal_gamma)
    with torch.no_grad():
        seen_cost = match_cost(scores[:k_s, t.classes], masks[:k_s], t.seen_masks, **cost)
        candidate_cost = match_cost(scores[k_s:, n_s:], masks[k_s:], t.candidate_masks, **cost)
        return split_match(seen_cost, candidate_cost)


def _image_terms(v: torch.Tensor, m: torch.Tensor, t: ImageTargets, joint: torch.Tensor, c: SMConfig) -> dict:
    """One image, one prediction: v [K, C] query features, m [K, P] mask logits, joint E [N_s + T_u, C] -> the
    summed (unnormalised, unweighted) cls, iou, dice and cos terms."""
    scores = v @ joint.T  # [K, N_s + T_u]
    n_s, t_s = len(joint) - len(t.candidates), len(t.classes)
    queries, matched = match_image(scores, m, t, c)
    columns_of_targets = torch.cat([t.classes, n_s + torch.arange(len(t.candidates), device=v.device)])
    columns = torch.full((len(v),), -1, dtype=torch.long, device=v.device)
    columns[queries] = columns_of_targets[matched]
    pairs_m, pairs_t = m[queries], torch.cat([t.seen_masks, t.candidate_masks])[matched]
    candidate = matched >= t_s
    cos = losses.cosine_loss(v[queries[candidate]], joint[n_s + matched[candidate] - t_s])
    return {"cls": losses.classification_loss(scores, columns, c.focal_alpha, c.focal_gamma),
            "iou": losses.iou_loss(pairs_m, pairs_t).sum(), "dice": losses.dice_loss(pairs_m, pairs_t).sum(),
            "cos": cos.sum()}


def _mfe_terms(embeddings: torch.Tensor, targets: list[ImageTargets], joint: list[torch.Tensor],
               c: SMConfig) -> dict:
    """L_MFE: F_u's per-pixel embeddings [B, C, h, w] scored against each image's E, CE + focal against Y_p."""
    ce, focal = [], []
    for b, t in enumerate(targets):
        scores = torch.einsum("chw,nc->nhw", embeddings[b].float(), joint[b])
        terms = losses.mfe_loss(scores, resize_labels(t.pixel_labels, tuple(scores.shape[-2:])), c.focal_alpha,
                                c.focal_gamma)
        ce.append(terms[0])
        focal.append(terms[1])
    return {"mfe_ce": c.mfe_ce_weight * torch.stack(ce).mean(),
            "mfe_focal": c.mfe_focal_weight * torch.stack(focal).mean()}


def _candidate_embeddings(b: int, t: ImageTargets, outputs: dict, batch: Batch, c: SMConfig,
                          mlp: nn.Module | None) -> torch.Tensor:
    """C_u of image b's kept candidates [T_u, C], L2-normalised (Table 3's `cls`, `features`, `features_mlp`)."""
    if c.candidate_embedding == "cls" or not len(t.candidates):
        if batch.candidate_embeddings is None:
            return outputs["features"][-1].new_zeros(0, c.embed_dim).float()
        return F.normalize(batch.candidate_embeddings[b, t.candidates].float(), dim=-1)
    if "mfe" not in outputs:
        raise ValueError(f"candidate_embedding {c.candidate_embedding!r} pools F_u: call the loss on training-mode "
                         f"outputs")
    grid = outputs["masks"][-1].shape[-2:]
    pixels = F.interpolate(outputs["mfe"][b:b + 1].detach().float(), size=grid, mode="bilinear",
                           align_corners=False)[0].flatten(1)  # [C, P]
    pooled = t.candidate_masks @ pixels.T / t.candidate_masks.sum(-1, keepdim=True).clamp(min=1)
    return F.normalize(mlp(pooled) if mlp is not None else pooled, dim=-1)
