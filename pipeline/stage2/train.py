"""`oczss train`: the OC-ZSS training loop, from the mask cache, resumable, single process or torchrun + DDP.

Per iteration: `accum` micro-batches (gradient accumulation to the global batch), bf16 autocast on CUDA, the §6
loss on the decoder and MPS outputs (eq. 3); transductive runs first pseudo-label the pixels whose ground truth
is an unseen class (protocol §6). Rank 0 writes `config.json`, `metrics.jsonl`, TensorBoard events (`tb/`),
`last.pt` every `save_every` iterations (and on Ctrl-C) and `checkpoints/iter_N.pt` at every milestone, at half
the schedule (where a transductive run starts) and at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from oczss import __version__
from oczss.errors import OCZSSError
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.loader import UNSEEN, Positions, TrainData, seed_worker, with_clusters
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.configs import from_dict
from oczss.pipeline.stage2.config import TrainConfig
from oczss.pipeline.runtime import autocast, init_distributed
from oczss.pipeline.stage2.text import class_text

# What may differ between a run and its resumption: everything else must match the saved config.
RUNTIME_FIELDS = ("workers", "log_every", "save_every", "milestone_every", "description")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """mmcv poly schedule with linear warmup, as a factor of the effective rate, at iteration `step` (0-based)."""
    base = cfg.effective_lr
    regular = (base - cfg.min_lr) * (1 - step / cfg.iters) ** cfg.poly_power + cfg.min_lr
    if step < cfg.warmup_iters:
        regular *= 1 - (1 - step / cfg.warmup_iters) * (1 - cfg.warmup_ratio)
    return regular / base


@torch.no_grad()
def pseudo_label(outputs: dict, target: torch.Tensor, seen: list[int]) -> torch.Tensor:
    """Transductive target (protocol §6): pixels whose ground truth is unseen (UNSEEN) take the argmax over the
    unseen classes of sigmoid(0.5 mps + 0.5 decoder), no threshold; other pixels keep their label."""
    p = torch.sigmoid(0.5 * outputs["mps"].float() + 0.5 * outputs["decoder"].float())
    p[:, seen] = -1
    return torch.where(target == UNSEEN, p.argmax(1), target)


def train(cfg: TrainConfig, *, out: str | Path, data_root: str | None, cache: str | None, device: str = "auto",
          resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) training; returns a summary with the last step's losses. Safe to interrupt."""
    from oczss.model import OCZSSConfig, build_model

    out = Path(out)
    last = out / "last.pt"
    if resume and not last.is_file():
        raise OCZSSError(f"--resume: {last} does not exist; start without --resume")
    if not resume and last.exists():
        raise OCZSSError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.setting == "transductive" and not (cfg.init_from or resume):
        raise OCZSSError("transductive training starts from an inductive checkpoint at half its schedule: pass "
                         "--init-from RUN/checkpoints/iter_N.pt")
    model_cfg = from_dict(OCZSSConfig, cfg.model, "training config: model")
    dataset = Dataset(cfg.dataset, data_root)
    if cfg.unseen is not None:
        dataset.spec = dataclasses.replace(dataset.spec, unseen=tuple(sorted(cfg.unseen)))
    spec = dataset.spec
    samples, grids, clusters = dataset.samples("train"), None, None
    if model_cfg.mask_source == "dino":
        if cache is None:
            raise OCZSSError("the model's object prompts need DINO clusters: pass --cache (see `oczss precompute`)")
        samples, grids = with_clusters(samples, cache, cfg.dataset, "train", model_cfg.num_objects)
        clusters = grids.source
    rank, world, dev = init_distributed(device)
    micro = cfg.micro_batch or cfg.batch_size // world
    if micro < 1 or cfg.batch_size % (micro * world):
        raise OCZSSError(f"batch {cfg.batch_size} is not a multiple of micro-batch {micro} x {world} process(es)")
    accum = cfg.batch_size // (micro * world)
    seen = list(spec.seen)
    text = class_text(list(spec.classes), spec.templates, model_cfg, cfg.text, dev)
    text_train = text[seen] if cfg.setting == "inductive" else text
    model = build_model(model_cfg).to(dev)
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.effective_lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    step = 0
    if resume:
        state = ckpt_io.load(last)
        _check_same_run(state["train_config"], cfg, last)
        ckpt_io.load_trainable(model, state["model"], str(last))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
    elif cfg.init_from:
        ckpt_io.load_trainable(model, ckpt_io.load(cfg.init_from)["model"], f"--init-from {cfg.init_from}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    workers = min(cfg.workers, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(
        TrainData(dataset, samples, cfg.setting, grids, spec.crop, model.encoder.patch_size, cfg.seed), batch_size=micro,
        sampler=Positions(len(samples), cfg.seed, step * accum, micro, world, rank), num_workers=workers,
        pin_memory=dev.type == "cuda", worker_init_fn=seed_worker, persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None)
    meta = {"train_config": dataclasses.asdict(cfg), "model_config": dataclasses.asdict(model_cfg),
            "dataset": cfg.dataset, "setting": cfg.setting, "classes": list(spec.classes), "unseen": list(spec.unseen),
            "random_weights": model.random_weights, "weights_fingerprint": model.weights_fingerprint,
            "clusters": clusters, "oczss_version": __version__}
    writer = _Logger(out, meta, rank == 0, resume, {"data_root": str(dataset.root), "cache": cache,
                                                    "world_size": world, "device": str(dev), "micro_batch": micro, "workers": workers,
                                                    "accumulation": accum, "samples": len(samples)})

    def save(path: Path, at: int, rng: dict) -> None:
        if rank == 0:
            ckpt_io.save(path, {**meta, "step": at, "model": model.trainable_state_dict(),
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng})

    from tqdm import tqdm

    bar = tqdm(total=cfg.iters, initial=step, unit="it", desc=f"train {cfg.dataset} {cfg.setting}",
               disable=not progress or rank != 0, file=sys.stderr, dynamic_ncols=True)
    torch.manual_seed(cfg.seed + rank)  # dropout; the data stream is seeded per sample
    batches = iter(loader)  # draws from torch's RNG: before the resumed state is put back
    if resume:
        ckpt_io.set_rng_state(state["rng"])
    net.train()
    rng = None
    try:
        while step < cfg.iters:
            rng = ckpt_io.rng_state()  # as of the last completed step: what an interrupted run saves
            t0 = time.perf_counter()
            terms, waited = {}, 0.0
            for m in range(accum):
                tw = time.perf_counter()
                batch = next(batches)
                images, target = batch["image"].to(dev, non_blocking=True), batch["label"].to(dev, non_blocking=True)
                patch_clusters = batch["clusters"].to(dev, non_blocking=True)
                waited += time.perf_counter() - tw
                last_micro = m == accum - 1 or world == 1
                with net.no_sync() if not last_micro else contextlib.nullcontext():
                    with autocast(dev):
                        outputs = net(images, patch_clusters, text_train)
                        if cfg.setting == "transductive":
                            target = pseudo_label(outputs, target, seen)
                        loss = model.loss(outputs, target)
                    (loss["total"] / accum).backward()
                for k, v in loss.items():
                    terms[k] = terms.get(k, 0.0) + v.detach() / accum
            with _uninterruptible():
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
            writer.step(step, terms, optimizer.param_groups[0]["lr"], waited, time.perf_counter() - t0,
                        step % cfg.log_every == 0 or step == cfg.iters)
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.iters:
                bar.set_postfix(loss=f"{writer.last['loss']:.3f}", lr=f"{writer.last['lr']:.2e}")
            if step % cfg.save_every == 0 or step == cfg.iters:
                save(last, step, ckpt_io.rng_state())
            if step % cfg.milestone_every == 0 or step == cfg.iters or step == cfg.iters // 2:
                save(out / "checkpoints" / f"iter_{step:06d}.pt", step, ckpt_io.rng_state())
    except KeyboardInterrupt:
        save(last, step, rng if rng is not None else ckpt_io.rng_state())
        raise OCZSSError(f"interrupted at iteration {step}; {last} saved, `--resume` continues from there") from None
    finally:
        bar.close()
        writer.close()
    return {"step": step, "out": str(out), "last": writer.last, "random_weights": model.random_weights}


@contextlib.contextmanager
def _uninterruptible():
    """Defer Ctrl-C (SIGINT) until the block ends, so the parameters, scheduler and step count move together."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda *args: pending.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


def _check_same_run(saved: dict, cfg: TrainConfig, path: Path) -> None:
    now = dataclasses.asdict(cfg)
    diff = [f"{k}: saved {saved.get(k)!r}, now {now[k]!r}" for k in now
            if k not in RUNTIME_FIELDS and saved.get(k) != now[k]]
    if diff:
        raise OCZSSError(f"--resume: {path} was trained with another config:\n  " + "\n  ".join(diff))


class _Logger:
    """Rank 0's metrics: config.json, metrics.jsonl (one line per log interval) and TensorBoard scalars."""

    def __init__(self, out: Path, meta: dict, active: bool, resume: bool, runtime: dict):
        self.active, self.last, self.sums, self.count = active, {}, {}, 0
        self.waited = self.elapsed = 0.0
        if not active:
            return
        out.mkdir(parents=True, exist_ok=True)
        config = {"train": meta["train_config"], "model": meta["model_config"], "runtime": runtime,
                  "random_weights": meta["random_weights"], "weights_fingerprint": meta["weights_fingerprint"],
                  "oczss_version": meta["oczss_version"]}
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        self.jsonl = open(out / "metrics.jsonl", "a" if resume else "w")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tb"))

    def step(self, step: int, terms: dict, lr: float, waited: float, elapsed: float, flush: bool) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.waited += waited
        self.elapsed += elapsed
        if not flush:
            return
        record = {"step": step, "lr": lr, **{k: float(v) / self.count for k, v in self.sums.items()},
                  "it_s": self.count / self.elapsed, "data_wait": self.waited / self.elapsed}
        record["loss"] = record.pop("total")
        if not all(math.isfinite(v) for v in record.values()):
            raise OCZSSError(f"loss is not finite at iteration {step}: {record}")
        self.last = record
        self.sums, self.count, self.waited, self.elapsed = {}, 0, 0.0, 0.0
        if self.active:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
            for k, v in record.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.active:
            self.jsonl.close()
            self.tb.close()
