"""SimZSSConfig and SimZSSSchedule: the model, its losses and its optimisation, frozen and checked when made.

Sources (poster: seeds/simzss-poster.txt; public code: the repository tileb1/simzss, read for facts):
- Vision tower: a frozen DINOv2 (LiT, poster "Key ingredients" 1). The public code's model configs
  (`ours_dinov2_ViT-B-14_reg.json`, `ours_dinov2_ViT-S-14_reg.json`) use the 4-register variants at 224 x 224;
  `vit_base_patch14_dinov2` (no registers, the issue's default) and the register variants both load here. The
  public code can also denoise DINOv2's patch tokens with a DVT denoiser; that is not reproduced.
- Text tower: CLIP's text transformer (causal, argmax/EOT pooling), 12 layers of width 512 and 8 heads for ViT-B
  (63M, the poster's table) and width 384, 6 heads for ViT-S (40M), vocabulary 49,408, 77 tokens; GELU (the
  public code builds it without QuickGELU). Trained **from scratch** (the public code passes no text weights;
  open_clip's initialisation, seeded by `seed`). Its output projection maps to the vision width; it is g of the
  poster (the public code projects every token with the same `text_projection`).
- Losses: L = L_g + lambda L_l. L_g: CLIP/LiT's symmetric InfoNCE between the image's CLS token and the caption's
  EOT embedding, learnt logit scale initialised to 1/0.07 and clamped to 100 after every step (open_clip). L_l:
  the concept loss (poster, "Object-level cross-modal alignment"), tau = 0.1 (`--temp_decoder 0.1`), classifier
  logit scale fixed at 1/0.07 (the public code's `logit_scale_local` buffer), lambda = 0.05 (`--lambda_loss`).
- Schedule (the README's COCO command, args_coco.json and params.py): AdamW lr 3e-5, betas (0.9, 0.98), eps 1e-6,
  weight decay 0.2 except on gains, biases and the logit scale, 10 % linear warm-up then cosine to 0, 1,024
  captions per GPU on 16 GPUs (2 nodes x 8) = 16,384 per step, 10 epochs of 400,000 samples = 4M samples (the
  poster's "alignment samples 4M" for COCO Captions), mixed precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from oczss.errors import OCZSSError

# text tower size per vision width (the public code's configs); tiny for tests
TEXT_PRESETS = {"base": dict(text_width=512, text_heads=8, text_layers=12),
                "small": dict(text_width=384, text_heads=6, text_layers=12),
                "tiny": dict(text_width=32, text_heads=2, text_layers=2)}
QUERIES = ("concept", "class")
TARGETS = ("caption", "argmax")


@dataclass(frozen=True)
class SimZSSConfig:
    """The SimZSS model and losses. Defaults: the paper's ViT-B model on COCO Captions.

    vision: timm name of the frozen DINOv2 (`vit_base_patch14_dinov2`, `vit_small_patch14_dinov2`, their `_reg4_`
        variants) or `tiny-p14` (a 2-layer, 48-wide ViT/14 for tests). vision_weights: `pretrained` (timm's hub
        cache), `random` (tests only, announced) or a local checkpoint path. image_size: training resolution R
        (224: R/14 = 16 x 16 patch tokens); the tower also runs at other multiples of 14 (dense inference).
    text_width, text_heads, text_layers, context_length, vocab_size: the text transformer (`TEXT_PRESETS`).
    seed: seeds the text tower's initialisation.
    logit_scale_init, logit_scale_max: L_g's learnt scale (exp of a parameter), its start and its clamp.
    tau: the concept query's softmax temperature over patches, s = softmax(z_v c~_t / tau).
    concept_scale: the fixed logit scale of the concept classifier p = softmax(scale C_v h^T).
    concept_weight: lambda in L = L_g + lambda L_l.
    concept_query (poster vs public code): `concept` queries the patches with each concept's own c~_t (poster);
        `class` with its class's classifier weight h_q (the public code's `classification_weights_ema`, beta 0).
    concept_targets (poster vs public code): `caption` trains p towards each concept's own class q (poster, L_l);
        `argmax` towards the class p itself ranks first among the batch's classes (the public code's
        `patch_predictions`, no gradient through the choice).
    """

    vision: str = "vit_base_patch14_dinov2"
    vision_weights: str = "pretrained"
    image_size: int = 224
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    seed: int = 0
    logit_scale_init: float = 1 / 0.07
    logit_scale_max: float = 100.0
    tau: float = 0.1
    concept_scale: float = 1 / 0.07
    concept_weight: float = 0.05
    concept_query: str = "concept"
    concept_targets: str = "caption"

    def __post_init__(self):
        for name, allowed in (("concept_query", QUERIES), ("concept_targets", TARGETS)):
            if getattr(self, name) not in allowed:
                raise OCZSSError(f"simzss config: {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("image_size", "text_width", "text_heads", "text_layers", "context_length", "vocab_size"):
            if getattr(self, name) < 1:
                raise OCZSSError(f"simzss config: {name} must be >= 1, got {getattr(self, name)}")
        if self.text_width % self.text_heads:
            raise OCZSSError(f"simzss config: text_width {self.text_width} is not a multiple of text_heads "
                             f"{self.text_heads}")
        for name in ("logit_scale_init", "logit_scale_max", "tau", "concept_scale"):
            if not getattr(self, name) > 0:
                raise OCZSSError(f"simzss config: {name} must be positive, got {getattr(self, name)}")
        if self.logit_scale_init > self.logit_scale_max:
            raise OCZSSError(f"simzss config: logit_scale_init {self.logit_scale_init} exceeds logit_scale_max "
                             f"{self.logit_scale_max}")
        if self.concept_weight < 0:
            raise OCZSSError(f"simzss config: concept_weight must be >= 0, got {self.concept_weight}")
        if self.seed < 0:
            raise OCZSSError(f"simzss config: seed must be >= 0, got {self.seed}")

    @classmethod
    def preset(cls, size: str, **overrides) -> "SimZSSConfig":
        """`base` (ViT-B/14 + 63M text tower), `small` (ViT-S/14 + 40M) or `tiny` (tests: tiny-p14, random)."""
        if size not in TEXT_PRESETS:
            raise OCZSSError(f"simzss preset {size!r}: choose one of {', '.join(TEXT_PRESETS)}")
        vision = {"base": dict(vision="vit_base_patch14_dinov2"), "small": dict(vision="vit_small_patch14_dinov2"),
                  "tiny": dict(vision="tiny-p14", vision_weights="random", image_size=56)}[size]
        return cls(**{**TEXT_PRESETS[size], **vision, **overrides})


@dataclass(frozen=True)
class SimZSSSchedule:
    """The optimisation of the public code's COCO run (module docstring): AdamW, warm-up then cosine.

    batch_size: captions per step over all processes. samples: captions seen in the whole run (steps =
    samples // batch_size). warmup: fraction of the steps in linear warm-up from 0.
    """

    batch_size: int = 16384
    samples: int = 4_000_000
    lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2
    warmup: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.batch_size < 1 or self.samples < self.batch_size:
            raise OCZSSError(f"simzss schedule: need 1 <= batch_size <= samples, got {self.batch_size} and "
                             f"{self.samples}")
        if not (self.lr > 0 and self.eps > 0 and self.weight_decay >= 0):
            raise OCZSSError(f"simzss schedule: lr and eps must be positive and weight_decay >= 0, got {self.lr}, "
                             f"{self.eps}, {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise OCZSSError(f"simzss schedule: betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.warmup < 1:
            raise OCZSSError(f"simzss schedule: warmup is a fraction of the steps in [0, 1), got {self.warmup}")

    @property
    def steps(self) -> int:
        return self.samples // self.batch_size

    def lr_at(self, step: int) -> float:
        """The learning rate of step `step` (0-based): linear from lr / warmup_steps up to lr over the warm-up,
        then cosine from lr to 0 (open_clip's `cosine_lr`)."""
        warm = int(self.warmup * self.steps)
        if step < warm:
            return self.lr * (step + 1) / warm
        e, es = step - warm, max(self.steps - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * e / es)) * self.lr
