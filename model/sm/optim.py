"""Mask2Former's optimiser for Split Matching (§4: "all other hyperparameters unchanged"): the parameter groups and
the schedule constants of Mask2Former's semantic-segmentation configs, for the shared training loop.

AdamW, base rate 1e-4, weight decay 0.05, none on normalisation layers and embeddings, the backbone at 0.1 x the
rate, poly decay (power 0.9) without warmup, the whole model's gradient clipped to norm 0.01, batch 16; 20k
iterations for VOC, 80k for COCO-Stuff (§4), 40k for the ResNet-50 ablations (§4.2).
"""

from __future__ import annotations

import torch.nn as nn

MASK2FORMER_SCHEDULE = {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.05, "backbone_multiplier": 0.1,
                        "poly_power": 0.9, "warmup_iters": 0, "grad_clip_norm": 0.01, "batch_size": 16,
                        "iters": {"voc": 20_000, "coco": 80_000, "coco_resnet50_ablation": 40_000}}
NO_DECAY = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.Embedding)


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_multiplier: float) -> list[dict]:
    """The trainable parameters of `model` (a SplitMatching) in AdamW groups: backbone or not (lr x
    backbone_multiplier), decayed or not (normalisation layers and embeddings: 0). Each group has `name`,
    `params`, `lr` and `weight_decay`; empty groups are left out."""
    groups: dict[tuple[bool, bool], list] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            backbone = module_name.startswith("mask2former.pixel_level_module.encoder")
            groups.setdefault((backbone, isinstance(module, NO_DECAY)), []).append(p)
    out = []
    for (backbone, no_decay), params in sorted(groups.items()):
        out.append({"name": f"{'backbone' if backbone else 'head'}{'_no_decay' if no_decay else ''}", "params": params,
                    "lr": lr * (backbone_multiplier if backbone else 1.0),
                    "weight_decay": 0.0 if no_decay else weight_decay})
    return out
