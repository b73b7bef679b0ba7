"""SimZSS's training task for the shared loop (pipeline/training/loop.py): the text tower against a frozen DINOv2.

Per micro-batch: the captions' tokens and concept spans, and their images' frozen CLS and patch tokens, computed
in the step from the views (`tokens: online`, the frozen tower under no_grad) or read from Stage 1's cache
(`tokens: cache`); L = L_g + lambda L_l (model/simzss). After every optimiser step the logit scale is clamped
(open_clip). The rate follows SimZSSSchedule: linear warm-up over `warmup` of the steps, then cosine to 0.
Under torchrun L_g contrasts against every process's batch (gathered with gradients); L_l stays per process.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from oczss import __version__
from oczss.cache.location import resolve
from oczss.errors import OCZSSError
from oczss.model.simzss import SimZSS, TextBatch, load_vision, optimizer
from oczss.model.weights import fingerprint
from oczss.pipeline.data.captions import NAME, CaptionDataset
from oczss.pipeline.data.concepts import load_spacy
from oczss.pipeline.simzss.config import run_config
from oczss.pipeline.simzss.data import CaptionViews, collate
from oczss.pipeline.stage2.loader import training_loader
from oczss.pipeline.training.task import Context, Task, distributed

log = logging.getLogger(__name__)


class SimZSSTask(Task):
    """SimZSS's side of the shared loop: the text tower (and L_g's logit scale) trained on COCO Captions."""

    name = "simzss"

    @classmethod
    def check(cls, cfg, resume: bool) -> None:
        if cfg.dataset.lower() != NAME:
            raise OCZSSError(f"--method simzss trains on image captions: --dataset {NAME}, not {cfg.dataset}")
        if cfg.setting != "inductive" or cfg.unseen is not None or cfg.text is not None:
            raise OCZSSError("--method simzss takes no --setting, unseen classes or --text (OC-ZSS's): it learns "
                             "from captions, every class is open-vocabulary")
        concepts = run_config(cfg).concept_config()
        if concepts.source == "spacy":
            load_spacy(concepts.spacy_model, check_only=True)  # the loader's workers load it

    @classmethod
    def build(cls, ctx: Context) -> SimZSSTask:
        """Data, frozen tower, model, optimizer and schedule (the loop puts a resumed state back)."""
        cfg, dev = ctx.cfg, ctx.device
        self = cls()
        run = run_config(cfg)
        model_cfg, concepts = run.model_config(), run.concept_config()
        dataset = CaptionDataset(ctx.data_root)
        samples, rows, self.vision, width, vision = _frozen_tower(run, model_cfg, dataset.samples("train"), ctx.cache,
                                                                 dev)
        if cfg.batch_size > len(samples):
            log.warning("batch %d is larger than the %d captioned images: an image appears twice in a batch",
                        cfg.batch_size, len(samples))
        self.model = model = SimZSS(model_cfg, width).to(dev)
        schedule = run.schedule(cfg.iters, cfg.batch_size, cfg.lr, cfg.weight_decay)
        self.optimizer = optimizer(model, schedule)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: schedule.lr_at(s) / schedule.lr)
        self.net = distributed(model, ctx)
        views = CaptionViews(samples, concepts, cfg.seed, model_cfg.image_size, run.view, run.crop_scale, rows)
        self.loader = training_loader(views, ctx, collate)
        self.device, self.gather = dev, ctx.world > 1
        self.random_weights = vision["random_weights"]
        self.desc = f"train simzss {NAME} ({run.tokens})"
        self.meta = {"train_config": dataclasses.asdict(cfg), "model_config": dataclasses.asdict(model_cfg),
                     "concepts": dataclasses.asdict(concepts), "dataset": NAME, "vision": vision,
                     "random_weights": self.random_weights, "oczss_version": __version__}
        self.log_config = {"train": self.meta["train_config"], "model": self.meta["model_config"],
                           "concepts": self.meta["concepts"], "vision": vision, "random_weights": self.random_weights,
                           "oczss_version": __version__,
                           "runtime": ctx.runtime(dataset.root, len(samples), steps=schedule.steps)}
        return self

    def tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen tower's (CLS [B, C], patches [B, N, C]) of the batch's images."""
        return self.vision(batch["image"]) if self.vision is not None else (batch["cls"], batch["patches"])

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """L = L_g + lambda L_l on one micro-batch; logged: its terms, the concept accuracy and the logit scale."""
        text = TextBatch(batch["tokens"], batch["spans"], batch["labels"])
        cls, patches = self.tokens(batch)
        out = self.net(text, cls, patches, self.gather)
        return {"total": out.pop("loss"), **out, "logit_scale": self.model.logit_scale.detach().exp()}

    def after_step(self) -> None:
        self.model.clamp_logit_scale()


def _frozen_tower(run, cfg, samples: list, cache: str | None, device: torch.device):
    """Where the frozen tokens come from -> (the samples that have them, the cache's rows or None, the online
    tower on `device` or None, its width C, what a checkpoint records of it)."""
    if run.tokens == "online":
        vision = load_vision(cfg.vision, cfg.vision_weights, cfg.image_size).to(device)
        return samples, None, vision, vision.width, {
            "name": cfg.vision, "weights": cfg.vision_weights, "image_size": cfg.image_size, "tokens": "online",
            "view": run.view, "fingerprint": fingerprint(vision.model), "random_weights": cfg.vision_weights == "random"}
    from oczss.pipeline.stage1.reader import open_source

    if cache is None:
        raise OCZSSError(f"tokens 'cache' reads the frozen tower's tokens from Stage 1: pass --cache (made by `oczss "
                         f"precompute --masks dinov2-tokens --dataset {NAME}`)")
    rows = open_source(cache, NAME, "train", "dinov2-tokens")
    made = rows.params
    if (made["vision_model"], made["input_size"]) != (cfg.vision, cfg.image_size):
        raise OCZSSError(f"--cache {cache}: its tokens are {made['vision_model']} at {made['input_size']}, this run's "
                         f"vision is {cfg.vision} at {cfg.image_size}")
    if rows.random_weights != (cfg.vision_weights == "random"):
        raise OCZSSError(f"--cache {cache}: its tokens come from {'random' if rows.random_weights else 'real'} "
                         f"weights, this run's vision weights are {cfg.vision_weights} (--weights)")
    kept = [s for s in samples if rows.has(s.image_id)]
    if not kept:
        raise OCZSSError(f"--cache {cache}: no {NAME}/train image has tokens")
    if len(kept) < len(samples):
        log.warning("%d of %d %s/train images have no tokens in %s and are skipped", len(samples) - len(kept),
                    len(samples), NAME, cache)
    width = rows.get(kept[0].image_id)["cls"].shape[0]
    return kept, rows, None, width, {
        "name": cfg.vision, "weights": cfg.vision_weights, "image_size": cfg.image_size, "tokens": "cache",
        "view": "whole", "fingerprint": made["fingerprint"], "random_weights": rows.random_weights,
        "cache": resolve(cache)}
