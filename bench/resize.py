"""Test-time preprocessing against the references' (issue 18.1): how far eval's inputs and predictions are from
those of mmcv's pipeline (cv2.resize, INTER_LINEAR, no antialiasing, uint8), for both methods.

    python bench/resize.py [--device auto] [--images 8]
    python bench/resize.py --device cpu --tiny --images 2       # smoke run (tiny backbones)

Needs opencv-python-headless (the test extra: `pip install 'oczss[test]'`), which computes the reference arrays.
Images: synthetic scenes (pipeline/data/demo_scenes.py, blurred, saved as JPEG) at VOC and COCO sizes. For each
interpolation (oczss's `pipeline/data/resize.py`; PIL's antialiased bilinear, what oczss used before), at mmcv's
output sizes: the resized image's largest difference from cv2's in grey levels and the share of values that
differ, the normalised input's largest difference, and the segmentation of the whole eval path (OC-ZSS: OTSeg
model, slide 512 / 426; CASS: the VOC21 protocol) against the one made from cv2's arrays: largest probability
difference and the share of pixels whose argmax agrees. Random weights (no weights can be fetched): the margins
are smaller than real weights', so the disagreement shown is an upper bound for the same inputs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

import oczss.pipeline.data.resize as resize
from oczss.model import OCZSSConfig, build_model
from oczss.model.cass import build_cass, for_benchmark
from oczss.pipeline.cass.segment import CassSegmenter
from oczss.pipeline.data.images import load_rgb
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2.inference import segment
from synthetic import make_coco_like

SIZES = ((500, 375), (375, 500), (500, 333), (640, 480), (427, 640))  # VOC and COCO shapes
OURS = resize.bilinear


def reference(image: np.ndarray, size, box=None) -> np.ndarray:
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def pil(image: np.ndarray, size, box=None) -> np.ndarray:
    return np.array(Image.fromarray(image).resize(size, Image.BILINEAR))


def methods(tiny: bool, device: torch.device):
    """name -> (image -> class probabilities [K, H, W]) for both methods with random weights."""
    torch.manual_seed(0)
    backbone = "tiny" if tiny else "ViT-B-16"
    model = build_model(OCZSSConfig.otseg(backbone=backbone, weights="random")).eval().to(device)
    text = torch.nn.functional.normalize(torch.randn(20, 6, 32 if tiny else 512), dim=-1).to(device)
    short, crop, stride = (128, 128, 96) if tiny else (512, 512, 426)
    config = for_benchmark("voc21", **(dict(short_side=64, window=32, stride=16) if tiny else {}))
    cass = build_cass(config, "random", "random", backbone=backbone,
                      **({"dino_model": "tiny-p8"} if tiny else {}))
    classes = [(f"class {i}",) for i in range(21)]
    segmenter = CassSegmenter(cass, config, classes, device)
    return {"oczss": lambda im: segment(model, im, text, list(range(15)), 0.1, short=short, crop=crop,
                                        stride=stride),
            "cass": segmenter.probabilities}


def compare(images: list[np.ndarray], run, scale) -> dict:
    """Each interpolation against cv2's, on these images, through `run` (one method's eval path)."""
    resize.bilinear = reference
    want = [run(im) for im in images]
    out = {}
    for name, interp in (("oczss", OURS), ("pil (before)", pil)):
        resize.bilinear = interp
        got = [run(im) for im in images]
        arrays = [(interp(im, resize.rescale_size(im.shape[1], im.shape[0], scale)).astype(int),
                   reference(im, resize.rescale_size(im.shape[1], im.shape[0], scale)).astype(int)) for im in images]
        out[name] = {
            "max_grey_levels": int(max(np.abs(a - b).max() for a, b in arrays)),
            "values_differing_pct": round(100 * float(np.mean([(a != b).mean() for a, b in arrays])), 4),
            "max_prob_diff": float(max((g - w).abs().max() for g, w in zip(got, want))),
            "argmax_agreement_pct": round(100 * float(np.mean([(g.argmax(0) == w.argmax(0)).float().mean().item()
                                                               for g, w in zip(got, want)])), 4)}
    resize.bilinear = OURS
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny backbones (smoke runs)")
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    device = resolve_device(args.device)
    images = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.images):
            root = make_coco_like(Path(tmp) / f"s{i}", 1, size=SIZES[i % len(SIZES)], labels=False)
            images.append(np.asarray(load_rgb(next((root / "train2017").glob("*.jpg")))))
    run = methods(args.tiny, device)
    short = {"oczss": 128 if args.tiny else 512, "cass": 64 if args.tiny else 336}
    results = {m: compare(images, run[m], (2048, short[m])) for m in run}
    print(json.dumps({"device": str(device), "date": time.strftime("%Y-%m-%d"), "images": len(images),
                      "backbones": "tiny (random)" if args.tiny else "ViT-B/16 and DINO ViT-B/8 (random weights)",
                      "reference": f"cv2 {cv2.__version__} INTER_LINEAR at mmcv's sizes", "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
