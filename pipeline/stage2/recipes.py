"""The named training recipes for every row of the paper's Tables 1-3, 5-10, 13 and 14.

`oczss train --config NAME` starts from a recipe (`oczss configs` lists them); `--config FILE.json` from a file
holding a TrainConfig as JSON (the `config.json` written beside every run's checkpoints is one). Flags given on
the command line override either.

Iterations: 20k / 40k / 80k for VOC / Context / COCO (transductive: half, from the inductive checkpoint at half
its schedule); the other defaults are TrainConfig's.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.configs import from_dict
from oczss.pipeline.data.datasets import SPECS
from oczss.pipeline.stage2.config import TrainConfig

# the other trained methods' recipe modules: each has `recipes() -> {name: (what, TrainConfig)}`
METHOD_RECIPES: tuple[str, ...] = ("oczss.pipeline.simzss.recipes", "oczss.pipeline.sm.recipes")
ITERS = {"voc": 20000, "context": 40000, "coco": 80000, "demo": 600}
# n_o and S per dataset (§4); VPT tokens per layer: OTSeg's (docs/protocol.md §4: 100 for COCO), which §4 says OC-ZSS
# follows; App. A says "10 learnable prompts" without naming a dataset (recipe coco-vpt10 reads it for COCO too).
MODEL = {"voc": dict(num_objects=6, ora_iterations=4, num_vpt=10),
         "context": dict(num_objects=8, ora_iterations=5, num_vpt=10),
         "coco": dict(num_objects=6, ora_iterations=4, num_vpt=100),
         "demo": dict(backbone="tiny", weights="random", num_objects=4, ora_iterations=2, num_vpt=4)}


def _base(dataset: str, setting: str = "inductive", unseen: list[int] | None = None, **model) -> TrainConfig:
    iters = ITERS[dataset] // (2 if setting == "transductive" else 1)
    return TrainConfig(dataset=dataset, setting=setting, iters=iters, unseen=unseen, model={**MODEL[dataset], **model})


def _few_seen(dataset: str, share: float) -> list[int]:
    """Unseen classes when only `share` of the classes are seen (Tables 5, 9; paper silent on which): the first
    round(share x classes) of the standard seen classes stay seen, every other class is unseen."""
    spec = SPECS[dataset]
    keep = set(spec.seen[: round(share * len(spec.classes))])
    return [c for c in range(len(spec.classes)) if c not in keep]


def _recipes() -> dict[str, tuple[str, TrainConfig]]:
    """name -> (what it reproduces, config)."""
    out = {}

    def add(name, what, cfg):
        out[name] = (what, dataclasses.replace(cfg, description=what))

    otseg = dict(mask_source="none", refiner="none", granular=False)
    for ds in ("voc", "context", "coco"):
        for setting, table in (("inductive", 1), ("transductive", 2)):
            add(f"{ds}-{setting}", f"Table {table}, OC-ZSS on {ds}", _base(ds, setting))
            add(f"{ds}-otseg-{setting}", f"Table {table}, OTSeg baseline on {ds} (all OC-ZSS switches off)",
                _base(ds, setting, **otseg))
    for ds, table in (("voc", 5), ("context", 9)):
        for share in (0.25, 0.5):
            add(f"{ds}-seen{int(share * 100)}", f"Table {table}, {ds} with {int(share * 100)}% seen classes",
                _base(ds, unseen=_few_seen(ds, share)))
    for ds in ("voc", "context"):
        add(f"{ds}-t6-baseline", "Table 6 row 1: no ORA, no object prompts, no granular attention",
            _base(ds, **otseg))
        add(f"{ds}-t6-ora", "Table 6 row 2: ORA from random object features", _base(ds, mask_source="none",
                                                                                      granular=False))
        add(f"{ds}-t6-ora-prompts", "Table 6 row 3: ORA + object prompts", _base(ds, granular=False))
        add(f"{ds}-t6-full", "Table 6 row 4: ORA + object prompts + granular attention", _base(ds))
    for name, what, model in (
            ("dino-b16", "Table 7/13: DINO-B/16 masks (default cache)", {}),
            ("dino-b8", "Table 7: DINO-B/8 masks (cache from --dino-model vit_base_patch8_224.dino)", {}),
            ("dinov2-b14", "Table 7: DINOv2-B/14 masks (cache from --dino-model vit_base_patch14_dinov2.lvd142m "
                           "--input-size 518)", {}),
            ("dinov2-reg", "Table 13: DINOv2-B/14 + registers masks (cache from --dino-model "
                           "vit_base_patch14_reg4_dinov2.lvd142m --input-size 518)", {}),
            ("ibot", "Table 13: iBOT masks (cache from --dino-model vit_base_patch16_224 --weights IBOT_CHECKPOINT)",
             {}),
            ("clip", "Table 7: masks from clustering the frozen CLIP's own features", dict(mask_source="clip")),
            ("region", "Table 7: fixed square regions (CLIP-RC)", dict(mask_source="region")),
            # Table 7/13's No Mask (87.1) is Table 6 row 2 (87.1): random object features, granular attention off;
            # the same number-matching rule as Table 10's S = 0
            ("none", "Table 7/13: no mask (ORA from random object features; = Table 6 row 2, 87.1 hIoU in both)",
             dict(mask_source="none", granular=False))):
        add(f"voc-t7-{name}", what, _base("voc", **model))
    add("voc-t8-ora", "Table 8: ORA", _base("voc"))
    add("voc-t8-slot", "Table 8: Slot Attention (Locatello et al.) instead of ORA, as many iterations",
        _base("voc", refiner="slot_attention", granular=False))
    add("voc-t8-no-gru", "Table 8: ORA without GRU (residual updates)", _base("voc", ora_update="residual"))
    for n in (1, 2, 4):
        add(f"voc-t8-cross{n}", f"Table 8: {n}x plain cross-attention instead of ORA",
            _base("voc", refiner="cross_attention", cross_attention_layers=n, granular=False))
    for s in range(8):  # S = 0 (86.1 hIoU) is Table 6's baseline (86.1): no ORA and so no object prompts either
        add(f"voc-t10-s{s}", f"Table 10: S = {s} ORA iterations" + (" (= Table 6's baseline)" if s == 0 else ""),
            _base("voc", **(otseg if s == 0 else dict(ora_iterations=s))))
    # the other reading of two code-vs-paper choices (README): ORA at the paper's literal 2.5e-5, App. A's 10 VPT
    add("voc-paper-lr", "VOC with ORA at the paper's literal 2.5e-5 (refiner_lr_mult 1)",
        dataclasses.replace(_base("voc"), refiner_lr_mult=1.0))
    add("coco-vpt10", "COCO with App. A's 10 VPT tokens instead of OTSeg's 100", _base("coco", num_vpt=10))
    for n in range(2, 9):
        add(f"voc-t14-no{n}", f"Table 14: n_o = {n} object prompts", _base("voc", num_objects=n))
    for mode, what in (("view", "cached compact DINO tokens clustered per view in the step (Table 11 setup)"),
                       ("whole", "the cache's whole-image clusters sampled per view"),
                       ("online", "DINO on each view, clustered in the step (no cache)")):
        add(f"voc-clusters-{mode}", f"cluster mode {mode}: {what}",
            dataclasses.replace(_base("voc"), cluster_mode=mode))
    demo = dataclasses.replace(_base("demo"), batch_size=8, warmup_iters=30, lr=3e-4, workers=2, save_every=100)
    add("demo", "the built-in demo: tiny random-weight model, a few minutes on a CPU", demo)
    for module in METHOD_RECIPES:
        out.update(importlib.import_module(module).recipes())
    return out


RECIPES = _recipes()


def resolve(name_or_path: str | None, dataset: str | None, method: str | None = None) -> TrainConfig:
    """A recipe by name, a TrainConfig JSON file, or (None) the method's default recipe for `dataset` (OC-ZSS:
    `<dataset>-inductive`; another method: `<method>-<dataset>`); `method`, when given, must be the config's."""
    if name_or_path is None:
        if dataset is None:
            raise OCZSSError("give --dataset or --config")
        name = ("demo" if dataset == "demo" else f"{dataset}-inductive") if method in (None, "oczss") else \
            f"{method}-{dataset}"
        if name not in RECIPES:
            raise OCZSSError(f"--method {method or 'oczss'} has no recipe for --dataset {dataset}: pick one with "
                             f"--config (see `oczss configs`)")
        return dataclasses.replace(RECIPES[name][1], model=dict(RECIPES[name][1].model))
    cfg = _named_or_file(name_or_path)
    if method is not None and cfg.method != method:
        raise OCZSSError(f"--method {method} contradicts --config {name_or_path} (a {cfg.method} config)")
    return cfg


def _named_or_file(name_or_path: str) -> TrainConfig:
    if name_or_path in RECIPES:
        cfg = RECIPES[name_or_path][1]
        return dataclasses.replace(cfg, model=dict(cfg.model))
    path = Path(name_or_path)
    if not path.is_file():
        raise OCZSSError(f"--config {name_or_path}: neither a recipe (see `oczss configs`) nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise OCZSSError(f"--config {path}: not valid JSON ({e})") from e
    return from_dict(TrainConfig, data.get("train", data) if isinstance(data, dict) else data, f"--config {path}")
