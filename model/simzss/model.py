"""SimZSS: a trainable text tower aligned to a frozen vision tower, globally (L_g) and per concept (L_l).

The model holds only what trains: the text tower (with g, its output projection) and L_g's logit scale. The frozen
vision tower stays outside (`vision.load_vision`), so a training step takes its tokens from the Stage 1 cache or
from the tower run in the step, and `SimZSS.loss` is the same for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from oczss.model.simzss.config import SimZSSConfig, SimZSSSchedule
from oczss.model.simzss.losses import concept_loss, gather_rows, global_loss, span_means
from oczss.model.simzss.text import build_text_tower, tokenizer


@dataclass
class TextBatch:
    """The text half of a training batch (pipeline.data.caption_tokens.collate makes it).

    tokens: int64 [B, L], the captions as CLIP token ids (SOT, ..., EOT, zeros). spans: int64 [B, M, T], the token
    positions of each caption's concepts (-1 = padding; M concepts at most per caption, T tokens per concept).
    labels: int64 [B, M], each concept's identity (the same id for every occurrence of a concept; -1 = none).
    """

    tokens: torch.Tensor
    spans: torch.Tensor
    labels: torch.Tensor

    def to(self, device) -> "TextBatch":
        return TextBatch(self.tokens.to(device), self.spans.to(device), self.labels.to(device))


class SimZSS(torch.nn.Module):
    """The text tower f_t with projection g into the vision width `vision_width`, and L_g's logit scale."""

    def __init__(self, config: SimZSSConfig, vision_width: int):
        super().__init__()
        self.config = config
        self.text = build_text_tower(config, vision_width)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))

    def encode_text(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens int64 [B, L] -> (caption embeddings [B, D_v], token features z_t [B, L, d_t])."""
        return self.text(tokens)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """g: [..., d_t] -> [..., D_v], the text tower's own output projection."""
        return x @ self.text.text_projection

    def loss(self, batch: TextBatch, cls: torch.Tensor, patches: torch.Tensor,
             gather: bool = False) -> dict[str, torch.Tensor]:
        """L = L_g + lambda L_l for a batch of captions and their images' frozen tokens, cls [B, D_v] and patches
        [B, N, D_v] (cached fp16 or computed in the step; cast to the text features' dtype). gather: under
        torch.distributed, L_g contrasts against every process's images and captions (open_clip's
        gather_with_grad + local_loss; every process has B rows); L_l stays per process, as in the public code.
        Returns loss, global, concept (unweighted L_l) and concept_accuracy."""
        cfg = self.config
        caption, tokens = self.encode_text(batch.tokens)
        cls, patches = cls.to(caption.dtype), patches.to(caption.dtype)
        everyone, offset = gather_rows(cls, caption) if gather else ((None, None), 0)
        l_g = global_loss(cls, caption, self.logit_scale.exp(), *everyone, offset)
        concepts = self.project(span_means(tokens, batch.spans))
        l_l, accuracy = concept_loss(patches, concepts, batch.labels, cfg.tau, cfg.concept_scale, cfg.concept_query,
                                     cfg.concept_targets)
        return {"loss": l_g + cfg.concept_weight * l_l, "global": l_g.detach(), "concept": l_l.detach(),
                "concept_accuracy": accuracy}

    def forward(self, batch: TextBatch, cls: torch.Tensor, patches: torch.Tensor,
                gather: bool = False) -> dict[str, torch.Tensor]:
        """`loss`: DDP synchronises the gradients of what runs through forward."""
        return self.loss(batch, cls, patches, gather)

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """After every optimiser step (open_clip): the logit scale at most `logit_scale_max`."""
        self.logit_scale.clamp_(0, math.log(self.config.logit_scale_max))

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups as the public code: no weight decay on 1-d tensors (gains, biases) and the logit scale."""
        decay, rest = [], []
        for name, p in self.named_parameters():
            (rest if p.ndim < 2 or "logit_scale" in name else decay).append(p)
        return [{"params": rest, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]

    @torch.no_grad()
    def embed_classes(self, names: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        """Class embeddings [K, D_v] for K class names: each name in every template ("a photo of a {}."), the mean
        of the normalised caption embeddings, normalised."""
        prompts = tokenizer()([t.format(n) for n in names for t in templates])
        caption, _ = self.encode_text(prompts.to(self.logit_scale.device))
        return F.normalize(F.normalize(caption.float(), dim=-1).reshape(len(names), len(templates), -1).mean(1),
                           dim=-1)


def optimizer(model: SimZSS, schedule: SimZSSSchedule) -> torch.optim.AdamW:
    """AdamW over the model's parameter groups with the schedule's lr, betas, eps and weight decay."""
    return torch.optim.AdamW(model.param_groups(schedule.weight_decay), lr=schedule.lr, betas=schedule.betas,
                             eps=schedule.eps)


def train_step(model: SimZSS, optim: torch.optim.Optimizer, lr: float, batch: TextBatch, cls: torch.Tensor,
               patches: torch.Tensor, amp: bool = False) -> dict[str, float]:
    """One optimisation step at learning rate `lr` from the images' frozen tokens (cls [B, D_v], patches
    [B, N, D_v], from the cache or the tower); the logit scale is clamped after it. amp: the forward under bf16
    autocast (the public code trains in mixed precision). Returns the losses."""
    for group in optim.param_groups:
        group["lr"] = lr
    optim.zero_grad(set_to_none=True)
    with torch.autocast(cls.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model.loss(batch, cls, patches)
    out["loss"].backward()
    optim.step()
    model.clamp_logit_scale()
    return {k: float(v.detach()) for k, v in out.items()}
