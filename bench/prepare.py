"""`oczss data prepare coco` throughput: label maps/s of the COCO-Stuff conversion against reading and writing the
same PNGs alone (decode, encode, atomic write; no mapping), side by side in one run.

    python bench/prepare.py [--maps 400] [--workers N] [--rounds 2] [--json PATH]

The raw data is synthetic in the publisher's layout: images/{train,val}2017/*.jpg and annotations/{train,val}2017/
*.png, 640 x 480 (the COCO size), label maps with demo-scene regions holding COCO-Stuff values 0..181 and 255.
The conversion is the whole `prepare("coco")` (input checks, image hard links, label maps); the baseline runs the
same parallel runner over the same maps with a re-encode instead of the mapping. Each is run `--rounds` times in
alternation and the best is kept. Prints both rates and their ratio (goal, issue 8: >= 0.8).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from oczss.pipeline.data.demo_scenes import scene
from oczss.pipeline.data.prepare import prepare
from oczss.pipeline.data.prepare.runner import Plan, Task, default_workers, execute
from oczss.pipeline.data.prepare.sources import FolderTree


def make_raw(root: Path, n: int, size=(640, 480)) -> list[str]:
    """n maps (one in eight in val2017) with their images; returns the maps' names under annotations/."""
    rng = np.random.default_rng(0)
    values = np.append(np.arange(182), 255)
    names = []
    for i in range(n):
        sub = "val2017" if i % 8 == 7 else "train2017"
        image, label = scene(rng, size)
        lut = np.full(256, 255, np.uint8)
        lut[:8] = rng.choice(values, 8, replace=False)
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / sub).mkdir(parents=True, exist_ok=True)
        image.save(root / "images" / sub / f"{i:012d}.jpg", quality=90)
        Image.fromarray(lut[label], mode="L").save(root / "annotations" / sub / f"{i:012d}.png")
        names.append(f"{sub}/{i:012d}.png")
    return names


def reencode(ref) -> bytes:
    """The baseline's work per map: decode the PNG and encode it again, unchanged."""
    buf = io.BytesIO()
    with Image.open(io.BytesIO(ref.read())) as im:
        im.save(buf, format="PNG")
    return buf.getvalue()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=int, default=400)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        names = make_raw(raw, args.maps)
        maps = FolderTree(raw / "annotations")
        conversion, baseline = 0.0, 0.0
        for r in range(args.rounds):
            out = Path(tmp) / f"base{r}"
            plan = Plan([Task([(n, out / n) for n in names], reencode, maps)])
            s = execute(plan, out, args.workers, "read + write")
            baseline = max(baseline, len(names) / s.seconds)
            out = Path(tmp) / f"conv{r}"
            s = prepare("coco", raw, out, workers=args.workers)
            conversion = max(conversion, len(names) / s.seconds)
            shutil.rmtree(Path(tmp) / f"base{r}")
            shutil.rmtree(out)
    result = {
        "device": f"cpu ({cpu_name()}), {args.workers} worker processes",
        "maps": args.maps, "size": "640x480", "rounds": args.rounds,
        "conversion_maps_s": round(conversion, 1), "read_write_only_maps_s": round(baseline, 1),
        "ratio": round(conversion / baseline, 3), "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"COCO-Stuff conversion {conversion:.1f} maps/s, read + write alone {baseline:.1f} maps/s, ratio "
          f"{conversion / baseline:.2f} (goal >= 0.8)", file=sys.stderr)


if __name__ == "__main__":
    main()
