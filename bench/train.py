"""Stage 2 training throughput: cached DINO masks against DINO clusters computed inside each step, in one run.

    python bench/train.py [--device auto] [--batch 16] [--size 512] [--iters 30] [--workers 8] [--images 96]
    python bench/train.py --device cpu --tiny --batch 2 --size 128 --iters 5 --workers 2 --images 16   # smoke run

Both modes run the step of `oczss train` (the same DataLoader: TrainData, Positions, seeded workers, pinned
memory, non-blocking copies; the full OC-ZSS model; bf16 autocast on CUDA; AdamW) on synthetic COCO-layout
scenes (640 x 480) with COCO's seen classes. `cached`: per-patch clusters come from the mask cache (Stage 1,
built first, not timed). `in-step`: the frozen DINO ViT-B/16 runs on each batch's crops and FPS-Voronoi
clusters them inside the step (what the cache saves). Random weights throughout (the same arithmetic as the real
ones). Prints it/s of each, their ratio (goal: cached >= 1.4x), and the share of step time spent waiting for
data in the cached mode (goal: < 5% on an H100 at batch 16, 512^2).
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
from oczss.model.clustering import fps_voronoi
from oczss.pipeline.stage2.clusters import with_clusters
from oczss.pipeline.stage2.loader import Positions, TrainData, seed_worker
from oczss.pipeline.data.datasets import Dataset
from oczss.model.dino import DEFAULT_MODEL, DinoFeatures, load_dino
from oczss.model.weights import TINY
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.runtime import autocast, resolve_device
from oczss.pipeline.data.transforms import MEAN, STD
from synthetic import make_coco_like

N_O = 6


def loader(dataset, samples, grids, args, device):
    data = TrainData(dataset, samples, "inductive", grids, args.size, 16, seed=0)
    return iter(torch.utils.data.DataLoader(
        data, batch_size=args.batch, sampler=Positions(len(samples), 0, 0, args.batch), num_workers=args.workers,
        pin_memory=device.type == "cuda", worker_init_fn=seed_worker, persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers else None))


def in_step_clusters(dino: DinoFeatures, images: torch.Tensor, patch: int) -> torch.Tensor:
    """DINO + FPS-Voronoi on the batch's crops: LongTensor [B, h*w] per-patch clusters."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    pixels = (images.float() * std + mean).permute(0, 2, 3, 1)  # back to [B, H, W, 3] in 0..255
    feats = dino(pixels)
    s, b, size = dino.grid, images.shape[0], images.shape[-1]
    first = torch.randint(s * s, (b,), device=images.device)
    grid = fps_voronoi(feats, [N_O], first)[N_O].view(b, s, s)
    idx = ((torch.arange(size // patch, device=images.device) * patch + patch // 2) * s) // size
    return grid[:, idx][:, :, idx].reshape(b, -1)


def measure(mode, model, batches, text, dino, args, device) -> dict:
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=2.5e-4, weight_decay=0.01)
    model.train()
    waited = 0.0
    for i in range(args.warmup + args.iters):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, waited = time.perf_counter(), 0.0
        t = time.perf_counter()
        batch = next(batches)
        images, target = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
        clusters = batch["clusters"].to(device, non_blocking=True)
        waited += time.perf_counter() - t
        with autocast(device):
            if mode == "in-step":
                clusters = in_step_clusters(dino, images, model.encoder.patch_size)
            loss = model.loss(model(images, clusters, text), target)["total"]
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
    with tempfile.TemporaryDirectory() as tmp:
        root = make_coco_like(Path(tmp) / "data", args.images)
        cache = str(Path(tmp) / "cache.zarr")
        precompute(PrecomputeConfig(dataset="coco", cache=cache, data_root=str(root), ks=(N_O,),
                                    input_size=args.size, weights="random", dino_model=dino_name,
                                    device=str(device)), progress=False)
        dataset = Dataset("coco", root)
        samples, grids, _ = with_clusters(dataset.samples("train"), cache, "coco", "train", N_O)
        model = build_model(OCZSSConfig(backbone="tiny" if args.tiny else "ViT-B-16", weights="random",
                                        num_objects=N_O, num_vpt=100)).to(device)
        dim = model.encoder.clip.output_dim
        text = F.normalize(torch.randn(len(dataset.spec.seen), dataset.spec.templates, dim), dim=-1).to(device)
        dino = DinoFeatures(load_dino(dino_name, "random", args.size), 64).to(device)
        results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   "backbone": "tiny" if args.tiny else "ViT-B/16 (random weights)", "batch": args.batch,
                   "size": args.size, "workers": args.workers, "date": time.strftime("%Y-%m-%d")}
        for mode, source in (("cached", grids), ("in-step", None)):
            results[mode] = measure(mode, model, loader(dataset, samples, source, args, device), text, dino, args,
                                    device)
    results["cached / in-step"] = round(results["cached"]["it/s"] / results["in-step"]["it/s"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
