"""Training: loss goes down, resume equals uninterrupted, Ctrl-C saves, refusals, transductive, DDP on gloo."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from oczss.errors import OCZSSError
from oczss.pipeline.configs import from_dict
from oczss.model import OCZSSConfig, build_model
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.stage2.clusters import open_cached
from oczss.pipeline.stage2.loader import TrainData
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.stage2.recipes import resolve
from oczss.pipeline.training.loop import train


@pytest.fixture
def stage1(demo_stage1):
    return demo_stage1


def tiny_cfg(stage1, **kw):
    cfg = resolve("demo", None)
    return dataclasses.replace(cfg, model=dict(cfg.model), text=stage1["text"], batch_size=4, workers=0, log_every=1,
                               **kw)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_steps_on_a_fixed_batch_lower_the_loss(stage1):
    dataset = Dataset("demo", stage1["root"])
    samples, maps, _, _ = open_cached(dataset.samples("train"), stage1["cache"], "demo", "train", "whole", 4)
    data = TrainData(dataset, samples, "inductive", maps, "whole", 128, 16, seed=0)
    batch = torch.utils.data.default_collate([data[(i, i)] for i in range(4)])
    assert batch["clusters"].shape == (4, 64) and int(batch["clusters"].max()) < 4
    cfg = resolve("demo", None)
    model = build_model(from_dict(OCZSSConfig, cfg.model, "test"))
    text = torch.from_numpy(np.load(stage1["text"]))[list(dataset.spec.seen)]
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(15):
        loss = model.loss(model(batch["image"], batch["clusters"], text), batch["label"])["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_resume_equals_uninterrupted(stage1, tmp_path):
    cfg = tiny_cfg(stage1, iters=6)
    whole = tmp_path / "whole"
    train(cfg, out=whole, data_root=stage1["root"], cache=stage1["cache"], device="cpu", progress=False)
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(whole / "checkpoints" / "iter_000003.pt", half / "last.pt")  # the run as it was at step 3
    train(cfg, out=half, data_root=stage1["root"], cache=stage1["cache"], device="cpu", resume=True, progress=False)
    a, b = metrics(whole)[3:], metrics(half)
    assert [m["step"] for m in b] == [4, 5, 6]
    for x, y in zip(a, b):
        for key in ("loss", "decoder_focal", "mps_dice", "lr"):
            assert x[key] == pytest.approx(y[key], rel=1e-6, abs=1e-9), key
    wa, wb = load(whole / "last.pt")["model"], load(half / "last.pt")["model"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    with pytest.raises(OCZSSError, match="already holds a run"):
        train(cfg, out=whole, data_root=stage1["root"], cache=stage1["cache"], device="cpu", progress=False)
    with pytest.raises(OCZSSError, match="batch_size: saved 4, now 8"):
        train(dataclasses.replace(cfg, batch_size=8), out=whole, data_root=stage1["root"], cache=stage1["cache"],
              device="cpu", resume=True, progress=False)
    config = json.loads((whole / "config.json").read_text())
    assert config["random_weights"] is True and config["train"]["iters"] == 6 and config["model"]["num_objects"] == 4
    assert (whole / "tb").is_dir() and any((whole / "tb").iterdir())


@pytest.mark.parametrize("sig, group", [(signal.SIGINT, False), (signal.SIGTERM, True)])
def test_ctrl_c_and_sigterm_save_a_resumable_checkpoint(stage1, tmp_path, sig, group):
    """SIGINT to the main process; SIGTERM to the whole process group, loader workers included (what Slurm, Docker
    and Kubernetes send): both end in the same one line and exit status, within seconds of the save (TensorBoard's
    writer once held the exit for 2 minutes: the timeout below would fail)."""
    run, config = tmp_path / "run", tmp_path / "cfg.json"
    cfg = dataclasses.replace(tiny_cfg(stage1, iters=100000), batch_size=2, log_every=2)
    config.write_text(json.dumps(dataclasses.asdict(cfg)))
    proc = subprocess.Popen([sys.executable, "-m", "oczss", "train", "--config", str(config), "--data-root",
                             stage1["root"], "--cache", stage1["cache"], "--out", str(run),
                             "--workers", "2" if group else "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=group,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps every thread's stack
                            # a suite started as a background job of a shell without job control inherits SIGINT
                            # ignored, and so would the run (rightly: `nohup oczss train &` means it): not the case here
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 600
        while not (run / "metrics.jsonl").exists() or len((run / "metrics.jsonl").read_text().splitlines()) < 2:
            assert proc.poll() is None and time.time() < deadline, "no two metrics records"
            time.sleep(0.2)
        os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail("no exit within 60 s of the signal; where it waited:\n" + err.decode()[-6000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in err.decode(), err.decode()[-3000:]
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]] and "--resume" in lines[-1]
    step = load(run / "last.pt")["step"]
    assert step >= 4  # logged every 2 iterations, at least two records written before the interrupt


def test_cache_must_fit_and_failed_rows_are_skipped(stage1, demo_root, tmp_path, caplog):
    from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute

    wrong_k = str(tmp_path / "k6.zarr")
    precompute(PrecomputeConfig(dataset="demo", cache=wrong_k, data_root=stage1["root"], ks=(6,), input_size=64,
                                grid=8, weights="random", dino_model="tiny", device="cpu"), progress=False)
    with pytest.raises(OCZSSError, match=r"no K=4 clusters.*--ks 4"):
        train(tiny_cfg(stage1, iters=1), out=tmp_path / "a", data_root=stage1["root"], cache=wrong_k, device="cpu",
              progress=False)
    with pytest.raises(OCZSSError, match=r"has no demo/train.*--split train"):
        precompute(PrecomputeConfig(dataset="demo", cache=str(tmp_path / "v.zarr"), data_root=stage1["root"],
                                    split="val", ks=(4,), input_size=64, grid=8, weights="random",
                                    dino_model="tiny", device="cpu"), progress=False)
        train(tiny_cfg(stage1, iters=1), out=tmp_path / "b", data_root=stage1["root"], cache=str(tmp_path / "v.zarr"),
              device="cpu", progress=False)
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    (root / "train2017" / "train_0007.jpg").write_bytes(b"broken")
    cache = str(tmp_path / "c.zarr")
    precompute(PrecomputeConfig(dataset="demo", cache=cache, data_root=str(root), ks=(4,), input_size=64, grid=8,
                                weights="random", dino_model="tiny", device="cpu"), progress=False)
    train(tiny_cfg(stage1, iters=1), out=tmp_path / "c", data_root=str(root), cache=cache, device="cpu",
          progress=False)
    assert "1 of 48 demo/train samples have no cluster labels" in caplog.text


def test_transductive_needs_and_starts_from_an_inductive_checkpoint(stage1, tmp_path):
    ind = tmp_path / "ind"
    train(tiny_cfg(stage1, iters=2), out=ind, data_root=stage1["root"], cache=stage1["cache"], device="cpu",
          progress=False)
    st = tiny_cfg(stage1, iters=2, setting="transductive")
    with pytest.raises(OCZSSError, match="--init-from"):
        train(st, out=tmp_path / "st0", data_root=stage1["root"], cache=stage1["cache"], device="cpu", progress=False)
    st = dataclasses.replace(st, init_from=str(ind / "checkpoints" / "iter_000001.pt"))
    summary = train(st, out=tmp_path / "st", data_root=stage1["root"], cache=stage1["cache"], device="cpu",
                    progress=False)
    ckpt = load(tmp_path / "st" / "last.pt")
    assert summary["step"] == 2 and ckpt["setting"] == "transductive"
    assert ckpt["model"]["decoder.q_proj.weight"].shape == load(ind / "last.pt")["model"]["decoder.q_proj.weight"].shape


def test_ddp_two_cpu_processes_on_gloo(stage1, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m",
         "oczss", "train", "--config", "demo", "--data-root", stage1["root"], "--cache", stage1["cache"], "--text",
         stage1["text"], "--out", str(run), "--iters", "3", "--batch-size", "4", "--workers", "0", "--device", "cpu"],
        capture_output=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    config = json.loads((run / "config.json").read_text())["runtime"]
    assert config["world_size"] == 2 and config["micro_batch"] == 2 and config["accumulation"] == 1
    ckpt = load(run / "last.pt")
    assert ckpt["step"] == 3 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert [m["step"] for m in metrics(run)] == [3]  # logged every 20 iterations and at the end, by rank 0 only


def test_an_error_inside_the_loop_saves_the_last_completed_step(stage1, tmp_path, monkeypatch):
    from oczss.pipeline.stage2 import loader

    original = loader.TrainData.__getitem__

    def failing(self, key):
        if key[1] >= 3 * 4:  # the first sample of iteration 4 (batch 4)
            raise OSError(28, "No space left on device")
        return original(self, key)

    monkeypatch.setattr(loader.TrainData, "__getitem__", failing)
    with pytest.raises(OCZSSError, match=r"stopped at iteration 3: .*No space left.*holds iteration 3.*--resume"):
        train(tiny_cfg(stage1, iters=10), out=tmp_path / "r", data_root=stage1["root"], cache=stage1["cache"],
              device="cpu", progress=False)
    assert load(tmp_path / "r" / "last.pt")["step"] == 3
    assert not list((tmp_path / "r").glob("*.partial"))


def test_a_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    from oczss.pipeline.stage2 import checkpoint

    def full_disk(obj, f):
        f.write(b"half a checkpoint")
        f.flush()
        raise OSError(28, "No space left on device")  # what a write() on a full disk raises: no file name

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError) as e:
        checkpoint.save(tmp_path / "last.pt", {"step": 1})
    assert e.value.errno == 28 and e.value.filename == str(tmp_path / "last.pt")  # the error names the file
    assert list(tmp_path.iterdir()) == []


def test_metrics_keep_one_record_per_step_after_a_resume(stage1, tmp_path):
    cfg = tiny_cfg(stage1, iters=6, save_every=3)
    run = tmp_path / "run"
    train(cfg, out=run, data_root=stage1["root"], cache=stage1["cache"], device="cpu", progress=False)
    # as if killed after step 6 was logged but with last.pt still at step 3
    shutil.copy(run / "checkpoints" / "iter_000003.pt", run / "last.pt")
    train(cfg, out=run, data_root=stage1["root"], cache=stage1["cache"], device="cpu", resume=True, progress=False)
    assert [m["step"] for m in metrics(run)] == [1, 2, 3, 4, 5, 6]


def test_init_from_another_model_config_names_the_fields(stage1, tmp_path):
    train(tiny_cfg(stage1, iters=1), out=tmp_path / "a", data_root=stage1["root"], cache=stage1["cache"], device="cpu",
          progress=False)
    other = tiny_cfg(stage1, iters=1, init_from=str(tmp_path / "a" / "last.pt"))
    other = dataclasses.replace(other, model={**other.model, "num_vpt": 6})
    with pytest.raises(OCZSSError, match=r"does not fit this model.*num_vpt: checkpoint 4, this model 6"):
        train(other, out=tmp_path / "b", data_root=stage1["root"], cache=stage1["cache"], device="cpu", progress=False)


def test_a_wrongly_typed_config_value_names_the_field(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"dataset": "demo", "lr": "fast"}))
    with pytest.raises(OCZSSError, match=r"field 'lr' = 'fast' is not of type float"):
        resolve(str(path), None)
