"""`oczss eval` throughput: images/s over a split, sliding-window inference, end to end (decode, DINO clusters
from the cache, model, metrics).

    python bench/eval.py [--device auto] [--images 50] [--mode slide]
    python bench/eval.py --device cpu --tiny --images 4      # smoke run

Synthetic COCO-layout val scenes (640 x 480, COCO's size) evaluated with COCO's protocol (short side 512,
512 windows, stride 426, all 171 classes); the full OC-ZSS model (COCO: 100 VPT tokens) with random weights,
trained for one iteration so that the checkpoint is a real one. Prints images/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from oczss.model.dino import DEFAULT_MODEL
from oczss.model.names import TINY
from oczss.pipeline.stage2.evaluate import evaluate
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.stage2.recipes import resolve
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.training.loop import train
from synthetic import make_coco_like


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP and DINO instead of ViT-B/16 (smoke runs)")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--mode", default="slide", choices=["slide", "whole"])
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    device = str(resolve_device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_coco_like(tmp / "data", 2)
        make_coco_like(root, args.images, split="val")
        cache = str(tmp / "cache.zarr")
        precompute(PrecomputeConfig(dataset="coco", cache=cache, data_root=str(root), split="all", ks=(6,),
                                    weights="random", dino_model=TINY if args.tiny else DEFAULT_MODEL,
                                    device=device), progress=False)
        cfg = resolve("coco-inductive", None)
        model = {**cfg.model, "weights": "random", **({"backbone": "tiny", "num_vpt": 4} if args.tiny else {})}
        dim = 32 if args.tiny else 512
        text = np.random.default_rng(0).normal(size=(171, 8, dim)).astype(np.float32)
        np.save(tmp / "text.npy", text / np.linalg.norm(text, axis=-1, keepdims=True))
        cfg = dataclasses.replace(cfg, iters=1, batch_size=1, workers=0, text=str(tmp / "text.npy"), model=model)
        train(cfg, out=tmp / "run", data_root=str(root), cache=cache, device=device, progress=False)
        report = evaluate(str(tmp / "run" / "last.pt"), "coco", mode=args.mode, data_root=str(root), cache=cache,
                          device=device, workers=args.workers, progress=False)
    print(json.dumps({"device": report["device"], "backbone": model.get("backbone", "ViT-B-16") + " (random weights)",
                      "mode": args.mode, "images": report["images"],
                      "images_per_second": round(report["images_per_second"], 3),
                      "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
