"""`oczss train`: the training loop every method shares, resumable, single process or torchrun + DDP.

Per iteration: `accum` micro-batches (gradient accumulation to the global batch), bf16 autocast on CUDA, the
method's loss (its Task, pipeline/training/task.py). Rank 0 writes `config.json`, `metrics.jsonl`, TensorBoard
events, `last.pt` every `save_every` iterations and `checkpoints/iter_N.pt` at every milestone, at half the
schedule (where an OC-ZSS transductive run starts) and at the end.

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
from pathlib import Path

import torch

from oczss.errors import OCZSSError, os_error
from oczss.pipeline.console import progress as progress_bar
from oczss.pipeline.interrupts import sigterm_as_interrupt, uninterruptible
from oczss.pipeline.outputs import check_writable
from oczss.pipeline.runtime import autocast, init_distributed
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.config import TrainConfig
from oczss.pipeline.stage2.runlog import NonFiniteLoss, RunLog, plain
from oczss.pipeline.training import task_class
from oczss.pipeline.training.task import Context, Task
from oczss.pipeline.workers import stopping, unwrap

log = logging.getLogger(__name__)
# What may differ between a run and its resumption: everything else must match the saved config.
RUNTIME_FIELDS = ("workers", "log_every", "save_every", "milestone_every", "description")


def train(cfg: TrainConfig, *, out: str | Path, data_root: str | None, cache: str | None, device: str = "auto",
          resume: bool = False, progress: bool = True, skip_damaged: bool = False) -> dict:
    """Run (or resume) training of cfg.method; returns a summary with the last step's losses. Safe to interrupt."""
    out = Path(out)
    cls = task_class(cfg.method)
    _check_start(out, resume)
    cls.check(cfg, resume)
    resumed, init = _checkpoints(cfg, out, resume)
    rank, world, dev = init_distributed(device)
    micro = cfg.micro_batch or cfg.batch_size // world
    if micro < 1 or cfg.batch_size % (micro * world):
        raise OCZSSError(f"batch {cfg.batch_size} is not a multiple of micro-batch {micro} x {world} process(es)")
    step = resumed["step"] if resumed else 0
    ctx = Context(cfg, out, data_root, cache, rank, world, dev, micro, cfg.batch_size // (micro * world),
                  min(cfg.workers, os.cpu_count() or 1), step, resumed, init, progress, skip_damaged)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process and every run of this config
    task = cls.build(ctx)
    if resumed is not None:
        task.load(resumed, str(out / "last.pt"))
        task.optimizer.load_state_dict(resumed["optimizer"])
        task.scheduler.load_state_dict(resumed["scheduler"])
    elif init is not None:
        task.load(init, f"--init-from {cfg.init_from}")
    state = resumed and resumed.get("log")
    writer = RunLog(out, task.log_config, rank == 0, step if resume else None, state)
    run = _Run(task, ctx, step)
    try:
        _loop(run, writer, resumed and resumed["rng"], progress)
    finally:
        writer.close()
    return {"step": run.step, "out": str(out), "last": writer.last, "random_weights": task.random_weights,
            "rank": rank, "method": cfg.method}


@dataclasses.dataclass
class _Run:
    task: Task
    ctx: Context
    step: int
    resume_state: dict | None = None  # {rng, log} as of the last completed step: what every save records


def _check_start(out: Path, resume: bool) -> None:
    last = out / "last.pt"
    if resume and not last.is_file():
        raise OCZSSError(f"--resume: {last} does not exist; start without --resume")
    if not resume and last.exists():
        raise OCZSSError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    check_writable(out, "--out")


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
        method = init.get("method", "oczss")
        if method != cfg.method:
            raise OCZSSError(f"--init-from {cfg.init_from}: a {method} checkpoint cannot start a {cfg.method} run")
        return None, init
    return None, None


def _check_same_run(saved: dict, cfg: TrainConfig, path: Path) -> None:
    now, defaults = dataclasses.asdict(cfg), dataclasses.asdict(TrainConfig())
    diff = [f"{k}: saved {saved.get(k, defaults[k])!r}, now {now[k]!r}" for k in now
            if k not in RUNTIME_FIELDS and saved.get(k, defaults[k]) != now[k]]
    if diff:
        raise OCZSSError(f"--resume: {path} was trained with another config:\n  " + "\n  ".join(diff))


def _save(run: _Run, path: Path) -> None:
    task = run.task
    if run.ctx.rank == 0:
        ckpt_io.save(path, {**task.meta, "method": task.name, "step": run.step, "model": task.state(),
                            "optimizer": task.optimizer.state_dict(), "scheduler": task.scheduler.state_dict(),
                            "rng": run.resume_state["rng"], "log": plain(run.resume_state["log"])})


def _loop(run: _Run, writer: RunLog, resumed_rng: dict | None, progress: bool) -> None:
    """Iterate to cfg.iters; on Ctrl-C, SIGTERM or an error, save last.pt at the last completed step."""
    task, cfg, last = run.task, run.ctx.cfg, run.ctx.out / "last.pt"
    torch.manual_seed(cfg.seed + run.ctx.rank)  # dropout; the data stream is seeded per sample
    loader = iter(task.loader)  # draws from torch's RNG: before the resumed state is put back
    batches = task.batches(unwrap(loader))
    if resumed_rng is not None:
        ckpt_io.set_rng_state(resumed_rng)
    task.net.train()
    run.resume_state, first = {"rng": ckpt_io.rng_state(), "log": writer.state()}, run.step
    with progress_bar(cfg.iters, desc=task.desc, unit="it", initial=run.step,
                      enabled=progress and run.ctx.rank == 0) as bar, sigterm_as_interrupt(), stopping(loader):
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
                    _save(run, run.ctx.out / "checkpoints" / f"iter_{at:06d}.pt")
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


def _save_after_error(run: _Run, last: Path) -> str:
    try:
        with uninterruptible(then_interrupt=False):
            _save(run, last)
        return f"{last} holds iteration {run.step}; fix the cause and `--resume`"
    except Exception as e:  # noqa: BLE001 - a full disk fails the save too; say so, keep the original error
        reason = os_error(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        return f"saving {last} failed as well ({reason}); the last good save stays"


def _iteration(run: _Run, batches, writer: RunLog) -> None:
    """One optimizer step over `accum` micro-batches."""
    t0 = time.perf_counter()
    task, accum, cfg = run.task, run.ctx.accum, run.ctx.cfg
    terms, waited = {}, 0.0
    single = not isinstance(task.net, torch.nn.parallel.DistributedDataParallel)
    for m in range(accum):
        tw = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - tw
        sync = single or m == accum - 1
        with contextlib.nullcontext() if sync else task.net.no_sync():
            with autocast(run.ctx.device):
                loss = task.loss(batch)
            (loss["total"] / accum).backward()
        for k, v in loss.items():
            terms[k] = terms.get(k, 0.0) + v.detach() / accum
    with uninterruptible():  # the step, its record and the state a save records move together
        task.before_step()
        task.optimizer.step()
        task.optimizer.zero_grad(set_to_none=True)
        task.after_step()
        task.scheduler.step()
        run.step += 1
        writer.step(run.step, terms, task.optimizer.param_groups[0]["lr"], waited, time.perf_counter() - t0,
                    run.step % cfg.log_every == 0 or run.step == cfg.iters)
        run.resume_state = {"rng": ckpt_io.rng_state(), "log": writer.state()}
