"""SimZSS's training recipes (`oczss train --config NAME`; `simzss-coco-captions` is the default of
`oczss train --method simzss --dataset coco-captions`).

- simzss-coco-captions: the public code's COCO run (README command): ViT-B/14 (vit_base_patch14_dinov2) frozen,
  the 63M text tower from scratch, 16,384 captions per step, 244 steps (10 epochs x 400k samples = 4M), AdamW lr
  3e-5, betas (0.9, 0.98), eps 1e-6, weight decay 0.2, 10 % warm-up then cosine, lambda 0.05, tau 0.1, concepts
  from spaCy's en_core_web_trf filtered by the benchmark vocabulary, online tokens on RandomResizedCrop views.
- simzss-coco-captions-vits: the same with ViT-S/14 and the 40M text tower (the public ViT-S config).
- simzss-coco-captions-cache: the ViT-B run from Stage 1's token cache (`oczss precompute --masks dinov2-tokens
  --dataset coco-captions`): the whole image at 224 instead of a fresh crop per step.
- simzss-demo: a tiny random-weight run for tests and CPUs (tiny-p14, 2-layer text tower, vocabulary concepts).
"""

from __future__ import annotations

import dataclasses

from oczss.pipeline.stage2.config import TrainConfig

SCHEDULE = dict(iters=244, batch_size=16384, lr=3e-5, weight_decay=0.2, log_every=1, save_every=20,
                milestone_every=100)
TINY = dict(  # SimZSSConfig.preset('tiny'), spelt out: recipes are listed without importing the towers
    vision="tiny-p14", vision_weights="random", image_size=56, text_width=32, text_heads=2, text_layers=2)


def _run(simzss: dict, concepts: dict | None = None, **model) -> TrainConfig:
    return TrainConfig(method="simzss", dataset="coco-captions", **SCHEDULE,
                       model={"simzss": simzss, "concepts": concepts or {}, **model})


def recipes() -> dict[str, tuple[str, TrainConfig]]:
    """name -> (what it is, config)."""
    small = dict(vision="vit_small_patch14_dinov2", text_width=384, text_heads=6, text_layers=12)
    demo = TrainConfig(method="simzss", dataset="coco-captions", iters=40, batch_size=4, lr=3e-3, weight_decay=0.2,
                       workers=0, log_every=5, save_every=10, milestone_every=20,
                       model={"simzss": TINY, "concepts": {"source": "vocabulary"}, "warmup": 0.1})
    out = {"simzss-coco-captions": ("SimZSS ViT-B/14 on COCO Captions (the public code's run)", _run({})),
           "simzss-coco-captions-vits": ("SimZSS ViT-S/14 on COCO Captions", _run(small)),
           "simzss-coco-captions-cache": ("SimZSS ViT-B/14 on COCO Captions from Stage 1's token cache",
                                          _run({}, tokens="cache")),
           "simzss-demo": ("tiny random-weight SimZSS (tests, CPU)", demo)}
    return {name: (what, dataclasses.replace(cfg, description=what)) for name, (what, cfg) in out.items()}
