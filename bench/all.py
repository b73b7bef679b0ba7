"""Every benchmark at the paper's settings, one after the other, their figures gathered into one JSON file.

    python bench/all.py [--out bench-results.json] [--device auto]
    python bench/all.py --tiny --device cpu                    # a smoke run of every script on a CPU

The runs (each script's docstring says what it measures and its goals): precompute (2,000 synthetic 640 x 480
images, the default R, batch 32), model (Table 11 rows in both ORA spaces, batch 16, 512^2, bf16; forward FLOPs; peak
inference memory), train (free / whole / view / online cluster modes, batch 16, 8 workers), eval (slide
inference), resize (eval preprocessing against cv2), prompts (the cluster modes' empty prompts, agreement and
cost), view_features (the view mode's stored resolution, random DINO weights here; bench/tiny_dino.py trains the
DINO for its other half), cass (CASS against plain CLIP), sm (Split Matching's parameter counts and training step),
predict (a folder through the API against one image at a time). Each script runs in its own process; a script that
fails is recorded with its error and the others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER = {
    "precompute": ["--images", "2000", "--batch-size", "32"],
    "model": ["--batch", "16", "--size", "512", "--iters", "20"],
    "train": ["--batch", "16", "--size", "512", "--iters", "30", "--workers", "8", "--images", "96"],
    "eval": ["--images", "50"],
    "resize": ["--images", "8"],
    "prompts": ["--views", "64", "--coco-images", "32"],
    "view_features": ["--dinos", "vit-b16", "--images", "6"],
    "cass": ["--images", "20"],
    "sm": ["--batch", "16", "--size", "512", "--iters", "20"],
    "predict": ["--images", "48", "--batch-size", "8", "--workers", "4"],
}
TINY = {
    "precompute": ["--images", "8", "--batch-size", "4", "--shard-size", "8", "--input-size", "128", "--grid", "16",
                   "--dino-model", "tiny"],
    "model": ["--tiny", "--batch", "2", "--size", "128", "--iters", "2", "--warmup", "1"],
    "train": ["--tiny", "--batch", "2", "--size", "128", "--iters", "2", "--warmup", "1", "--workers", "0",
              "--images", "8"],
    "eval": ["--tiny", "--images", "2", "--workers", "0"],
    "resize": ["--tiny", "--images", "2"],
    "prompts": ["--tiny", "--views", "8"],
    "view_features": ["--tiny", "--resolutions", "256,512"],
    "cass": ["--tiny", "--images", "2", "--workers", "0"],
    "sm": ["--tiny", "--batch", "2", "--size", "64", "--iters", "2", "--warmup", "1"],
    "predict": ["--tiny", "--images", "4", "--batch-size", "2", "--workers", "1"],
}


def run(script: str, args: list[str], device: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / f"{script}.py"), "--device", device, *args], cwd=HERE,
                          capture_output=True, text=True)
    out = proc.stdout
    try:
        figures = json.loads(out[out.index("{"):out.rindex("}") + 1])
    except ValueError:
        figures = {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    return {"command": f"python bench/{script}.py --device {device} {' '.join(args)}",
            "seconds": round(time.perf_counter() - start, 1), **figures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="smoke-run sizes")
    ap.add_argument("--only", nargs="*", help="run only these scripts")
    ap.add_argument("--out", default="bench-results.json")
    args = ap.parse_args()
    plan = TINY if args.tiny else PAPER
    results = {"date": time.strftime("%Y-%m-%d"), "runs": {}}
    for script, script_args in plan.items():
        if args.only and script not in args.only:
            continue
        print(f"== {script}", file=sys.stderr, flush=True)
        results["runs"][script] = run(script, script_args, args.device)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")  # kept after every script
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
