"""Issue 19's preparation on the CPU: the wheels the GPU machine lacks, the FLOP counters of bench/model.py, and the
GPU entry point's dry run (bench/gpu/run.py, the same code that runs on the device)."""

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PYTHON = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
                 "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
                 "platform_python_implementation": "CPython", "os_name": "posix"}


def bench_module(name: str):
    """A bench/ script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closure(roots: list[tuple[str, tuple[str, ...]]]) -> set[str]:
    """Every distribution that installing `roots` (name, extras) brings in on the GPU machine's Python, from the
    metadata of this environment's installed distributions."""
    seen, stack = set(), list(roots)
    while stack:
        name, extras = stack.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for line in importlib.metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({**DEVICE_PYTHON, "extra": e}) for e in ("", *extras)):
                stack.append((canonicalize_name(req.name), tuple(sorted(req.extras))))
    return {name for name, _ in seen}


def test_the_wheels_cover_what_the_gpu_machine_lacks_at_the_tested_versions():
    text = (ROOT / "bench" / "gpu" / "wheels.txt").read_text()
    device = re.search(r"^# device: (.*)$", text, re.M).group(1).split()
    wheels = dict(line.split("==") for line in text.splitlines() if line and not line.startswith("#"))
    wheels = {canonicalize_name(k): v for k, v in wheels.items()}
    pins = {}  # oczss's own dependencies (pyproject.toml), as installed
    for line in importlib.metadata.requires("oczss"):
        req = Requirement(line)
        if req.marker is None:
            pins[canonicalize_name(req.name)] = (str(req.specifier)[2:], tuple(sorted(req.extras)))
    ours = closure([(name, extras) for name, (_, extras) in pins.items()])
    has = closure([(canonicalize_name(name), ()) for name in device])
    assert ours - has - {"torch", "torchvision"} == set(wheels), "bench/gpu/wheels.txt is not what the machine lacks"
    for name, version in wheels.items():
        assert version == pins.get(name, (importlib.metadata.version(name),))[0], name


def test_mmcv_style_counts_called_linear_conv_and_layernorm_modules_only():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
            self.norm = nn.LayerNorm(8)
            self.plain_norm = nn.LayerNorm(8, elementwise_affine=False)
            self.sub_norm = type("SubNorm", (nn.LayerNorm,), {})(8)  # a subclass: invisible to mmcv
            self.fc = nn.Linear(8, 5)
            self.unused = nn.Linear(8, 8)

        def forward(self, x):
            x = self.depthwise(self.conv(x)).flatten(2).transpose(1, 2)  # [B, 16, 8]
            x = self.sub_norm(self.plain_norm(self.norm(x)))
            return self.fc(x) + F.linear(x, self.unused.weight)[..., :5]  # a functional use: not counted

    flops = bench_module("flops")
    net = Net()
    counts = flops.mmcv_style(net, lambda: net(torch.randn(2, 3, 4, 4)), batch=2)
    assert counts == {"conv": 16 * (9 * 3 * 8 + 8), "depthwise": 16 * 9 * 8, "norm": 16 * 8 * 2,
                      "plain_norm": 16 * 8, "fc": 16 * 8 * 5, "": 16 * (224 + 72 + 16 + 8 + 40)}


def test_all_ops_counts_attention():
    flops = bench_module("flops")
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4)
    assert flops.all_ops(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * 2 * (2 * 3 * 5 * 7 * 4)


def test_a_step_over_its_time_cap_is_stopped_and_recorded(tmp_path):
    all_py = bench_module("all")
    with open(tmp_path / "log", "w") as log:
        record = all_py.run("prepare", ["--maps", "400"], "cpu", 0.5, log)
    assert record["error"] == "stopped at its time cap of 0.5 s" and record["seconds"] < 30


def test_the_gpu_entry_point_dry_run_writes_its_json_and_log(tmp_path):
    """The entry point as the device runs it, its package link included (the test's own PYTHONPATH is dropped; the
    link comes first on the subprocesses' path), restricted to two cheap steps; bench/gpu/README.md gives the full
    dry run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = ["bench/gpu/run.py", "--dry-run", "--device", "cpu", "--tiny", "--out", str(tmp_path),
               "--only", "memory", "prepare", "--budget", "1200", "--cap-scale", "10"]  # the suite may share a busy CPU
    proc = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1300)
    report = json.loads((tmp_path / "gpu-run.json").read_text())
    assert proc.returncode == 0, (proc.stderr[-2000:], report)
    assert report["machine"]["gpu"] is None and report["machine"]["torch"] == torch.__version__
    memory = report["steps"]["memory"]
    assert memory["exit"] == 0 and memory["backbone"] == "tiny"
    assert memory["full model peak inference memory GB (batch 1, 512^2, 20 classes)"] == "n/a (CUDA only)"
    prepare = report["steps"]["bench"]["runs"]["prepare"]
    assert prepare["maps"] == 8 and prepare["ratio"] > 0
    assert list(report["steps"]["bench"]["runs"]) == ["prepare"]
    assert "== prepare" in (tmp_path / "gpu-run.log").read_text()
