"""Training stopped by signals at every phase of a step resumes exactly; errors and notes of loader workers reach
the user as one line. The signal cases run as real processes (a process group for the group case)."""

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from oczss.cli import main
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.stage2.recipes import resolve

# Runs `oczss train` once per phase in one process; in each run the Nth call of the phase's function sends SIGTERM to
# the process itself (before or after the call does its work), then one more `--resume` finishes the run.
PHASES_SCRIPT = r'''
import json, os, signal, sys
import oczss.model.segmentor as segmentor
from torch.utils.tensorboard import SummaryWriter
from oczss.cli import main
from oczss.pipeline.stage2 import checkpoint
from oczss.pipeline.training import loop as train

args, phases = json.loads(sys.argv[1]), json.loads(sys.argv[2])


class Bar:  # the training loop's progress bar, its update() replaced
    def __init__(self, bar, update):
        self.bar, self.update = bar, update
    def __getattr__(self, name):
        return getattr(self.bar, name)
    def __enter__(self):
        self.bar.__enter__()
        return self
    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

def signalling(original, nth, when):
    calls = [0]
    def wrapper(*a, **kw):
        calls[0] += 1
        hit = calls[0] == nth
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGTERM)
        out = original(*a, **kw)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGTERM)
        return out
    return wrapper

def progress_bar(*a, **kw):
    bar = make_bar(*a, **kw)
    return Bar(bar, signalling(bar.update, nth, when))

make_bar = train.progress_bar
owners = {"forward": (segmentor.OCZSS, "forward"), "tensorboard": (SummaryWriter, "add_scalar"),
          "save": (checkpoint, "save"), "progress": (train, "progress_bar")}
codes = []
for i, (phase, nth, when) in enumerate(phases + [[None, 0, None]]):
    owner, name = owners.get(phase, (None, None))
    if owner is not None:
        original = getattr(owner, name)
        setattr(owner, name, progress_bar if phase == "progress" else signalling(original, nth, when))
    try:
        main(args + (["--resume"] if i else []), standalone_mode=False)
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code)
    finally:
        if owner is not None:
            setattr(owner, name, original)
print(json.dumps(codes))
'''

# (function, its Nth call in the run, signal before or after it does its work); iters 10, records every 2 steps,
# last.pt every 3, milestones every 4 and at 5 (half the schedule)
PHASES = [("forward", 3, "before"),  # inside step 3's forward: saved at step 2
          ("progress", 1, "after"),  # after step 3, in the progress bar: saved at 3, in the middle of an interval
          ("tensorboard", 1, "before"),  # while step 4's record is written: deferred to the step's end, saved at 4
          ("save", 1, "before"),  # at the milestone save of step 5: saved at 5, mid-interval again
          ("save", 1, "after")]  # right after step 6's periodic save


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_signal_at_every_phase_of_a_step_resumes_exactly(demo_stage1, tmp_path):
    s = demo_stage1
    cfg = resolve("demo", None)
    cfg = dataclasses.replace(cfg, model=dict(cfg.model), iters=10, batch_size=2, workers=0, log_every=2,
                              save_every=3, milestone_every=4)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(dataclasses.asdict(cfg)))
    base = ["train", "--config", str(config), "--data-root", s["root"], "--cache", s["cache"], "--text", s["text"],
            "--device", "cpu"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    ran = subprocess.run([sys.executable, "-c", PHASES_SCRIPT, json.dumps([*base, "--out", str(whole)]), "[]"],
                         capture_output=True, timeout=600)
    assert ran.returncode == 0, ran.stderr.decode()[-3000:]
    ran = subprocess.run([sys.executable, "-c", PHASES_SCRIPT, json.dumps([*base, "--out", str(parts)]),
                          json.dumps(PHASES)], capture_output=True, timeout=600)
    err = ran.stderr.decode()
    assert ran.returncode == 0 and json.loads(ran.stdout.decode().splitlines()[-1]) == [2] * 5 + [0], err[-3000:]
    stops = [line for line in err.splitlines() if line.startswith("error:")]
    assert [line.split(";")[0] for line in stops] == [f"error: interrupted at iteration {n}" for n in (2, 3, 4, 5, 6)]
    assert "Traceback" not in err
    a, b = metrics(whole), metrics(parts)
    assert [m["step"] for m in b] == [m["step"] for m in a] == [2, 4, 6, 8, 10]
    for x, y in zip(a, b):  # the records that straddle a resume average over their whole interval
        for key in ("loss", "decoder_focal", "mps_dice", "lr"):
            assert x[key] == pytest.approx(y[key], rel=1e-6, abs=1e-9), (x["step"], key)
    wa, wb = load(whole / "last.pt"), load(parts / "last.pt")
    assert wa["step"] == wb["step"] == 10
    assert all(torch.allclose(wa["model"][k], wb["model"][k], atol=1e-6) for k in wa["model"])


def test_an_error_in_a_loader_worker_is_its_own_line(demo_stage1, tmp_path):
    import shutil

    s = demo_stage1
    cache = tmp_path / "c.zarr"
    shutil.copytree(s["cache"], cache)
    for shard in (cache / "demo" / "train" / "features" / "c").iterdir():  # every train shard: damaged
        data = next(p for p in shard.rglob("*") if p.is_file())
        data.write_bytes(data.read_bytes()[:100])
    args = ["train", "--config", "demo", "--data-root", s["root"], "--cache", cache, "--text", s["text"], "--out",
            tmp_path / "run", "--iters", 2, "--batch-size", 2, "--workers", 1, "--device", "cpu"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and lines[-1].startswith("error: training stopped at iteration 0: cache "), lines
    assert "is damaged" in lines[-1] and "Traceback" not in result.output and "worker" not in result.output
    assert not (tmp_path / "run" / "last.pt").exists()  # no iteration completed: nothing to save
    verbose = CliRunner().invoke(main, ["-v", *[str(a) for a in args]])
    assert verbose.exit_code == 2 and "in a data loader worker:\nTraceback" in verbose.output  # -v shows it


def test_label_values_outside_the_classes_are_noted_once_per_file(demo_root, tmp_path, caplog):
    import shutil

    from oczss.pipeline.data.datasets import Dataset
    from oczss.pipeline.stage2.loader import TrainData
    from oczss.pipeline.workers import collate, unwrap

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    dataset = Dataset("demo", str(root))
    samples = dataset.samples("train")[:2]
    label = np.array(Image.open(samples[0].label))
    label[:3, :3] = 50  # the demo has 8 classes
    Image.fromarray(label).save(samples[0].label)
    data = TrainData(dataset, samples, "inductive", None, "none", 128, 16, seed=0)
    batches = [collate([data[(0, p)], data[(1, p + 1)]]) for p in (0, 2, 4)]  # the bad file three times
    with caplog.at_level(logging.WARNING):
        got = list(unwrap(iter(batches)))
    notes = [r.getMessage() for r in caplog.records if "outside the 8 classes" in r.getMessage()]
    assert len(notes) == 1 and samples[0].label.name in notes[0] and "values 50 " in notes[0]
    assert all("note" not in b and b["label"].shape == (2, 128, 128) for b in got)
