"""Split Matching's training task for the shared loop (pipeline/training/loop.py): `oczss train --method sm`.

Per micro-batch: the view's candidates (TrainConfig.candidates: `cache`, Stage 1's clip-kmeans rows sampled per
pixel of the view in the loader; or `online`, the frozen CLIP on the view in the step: pipeline/sm/data.py), the
model's forward and L = L_SM + L_MFE (§3.4, oczss.model.sm.objective). Inductive only (the paper's setting): the seen
classes' text embeddings A_s are the targets' classes, unseen pixels are ignored.

Optimiser (§4 "all other hyperparameters unchanged": Mask2Former's, oczss.model.sm.optim): AdamW over its parameter
groups (backbone at 0.1 x the rate, no decay on norms and embeddings), poly decay without warmup (the shared
`lr_factor` with the recipe's lr, warmup 0, min_lr 0), the whole model's gradient norm clipped to 0.01 before each
step. Everything trains, so a checkpoint holds the whole state dict.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from oczss import __version__
from oczss.cache.location import resolve
from oczss.errors import OCZSSError
from oczss.model.clip import load_tower
from oczss.model.sm import MASK2FORMER_SCHEDULE, Batch, SMConfig, build_sm, param_groups
from oczss.pipeline.configs import from_dict
from oczss.pipeline.sm.data import OnlineCandidates, SMData, online_params
from oczss.pipeline.stage1.reader import open_source
from oczss.pipeline.stage2.config import TrainConfig
from oczss.pipeline.stage2.loader import training_loader, training_split
from oczss.pipeline.stage2.text import class_text
from oczss.pipeline.stage2.train import poly_adamw
from oczss.pipeline.training.task import Context, Task, distributed

log = logging.getLogger(__name__)


def clip_text(classes: list[str], templates: int, config: SMConfig, text_path: str | None, device: torch.device,
              tower=None, cache_dir: Path | None = None) -> torch.Tensor:
    """Class x template embeddings fp32 [K, T, C] from config's CLIP text tower (or the .npy `text_path`; cached on
    disk in `cache_dir`, default text_cache_dir()); their width must be the model's embed_dim."""
    clip = SimpleNamespace(backbone=config.clip, weights=config.clip_weights)
    text = class_text(classes, templates, clip, text_path, device, tower, cache_dir)
    if text.shape[-1] != config.embed_dim:
        raise OCZSSError(f"text embeddings of {text_path or config.clip} are {text.shape[-1]}-d, the model's "
                         f"embed_dim is {config.embed_dim}")
    return text


class SMTask(Task):
    """Split Matching's side of the shared loop: the Mask2Former with split matching and MFE on the dataset's views
    with their unseen candidates, against the seen classes' text."""

    name = "sm"

    @classmethod
    def check(cls, cfg: TrainConfig, resume: bool) -> None:
        if cfg.setting != "inductive":
            raise OCZSSError("--method sm trains in the inductive setting only (the paper's)")
        from_dict(SMConfig, cfg.model, "training config: model")

    @classmethod
    def build(cls, ctx: Context) -> SMTask:
        """Data, candidate source, model, optimizer and schedule (the loop puts a resumed state back)."""
        cfg, dev = ctx.cfg, ctx.device
        self = cls()
        config = from_dict(SMConfig, cfg.model, "training config: model")
        dataset, samples = training_split(cfg, ctx.data_root, ctx.progress)
        spec = dataset.spec
        text = clip_text(list(spec.classes), spec.templates, config, cfg.text, dev)
        self.text = text[list(spec.seen)]  # A_s
        samples, maps, source, self.online = _candidate_source(cfg, config, samples, ctx, spec.crop)
        self.model = model = build_sm(config).to(dev)
        groups = param_groups(model, cfg.effective_lr, cfg.weight_decay, MASK2FORMER_SCHEDULE["backbone_multiplier"])
        self.optimizer, self.scheduler = poly_adamw(groups, cfg)
        self.net = distributed(model, ctx)
        self.loader = training_loader(SMData(dataset, samples, maps, spec.crop, cfg.seed), ctx)
        self.device, self.desc = dev, f"train sm {cfg.dataset}"
        self.random_weights = model.random_weights or config.clip_weights == "random" or \
            bool(source.get("random_weights"))
        self.meta = {"train_config": dataclasses.asdict(cfg), "model_config": dataclasses.asdict(config),
                     "dataset": cfg.dataset, "setting": "inductive", "classes": list(spec.classes),
                     "unseen": list(spec.unseen), "random_weights": self.random_weights,
                     "weights_fingerprint": model.weights_fingerprint, "candidate_source": source,
                     "text": text.cpu(), "oczss_version": __version__}
        self.log_config = {
            "train": self.meta["train_config"], "model": self.meta["model_config"],
            "random_weights": self.random_weights, "weights_fingerprint": model.weights_fingerprint,
            "candidate_source": source, "oczss_version": __version__,
            "runtime": ctx.runtime(dataset.root, len(samples), cache=ctx.cache)}
        return self

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """L = L_SM + L_MFE on one micro-batch (the baseline config: no candidates)."""
        labels = embeddings = None
        if self.model.config.split_matching:
            if self.online is not None:
                labels, embeddings = self.online(batch["image"], batch["content"])
            else:
                labels, embeddings = batch["candidate_labels"], batch["candidate_embeddings"]
        outputs = self.net(batch["image"])
        return self.model.loss(outputs, Batch(batch["label"], self.text, labels, embeddings))

    def before_step(self) -> None:
        """Mask2Former's full-model gradient clipping (norm 0.01)."""
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), MASK2FORMER_SCHEDULE["grad_clip_norm"])


def _candidate_source(cfg: TrainConfig, config: SMConfig, samples: list, ctx: Context, crop: int):
    """(samples with candidates, the cache's reader or None, what a checkpoint records of the source, the online
    source or None). The baseline (split matching off) needs none."""
    if not config.split_matching:
        return samples, None, {"mode": "none"}, None
    if cfg.candidates == "online":
        tower = load_tower(config.clip, config.clip_weights, "visual")
        params = online_params(crop, tower.module.conv1.kernel_size[0])
        if tower.module.output_dim != config.embed_dim:
            raise OCZSSError(f"CLIP {config.clip} embeds in {tower.module.output_dim}-d, the model's embed_dim is "
                             f"{config.embed_dim}")
        source = {"mode": "online", "clip": config.clip, "fingerprint": tower.fingerprint,
                  "random_weights": tower.random, "params": dataclasses.asdict(params)}
        return samples, None, source, OnlineCandidates(tower.module.to(ctx.device), params)
    return _cached(cfg, config, samples, ctx)


def _cached(cfg: TrainConfig, config: SMConfig, samples: list, ctx: Context):
    """The `cache` source: Stage 1's clip-kmeans rows of the train split (samples without a done row skipped)."""
    if ctx.cache is None:
        raise OCZSSError("candidates 'cache' needs --cache, a clip-kmeans cache (`oczss precompute --masks "
                         "clip-kmeans`); or pass --candidates online")
    rows = open_source(ctx.cache, cfg.dataset, "train", "clip-kmeans", skip_damaged=ctx.skip_damaged)
    p = rows.params
    kept = [s for s in samples if rows.has(s.image_id)]
    if not kept:
        raise OCZSSError(f"--cache {ctx.cache} holds no candidates of any {cfg.dataset} train image: run `oczss "
                         f"precompute --masks clip-kmeans --dataset {cfg.dataset} --split train` first")
    if len(kept) < len(samples):
        log.warning("%d of %d %s/train samples have no candidates in %s (missing or failed in precompute) and are "
                    "skipped", len(samples) - len(kept), len(samples), cfg.dataset, ctx.cache)
    first = rows.get(kept[0].image_id)  # None: a damaged shard the user asked to skip
    width = None if first is None else first["candidate_embeddings"].shape[-1]
    if p["clip_model"] != config.clip or width not in (None, config.embed_dim):
        raise OCZSSError(f"--cache {ctx.cache}: its candidates come from CLIP {p['clip_model']} ({width}-d), but the "
                         f"model's text space is CLIP {config.clip}'s ({config.embed_dim}-d)")
    source = {"mode": "cache", "cache": resolve(ctx.cache), "clip": p["clip_model"], "fingerprint": p["fingerprint"],
              "random_weights": rows.random_weights, "params": p["candidates"], "input_size": p["input_size"]}
    return kept, rows, source, None
