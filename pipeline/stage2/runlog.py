"""What a training run writes beside its checkpoints: `config.json`, `metrics.jsonl` and TensorBoard events.

Rank 0 writes; other ranks only average. One record per log interval. On `--resume` from a checkpoint at step
S, records past S (logged after that checkpoint by a run that was then killed) are dropped from metrics.jsonl
and purged from TensorBoard, so every step appears once. The running interval's sums travel in the checkpoint
(`state`), so the first record after a resume in the middle of an interval averages over the whole interval, as
an uninterrupted run's does.

Closing waits at most CLOSE_SECONDS for TensorBoard's writer thread (it can sleep up to its 2-minute flush
period): a run stopped by a signal exits within seconds of its save, as a scheduler's grace period requires.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.outputs import writing

log = logging.getLogger(__name__)
CLOSE_SECONDS = 5.0


class RunLog:
    """config.json, metrics.jsonl (one line per log interval) and TensorBoard scalars of one run."""

    def __init__(self, out: Path, config: dict, active: bool, resume_step: int | None, state: dict | None = None):
        """state: the running interval a checkpoint saved (`state()`), restored on resume."""
        self.active, self.last, self.sums, self.count = active, {}, {}, 0
        self.waited = self.elapsed = 0.0
        if state:
            self.sums, self.count = dict(state["sums"]), state["count"]
            self.waited, self.elapsed = state["waited"], state["elapsed"]
        if not active:
            return
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "config.json", json.dumps(config, indent=2) + "\n")
        path = out / "metrics.jsonl"
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines() if _step(line) is not None
                    and _step(line) <= resume_step]
            _atomic_write(path, "".join(f"{line}\n" for line in kept))
        with writing(path):
            self.jsonl = open(path, "a" if resume_step is not None else "w")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tb"), purge_step=None if resume_step is None else resume_step + 1)

    def step(self, step: int, terms: dict, lr: float, waited: float, elapsed: float, flush: bool) -> None:
        """Add one iteration's loss terms (tensors) and timings; at `flush`, write their averages."""
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
            raise NonFiniteLoss(f"loss is not finite at iteration {step}: {record}")
        self.last = record
        self.sums, self.count, self.waited, self.elapsed = {}, 0, 0.0, 0.0
        if self.active:
            with writing(self.jsonl.name):
                self.jsonl.write(json.dumps(record) + "\n")
                self.jsonl.flush()
            for k, v in record.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, step)

    def state(self) -> dict:
        """The running interval (sums of the steps since the last record); tensors are kept as they are (no device
        sync): `plain` turns them into numbers for a checkpoint."""
        return {"sums": dict(self.sums), "count": self.count, "waited": self.waited, "elapsed": self.elapsed}

    def close(self) -> None:
        if self.active:
            self.jsonl.close()
            closing = threading.Thread(target=self.tb.close, name="oczss-tensorboard-close", daemon=True)
            closing.start()
            closing.join(CLOSE_SECONDS)
            if closing.is_alive():
                log.warning("TensorBoard's writer did not finish within %.0f s; its events of the last steps may be "
                            "missing (metrics.jsonl holds them)", CLOSE_SECONDS)


def plain(state: dict) -> dict:
    """A `RunLog.state()` with its sums as Python floats (what a checkpoint stores; exact for float32 sums)."""
    return {**state, "sums": {k: float(v) for k, v in state["sums"].items()}}


class NonFiniteLoss(OCZSSError):
    """The loss diverged: the weights of the steps since the last save are not worth keeping."""


def _step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
