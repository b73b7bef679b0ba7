"""OC-ZSS's training task for the shared loop (pipeline/training/loop.py), from the mask cache or online DINO.

Per micro-batch: the loss on the decoder and MPS outputs (eq. 3); transductive runs first pseudo-label the pixels
whose ground truth is an unseen class (docs/protocol.md §6). The schedule is mmcv's poly with linear warmup, the
rates per parameter group (TrainConfig).
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from oczss import __version__
from oczss.cache.location import resolve
from oczss.errors import OCZSSError
from oczss.model import OCZSSConfig, build_model
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.configs import from_dict
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.clusters import StepClusters, device_batches, open_cached
from oczss.pipeline.stage2.config import TrainConfig
from oczss.pipeline.stage2.loader import UNSEEN, TrainData, training_loader, training_split
from oczss.pipeline.stage2.text import class_text
from oczss.pipeline.training.task import Context, Task, distributed

log = logging.getLogger(__name__)


def lr_factor(step: int, cfg: TrainConfig, base: float | None = None) -> float:
    """mmcv poly schedule with linear warmup, as a factor of a group's rate `base` (default: the effective rate),
    at iteration `step` (0-based); min_lr is absolute in every group, as mmcv's PolyLrUpdaterHook has it."""
    base = cfg.effective_lr if base is None else base
    regular = (base - cfg.min_lr) * (1 - step / cfg.iters) ** cfg.poly_power + cfg.min_lr
    if step < cfg.warmup_iters:
        regular *= 1 - (1 - step / cfg.warmup_iters) * (1 - cfg.warmup_ratio)
    return regular / base


def poly_adamw(groups: list[dict], cfg: TrainConfig):
    """AdamW over parameter `groups` (each with its `lr`), and the LambdaLR that gives every group lr_factor on its
    own base rate -> (optimizer, scheduler)."""
    optimizer = torch.optim.AdamW(groups, lr=cfg.effective_lr, weight_decay=cfg.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda s, base=g["lr"]: lr_factor(s, cfg, base) for g in groups])


@torch.no_grad()
def pseudo_label(outputs: dict, target: torch.Tensor, seen: list[int]) -> torch.Tensor:
    """Transductive target (docs/protocol.md §6): pixels whose ground truth is unseen (UNSEEN) take the argmax over
    the unseen classes of sigmoid(0.5 mps + 0.5 decoder), no threshold; other pixels keep their label."""
    p = torch.sigmoid(0.5 * outputs["mps"].float() + 0.5 * outputs["decoder"].float())
    p[:, seen] = -1
    return torch.where(target == UNSEEN, p.argmax(1), target)


class OCZSSTask(Task):
    """OC-ZSS's side of the shared loop: the prompted CLIP with ORA and the Sinkhorn decoder, trained on views of
    the dataset with their DINO clusters (cached or online), against the seen classes' text (inductive) or all of
    them with pseudo-labels for unseen pixels (transductive)."""

    name = "oczss"

    @classmethod
    def check(cls, cfg: TrainConfig, resume: bool) -> None:
        if cfg.setting == "transductive" and not (cfg.init_from or resume):
            raise OCZSSError("transductive training starts from an inductive checkpoint at half its schedule: pass "
                             "--init-from RUN/checkpoints/iter_N.pt")

    @classmethod
    def build(cls, ctx: Context) -> OCZSSTask:
        """Data, model, optimizer and schedule (the loop puts a resumed state back)."""
        cfg, dev = ctx.cfg, ctx.device
        self = cls()
        model_cfg = from_dict(OCZSSConfig, cfg.model, "training config: model")
        dataset, samples = training_split(cfg, ctx.data_root, ctx.progress)
        spec = dataset.spec
        self.mode = cfg.cluster_mode if model_cfg.mask_source == "dino" else "none"
        samples, maps, source, self.dino = _cluster_data(cfg, self.mode, samples, model_cfg.num_objects, ctx.cache,
                                                         spec.crop, dev, ctx.skip_damaged)
        text = class_text(list(spec.classes), spec.templates, model_cfg, cfg.text, dev)
        self.model = model = build_model(model_cfg).to(dev)
        rates = {"reference": cfg.effective_lr, "refiner": cfg.refiner_lr}
        groups = [{"params": params, "lr": rates[name]} for name, params in model.parameter_groups().items()]
        self.optimizer, self.scheduler = poly_adamw(groups, cfg)
        self.net = distributed(model, ctx)
        self.loader = training_loader(
            TrainData(dataset, samples, cfg.setting, maps, self.mode, spec.crop, model.encoder.patch_size, cfg.seed),
            ctx)
        self.seen, self.setting, self.crop, self.device = list(spec.seen), cfg.setting, spec.crop, dev
        self.text = text[self.seen] if cfg.setting == "inductive" else text  # [K', N, C] what the model is trained on
        self.random_weights, self.desc = model.random_weights, f"train {cfg.dataset} {cfg.setting}"
        self.meta = {"train_config": dataclasses.asdict(cfg), "model_config": dataclasses.asdict(model_cfg),
                     "dataset": cfg.dataset, "setting": cfg.setting, "classes": list(spec.classes),
                     "unseen": list(spec.unseen), "random_weights": model.random_weights,
                     "weights_fingerprint": model.weights_fingerprint, "cluster_source": source,
                     "cache": resolve(ctx.cache) if ctx.cache else None, "text": text.cpu(),
                     "oczss_version": __version__}
        self.log_config = {
            "train": self.meta["train_config"], "model": self.meta["model_config"],
            "random_weights": model.random_weights, "weights_fingerprint": model.weights_fingerprint,
            "oczss_version": __version__,
            "runtime": ctx.runtime(dataset.root, len(samples), cache=ctx.cache)}
        return self

    def batches(self, loader):
        """Device micro-batches with their patch_clusters (clusters.device_batches)."""
        side = self.crop // self.model.encoder.patch_size
        clusters = StepClusters(self.mode, self.model.config.num_objects, (side, side), self.dino)
        return device_batches(loader, self.device, clusters)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Eq. 3 on one micro-batch (transductive: unseen pixels pseudo-labelled first)."""
        outputs = self.net(batch["image"], batch["patch_clusters"], self.text, batch["first"])
        target = batch["label"]
        if self.setting == "transductive":
            target = pseudo_label(outputs, target, self.seen)
        return self.model.loss(outputs, target)

    def state(self) -> dict:
        return self.model.trainable_state_dict()

    def load(self, ckpt: dict, source: str) -> None:
        ckpt_io.load_trainable(self.model, ckpt, source)


def _cluster_data(cfg: TrainConfig, mode: str, samples: list, k: int, cache: str | None, crop: int,
                  dev: torch.device, skip_damaged: bool):
    """What the cluster mode needs -> (samples the cache has, CachedMaps or None, the cluster source a checkpoint
    records, the online mode's DinoFeatures or None)."""
    if mode in ("whole", "view"):
        if cache is None:
            raise OCZSSError("the model's object prompts need DINO clusters: pass --cache (see `oczss precompute`)")
        kept, maps, dropped, source = open_cached(samples, cache, cfg.dataset, "train", mode, k,
                                                  skip_damaged=skip_damaged)
        if dropped:
            log.warning("%d of %d %s/train samples have no cluster labels in %s (missing or failed in precompute) "
                        "and are skipped", dropped, len(samples), cfg.dataset, cache)
        return kept, maps, source, None
    if mode == "online":
        model_dino = load_dino(cfg.dino_model, cfg.dino_weights, crop, dynamic=True)
        source = {"mode": "online", "dino_model": cfg.dino_model, "fingerprint": fingerprint(model_dino),
                  "random_weights": cfg.dino_weights == "random"}
        return samples, None, source, DinoFeatures(model_dino, 0).to(dev)
    return samples, None, None, None
