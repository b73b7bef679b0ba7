"""The training loss (eq. 3; docs/protocol.md §6): focal_weight x sigmoid focal + dice_weight x dice, on the decoder and
on the MPS output, normalised by num_masks.

Targets are class indices into the text given to the model (255 = ignore; in inductive training unseen pixels
arrive as 255). Reference behaviour (default): ignore pixels are all-zero targets, i.e. negatives for every class;
`exclude_ignore=True` leaves them out of both losses instead.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

IGNORE = 255  # the ignore label of every dataset, loss and metric in oczss
OUTPUTS = ("decoder", "mps")


def segmentation_loss(outputs: dict, target: torch.Tensor, *, focal_weight: float = 100.0, dice_weight: float = 1.0,
                      exclude_ignore: bool = False, alpha: float = 0.25, gamma: float = 2.0) -> dict:
    """The §6 loss for `outputs["decoder"]` and `outputs["mps"]` (logits [B, K, H, W]) against target [B, H, W].

    Returns the weighted terms `decoder_focal`, `decoder_dice`, `mps_focal`, `mps_dice` and their sum `total`
    (0-d fp32 tensors). Focal: every (image, class) map, mean over pixels, summed, / num_masks. Dice:
    1 - (2 sum(p t) + 1) / (sum p + sum t + 1), p = sigmoid(logit), over the (image, class) pairs whose class is in
    the image, summed, / num_masks. num_masks = distinct valid classes per image summed over the batch (and over
    processes, divided by the world size, as the reference does), at least 1.
    """
    logits = outputs[OUTPUTS[0]]
    if target.shape != (logits.shape[0],) + logits.shape[2:]:
        raise ValueError(f"target {tuple(target.shape)} does not match logits {tuple(logits.shape)} (B, H, W)")
    classes = torch.arange(logits.shape[1], device=target.device)
    positive = target.long().unsqueeze(1) == classes[None, :, None, None]  # [B, K, H, W]; 255 -> all False
    onehot = positive.float()
    sign = 1 - 2 * onehot
    alpha_t = alpha * onehot + (1 - alpha) * (1 - onehot)
    valid = (target != IGNORE).unsqueeze(1).float() if exclude_ignore else None  # [B, 1, H, W]
    present = onehot.flatten(2).amax(-1)  # [B, K]
    masks = num_masks(present)
    terms = {}
    for name in OUTPUTS:
        x = outputs[name].float()
        terms[f"{name}_focal"] = focal_weight * sigmoid_focal(x, sign, alpha_t, valid, gamma).sum() / masks
        terms[f"{name}_dice"] = dice_weight * (dice(x, onehot, valid) * present).sum() / masks
    terms["total"] = sum(terms.values())
    return terms


def sigmoid_focal(logits, sign, alpha_t, valid, gamma: float) -> torch.Tensor:
    """Per-map mean sigmoid focal loss [B, K], over valid pixels if given.

    alpha_t * (1 - p_t)^gamma * BCE(logit, t), written with z = logit * sign, sign = 1 - 2t (z = -logit where
    t = 1, logit where t = 0): then 1 - p_t = sigmoid(z) and BCE = softplus(z).
    """
    z = logits * sign
    loss = torch.sigmoid(z) ** gamma * F.softplus(z) * alpha_t
    if valid is None:
        return loss.flatten(2).mean(-1)
    return (loss * valid).flatten(2).sum(-1) / valid.flatten(2).sum(-1).clamp(min=1)


def dice(logits, onehot, valid) -> torch.Tensor:
    """Per-map dice loss [B, K], over valid pixels if given."""
    p = torch.sigmoid(logits)
    if valid is not None:
        p = p * valid
    numerator = 2 * (p * onehot).flatten(2).sum(-1) + 1
    return 1 - numerator / (p.flatten(2).sum(-1) + onehot.flatten(2).sum(-1) + 1)


def num_masks(present: torch.Tensor) -> torch.Tensor:
    """Classes present per image, summed over the batch, averaged over processes, at least 1 (0-d fp32)."""
    count = present.sum()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1)
