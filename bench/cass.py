"""`eval --method cass` throughput against plain CLIP sliding-window inference, side by side in one run.

    python bench/cass.py [--device auto] [--images 20]
    python bench/cass.py --device cpu --tiny --images 4      # smoke run (tiny CLIP and DINO)

Synthetic 640 x 480 scenes in the COCO-Stuff layout evaluated with CASS's COCO-Stuff protocol (short side 336,
224 windows, stride 112, the 171 class names) through the shared evaluation loop. `cass`: the full method (CLIP
ViT-B/16 + DINO ViT-B/8, the paper's sizes). `plain`: the same loop and windows with CLIP alone and its own last
attention (Table 3's Exp.#1 without the Gaussian window): what CASS adds is the DINO forward, the batched spectral
steps and the presence prior. Random weights (the same arithmetic as the real ones). Prints images/s of each and
their ratio, with the device and date.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from oczss.model.cass import ablation, build_cass, for_benchmark
from oczss.pipeline.cass.segment import CassSegmenter
from oczss.pipeline.data.classes import class_names
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.evaluation import run_split
from oczss.pipeline.runtime import resolve_device
from synthetic import make_coco_like


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP and DINO (smoke runs)")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    device = resolve_device(args.device)
    backbone, dino = ("tiny", "tiny-p8") if args.tiny else ("ViT-B-16", "vit_base_patch8_224.dino")
    names = class_names("coco")
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_coco_like(Path(tmp) / "data", args.images, split="val")
        dataset = Dataset("coco", root)
        samples = dataset.samples("val")
        for mode, config in (("plain", ablation(1, "coco", gaussian_window=False)), ("cass", for_benchmark("coco"))):
            cass = build_cass(config, "random", "random", backbone=backbone, dino_model=dino)
            segmenter = CassSegmenter(cass, config, names, device)
            run_split(dataset, samples[:1], segmenter, device, workers=0, progress=False)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            _, _, seconds = run_split(dataset, samples, segmenter, device, workers=args.workers, progress=False)
            figures[mode] = len(samples) / seconds
    print(json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
                      "backbones": f"{backbone} + {dino} (random weights)", "images": args.images,
                      "plain_images_per_second": round(figures["plain"], 3),
                      "cass_images_per_second": round(figures["cass"], 3),
                      "cass_over_plain": round(figures["cass"] / figures["plain"], 3),
                      "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
