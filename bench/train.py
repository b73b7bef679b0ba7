"""Stage 2 training throughput by cluster mode, side by side in one run.

    python bench/train.py [--device auto] [--batch 16] [--size 512] [--iters 30] [--workers 8] [--images 96]
    python bench/train.py --device cpu --tiny --batch 2 --size 128 --iters 5 --workers 2 --images 16   # smoke run

Every mode runs the step of `oczss train` (its DataLoader: TrainData, Positions, seeded workers, pinned memory;
clusters.device_batches; the full OC-ZSS model, COCO's 100 VPT tokens; bf16 autocast on CUDA; AdamW) on synthetic
COCO-layout scenes (640 x 480) with COCO's seen classes and augmentation:
    free    constant clusters handed to the step: what a training step costs with clusters at no cost
    whole   the cache's whole-image cluster maps sampled per view
    view    the cache's compact DINO tokens sampled per view, FPS-Voronoi in the step (the default mode)
    online  DINO on each view in the step (on CUDA, the next batch's DINO on a side stream)
Random weights throughout (the same arithmetic as the real ones). Prints it/s and the data-wait share of each, and
each mode's it/s over `free` (goal for the cached modes: >= 0.95; data wait < 5 % with the default workers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from oczss.model import OCZSSConfig, build_model
from oczss.model.dino import DEFAULT_MODEL, DinoFeatures, load_dino
from oczss.model.names import TINY
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.runtime import autocast, resolve_device
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.stage2.clusters import StepClusters, device_batches, open_cached
from oczss.pipeline.stage2.loader import Positions, TrainData, seed_worker
from oczss.pipeline.workers import collate, unwrap
from synthetic import make_coco_like

N_O = 6


def batches(dataset, samples, maps, mode, args, device, clusters):
    data = TrainData(dataset, samples, "inductive", maps, mode, args.size, 16, seed=0)
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch, sampler=Positions(len(samples), 0, 0, args.batch), num_workers=args.workers,
        pin_memory=device.type == "cuda", worker_init_fn=seed_worker, collate_fn=collate,
        persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)
    return device_batches(unwrap(iter(loader)), device, clusters)


def measure(model, stream, text, args, device, free: torch.Tensor | None) -> dict:
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=2.5e-4, weight_decay=0.01, fused=device.type == "cuda")
    model.train()
    waited = 0.0
    for i in range(args.warmup + args.iters):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, waited = time.perf_counter(), 0.0
        t = time.perf_counter()
        batch = next(stream)
        waited += time.perf_counter() - t
        clusters = free if free is not None else batch["patch_clusters"]
        with autocast(device):
            loss = model.loss(model(batch["image"], clusters, text, batch["first"]), batch["label"])["total"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return {"it/s": round(args.iters / elapsed, 3), "data_wait_share": round(waited / elapsed, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP and DINO instead of ViT-B/16 (smoke runs)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--images", type=int, default=96)
    args = ap.parse_args()
    device = resolve_device(args.device)
    dino_name = TINY if args.tiny else DEFAULT_MODEL
    side = args.size // 16
    with tempfile.TemporaryDirectory() as tmp:
        root = make_coco_like(Path(tmp) / "data", args.images)
        cache = str(Path(tmp) / "cache.zarr")
        precompute(PrecomputeConfig(dataset="coco", cache=cache, data_root=str(root), ks=(N_O,), input_size=args.size,
                                    weights="random", dino_model=dino_name, device=str(device),
                                    feature_dim=32), progress=False)
        dataset = Dataset("coco", root)
        model = build_model(OCZSSConfig(backbone="tiny" if args.tiny else "ViT-B-16", weights="random",
                                        num_objects=N_O, num_vpt=100)).to(device)
        dim = model.encoder.clip.output_dim
        text = F.normalize(torch.randn(len(dataset.spec.seen), dataset.spec.templates, dim), dim=-1).to(device)
        dino = DinoFeatures(load_dino(dino_name, "random", args.size, dynamic=True), 0).to(device)
        results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   "backbone": "tiny" if args.tiny else "ViT-B/16 (random weights)", "batch": args.batch,
                   "size": args.size, "workers": args.workers, "date": time.strftime("%Y-%m-%d")}
        free = torch.arange(side * side, device=device).remainder(N_O).expand(args.batch, -1)
        for mode in ("free", "whole", "view", "online"):
            cached = "whole" if mode == "free" else mode
            maps = None
            samples = dataset.samples("train")
            if cached in ("whole", "view"):
                samples, maps, _, _ = open_cached(samples, cache, "coco", "train", cached, N_O)
            stream = batches(dataset, samples, maps, cached, args, device,
                             StepClusters(cached, N_O, (side, side), dino))
            results[mode] = measure(model, stream, text, args, device, free if mode == "free" else None)
    for mode in ("whole", "view", "online"):
        results[f"{mode} / free"] = round(results[mode]["it/s"] / results["free"]["it/s"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
