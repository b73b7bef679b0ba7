"""Every benchmark at the paper's settings, one after the other, their figures gathered into one JSON file.

    python bench/all.py [--out bench-results.json] [--device auto] [--budget SECONDS] [--log FILE]
    python bench/all.py --tiny --device cpu                    # a smoke run of every script on a CPU

The runs, in issue 19's order of importance (each script's docstring says what it measures and its goals): model
(Table 11 rows in both ORA spaces, batch 16, 512^2, bf16, with a torch.profiler table of the full model's step;
the FLOP counts are device-independent: `python bench/model.py --flops-only`), train (free / whole / view / online
cluster modes, batch 16, 8 workers, data-wait share), precompute (2,000 synthetic 640 x 480 images, the default R,
batch 32), eval (slide inference), cass (CASS against plain CLIP), prepare (`data prepare coco`), prompts (the
cluster modes' empty prompts, agreement and cost); then resize (eval preprocessing against cv2), view_features (the
view mode's stored resolution, random DINO weights here; bench/tiny_dino.py trains the DINO for its other half), sm
(Split Matching's parameter counts, its training step beside OC-ZSS's, the online candidates' cost), predict (a
folder through the API against one image at a time). Each script runs in its own process group under its own time
cap (CAPS, further cut to what is left of --budget), so one slow benchmark cannot eat the run; a script that fails
or runs out of time is recorded with its error and the last lines it printed, and the others still run. The JSON is
rewritten after every script, so whatever finished survives a run that is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER = {
    "model": ["--batch", "16", "--size", "512", "--iters", "20", "--skip-flops", "--profile"],
    "train": ["--batch", "16", "--size", "512", "--iters", "30", "--workers", "8", "--images", "96"],
    "precompute": ["--images", "2000", "--batch-size", "32"],
    "eval": ["--images", "50"],
    "cass": ["--images", "20"],
    "prepare": ["--maps", "400"],
    "prompts": ["--views", "64", "--coco-images", "32"],
    "resize": ["--images", "8"],
    "view_features": ["--dinos", "vit-b16", "--images", "6"],
    "sm": ["--batch", "16", "--size", "512", "--iters", "20"],
    "predict": ["--images", "48", "--batch-size", "8", "--workers", "4"],
}
TINY = {
    "model": ["--tiny", "--batch", "1", "--size", "64", "--classes", "2", "--iters", "1", "--warmup", "1",
              "--profile"],
    "train": ["--tiny", "--batch", "1", "--size", "64", "--iters", "1", "--warmup", "1", "--workers", "0",
              "--images", "2"],
    "precompute": ["--images", "4", "--batch-size", "4", "--shard-size", "4", "--input-size", "64", "--grid", "8",
                   "--dino-model", "tiny", "--decode-threads", "1"],
    "eval": ["--tiny", "--images", "1", "--workers", "0"],
    "cass": ["--tiny", "--images", "1", "--workers", "0"],
    "prepare": ["--maps", "8", "--workers", "1", "--rounds", "1"],
    "prompts": ["--tiny", "--views", "4"],
    "resize": ["--tiny", "--images", "2"],
    "view_features": ["--tiny", "--resolutions", "256,512"],
    "sm": ["--tiny", "--batch", "2", "--size", "64", "--iters", "2", "--warmup", "1"],
    "predict": ["--tiny", "--images", "4", "--batch-size", "2", "--workers", "1"],
}
CAPS = {"model": 120, "train": 120, "precompute": 90, "eval": 60, "cass": 60, "prepare": 45, "prompts": 45,
        "resize": 45, "view_features": 60, "sm": 60, "predict": 45}
NO_DEVICE = {"prepare"}  # CPU-only scripts take no --device
MIN_SECONDS = 10  # a script is not started with less time than this left


def run(script: str, args: list[str], device: str, cap: float, log) -> dict:
    """Run one script under a time cap; its figures (the JSON it prints), or its error."""
    command = [sys.executable, str(HERE / f"{script}.py"), *([] if script in NO_DEVICE else ["--device", device]),
               *args]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=cap)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and its loader workers / threads
        out, err = proc.communicate()
        timed_out = True
    seconds = round(time.perf_counter() - start, 1)
    if log is not None:
        log.write(f"\n== {script} ({seconds} s, exit {proc.returncode}): {' '.join(command)}\n{out}\n{err}\n")
        log.flush()
    record = {"command": f"python bench/{' '.join(Path(c).name if c.endswith('.py') else c for c in command[1:])}",
              "seconds": seconds}
    if timed_out:
        return {**record, "error": f"stopped at its time cap of {cap:.3g} s", "last_output": err.strip()[-1500:]}
    try:
        return {**record, **json.loads(out[out.index("{"):out.rindex("}") + 1])}
    except ValueError:
        return {**record, "error": f"exit {proc.returncode}", "last_output": err.strip()[-2000:]}


def run_all(plan: dict, device: str, budget: float, out: Path, log=None, only=None,
            cap_scale: float = 1.0) -> dict:
    """Every script of `plan` in order, each under min(its cap x `cap_scale`, what is left of `budget` seconds)."""
    deadline = time.perf_counter() + budget
    results = {"date": time.strftime("%Y-%m-%d"), "device": device, "runs": {}}
    for script, script_args in plan.items():
        if only and script not in only:
            continue
        left = deadline - time.perf_counter()
        if left < MIN_SECONDS:
            results["runs"][script] = {"error": f"not run: {left:.0f} s of the {budget:.0f} s budget left"}
        else:
            print(f"== {script}", file=sys.stderr, flush=True)
            results["runs"][script] = run(script, script_args, device, min(CAPS[script] * cap_scale, left), log)
        out.write_text(json.dumps(results, indent=2) + "\n")  # kept after every script
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="smoke-run sizes")
    ap.add_argument("--only", nargs="*", help="run only these scripts")
    ap.add_argument("--budget", type=float, default=3600.0, help="seconds for all scripts together")
    ap.add_argument("--log", help="append every script's output to this file")
    ap.add_argument("--cap-scale", type=float, default=1.0,
                    help="multiply every script's time cap (slow machines)")
    ap.add_argument("--out", default="bench-results.json")
    args = ap.parse_args()
    log = open(args.log, "a") if args.log else None
    try:
        results = run_all(TINY if args.tiny else PAPER, args.device, args.budget, Path(args.out), log, args.only,
                          args.cap_scale)
    finally:
        if log is not None:
            log.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
