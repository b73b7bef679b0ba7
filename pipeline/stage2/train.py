"""`oczss train`: the OC-ZSS training loop, from the mask cache, resumable, single process or torchrun + DDP.

Per iteration: `accum` micro-batches (gradient accumulation to the global batch), bf16 autocast on CUDA, the
loss on the decoder and MPS outputs (eq. 3); transductive runs first pseudo-label the pixels whose ground truth
is an unseen class (docs/protocol.md §6). Rank 0 writes `config.json`, `metrics.jsonl`, TensorBoard events,
`last.pt` every `save_every` iterations and `checkpoints/iter_N.pt` at every milestone, at half the schedule
(where a transductive run starts) and at the end.

Nothing done is lost: Ctrl-C, SIGTERM and any error inside the loop save `last.pt` at the last completed
iteration before the run stops (a diverged loss does not: those weights are not worth resuming). A step ends in
one block that signals cannot split (optimizer, schedule, step count, its metrics and TensorBoard record, and the
RNG state and logging interval that a save records), so whatever the signal interrupts (a forward, the progress
bar, a periodic save), the save holds the state of the last completed step and `--resume` continues exactly as an
uninterrupted run. Loader workers leave SIGINT / SIGTERM to this process (pipeline/workers.py), so a signal to the
whole process group ends the run the same way, and their errors arrive as their own one-line message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from oczss import __version__
from oczss.cache.location import resolve
from oczss.errors import OCZSSError, os_error
from oczss.model import OCZSS, OCZSSConfig, build_model
from oczss.pipeline.configs import from_dict
from oczss.pipeline.console import progress as progress_bar
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.pairs import check_pairs
from oczss.pipeline.interrupts import sigterm_as_interrupt, uninterruptible
from oczss.pipeline.runtime import autocast, init_distributed
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.stage2.clusters import StepClusters, device_batches, open_cached
from oczss.pipeline.stage2.config import TrainConfig
from oczss.pipeline.stage2.loader import UNSEEN, Positions, TrainData, seed_worker
from oczss.pipeline.outputs import check_writable
from oczss.pipeline.stage2.runlog import NonFiniteLoss, RunLog, plain
from oczss.pipeline.workers import collate, stopping, unwrap
from oczss.pipeline.stage2.text import class_text

log = logging.getLogger(__name__)
# What may differ between a run and its resumption: everything else must match the saved config.
RUNTIME_FIELDS = ("workers", "log_every", "save_every", "milestone_every", "description")


def lr_factor(step: int, cfg: TrainConfig, base: float | None = None) -> float:
    """mmcv poly schedule with linear warmup, as a factor of a group's rate `base` (default: the effective rate),
    at iteration `step` (0-based); min_lr is absolute in every group, as mmcv's PolyLrUpdaterHook has it."""
    base = cfg.effective_lr if base is None else base
    regular = (base - cfg.min_lr) * (1 - step / cfg.iters) ** cfg.poly_power + cfg.min_lr
    if step < cfg.warmup_iters:
        regular *= 1 - (1 - step / cfg.warmup_iters) * (1 - cfg.warmup_ratio)
    return regular / base


@torch.no_grad()
def pseudo_label(outputs: dict, target: torch.Tensor, seen: list[int]) -> torch.Tensor:
    """Transductive target (docs/protocol.md §6): pixels whose ground truth is unseen (UNSEEN) take the argmax over
    the unseen classes of sigmoid(0.5 mps + 0.5 decoder), no threshold; other pixels keep their label."""
    p = torch.sigmoid(0.5 * outputs["mps"].float() + 0.5 * outputs["decoder"].float())
    p[:, seen] = -1
    return torch.where(target == UNSEEN, p.argmax(1), target)


@dataclass
class Run:
    """Everything the loop needs, built by `_setup`."""

    cfg: TrainConfig
    out: Path
    model: OCZSS
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: torch.utils.data.DataLoader
    text: torch.Tensor  # [K', N, C] what the model is trained against (seen classes only when inductive)
    seen: list[int]
    meta: dict  # what every checkpoint records besides the states
    step: int
    accum: int
    rank: int
    device: torch.device
    mode: str  # the cluster mode, "none" for mask sources that need no DINO clusters
    dino: DinoFeatures | None  # the online mode's DINO
    cfg_crop: int  # the training crop
    resume_state: dict | None = None  # {rng, log} as of the last completed step: what every save records


def train(cfg: TrainConfig, *, out: str | Path, data_root: str | None, cache: str | None, device: str = "auto",
          resume: bool = False, progress: bool = True, skip_damaged: bool = False) -> dict:
    """Run (or resume) training; returns a summary with the last step's losses. Safe to interrupt."""
    out = Path(out)
    _check_start(cfg, out, resume)
    run, state, log_config = _setup(cfg, out, data_root, cache, device, resume, progress, skip_damaged)
    writer = RunLog(out, log_config, run.rank == 0, run.step if resume else None, state and state.get("log"))
    try:
        _loop(run, writer, state and state["rng"], progress)
    finally:
        writer.close()
    return {"step": run.step, "out": str(out), "last": writer.last, "random_weights": run.model.random_weights,
            "rank": run.rank}


def _check_start(cfg: TrainConfig, out: Path, resume: bool) -> None:
    last = out / "last.pt"
    if resume and not last.is_file():
        raise OCZSSError(f"--resume: {last} does not exist; start without --resume")
    if not resume and last.exists():
        raise OCZSSError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.setting == "transductive" and not (cfg.init_from or resume):
        raise OCZSSError("transductive training starts from an inductive checkpoint at half its schedule: pass "
                         "--init-from RUN/checkpoints/iter_N.pt")
    check_writable(out, "--out")


def _setup(cfg: TrainConfig, out: Path, data_root, cache, device: str, resume: bool, progress: bool,
           skip_damaged: bool):
    """Data, model, optimizer and schedule, restored from last.pt when resuming; -> (Run, the {rng, log} states to
    restore or None, the config.json content)."""
    model_cfg = from_dict(OCZSSConfig, cfg.model, "training config: model")
    state, init = _checkpoints(cfg, out, resume)
    dataset = Dataset(cfg.dataset, data_root)
    if cfg.unseen is not None:
        dataset.spec = dataclasses.replace(dataset.spec, unseen=tuple(sorted(cfg.unseen)))
    spec = dataset.spec
    samples = dataset.samples("train")
    check_pairs(samples, f"{cfg.dataset} train", show_progress=progress)
    rank, world, dev = init_distributed(device)
    mode = cfg.cluster_mode if model_cfg.mask_source == "dino" else "none"
    samples, maps, source, dino = _cluster_data(cfg, mode, samples, model_cfg.num_objects, cache, spec.crop, dev,
                                                skip_damaged)
    micro = cfg.micro_batch or cfg.batch_size // world
    if micro < 1 or cfg.batch_size % (micro * world):
        raise OCZSSError(f"batch {cfg.batch_size} is not a multiple of micro-batch {micro} x {world} process(es)")
    accum = cfg.batch_size // (micro * world)
    text = class_text(list(spec.classes), spec.templates, model_cfg, cfg.text, dev)
    model = build_model(model_cfg).to(dev)
    rates = {"reference": cfg.effective_lr, "refiner": cfg.refiner_lr}
    groups = [{"params": params, "lr": rates[name]} for name, params in model.parameter_groups().items()]
    optimizer = torch.optim.AdamW(groups, lr=cfg.effective_lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda s, base=g["lr"]: lr_factor(s, cfg, base) for g in groups])
    step = 0
    if state is not None:
        ckpt_io.load_trainable(model, state, str(out / "last.pt"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
    elif init is not None:
        ckpt_io.load_trainable(model, init, f"--init-from {cfg.init_from}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    workers = min(cfg.workers, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(
        TrainData(dataset, samples, cfg.setting, maps, mode, spec.crop, model.encoder.patch_size, cfg.seed),
        batch_size=micro, sampler=Positions(len(samples), cfg.seed, step * accum, micro, world, rank),
        num_workers=workers, pin_memory=dev.type == "cuda", worker_init_fn=seed_worker, collate_fn=collate,
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    seen = list(spec.seen)
    meta = {"train_config": dataclasses.asdict(cfg), "model_config": dataclasses.asdict(model_cfg),
            "dataset": cfg.dataset, "setting": cfg.setting, "classes": list(spec.classes), "unseen": list(spec.unseen),
            "random_weights": model.random_weights, "weights_fingerprint": model.weights_fingerprint,
            "cluster_source": source, "cache": resolve(cache) if cache else None, "text": text.cpu(),
            "oczss_version": __version__}
    log_config = {"train": meta["train_config"], "model": meta["model_config"], "random_weights": model.random_weights,
                  "weights_fingerprint": model.weights_fingerprint, "oczss_version": __version__,
                  "runtime": {"data_root": str(dataset.root), "cache": cache, "world_size": world, "device": str(dev),
                              "micro_batch": micro, "workers": workers, "accumulation": accum,
                              "samples": len(samples)}}
    run = Run(cfg, out, model, net, optimizer, scheduler, loader, text[seen] if cfg.setting == "inductive" else text,
              seen, meta, step, accum, rank, dev, mode, dino, spec.crop)
    return run, None if state is None else {"rng": state["rng"], "log": state.get("log")}, log_config


def _checkpoints(cfg: TrainConfig, out: Path, resume: bool) -> tuple[dict | None, dict | None]:
    """(last.pt when resuming, else None; the --init-from checkpoint or None), refused if they lack what is used."""
    if resume:
        state = ckpt_io.load(out / "last.pt")
        ckpt_io.require(state, out / "last.pt", ("train_config", "model", "optimizer", "scheduler", "step", "rng"))
        _check_same_run(state["train_config"], cfg, out / "last.pt")
        return state, None
    if cfg.init_from:
        init = ckpt_io.load(cfg.init_from)
        ckpt_io.require(init, cfg.init_from, ("model", "model_config"))
        return None, init
    return None, None


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


def _save(run: Run, path: Path) -> None:
    if run.rank == 0:
        ckpt_io.save(path, {**run.meta, "step": run.step, "model": run.model.trainable_state_dict(),
                            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                            "rng": run.resume_state["rng"], "log": plain(run.resume_state["log"])})


def _loop(run: Run, writer: RunLog, resumed_rng: dict | None, progress: bool) -> None:
    """Iterate to cfg.iters; on Ctrl-C, SIGTERM or an error, save last.pt at the last completed step."""
    cfg, last = run.cfg, run.out / "last.pt"
    torch.manual_seed(cfg.seed + run.rank)  # dropout; the data stream is seeded per sample
    side = run.cfg_crop // run.model.encoder.patch_size
    clusters = StepClusters(run.mode, run.model.config.num_objects, (side, side), run.dino)
    loader = iter(run.loader)  # draws from torch's RNG: before the resumed state is put back
    batches = device_batches(unwrap(loader), run.device, clusters)
    if resumed_rng is not None:
        ckpt_io.set_rng_state(resumed_rng)
    run.net.train()
    run.resume_state, first = {"rng": ckpt_io.rng_state(), "log": writer.state()}, run.step
    with progress_bar(cfg.iters, desc=f"train {cfg.dataset} {cfg.setting}", unit="it", initial=run.step,
                      enabled=progress and run.rank == 0) as bar, sigterm_as_interrupt(), stopping(loader):
        try:
            while run.step < cfg.iters:
                _iteration(run, batches, writer)
                bar.update(1)
                at = run.step
                if at % cfg.log_every == 0 or at == cfg.iters:
                    bar.set_postfix(loss=f"{writer.last['loss']:.3f}", lr=f"{writer.last['lr']:.2e}")
                if at % cfg.save_every == 0 or at == cfg.iters:
                    _save(run, last)
                if at % cfg.milestone_every == 0 or at == cfg.iters or at == cfg.iters // 2:
                    _save(run, run.out / "checkpoints" / f"iter_{at:06d}.pt")
        except KeyboardInterrupt:
            if run.step == first:
                raise OCZSSError(f"interrupted at iteration {run.step}, before this run completed one") from None
            with uninterruptible(then_interrupt=False):  # a second Ctrl-C must not cut the save short
                _save(run, last)
            raise OCZSSError(f"interrupted at iteration {run.step}; {last} saved, `--resume` continues from "
                             f"there") from None
        except NonFiniteLoss:
            raise
        except Exception as e:
            saved = _save_after_error(run, last) if run.step > first else "no iteration of this run completed"
            if isinstance(e, (OCZSSError, OSError)):
                reason = os_error(e) if isinstance(e, OSError) else str(e)
                raise OCZSSError(f"training stopped at iteration {run.step}: {reason}. {saved}") from None
            log.error("training stopped at iteration %d by an unexpected error; %s", run.step, saved)
            raise


def _save_after_error(run: Run, last: Path) -> str:
    try:
        with uninterruptible(then_interrupt=False):
            _save(run, last)
        return f"{last} holds iteration {run.step}; fix the cause and `--resume`"
    except Exception as e:  # noqa: BLE001 - a full disk fails the save too; say so, keep the original error
        reason = os_error(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        return f"saving {last} failed as well ({reason}); the last good save stays"


def _iteration(run: Run, batches, writer: RunLog) -> None:
    """One optimizer step over `accum` micro-batches."""
    t0 = time.perf_counter()
    terms, waited = {}, 0.0
    single = not isinstance(run.net, torch.nn.parallel.DistributedDataParallel)
    for m in range(run.accum):
        tw = time.perf_counter()
        batch = next(batches)  # on the device, with its patch_clusters (clusters.device_batches)
        dev = run.device
        images, target = batch["image"], batch["label"]
        patch_clusters = batch["patch_clusters"]
        waited += time.perf_counter() - tw
        sync = single or m == run.accum - 1
        with contextlib.nullcontext() if sync else run.net.no_sync():
            with autocast(dev):
                outputs = run.net(images, patch_clusters, run.text, batch["first"])
                if run.cfg.setting == "transductive":
                    target = pseudo_label(outputs, target, run.seen)
                loss = run.model.loss(outputs, target)
            (loss["total"] / run.accum).backward()
        for k, v in loss.items():
            terms[k] = terms.get(k, 0.0) + v.detach() / run.accum
    cfg = run.cfg
    with uninterruptible():  # the step, its record and the state a save records move together
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.scheduler.step()
        run.step += 1
        writer.step(run.step, terms, run.optimizer.param_groups[0]["lr"], waited, time.perf_counter() - t0,
                    run.step % cfg.log_every == 0 or run.step == cfg.iters)
        run.resume_state = {"rng": ckpt_io.rng_state(), "log": writer.state()}


def _check_same_run(saved: dict, cfg: TrainConfig, path: Path) -> None:
    now = dataclasses.asdict(cfg)
    diff = [f"{k}: saved {saved.get(k)!r}, now {now[k]!r}" for k in now
            if k not in RUNTIME_FIELDS and saved.get(k) != now[k]]
    if diff:
        raise OCZSSError(f"--resume: {path} was trained with another config:\n  " + "\n  ".join(diff))
