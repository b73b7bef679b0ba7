"""Issue 19's single prepared GPU run: the CUDA tests, the full model's peak inference memory at 512^2, then every
benchmark at the paper's settings (bench/all.py), in one command of under 8 minutes that writes one JSON and a log.

On the GPU machine (python 3.12 with torch, timm, scipy, h5py, pillow, click, tqdm, tensorboard, fsspec,
tensorstore and pytest; no package registry), from the repository root, with `carry: [".whl"]` (the wheels that
bench/gpu/prepare.sh downloads here), one call:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && python3 bench/gpu/run.py --out "$OUT"

It installs nothing itself. Steps, each a subprocess under its own time cap and all under one deadline
(--budget, 450 s): `tests` (pytest -m cuda tests/test_cuda.py), `memory` (bench/model.py --memory-only), `bench`
(bench/all.py: model, train, precompute, eval, cass, prepare, prompts, each capped). `$OUT/gpu-run.json` holds the
machine (GPU, torch, CUDA, package versions, source hash), every test's outcome and every figure, rewritten after
each step; `$OUT/gpu-run.log` every subprocess's output. Exit status 0 when every step ran and every test passed.

The repository root is the package `oczss` but is not installed there: the run puts a folder with an `oczss`
link to the root and a minimal `oczss-VERSION.dist-info` (for importlib.metadata) first on the path of itself and
of every subprocess.

    python bench/gpu/run.py --dry-run --device cpu --tiny --out /tmp/gpu-dry   # the same run here, smoke sizes

`--dry-run` lets it run without a GPU (the CUDA tests are then collected and skipped); without it a machine
where torch sees no GPU stops the run at once, before any benchmark.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPS = {"tests": 150, "memory": 60}
PACKAGES = ("torch", "timm", "open_clip_torch", "zarr", "numcodecs", "dask", "distributed", "numpy", "scipy",
            "pillow", "tensorstore", "pytest")


def package_path(tmp: Path) -> str:
    """A folder that makes `import oczss` and importlib.metadata.version("oczss") work: a link to the root and a
    dist-info with the version from pyproject.toml. Returns the PYTHONPATH for the subprocesses."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    (tmp / "oczss").symlink_to(ROOT, target_is_directory=True)
    info = tmp / f"oczss-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: oczss\nVersion: {version}\n")
    sys.path.insert(0, str(tmp))
    return os.pathsep.join([str(tmp), *filter(None, [os.environ.get("PYTHONPATH")])])


def machine() -> dict:
    """What ran: the GPU, torch and CUDA, package versions, this source tree's hash."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    sources = sorted(p for p in ROOT.rglob("*.py") if ".whl" not in p.parts and ".venv" not in p.parts)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    cuda = torch.cuda.is_available()
    return {"gpu": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "cpus": os.cpu_count(),
            "packages": versions, "sources_sha256": digest.hexdigest()[:16], "date": time.strftime("%Y-%m-%d"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def step(command: list[str], cap: float, env: dict, log, figures: bool = False) -> dict:
    """Run one step under a time cap, its output into the log; its exit status and seconds, and with `figures`
    the JSON it printed."""
    start = time.perf_counter()
    log.write(f"\n==== {' '.join(command)} (cap {cap:.0f} s)\n")
    log.flush()
    out = ""
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE if figures else log,
                              stderr=log, text=True, timeout=cap)
        status, out = proc.returncode, proc.stdout or ""
    except subprocess.TimeoutExpired as e:
        status, out = "stopped at its time cap", e.stdout or ""
    log.write(out if isinstance(out, str) else out.decode(errors="replace"))
    log.flush()
    record = {"exit": status, "seconds": round(time.perf_counter() - start, 1)}
    if figures and status == 0:
        record.update(json.loads(out[out.index("{"):out.rindex("}") + 1]))
    return record


def test_outcomes(junit: Path) -> dict:
    """{test id: 'passed' | 'skipped: why' | 'failed: message'} from pytest's JUnit XML."""
    if not junit.is_file():
        return {}
    outcomes = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcomes[name] = "passed"
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcomes[name] = f"{'failed' if kind != 'skipped' else 'skipped'}: {found.get('message', '')[:500]}"
    return outcomes


def run_steps(args, deadline: float, tmp: Path, env: dict, log, report: dict, save) -> None:
    """The steps --only asks for (all by default), each under min(its cap, what is left until `deadline`), into
    report["steps"], saved after each."""
    wanted = set(args.only or [])
    benches = wanted - {"tests", "memory", "bench"}
    python = sys.executable

    def left() -> float:
        return deadline - time.perf_counter()

    if not wanted or "tests" in wanted:
        junit = tmp / "cuda-tests.xml"
        report["steps"]["tests"] = step(
            [python, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", f"--basetemp={tmp / 'pt'}",
             f"--junitxml={junit}", "tests/test_cuda.py"],
            min(CAPS["tests"] * args.cap_scale, left()), env, log)
        report["steps"]["tests"]["outcomes"] = test_outcomes(junit)
        save()
    if not wanted or "memory" in wanted:
        report["steps"]["memory"] = step([python, "bench/model.py", "--memory-only", "--device", args.device,
                                          *(["--tiny"] if args.tiny else [])],
                                         min(CAPS["memory"] * args.cap_scale, left()), env, log,
                                         figures=True)
        save()
    if not wanted or "bench" in wanted or benches:
        results = tmp / "bench-results.json"
        command = [python, "bench/all.py", "--device", args.device, "--out", str(results),
                   "--budget", str(max(0.0, left() - 10)), "--log", str(tmp / "bench.log"),
                   "--cap-scale", str(args.cap_scale),
                   *(["--tiny"] if args.tiny else []), *(["--only", *sorted(benches)] if benches else [])]
        report["steps"]["bench"] = step(command, max(1.0, left()), env, log)
        if results.is_file():
            report["steps"]["bench"].update(json.loads(results.read_text()))
        if (tmp / "bench.log").is_file():
            log.write((tmp / "bench.log").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-run"), help="folder for gpu-run.json and the log")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="smoke sizes for every benchmark (with --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="run without a GPU")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run")
    ap.add_argument("--only", nargs="*", help="steps (tests, memory, bench) or benchmarks (model, train, ...)")
    ap.add_argument("--cap-scale", type=float, default=1.0,
                    help="multiply every step's time cap (slow machines)")
    args = ap.parse_args()
    deadline = time.perf_counter() + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report_path, log_path = out / "gpu-run.json", out / "gpu-run.log"
    with tempfile.TemporaryDirectory(prefix="oczss-gpu-") as tmp, open(log_path, "w") as log:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": package_path(tmp), "PYTHONUNBUFFERED": "1"}
        report = {"machine": machine(), "command": " ".join(sys.argv[1:]), "steps": {}}

        def save():
            report_path.write_text(json.dumps(report, indent=2) + "\n")

        save()
        if report["machine"]["gpu"] is None and not args.dry_run:
            report["error"] = "torch sees no CUDA GPU on this machine: nothing was run (--dry-run runs without one)"
            save()
            print(report["error"], file=sys.stderr)
            return 2
        run_steps(args, deadline, tmp, env, log, report, save)
        report["seconds"] = round(args.budget - (deadline - time.perf_counter()), 1)
        save()
    steps = report["steps"]
    failed = [s for s, r in steps.items() if r["exit"] != 0]
    failed += [t for t, o in steps.get("tests", {}).get("outcomes", {}).items() if o.startswith("failed")]
    failed += [b for b, r in steps.get("bench", {}).get("runs", {}).items() if "error" in r]
    print(json.dumps({"report": str(report_path), "seconds": report["seconds"], "not ok": failed}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
