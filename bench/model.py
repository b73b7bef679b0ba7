"""Model throughput (Table 11), forward FLOPs and inference memory (Table 4), in one run.

    python bench/model.py [--device cuda] [--batch 16] [--size 512] [--iters 20]
    python bench/model.py --device cpu --tiny --batch 2 --size 128 --iters 3     # a smoke run without a GPU
    python bench/model.py --flops-only                                         # the FLOP counts alone (any CPU)

Training-step iterations/s (forward, §6 loss, backward, AdamW step; bf16 autocast on CUDA) for the rows of
Table 11: the OTSeg baseline, + object prompts, + ORA, + granular attention (the full model), each also as a
ratio to the frozen CLIP image tower's forward + backward alone (CLIP's own tokens, no prompts, through the
same SDPA blocks, position embeddings resized to the grid, gradients flowing to the input) measured in the same
run, and as a ratio to the baseline next to the paper's A100 ratios (1.00, 0.96, 0.88, 0.82). Rows with ORA run
for both readings of where ORA lives (`ora_space` width: the 768-d tokens; embed: the 512-d projected space).
Rows with object prompts include the view mode's FPS-Voronoi of the batch in the step (Table 11's prompt row
"includes clustering"). Then the forward FLOPs per 512^2 image of each row, 15 classes x 8 templates (VOC's seen
classes, what the model trains against), counted on the CPU three ways (bench/flops.py): every matrix product and
convolution, attention included, 2 FLOPs per multiply-add; mmcv's get_model_complexity_info style (the count of
OTSeg's Table 4: 1 per multiply-add, nn.Linear / nn.Conv2d / nn.LayerNorm modules only); and the same for the
modules OTSeg's code runs (+ its last decoder layer's unused value projection, FFN and norms, - the VPT's
prompt_norm, a LayerNorm subclass there), which gives Table 4's 61.9 for the baseline exactly. Then the full model's
peak inference memory at batch 1, 512^2 (CUDA only; Table 4: 3.35 GB) and, with --profile, a torch.profiler table
of the full model's training step.
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
from oczss.model.clustering import fps_voronoi
from oczss.pipeline.runtime import autocast, resolve_device
from flops import all_ops, mmcv_style, reference_build_extra

ROWS = {
    "baseline (OTSeg)": dict(mask_source="none", refiner="none", granular=False),
    "+ object prompts": dict(mask_source="dino", refiner="none", granular=False),
    "+ ORA": dict(mask_source="dino", refiner="ora", granular=False),
    "+ granular attention (full)": dict(),
}
PAPER_RATIOS = {"baseline (OTSeg)": 1.00, "+ object prompts": 0.96, "+ ORA": 0.88, "+ granular attention (full)": 0.82}
SPACES = ("width", "embed")


def variants():
    """(row name, ora_space, config overrides): the ORA rows once per reading of where ORA lives."""
    for name, overrides in ROWS.items():
        for space in (SPACES if overrides.get("refiner", "ora") == "ora" else (None,)):
            yield name, space, {**overrides, **({"ora_space": space} if space else {})}


def forward_gflops(base: dict, overrides: dict, size: int, classes: int) -> dict:
    """Forward GFLOPs of one size^2 image (batch 1, `classes` x 8 templates), counted on the CPU three ways."""
    model = build_model(OCZSSConfig(**base, **overrides)).eval()
    one = argparse.Namespace(batch=1, size=size, classes=classes)
    images, labels, _ = inputs(one, torch.device("cpu"), model.encoder.patch_size)
    dim = model.encoder.clip.output_dim
    text = F.normalize(torch.randn(classes, 8, dim), dim=-1)

    def run():
        return model(images, labels, text)

    mmcv = mmcv_style(model, run, batch=1)
    reference = (mmcv[""] - mmcv.get("encoder.prompt_norm", 0)
                 + reference_build_extra(labels.shape[1], classes * 8, dim))
    return {"all ops, attention included (2 per multiply-add)": round(all_ops(run) / 1e9, 2),
            "mmcv style (1 per multiply-add, Linear / Conv2d / LayerNorm modules)": round(mmcv[""] / 1e9, 2),
            "mmcv style, the reference's modules": round(reference / 1e9, 2)}


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


def training_step(model, args, device: torch.device):
    """The closure of one training step of `model` (train mode) on a fixed random batch: the view mode's
    FPS-Voronoi of the batch (rows with object prompts), forward, §6 loss, backward, AdamW step."""
    model.train()
    text = F.normalize(torch.randn(args.classes, 8, model.encoder.clip.output_dim), dim=-1).to(device)
    images, labels, target = inputs(args, device, model.encoder.patch_size)
    features = torch.randn(args.batch, labels.shape[1], 32, device=device)  # the view mode's compact tokens
    first = torch.zeros(args.batch, dtype=torch.long, device=device)
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=2e-4, weight_decay=0.01,
                                  fused=device.type == "cuda")
    prompts = model.config.object_prompts

    def step():
        clusters = fps_voronoi(features, [6], first)[6] if prompts else None
        with autocast(device):
            loss = model.loss(model(images, clusters, text), target)["total"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step, images


def rows(results: dict, base: dict, args, device: torch.device) -> None:
    """Table 11: training-step it/s of every row (ORA rows in both spaces), against the frozen encoder and the
    baseline."""
    encoder_rate = baseline = None
    results["rows"] = {}
    for name, space, overrides in variants():
        model = build_model(OCZSSConfig(**base, **overrides)).to(device)
        train_step, images = training_step(model, args, device)
        if encoder_rate is None:
            x = images.clone().requires_grad_()

            def encoder_step():
                with autocast(device):
                    out = model.encoder.clip_features(x)
                out.float().square().sum().backward()

            encoder_rate = rate(encoder_step, device, args.warmup, args.iters)
            results["frozen encoder fwd+bwd it/s"] = round(encoder_rate, 2)
        step_rate = rate(train_step, device, args.warmup, args.iters)
        baseline = baseline or step_rate
        results["rows"][f"{name} [{space}]" if space else name] = {
            "it/s": round(step_rate, 2), "ratio to encoder": round(step_rate / encoder_rate, 3),
            "ratio to baseline": round(step_rate / baseline, 3), "paper (A100)": PAPER_RATIOS[name]}


def profile(base: dict, args, device: torch.device, steps: int = 3) -> str:
    """torch.profiler's table of the full model's training step (`steps` steps after one warm-up), the 30 ops
    with the most self time on the device (CPU time without CUDA)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profiler

    model = build_model(OCZSSConfig(**base)).to(device)
    step, _ = training_step(model, args, device)
    step()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with run_profiler(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=30)


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
    ap.add_argument("--flops-only", action="store_true", help="count forward FLOPs only (no timing)")
    ap.add_argument("--skip-flops", action="store_true", help="no FLOP counts (they are device-independent)")
    ap.add_argument("--profile", action="store_true", help="add torch.profiler's table of the full model's step")
    ap.add_argument("--memory-only", action="store_true", help="the peak inference memory alone (CUDA)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    base = dict(backbone="tiny" if args.tiny else "ViT-B-16", weights=args.weights)
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "backbone": base["backbone"], "batch": args.batch, "size": args.size}

    key = f"full model peak inference memory GB (batch 1, {args.size}^2, 20 classes)"
    results[key] = peak_inference_memory(base, args, device) if device.type == "cuda" else "n/a (CUDA only)"
    if not (args.flops_only or args.memory_only):
        rows(results, base, args, device)
    if not (args.skip_flops or args.memory_only):
        results[f"forward GFLOPs per image ({args.size}^2, {args.classes} classes x 8 templates)"] = {
            f"{name} [{space}]" if space else name: forward_gflops(base, o, args.size, args.classes)
            for name, space, o in variants()}
    if args.profile and not args.memory_only:
        try:  # the timings above must survive a profiler that cannot start (e.g. no CUPTI)
            table = profile(base, args, device, 1 if args.tiny else 3).splitlines()
        except Exception as e:  # noqa: BLE001
            table = f"torch.profiler failed: {type(e).__name__}: {e}"
        results["full model training step, torch.profiler"] = table
    results["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
