"""`oczss predict` over a folder through the Python API, against one image at a time, side by side in one run.

    python bench/predict.py [--device auto] [--images 48] [--batch-size 8] [--workers 2]
    python bench/predict.py --device cpu --tiny --images 16            # the CPU figure (tiny CLIP and DINO)

Synthetic 640 x 480 JPEG scenes in one folder, CASS (random weights: the same arithmetic as real ones) with 20
class names, overlay and label PNGs written for every image. `one_at_a_time`: what predict did before it went
through the API: decode an image, segment it, write its two pictures, then the next (`seg(path).save(out)` in a
loop). `folder`: `oczss predict FOLDER --batch-size B --workers W` (pipeline/prediction.py): decoding threads ahead
of the model, writing threads behind it, predictions.jsonl. Both use the same loaded segmenter, after a warm-up
image. Prints images/s of each and their ratio, with the device and date.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from oczss.pipeline.prediction import plan, run
from oczss.pipeline.segmenter import load
from synthetic import make_coco_like

CLASSES = ("sky,grass,sand,water,circle,square,triangle,star,person,car,tree,road|street,building,dog,cat,chair,"
           "table,window,door,wall")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP and DINO (smoke runs, CPU figures)")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    backbone, dino = ("tiny", "tiny-p8") if args.tiny else ("ViT-B-16", "vit_base_patch8_224.dino")
    seg = load("cass", device=args.device, weights="random", backbone=backbone, dino_model=dino)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_coco_like(Path(tmp) / "data", args.images, split="val", labels=False) / "val2017"
        paths = sorted(folder.glob("*.jpg"))
        seg(paths[0], CLASSES).save(Path(tmp) / "warm-up")  # text embeddings, first-call costs
        start = time.perf_counter()
        for path in paths:
            seg(path, CLASSES).save(Path(tmp) / "one")
        _sync(seg.device)
        one = len(paths) / (time.perf_counter() - start)
        start = time.perf_counter()
        summary = run(plan([str(folder)], CLASSES, Path(tmp) / "folder"), seg, batch_size=args.batch_size,
                      workers=args.workers, show_progress=False)
        _sync(seg.device)
        folder_rate = summary.written / (time.perf_counter() - start)
    print(json.dumps({"device": torch.cuda.get_device_name() if seg.device.type == "cuda" else
                      f"cpu ({torch.get_num_threads()} threads)", "date": time.strftime("%Y-%m-%d"),
                      "backbones": f"{backbone} + {dino} (random weights)", "images": len(paths),
                      "batch_size": args.batch_size, "workers": args.workers,
                      "one_at_a_time_images_per_second": round(one, 3),
                      "folder_images_per_second": round(folder_rate, 3),
                      "folder_over_one_at_a_time": round(folder_rate / one, 3)}, indent=2))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
