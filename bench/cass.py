"""`eval --method cass` throughput against plain CLIP, side by side in one run, in the three regimes of the protocol.

    python bench/cass.py [--device auto] [--images 20] [--regimes slide,voc21-whole,cityscapes]
    python bench/cass.py --device cpu --tiny --images 4      # smoke run (tiny CLIP and DINO)

Synthetic demo-style scenes through the shared evaluation loop, each regime with its benchmark's constants, class
names and image size:
    slide        COCO-Stuff: 640 x 480, short side 336, 224 windows at stride 112 (6 per image), 171 classes
    voc21-whole  VOC21: 500 x 375, short side 336, the whole 448 x 336 image as one window, 21 classes (47 names)
    cityscapes   Cityscapes: 2048 x 1024, short side 560, 224 / 112 windows (36 per image), each window's own
                 prior, 19 classes
`cass`: the full method (CLIP ViT-B/16 + DINO ViT-B/8, the paper's sizes). `plain`: the same loop and windows
with CLIP alone and its own last attention (Table 3's Exp.#1 without the Gaussian window): what CASS adds is the
DINO forward, the batched spectral steps and the presence prior. Random weights (the same arithmetic as the real
ones). Prints images/s of each and their ratio per regime, with the device and date.
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


REGIMES = {"slide": ("coco", (640, 480)), "voc21-whole": ("voc21", (500, 375)),
           "cityscapes": ("cityscapes", (2048, 1024))}


def regime(benchmark: str, size: tuple[int, int], images: int, backbones: tuple[str, str], device: torch.device,
           workers: int) -> dict:
    """images/s of plain CLIP and of CASS with `benchmark`'s constants and class names on `images` scenes."""
    names = class_names(benchmark)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Dataset("coco", make_coco_like(Path(tmp) / "data", images, split="val", size=size))
        samples = dataset.samples("val")
        for mode, config in (("plain", ablation(1, benchmark, gaussian_window=False)),
                             ("cass", for_benchmark(benchmark))):
            cass = build_cass(config, "random", "random", backbone=backbones[0], dino_model=backbones[1])
            segmenter = CassSegmenter(cass, config, names, device)
            run_split(dataset, samples[:1], segmenter, device, workers=0, progress=False)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            _, _, seconds = run_split(dataset, samples, segmenter, device, workers=workers, progress=False)
            figures[mode] = len(samples) / seconds
    return {"plain_images_per_second": round(figures["plain"], 3), "cass_images_per_second": round(figures["cass"], 3),
            "cass_over_plain": round(figures["cass"] / figures["plain"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP and DINO (smoke runs)")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--regimes", default=",".join(REGIMES), help=f"comma-separated, of {', '.join(REGIMES)}")
    args = ap.parse_args()
    chosen = [r for r in args.regimes.split(",") if r]
    unknown = [r for r in chosen if r not in REGIMES]
    if unknown or not chosen:
        ap.error(f"--regimes: {', '.join(unknown) or 'none given'}; choose from {', '.join(REGIMES)}")
    device = resolve_device(args.device)
    backbones = ("tiny", "tiny-p8") if args.tiny else ("ViT-B-16", "vit_base_patch8_224.dino")
    report = {name: regime(*REGIMES[name], args.images, backbones, device, args.workers) for name in chosen}
    print(json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else
                      f"cpu ({torch.get_num_threads()} threads)",
                      "backbones": f"{backbones[0]} + {backbones[1]} (random weights)", "images": args.images,
                      **report, "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
