"""A tiny DINO-like ViT trained here in a few minutes, so that measurements about DINO features can use weights with
real structure (no pretrained weights can be fetched, and random DINO weights are nearly low-rank).

    python bench/tiny_dino.py --out tiny-dino.pt [--minutes 4] [--device auto]

Model: a timm VisionTransformer, patch 16, width 128, 4 blocks, 4 heads (dynamic image size), the architecture
`build()` makes. Data: synthetic scenes (pipeline/data/demo_scenes.py: textured backgrounds and shapes), 320 x 240
and 240 x 320. Objective: self-distillation without labels as DINO does it (Caron et al. 2021): a student and
an EMA teacher (momentum 0.99) on two random resized crops (128^2, 25-100 % of the area, flips, brightness and
contrast jitter) of the same scene, 8 scenes a step; each token goes through a head (MLP 128-256-64, then a weight-normalised
linear layer to 256 prototypes); the teacher's outputs are centred (running mean, momentum 0.9) and sharpened
(temperature 0.04), the student's softmax at temperature 0.1 is trained towards them by cross-entropy. DINO's
image-level term on the class token, plus the same term per patch between the patches of the two crops that see
the same place of the scene (the teacher's prototype distribution read bilinearly at the student patch's scene
position, where the crops overlap), which is what gives the patch tokens their structure. AdamW, lr 1e-3.

Prints, before and after training: the share of the patch tokens' variance in their top 8 principal components,
and the agreement (adjusted Rand index) of FPS-Voronoi clusters (K = 6) of the tokens with the scenes' labels at
the patch centres, on held-out scenes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.model.clustering import fps_voronoi
from oczss.pipeline.data.demo_scenes import scene
from oczss.pipeline.runtime import resolve_device
from prompts import adjusted_rand

CROP, PATCH, PROTOTYPES, PAIRS = 128, 16, 256, 8
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def build() -> nn.Module:
    """The tiny DINO's backbone (load a saved state dict into it)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(patch_size=PATCH, embed_dim=128, depth=4, num_heads=4, img_size=CROP, num_classes=0,
                             dynamic_img_size=True)


class Head(nn.Module):
    def __init__(self, dim: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, 256), nn.GELU(), nn.Linear(256, 64))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(64, PROTOTYPES, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


def scenes(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image, label = scene(rng, (320, 240) if i % 2 else (240, 320))
        out.append((np.asarray(image), label))
    return out


def crop_pair(image: torch.Tensor, rng: np.random.Generator):
    """Two random resized crops [2, 3, CROP, CROP] of image [3, H, W] and their boxes (left, top, w, h, flip)."""
    _, h, w = image.shape
    crops, boxes = [], []
    for _ in range(2):
        area = rng.uniform(0.25, 1.0) * h * w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = min(w, int(np.sqrt(area * aspect))), min(h, int(np.sqrt(area / aspect)))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        x = F.interpolate(image[None, :, top:top + ch, left:left + cw], size=(CROP, CROP), mode="bilinear",
                          align_corners=False)[0]
        flip = bool(rng.random() < 0.5)
        x = x.flip(-1) if flip else x
        x = (x * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)).clamp(0, 255)
        crops.append(x)
        boxes.append((left, top, cw, ch, flip))
    return torch.stack(crops), boxes


def correspondence(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each patch centre of crop a lies in crop b: grid_sample coordinates [n, n, 2] and inside mask [n*n]."""
    n = CROP // PATCH
    centres = (torch.arange(n) + 0.5) / n
    (al, at, aw, ah, af), (bl, bt, bw, bh, bf) = a, b
    u = 1 - centres if af else centres
    x = (al + u * aw - bl) / bw
    y = (at + centres * ah - bt) / bh
    x = 1 - x if bf else x
    grid = torch.stack(torch.meshgrid(x * 2 - 1, y * 2 - 1, indexing="xy"), -1)
    inside = ((grid.abs() <= 1).all(-1)).reshape(-1)
    return grid, inside


def step_loss(student, teacher, heads, batch, pairs, center, temps=(0.1, 0.04)):
    """DINO's cross-entropy, image level and patch level, both directions."""
    x = (batch - MEAN.to(batch.device)) / STD.to(batch.device)
    s_tok = heads[0](student.forward_features(x))
    with torch.no_grad():
        t_tok = heads[1](teacher.forward_features(x))
    n = CROP // PATCH
    t_prob = F.softmax((t_tok - center) / temps[1], dim=-1)
    s_logp = F.log_softmax(s_tok / temps[0], dim=-1)
    b = batch.shape[0] // 2
    image_loss = patch_loss = 0.0
    for i in range(b):
        for sa, tb in ((2 * i, 2 * i + 1), (2 * i + 1, 2 * i)):
            image_loss = image_loss - (t_prob[tb, 0] * s_logp[sa, 0]).sum()
            grid, inside = pairs[i][sa % 2]
            t_map = t_prob[tb, 1:].T.reshape(1, PROTOTYPES, n, n)
            target = F.grid_sample(t_map, grid[None].to(batch.device), align_corners=False)[0].flatten(1).T
            if inside.any():
                patch_loss = patch_loss - (target[inside] * s_logp[sa, 1:][inside.to(batch.device)]).sum(-1).mean()
    return (image_loss + patch_loss) / (2 * b), t_tok.detach()


@torch.no_grad()
def structure(model, data, device) -> dict:
    """Top-8 variance share of the patch tokens and ARI of their K = 6 clusters with the labels (held-out scenes)."""
    tokens, aris = [], []
    for image, label in data:
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().to(device)
        grid = model.forward_features((x - MEAN.to(device)) / STD.to(device))[0, 1:]
        tokens.append(grid.cpu())
        h, w = image.shape[0] // PATCH, image.shape[1] // PATCH
        lab = label[PATCH // 2::PATCH, PATCH // 2::PATCH][:h, :w].reshape(-1)
        keep = lab != 255
        clusters = fps_voronoi(grid[None], [6], torch.zeros(1, dtype=torch.long))[6][0].cpu().numpy()
        aris.append(adjusted_rand(clusters[keep], lab[keep].astype(np.int64)))
    t = torch.cat(tokens)
    t = t - t.mean(0)
    ev = torch.linalg.eigvalsh(t.T @ t).flip(0)
    return {"top8_variance_share": round(float(ev[:8].sum() / ev.sum()), 3),
            "ari_clusters_vs_labels": round(float(np.mean(aris)), 3)}


def train(minutes: float, device: torch.device, seed: int = 0) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data, held_out = scenes(192, seed), scenes(16, seed + 1)
    student, heads = build().to(device), nn.ModuleList([Head(), Head()]).to(device)
    teacher = build().to(device)
    teacher.load_state_dict(student.state_dict())
    heads[1].load_state_dict(heads[0].state_dict())
    for p in [*teacher.parameters(), *heads[1].parameters()]:
        p.requires_grad_(False)
    report = {"before": structure(teacher.eval(), held_out, device)}
    opt = torch.optim.AdamW([*student.parameters(), *heads[0].parameters()], lr=1e-3, weight_decay=0.04)
    center = torch.zeros(PROTOTYPES, device=device)
    start, steps, losses = time.perf_counter(), 0, []
    while time.perf_counter() - start < minutes * 60:
        crops, pairs = [], []
        for i in rng.choice(len(data), PAIRS, replace=False):
            image = torch.from_numpy(data[i][0].copy()).permute(2, 0, 1).float()
            pair, boxes = crop_pair(image, rng)
            crops.append(pair)
            pairs.append((correspondence(boxes[0], boxes[1]), correspondence(boxes[1], boxes[0])))
        loss, t_tok = step_loss(student, teacher, heads, torch.cat(crops).to(device), pairs, center)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for t, s in zip([*teacher.parameters(), *heads[1].parameters()],
                            [*student.parameters(), *heads[0].parameters()]):
                t.mul_(0.99).add_(s.detach(), alpha=0.01)
            center.mul_(0.9).add_(t_tok.mean((0, 1)), alpha=0.1)
        steps += 1
        losses.append(float(loss.detach()))
    report.update(steps=steps, minutes=minutes, first_loss=round(np.mean(losses[:10]), 3),
                  last_loss=round(np.mean(losses[-10:]), 3), after=structure(teacher.eval(), held_out, device))
    return teacher, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a shared CPU: one thread steps several times faster than contending ones
    model, report = train(args.minutes, device)
    torch.save(model.state_dict(), args.out)
    print(json.dumps({"device": str(device), "date": time.strftime("%Y-%m-%d"), **report}, indent=2))


if __name__ == "__main__":
    main()
