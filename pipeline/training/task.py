"""What one method brings to the shared training loop (pipeline/training/loop.py), and the registry of methods.

The loop owns everything that is the same for every method: the run folder and its checks, resume and
`--init-from`, torchrun / DDP set-up, gradient accumulation, autocast, the optimizer step, the metrics and
TensorBoard records, periodic and milestone checkpoints, and Ctrl-C / SIGTERM / error handling. A method brings a
`Task`: its model, optimizer and schedule, its data as device micro-batches, and its loss.

    task = SomeTask.build(context)           # model, optimizer, scheduler, loader, checkpoint meta, config.json
    batches = task.batches(iter(task.loader))   # device micro-batches
    terms = task.loss(next(batches))         # {"total": 0-d tensor (backpropagated), other terms: logged}
    task.before_step(); optimizer.step(); task.after_step()

Methods are registered in pipeline/training/__init__.py; a checkpoint records its method under `method` (absent
in old checkpoints: OC-ZSS).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from oczss.errors import OCZSSError


@dataclass(frozen=True)
class Context:
    """What the loop hands a Task's `build`.

    cfg: the run's TrainConfig; out: the run folder; data_root / cache: the flags; rank / world / device: this
    process under torchrun (world 1 otherwise); micro: the per-process micro-batch, accum: micro-batches per
    optimizer step (micro x accum x world = cfg.batch_size); workers: loader processes per training process
    (cfg.workers, at most the CPU count); step: the step a resumed run starts after (0); resumed: last.pt's content
    when resuming, init: the --init-from checkpoint (each None otherwise).
    """

    cfg: object
    out: Path
    data_root: str | None
    cache: str | None
    rank: int
    world: int
    device: torch.device
    micro: int
    accum: int
    workers: int
    step: int
    resumed: dict | None
    init: dict | None
    progress: bool
    skip_damaged: bool

    def runtime(self, data_root, samples: int, **extra) -> dict:
        """What config.json records of how the run was run: data folder, processes, device, batching, workers, the
        number of training samples, and a method's own `extra` entries."""
        return {"data_root": str(data_root), **extra, "world_size": self.world, "device": str(self.device),
                "micro_batch": self.micro, "workers": self.workers, "accumulation": self.accum, "samples": samples}


class Task:
    """One method's side of a training run. `build` sets every attribute below.

    model: the module whose `state()` every checkpoint holds; net: what runs forward (`model`, or DDP around it);
    optimizer / scheduler: stepped once per iteration by the loop (the scheduler per iteration, not per epoch);
    loader: the DataLoader (stopped cleanly by the loop); meta: what every checkpoint records beside the states;
    log_config: the run's config.json; random_weights: whether any of its weights are random (said in every
    output); desc: the progress bar's label; device: where the micro-batches go.
    """

    name: str = ""
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: torch.utils.data.DataLoader
    meta: dict
    log_config: dict
    random_weights: bool
    desc: str
    device: torch.device

    @classmethod
    def check(cls, cfg, resume: bool) -> None:
        """Refuse a run this method cannot start, before anything is loaded (default: nothing to check)."""

    @classmethod
    def build(cls, ctx: Context) -> Task:
        raise NotImplementedError

    def batches(self, loader: Iterator) -> Iterator:
        """The loader's micro-batches, on the device (default: every tensor moved, non-blocking)."""
        for batch in loader:
            yield {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                   for k, v in batch.items()}

    def loss(self, batch) -> dict[str, torch.Tensor]:
        """Forward and loss of one micro-batch (run under the loop's autocast): 0-d terms, `total` backpropagated."""
        raise NotImplementedError

    def state(self) -> dict:
        """The model state a checkpoint holds (default: the whole state_dict)."""
        return self.model.state_dict()

    def load(self, ckpt: dict, source: str) -> None:
        """Put a checkpoint's model state back (resume, --init-from); one-line error naming `source` on a mismatch."""
        try:
            self.model.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OCZSSError(f"{source}: its model does not fit this {self.name} configuration ({first})") from None

    def before_step(self) -> None:
        """After the micro-batches' backward, before optimizer.step() (e.g. gradient clipping)."""

    def after_step(self) -> None:
        """After optimizer.step() (e.g. clamping a logit scale)."""


def distributed(model: torch.nn.Module, ctx: Context, **kwargs) -> torch.nn.Module:
    """`model` wrapped in DDP under torchrun (world > 1), else itself."""
    if ctx.world == 1:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, **kwargs)
