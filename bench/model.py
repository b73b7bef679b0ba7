"""Model throughput (Table 11) and inference memory (Table 4), in one run.

    python bench/model.py [--device cuda] [--batch 16] [--size 512] [--iters 20]
    python bench/model.py --device cpu --tiny --batch 2 --size 128 --iters 3     # a smoke run without a GPU

Training-step iterations/s (forward, §6 loss, backward, AdamW step; bf16 autocast on CUDA) for the rows of
Table 11: the OTSeg baseline, + object prompts, + ORA, + granular attention (the full model), each also as a
ratio to the frozen CLIP image tower's forward + backward alone (CLIP's own tokens, no prompts, through the
same SDPA blocks, position embeddings resized to the grid, gradients flowing to the input) measured in the same
run. Then the full model's peak inference memory at batch 1 (CUDA only).
ViT-B/16 with random weights by default (the same arithmetic as the real ones, nothing to download; Sinkhorn's
iteration count, which depends on the values, may differ from a trained model's); 15 seen classes x 8 templates
(VOC's inductive training), cluster labels drawn at random. Goals (issue 3): full >= 0.6 of the encoder alone;
<= 3.35 GB peak inference memory (Table 4).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from oczss.model import OCZSSConfig, build_model
from oczss.pipeline.runtime import autocast, resolve_device

ROWS = {
    "baseline (OTSeg)": dict(mask_source="none", refiner="none", granular=False),
    "+ object prompts": dict(mask_source="dino", refiner="none", granular=False),
    "+ ORA": dict(mask_source="dino", refiner="ora", granular=False),
    "+ granular attention (full)": dict(),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step, device: torch.device, warmup: int, iters: int) -> float:
    """Iterations/s of `step()` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return iters / (time.perf_counter() - start)


def inputs(args, device: torch.device, patch: int):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    labels = torch.randint(0, 6, (args.batch, (args.size // patch) ** 2), generator=g).to(device)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size), generator=g)
    target[:, : args.size // 8] = 255
    return images, labels, target.to(device)


def peak_inference_memory(base: dict, args, device: torch.device) -> float:
    """GB allocated at the peak of one batch-1 forward of the full model (weights included), bf16 autocast."""
    torch.cuda.empty_cache()
    model = build_model(OCZSSConfig(**base)).to(device).eval()
    one = argparse.Namespace(**{**vars(args), "batch": 1})
    images, labels, _ = inputs(one, device, model.encoder.patch_size)
    text = F.normalize(torch.randn(20, 8, model.encoder.clip.output_dim), dim=-1).to(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad(), autocast(device):
        model(images, labels, text)
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="the tiny test backbone instead of ViT-B/16")
    ap.add_argument("--weights", default="random", help="random (default), pretrained or a checkpoint path")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--classes", type=int, default=15)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    device = resolve_device(args.device)
    base = dict(backbone="tiny" if args.tiny else "ViT-B-16", weights=args.weights)
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "backbone": base["backbone"], "batch": args.batch, "size": args.size, "rows": {}}

    encoder_rate = None
    for name, overrides in ROWS.items():
        model = build_model(OCZSSConfig(**base, **overrides)).to(device).train()
        text = F.normalize(torch.randn(args.classes, 8, model.encoder.clip.output_dim), dim=-1).to(device)
        images, labels, target = inputs(args, device, model.encoder.patch_size)
        optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=2e-4, weight_decay=0.01)

        def train_step():
            with autocast(device):
                loss = model.loss(model(images, labels, text), target)["total"]
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        if encoder_rate is None:
            x = images.clone().requires_grad_()

            def encoder_step():
                with autocast(device):
                    out = model.encoder.clip_features(x)
                out.float().square().sum().backward()

            encoder_rate = rate(encoder_step, device, args.warmup, args.iters)
            results["frozen encoder fwd+bwd it/s"] = round(encoder_rate, 2)
        step_rate = rate(train_step, device, args.warmup, args.iters)
        results["rows"][name] = {"it/s": round(step_rate, 2), "ratio to encoder": round(step_rate / encoder_rate, 3)}
        del model, optimiser, train_step
    key = "full model peak inference memory GB (batch 1, 20 classes)"
    results[key] = peak_inference_memory(base, args, device) if device.type == "cuda" else "n/a (CUDA only)"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
