"""At which resolution Stage 1 stores the `view` mode's cluster features (issue 18.3): agreement of `view`
clusters with `online` clusters of the same training view, per stored resolution and view scale, and the bytes
per image.

    python bench/tiny_dino.py --out tiny-dino.pt               # a few minutes
    python bench/view_features.py --tiny-dino tiny-dino.pt [--device auto] [--images 6] [--dinos vit-b16,trained]
    python bench/view_features.py --device cpu --tiny            # smoke run (tiny random DINO, 2 images)

Views: synthetic COCO-size scenes (640 x 480 and 480 x 640; pipeline/data/demo_scenes.py) resized as training
does at scale 0.5, 1, 1.5 and 2 (img_scale (2048, 512) x scale, pipeline/data/resize.py), one seeded 512 crop
each, padded to 512 where the resized image is smaller. `online`: FPS-Voronoi (K = 6) of the DINO's tokens of
the view itself (pipeline/stage2/clusters.py); `view`: FPS-Voronoi of the stored compact tokens (D = 32, PCA
basis fitted on the same images' tokens) sampled at the view's patch centres; both with the same first centre,
padding patches excluded, agreement by the adjusted Rand index over the view's non-padding patches. Stored
layouts: short side R at the image's aspect ratio (pipeline/stage1/tokens.py) for each R, and the former layout
(the whole image squashed to 512 x 512). Bytes per image: the fp16 grid, and the stored (zero-padded to T x 2T,
zstd level 9, as the cache compresses it) row. Two DINOs: DINO ViT-B/16 with random weights (nearly low-rank),
and the tiny DINO-like ViT that bench/tiny_dino.py trains here (--tiny-dino PATH).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np
import torch

from oczss.cache.schema import pack_grid
from oczss.model.clustering import fps_voronoi
from oczss.model.compaction import compact, fit_basis
from oczss.model.dino import DEFAULT_MODEL, DinoFeatures, load_dino
from oczss.pipeline.data.images import load_rgb
from oczss.pipeline.data.resize import bilinear, ratio_scale, rescale_size
from oczss.pipeline.data.transforms import View, normalise
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage1.tokens import MAX_ASPECT, dino_input
from oczss.pipeline.stage2.clusters import dino_patch_features
from prompts import adjusted_rand
from synthetic import make_coco_like
from tiny_dino import build

SCALES = (0.5, 1.0, 1.5, 2.0)
K, D, CROP, PATCH = 6, 32, 512, 16


def token_grids(extract: DinoFeatures, images: list[np.ndarray], short: int | None) -> list[torch.Tensor]:
    """Each image's DINO tokens [C, h, w]: short side `short` at its aspect (None: squashed to 512 x 512)."""
    out = []
    for image in images:
        x = dino_input(image, short, extract.patch, MAX_ASPECT * short // extract.patch) if short else \
            bilinear(image, (512, 512))
        out.append(extract.token_grid(extract.normalise(torch.from_numpy(x)[None].to(extract.mean.device)))[0].cpu())
    return out


def stored(extract: DinoFeatures, images: list[np.ndarray], short: int | None) -> tuple[list[np.ndarray], dict]:
    """The compact grids [h, w, D] of a layout and its bytes per image."""
    grids = token_grids(extract, images, short)
    mean, basis = fit_basis(torch.cat([g.flatten(1).T for g in grids]), D)
    compacted = [compact(g.permute(1, 2, 0), mean, basis).numpy() for g in grids]
    t = (short or 512) // extract.patch
    zstd = numcodecs.Zstd(level=9)
    raw = [c.nbytes for c in compacted]
    packed = [len(zstd.encode(pack_grid(c, t, MAX_ASPECT * t if short else t))) for c in compacted]
    return compacted, {"kb_fp16": round(np.mean(raw) / 1024, 1), "kb_stored_zstd": round(np.mean(packed) / 1024, 1)}


def views(images: list[np.ndarray], seed: int = 0) -> list[tuple[int, View, torch.Tensor]]:
    """(image index, View, ImageNet-normalised view [3, CROP, CROP]) for every image and scale."""
    rng = np.random.default_rng(seed)
    out = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        for scale in SCALES:
            sw, sh = rescale_size(w, h, ratio_scale((2048, 512), scale))
            cw, ch = min(CROP, sw), min(CROP, sh)
            left, top = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
            x = torch.zeros(3, CROP, CROP)
            x[:, :ch, :cw] = torch.from_numpy(normalise(bilinear(image, (sw, sh), (left, top, cw, ch))))
            out.append((i, View(cw, ch, left, top, sw, sh), x))
    return out


def agreement(extract: DinoFeatures, images: list[np.ndarray], layouts: dict) -> dict:
    """ARI of `view` clusters (each layout) with `online` ones, per scale: {layout: {scale: mean ARI}}."""
    side = CROP // PATCH
    scores = {name: {s: [] for s in SCALES} for name in layouts}
    for n, (i, view, x) in enumerate(views(images)):
        valid = torch.from_numpy(view.patch_valid(side, side, PATCH))[None]
        first = torch.tensor([n * 7919 % (side * side)])
        tokens = dino_patch_features(extract, x[None].to(extract.mean.device), (side, side)).cpu()
        online = fps_voronoi(tokens, [K], first, valid)[K][0]
        for name, grids in layouts.items():
            feats = torch.from_numpy(view.patch_features(grids[i], side, side, PATCH)).float()[None]
            got = fps_voronoi(feats, [K], first, valid)[K][0]
            scores[name][SCALES[n % len(SCALES)]].append(adjusted_rand(got[valid[0]].numpy(), online[valid[0]].numpy()))
    return {name: {str(s): round(float(np.mean(v)), 3) for s, v in per.items()} for name, per in scores.items()}


@torch.no_grad()
def measure(extract: DinoFeatures, images: list[np.ndarray], resolutions: list[int]) -> list[dict]:
    layouts, sizes = {}, {}
    for short in [None, *resolutions]:
        name = f"R={short}" if short else "squashed 512x512 (schema 3)"
        layouts[name], sizes[name] = stored(extract, images, short)
    ari = agreement(extract, images, layouts)
    return [{"layout": name, "ari_by_scale": ari[name], "ari_mean": round(float(np.mean(list(ari[name].values()))), 3),
             **sizes[name]} for name in layouts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny random DINO, 2 images (smoke runs)")
    ap.add_argument("--dinos", default="vit-b16,trained", help="vit-b16 (random weights), trained (--tiny-dino)")
    ap.add_argument("--tiny-dino", help="a state dict written by bench/tiny_dino.py")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--resolutions", default="256,384,448,512,640")
    args = ap.parse_args()
    device = resolve_device(args.device)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    n = 2 if args.tiny else args.images
    with tempfile.TemporaryDirectory() as tmp:
        images = [np.asarray(load_rgb(p)) for i in range(n) for p in sorted(
            (make_coco_like(Path(tmp) / str(i), 1, size=(640, 480) if i % 2 == 0 else (480, 640), labels=False)
             / "train2017").glob("*.jpg"))]
    dinos = {}
    wanted = ["tiny"] if args.tiny else args.dinos.split(",")
    if "tiny" in wanted:
        dinos["tiny (random)"] = load_dino("tiny", "random", 512, dynamic=True)
    if "vit-b16" in wanted:
        dinos["DINO ViT-B/16 (random)"] = load_dino(DEFAULT_MODEL, "random", 512, dynamic=True)
    if "trained" in wanted:
        if not args.tiny_dino:
            ap.error("--dinos trained needs --tiny-dino PATH (python bench/tiny_dino.py --out PATH makes one)")
        model = build()
        model.load_state_dict(torch.load(args.tiny_dino, map_location="cpu", weights_only=True))
        dinos["tiny DINO trained here (bench/tiny_dino.py)"] = model.eval()
    results = {name: measure(DinoFeatures(m, 0).to(device), images, resolutions) for name, m in dinos.items()}
    print(json.dumps({"device": str(device), "date": time.strftime("%Y-%m-%d"), "images": n, "k": K, "d": D,
                      "scales": SCALES, "results": results}, indent=2))


if __name__ == "__main__":
    main()
