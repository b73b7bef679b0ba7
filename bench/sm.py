"""Split Matching: parameter counts of the paper's models and the cost of one training step, in one run.

    python bench/sm.py [--device auto] [--batch 16] [--size 512] [--iters 20] [--warmup 3]
    python bench/sm.py --device cpu --tiny --batch 2 --size 64 --iters 2 --warmup 1      # smoke run

Parameters: the ResNet-101 model (§4, Table 1) and the ResNet-50 one (§4.2's ablations), random weights, built on
the CPU and counted per part: backbone, pixel decoder, transformer decoder (queries included), the query
projection to CLIP's space, MFE (training only) and the total used at inference. Not dependent on --tiny.
Training step: SplitMatching's forward, L = L_SM + L_MFE (Eq. 2-3, §3.3), backward, AdamW over Mask2Former's
parameter groups with its gradient clipping, on synthetic batches (COCO-Stuff's 156 seen classes, half of each
view annotated, the other half split into 12 candidate regions), bf16 autocast on CUDA. `--tiny` uses the test
model (timm's test_resnet, 32-wide Mask2Former). Beside it, in the same run and at the same batch and input size:
OC-ZSS's full model's training step (bench/model.py's: view-mode FPS-Voronoi, forward, loss, backward, AdamW;
ViT-B/16, or the tiny CLIP with --tiny; as many seen classes) and the `online` candidate source's cost per step
(`unseen_candidates` with the frozen CLIP, ViT-B/16 or tiny, on the batch's views: what the `cache` source saves).
Prints seconds per step and images per second of each, and SM's step cost as a multiple of OC-ZSS's, with the
device and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch
import torch.nn.functional as F

from oczss.model import OCZSSConfig, build_model
from oczss.model.clip import load_tower
from oczss.model.losses import IGNORE
from oczss.model.sm import MASK2FORMER_SCHEDULE, Batch, SMConfig, build_sm, param_groups, resnet50
from oczss.pipeline.runtime import autocast, resolve_device
from oczss.pipeline.sm.data import OnlineCandidates, online_params
from model import rate, training_step  # bench/model.py: OC-ZSS's training step

SEEN = 156  # COCO-Stuff's seen classes
CANDIDATES = 12


def parameter_counts(config: SMConfig) -> dict:
    """Parameters per part of the model for `config` (random weights)."""
    model = build_sm(config)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    m2f = model.mask2former
    parts = {"backbone": count(m2f.pixel_level_module.encoder), "pixel_decoder": count(m2f.pixel_level_module.decoder),
             "transformer_decoder": count(m2f.transformer_module), "query_projection": count(model.class_projection),
             "mfe_training_only": count(model.mfe) if model.mfe is not None else 0}
    parts["inference_total"] = count(model) - parts["mfe_training_only"]
    parts["training_total"] = count(model)
    return parts


def synthetic(batch: int, size: int, embed: int, device: torch.device) -> tuple[torch.Tensor, Batch]:
    """Images, seen labels on the left half (blocks of random seen classes), 12 candidate stripes on the right."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=g)
    blocks = torch.randint(SEEN, (batch, 4, 2), generator=g)
    target = torch.full((batch, size, size), IGNORE, dtype=torch.long)
    left = F.interpolate(blocks[:, None].float(), size=(size, size // 2), mode="nearest")[:, 0]
    target[:, :, :size // 2] = left.long()
    stripes = (torch.arange(size) * CANDIDATES // size).view(size, 1).expand(size, size - size // 2)
    cands = torch.full((batch, size, size), IGNORE, dtype=torch.uint8)
    cands[:, :, size // 2:] = stripes.to(torch.uint8)
    text = F.normalize(torch.randn(SEEN, embed, generator=g), dim=-1)
    embeddings = F.normalize(torch.randn(batch, CANDIDATES, embed, generator=g), dim=-1)
    return images.to(device), Batch(target.to(device), text.to(device), cands.to(device), embeddings.to(device))


def step_seconds(config: SMConfig, args, device: torch.device) -> float:
    """Mean seconds of a training step after `args.warmup` unmeasured ones."""
    model = build_sm(config).to(device).train()
    s = MASK2FORMER_SCHEDULE
    optimizer = torch.optim.AdamW(param_groups(model, s["lr"], s["weight_decay"], s["backbone_multiplier"]))
    images, batch = synthetic(args.batch, args.size, config.embed_dim, device)
    for i in range(args.warmup + args.iters):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(device):
            loss = model.loss(model(images), batch)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip_norm"])
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / args.iters


def oczss_step_seconds(args, device: torch.device) -> float:
    """Mean seconds of OC-ZSS's full model's training step at the same batch, size and seen classes."""
    model = build_model(OCZSSConfig(backbone="tiny" if args.tiny else "ViT-B-16", weights="random")).to(device)
    step, _ = training_step(model, argparse.Namespace(batch=args.batch, size=args.size, classes=SEEN), device)
    return 1 / rate(step, device, args.warmup, args.iters)


def online_candidates_seconds(args, device: torch.device) -> float:
    """Mean seconds of the online candidate source on one batch of views (frozen CLIP, no gradients)."""
    tower = load_tower("tiny" if args.tiny else "ViT-B-16", "random", "visual")
    source = OnlineCandidates(tower.module.to(device), online_params(args.size, tower.module.conv1.kernel_size[0]))
    images = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    content = torch.full((args.batch, 2), args.size, device=device)
    return 1 / rate(lambda: source(images, content), device, args.warmup, args.iters)


def timing(seconds: float, batch: int) -> dict:
    return {"seconds_per_step": round(seconds, 4), "images_per_second": round(batch / seconds, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="the test model for the training step (smoke runs)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    counts = {"resnet101": parameter_counts(SMConfig(weights="random")),
              "resnet50": parameter_counts(resnet50(weights="random"))}
    config = SMConfig.tiny() if args.tiny else SMConfig(weights="random")
    seconds = step_seconds(config, args, device)
    oczss = oczss_step_seconds(args, device)
    online = online_candidates_seconds(args, device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    clip = "tiny" if args.tiny else "ViT-B-16"
    print(json.dumps({"device": name, "date": datetime.date.today().isoformat(), "parameters": counts,
                      "train_step": {"batch": args.batch, "size": args.size, "random_weights": True,
                                     f"sm ({config.backbone}, cached candidates)": timing(seconds, args.batch),
                                     f"oczss (full model, CLIP {clip})": timing(oczss, args.batch),
                                     f"sm online candidates (CLIP {clip}), added per step": timing(online, args.batch),
                                     "sm / oczss step time": round(seconds / oczss, 3)}}, indent=2))


if __name__ == "__main__":
    main()
