"""Split Matching's named training recipes (`oczss configs`, `oczss train --config NAME`; `--method sm --dataset D`
takes `sm-D`).

Schedule (§4; Mask2Former's, oczss.model.sm.optim): batch 16, AdamW at 1e-4 (lr_mult 1), weight decay 0.05, poly
0.9 to 0 without warmup; 20k iterations on VOC, 80k on COCO-Stuff, 40k for the ablations of Tables 2-4, run on
COCO-Stuff with a ResNet-50 (§4.2). The candidates are Stage 1's (`candidates: cache`, `oczss precompute --masks
clip-kmeans`), but for the demo's, made by the frozen CLIP on each view (`online`: no precompute step).
"""

from __future__ import annotations

import dataclasses

from oczss.model.sm import ABLATIONS, MASK2FORMER_SCHEDULE, SMConfig
from oczss.pipeline.stage2.config import TrainConfig

TABLES = {"baseline": "Table 2 row 1: baseline (conventional matching, no candidates, no MFE, no RQ)",
          "sm": "Table 2 row 2: + split matching", "sm_mfe": "Table 2 row 3: + SM + MFE",
          "sm_mfe_rq": "Table 2 row 4: + SM + MFE + random queries (the full model)",
          "cu_features": "Table 3: C_u from F_u", "cu_features_mlp": "Table 3: C_u from F_u + MLP",
          "cu_cls": "Table 3: C_u from the CLS of pseudo-masked regions (the full model)",
          "mfe_no_norm": "Table 4: MFE without normalisation", "mfe_bn": "Table 4: MFE with BatchNorm",
          "mfe_gn": "Table 4: MFE with GroupNorm (the full model)"}
RESNET50 = "resnet50.tv_in1k"
# the tiny test model on the demo dataset: timm's test_resnet, the tiny random CLIP's 32-d space
DEMO_MODEL = {k: v for k, v in dataclasses.asdict(SMConfig.tiny()).items() if v != getattr(SMConfig, k)}


def _base(dataset: str, iters: int, **model) -> TrainConfig:
    s = MASK2FORMER_SCHEDULE
    return TrainConfig(method="sm", dataset=dataset, iters=iters, batch_size=s["batch_size"], lr=s["lr"], lr_mult=1.0,
                       weight_decay=s["weight_decay"], warmup_iters=s["warmup_iters"], poly_power=s["poly_power"],
                       min_lr=0.0, model=model)


def recipes() -> dict[str, tuple[str, TrainConfig]]:
    """name -> (what it reproduces, config)."""
    iters = MASK2FORMER_SCHEDULE["iters"]
    rows = {"sm-voc": ("Table 1: Split Matching on VOC (ResNet-101)", _base("voc", iters["voc"])),
            "sm-coco": ("Table 1: Split Matching on COCO-Stuff (ResNet-101)", _base("coco", iters["coco"])),
            "sm-coco-r50": ("§4.2: the ablations' setting, COCO-Stuff, ResNet-50, 40k iterations (the full model)",
                            _base("coco", iters["coco_resnet50_ablation"], backbone=RESNET50))}
    for name, switches in ABLATIONS.items():
        rows[f"sm-coco-r50-{name.replace('_', '-')}"] = (
            f"{TABLES[name]}; COCO-Stuff, ResNet-50, 40k",
            _base("coco", iters["coco_resnet50_ablation"], backbone=RESNET50, **switches))
    demo = dataclasses.replace(_base("demo", 60, **DEMO_MODEL), batch_size=4, lr=1e-3, workers=2, save_every=100,
                               candidates="online")
    rows["sm-demo"] = ("the demo: tiny random-weight Split Matching, online candidates from the tiny random CLIP", demo)
    return {name: (what, dataclasses.replace(cfg, description=what)) for name, (what, cfg) in rows.items()}
