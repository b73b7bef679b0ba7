"""Stage 1 throughput: end-to-end precompute images/s against the DINO forward alone, in one run.

    python bench/precompute.py [--device auto] [--input-size 448] [--batch-size 32] [--images 256]

Both measurements use the same device, input size (640 x 480 at short side R: 592 x 448 for R = 448), batch size
and DINO (ViT-B/16 by default, random weights:
the same arithmetic as the real ones, and nothing to download). The images are synthetic 640x480 JPEG scenes
(the COCO size) in the COCO-Stuff layout. Prints images/s of each, their ratio, and bytes per image on disk.
Goals (issue 2): ratio >= 0.8 on a 2-core CPU; on an H100 at the default R >= 1000 images/s end to end and ratio >= 0.7;
<= 1.5 KB per image for K in {6, 8}, S = 64; the view mode's compact features <= 64 KB per image (issue 12).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from oczss.cache.store import MaskCache
from oczss.model.dino import DinoFeatures, load_dino
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage1.tokens import MAX_ASPECT, input_size
from synthetic import make_coco_like


def time_forward(extract: DinoFeatures, device: torch.device, size: tuple[int, int], batch: int, iters: int) -> float:
    """Images/s of the DINO forward alone on a uint8 batch of (w, h) images already on the device."""
    x = torch.randint(0, 256, (batch, size[1], size[0], 3), dtype=torch.uint8, device=device)
    for _ in range(2):
        extract(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        extract(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--input-size", type=int, default=PrecomputeConfig.input_size)
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--decode-threads", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--dino-model", default="vit_base_patch16_224.dino")
    ap.add_argument("--forward-iters", type=int, default=0, help="default: as many images as end to end")
    ap.add_argument("--feature-dim", type=int, default=32, help="compact features for the view mode (0: none)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_coco_like(root, args.images, labels=False)
        cfg = PrecomputeConfig(dataset="coco", data_root=str(root), cache=str(Path(tmp) / "bench.zarr"),
                               split="train", ks=(6, 8), input_size=args.input_size, grid=args.grid,
                               batch_size=args.batch_size, device=str(device), weights="random",
                               dino_model=args.dino_model, shard_size=args.shard_size,
                               decode_threads=args.decode_threads, feature_dim=args.feature_dim)
        summary = precompute(cfg, progress=False)
        group = MaskCache.open(cfg.cache).split("coco", "train").group
        stored = {name: a.nbytes_stored() / summary.images for name, a in group.arrays()}
        dino = load_dino(args.dino_model, "random", args.input_size, dynamic=True)
        extract = DinoFeatures(dino, args.grid).to(device)
        iters = args.forward_iters or max(1, args.images // args.batch_size)
        size = input_size(640, 480, args.input_size, extract.patch, MAX_ASPECT * args.input_size // extract.patch)
        forward = time_forward(extract, device, size, args.batch_size, iters)
    e2e = summary.images_per_second
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "dino": args.dino_model, "input_size": args.input_size, "grid": args.grid, "batch_size": args.batch_size,
        "images": summary.images, "end_to_end_img_s": round(e2e, 2), "dino_forward_img_s": round(forward, 2),
        "ratio": round(e2e / forward, 3),
        "bytes_per_image_k6_k8": round(stored["labels_k6"] + stored["labels_k8"], 1),
        "bytes_per_image_features": round(stored.get("features", 0.0), 1), "feature_dim": args.feature_dim,
        "date": time.strftime("%Y-%m-%d"), "weights": "random (same arithmetic as pretrained)",
    }
    print(json.dumps(result, indent=2))
    print(f"end to end {e2e:.1f} img/s, DINO forward alone {forward:.1f} img/s, ratio {e2e / forward:.2f}; "
          f"{result['bytes_per_image_k6_k8']:.0f} B/image on disk (K=6,8, S={args.grid})", file=sys.stderr)


if __name__ == "__main__":
    main()
