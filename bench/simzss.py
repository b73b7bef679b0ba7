"""SimZSS's text-tower training step from cached vision tokens against the online step, side by side in one run.

    python bench/simzss.py [--device auto] [--batch 256] [--iters 20]     # ViT-B/14 + the 63M text tower
    python bench/simzss.py --device cpu --tiny --batch 8 --iters 5        # smoke run (tiny-p14 + 2-layer text)
    python bench/simzss.py --pipeline --device cpu --tiny --batch 8 --iters 5   # the whole `oczss train` path

Both modes run `model.simzss.train_step` (L_g + 0.05 L_l, AdamW with the public code's settings, bf16 autocast on
CUDA) on the same batches: synthetic 224 x 224 images and captions naming benchmark classes, concepts from the
concept vocabulary, random weights throughout (the same arithmetic as the real ones).
    cached  the frozen tower's fp16 CLS and patch tokens, computed once (Stage 1), copied to the device per step
            (from pinned memory on CUDA); reading them from the cache's disk is not included
    online  the frozen tower run on the step's images, then the same step
Prints steps/s of each, the speed-up of cached over online, and the cached tokens' bytes per image.

--pipeline times the whole `oczss train --method simzss` path instead (pipeline/simzss/train.py through the shared
loop: loader workers, captions, concepts, views or cache reads): generated 640 x 480 COCO-like images with five
captions each, their Stage 1 dinov2-tokens cache made first (its time printed too), then the run from the cache
(`tokens: cache`) and the run with the tower in the step (`tokens: online`, RandomResizedCrop views). steps/s from
the loop's own per-step timings, after `warmup` steps.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from oczss.model.simzss import SimZSS, SimZSSConfig, SimZSSSchedule, load_vision, optimizer, train_step
from oczss.pipeline.data.caption_tokens import TokenAligner, collate
from oczss.pipeline.data.concepts import ConceptConfig, build
from oczss.pipeline.runtime import resolve_device

NOUNS = ("dog", "cat", "person", "horse", "pizza", "bus", "tree", "grass", "table", "sofa", "car", "sky", "giraffe")


def text_batch(size: int, rng: random.Random):
    """Captions naming two benchmark classes each, as a TextBatch."""
    aligner, concepts = TokenAligner(), ConceptConfig(source="vocabulary")
    cleaned = [aligner.clean(f"A {rng.choice(NOUNS)} next to a {rng.choice(NOUNS)} on a sunny day.")
               for _ in range(size)]
    found = build(concepts)(cleaned)
    return collate([aligner.encode(c, k, concepts.max_concepts, concepts.max_tokens) for c, k in zip(cleaned, found)])


def measure(model, optim, schedule, batch, step_tokens, args, device) -> float:
    """Steps per second over `iters` steps after `warmup`; step_tokens() -> (cls, patches) on the device."""
    for i in range(args.warmup + args.iters):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        cls, patches = step_tokens()
        train_step(model, optim, schedule.lr_at(i), batch, cls, patches, amp=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return args.iters / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny-p14 and a 2-layer text tower (smoke runs)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pipeline", action="store_true", help="time `oczss train` from the cache and online")
    ap.add_argument("--workers", type=int, default=2, help="loader workers (--pipeline)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.pipeline:
        print(json.dumps(pipeline(args, device), indent=2))
        return
    cfg = SimZSSConfig.preset("tiny" if args.tiny else "base", vision_weights="random")
    vision = load_vision(cfg.vision, cfg.vision_weights, cfg.image_size).to(device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8, generator=gen)
    images = images.pin_memory() if device.type == "cuda" else images
    batch = text_batch(args.batch, random.Random(0)).to(device)
    cls, patches = (t.half().cpu() for t in vision(images.to(device)))  # Stage 1: once
    if device.type == "cuda":
        cls, patches = cls.pin_memory(), patches.pin_memory()
    schedule = SimZSSSchedule(batch_size=args.batch, samples=args.batch * (args.warmup + args.iters))
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "vision": cfg.vision, "text_width": cfg.text_width, "text_layers": cfg.text_layers,
               "batch": args.batch, "image_size": cfg.image_size, "iters": args.iters,
               "date": time.strftime("%Y-%m-%d"),
               "cached_bytes_per_image": (cls[0].numel() + patches[0].numel()) * 2}
    modes = {"cached": lambda: (cls.to(device, non_blocking=True), patches.to(device, non_blocking=True)),
             "online": lambda: vision(images.to(device, non_blocking=True))}
    for mode, step_tokens in modes.items():
        model = SimZSS(cfg, vision.width).to(device)  # the same start for both modes
        results[f"{mode} steps/s"] = round(measure(model, optimizer(model, schedule), schedule, batch, step_tokens,
                                                   args, device), 3)
    results["cached / online"] = round(results["cached steps/s"] / results["online steps/s"], 2)
    print(json.dumps(results, indent=2))


def pipeline(args, device) -> dict:
    """The --pipeline figures (module docstring)."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
    from oczss.pipeline.stage2.recipes import RECIPES
    from oczss.pipeline.training.loop import train
    from synthetic import make_captions

    steps = args.warmup + args.iters
    recipe = RECIPES["simzss-demo" if args.tiny else "simzss-coco-captions"][1]
    simzss = {**recipe.model["simzss"], "vision_weights": "random"}
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "vision":
           simzss.get("vision", "vit_base_patch14_dinov2"), "batch": args.batch, "iters": args.iters,
           "workers": args.workers, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_captions(Path(tmp) / "MSCOCO", args.batch * steps)
        cache, start = str(Path(tmp) / "tokens.zarr"), time.perf_counter()
        precompute(PrecomputeConfig(masks="dinov2-tokens", dataset="coco-captions", split="train", cache=cache,
                                    data_root=str(root), vision_model=out["vision"], weights="random",
                                    input_size=simzss.get("image_size", 224), device=str(device)), progress=False)
        out["stage1 images/s"] = round(args.batch * steps / (time.perf_counter() - start), 2)
        for tokens in ("cache", "online"):
            cfg = dataclasses.replace(recipe, iters=steps, batch_size=args.batch, workers=args.workers, log_every=1,
                                      save_every=steps, milestone_every=steps, model={
                                          **recipe.model, "simzss": simzss, "concepts": {"source": "vocabulary"},
                                          "tokens": tokens})
            run = Path(tmp) / tokens
            train(cfg, out=run, data_root=str(root), cache=cache, device=str(device), progress=False)
            rates = [json.loads(line)["it_s"] for line in (run / "metrics.jsonl").read_text().splitlines()]
            out[f"{tokens} steps/s"] = round(args.iters / sum(1 / r for r in rates[args.warmup:]), 3)
    out["cache / online"] = round(out["cache steps/s"] / out["online steps/s"], 2)
    return out


if __name__ == "__main__":
    main()
