"""Where the object prompts' clusters should come from (issue 12): the three cluster modes side by side.

    python bench/prompts.py [--device auto] [--views 64] [--coco-images 32]
    python bench/prompts.py --device cpu --tiny                 # smoke run (tiny DINO, demo only)

For each mode (pipeline/stage2/clusters.py) on training views with the training augmentation, from the same
samples and positions: the empty prompts per view (object prompts whose cluster has no patch in the view), the
agreement of each mode's partition with `online` (DINO on the view itself) by the adjusted Rand index, and the
cost per training batch of producing the clusters (host side and device side). Also, for the view mode, the
agreement of the compact features' partition with the full-width tokens' on the same view, per width D: what
`--feature-dim` is chosen from. Two datasets: the demo (128 crops) and synthetic COCO-size scenes (640 x 480,
512 crops, COCO's augmentation). DINO has random weights here (no weights can be fetched), which makes the
partitions less structured than real DINO's; the figures compare the modes, they do not predict accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from oczss.model.clustering import fps_voronoi
from oczss.model.compaction import compact, fit_basis
from oczss.model.dino import DEFAULT_MODEL, DinoFeatures, load_dino
from oczss.model.names import TINY
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.demo_scenes import ensure_demo
from oczss.pipeline.stage1.tokens import MAX_ASPECT, load_input
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.stage2.clusters import StepClusters, open_cached
from oczss.pipeline.stage2.loader import Positions, TrainData
from synthetic import make_coco_like

N_O = 6
WIDTHS = (4, 8, 16, 32, 64)


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same items (1: identical partitions, ~0: chance)."""
    table = np.zeros((a.max() + 1, b.max() + 1), np.int64)
    np.add.at(table, (a, b), 1)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([len(a)]))
    top = (rows + cols) / 2
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def measure(name: str, dataset: Dataset, cache: str, views: int, device: torch.device, dino: DinoFeatures,
            crop: int, size: int) -> dict:
    """The figures of one dataset: views are crop x crop, Stage 1 saw each image with the short side `size`."""
    samples = dataset.samples("train")
    data = {}
    for mode in ("whole", "view"):
        kept, maps, _, source = open_cached(samples, cache, dataset.spec.name, "train", mode, N_O)
        data[mode] = TrainData(dataset, kept, "inductive", maps, mode, crop, 16, seed=0)
    keys = [k for _, k in zip(range(views), iter(Positions(len(data["view"]), 0, 0, views)))]
    side = crop // 16
    step = {m: StepClusters(m, N_O, (side, side), dino) for m in ("whole", "view", "online")}
    out = {"dataset": name, "views": views, "modes": {}}
    host = {}
    batch = {}
    for mode in ("whole", "view"):
        start = time.perf_counter()
        got = [data[mode][key] for key in keys]
        host[mode] = (time.perf_counter() - start) / views
        batch[mode] = {k: torch.stack([g[k] for g in got]).to(device) for k in got[0] if k != "note"}
    labels = {}
    for mode, source_batch in (("whole", batch["whole"]), ("view", batch["view"]), ("online", batch["view"])):
        _sync(device)
        start = time.perf_counter()
        labels[mode] = step[mode](source_batch)
        _sync(device)
        out["modes"][mode] = {"device_ms_per_view": 1000 * (time.perf_counter() - start) / views,
                              "host_ms_per_view": 1000 * host.get(mode if mode != "online" else "view", 0.0)}
    valid = batch["view"]["valid"]  # padding patches have no cluster (-1) in every mode
    for mode, lab in labels.items():
        present = torch.stack([torch.bincount(row[row >= 0], minlength=N_O)[:N_O] > 0 for row in lab]).sum(1)
        out["modes"][mode]["empty_prompts_per_view"] = float((N_O - present).float().mean())
        out["modes"][mode]["ari_with_online"] = float(np.mean([
            adjusted_rand(a[v].cpu().numpy(), b[v].cpu().numpy()) for a, b, v in zip(lab, labels["online"], valid)]))
    # compact width: the view mode's partition from D components against the full-width tokens, same views
    full = _full_width_views(data["view"], keys, dino, device, side, size)
    first = batch["view"]["first"]
    reference = fps_voronoi(full, [N_O], first)[N_O]
    widths = {}
    tokens = full.reshape(-1, full.shape[-1])
    for d in (w for w in WIDTHS if w <= full.shape[-1]):
        mean, b = fit_basis(tokens.cpu(), d)
        reduced = compact(full, mean.to(device), b.to(device)).float()
        got = fps_voronoi(reduced, [N_O], first)[N_O]
        widths[str(d)] = float(np.mean([adjusted_rand(x.cpu().numpy(), y.cpu().numpy())
                                        for x, y in zip(got, reference)]))
    out["compact_width_ari"] = widths
    return out


def _full_width_views(data: TrainData, keys, dino: DinoFeatures, device, side: int, size: int) -> torch.Tensor:
    """The full-width DINO tokens of each view's source image (as Stage 1 sees it: short side `size`, aspect kept),
    sampled at the view's patch centres as the view mode samples the compact ones: [views, side^2, C]."""
    out = []
    for index, position in keys:
        image = load_input(data.samples[index].image, size, dino.patch, MAX_ASPECT * size // dino.patch)
        image = torch.from_numpy(image)[None].to(device)
        grid = dino.token_grid(dino.normalise(image))[0].permute(1, 2, 0).cpu().numpy()
        out.append(torch.from_numpy(_view_of(data, index, position).patch_features(grid, side, side, 16)).float())
    return torch.stack(out).to(device)


def _view_of(data: TrainData, index: int, position: int):
    """The View of item (index, position): the same sample and augmentation draws as TrainData's."""
    from oczss.pipeline.data.images import load_rgb
    from oczss.pipeline.data.transforms import train_view

    rng = np.random.default_rng([data.seed, position])
    sample = data.samples[index]
    image = np.asarray(load_rgb(sample.image))
    label = data.dataset.read_label(sample.label)
    return train_view(image, label, data.dataset.spec.train_scale, data.crop, rng)[2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny DINO and the demo only (smoke runs)")
    ap.add_argument("--views", type=int, default=64)
    ap.add_argument("--coco-images", type=int, default=32)
    args = ap.parse_args()
    device = resolve_device(args.device)
    name = TINY if args.tiny else DEFAULT_MODEL
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = [("demo", ensure_demo(tmp / "demo"), "demo", 128, 128)]
        if not args.tiny:
            sets.append(("coco-size", make_coco_like(tmp / "coco", args.coco_images), "coco", 512, 512))
        for label, root, ds, crop, size in sets:
            cache = str(tmp / f"{label}.zarr")
            precompute(PrecomputeConfig(dataset=ds, cache=cache, data_root=str(root), split="train", ks=(N_O,),
                                        input_size=size, grid=64 if size >= 512 else 16, weights="random",
                                        dino_model=name, device=str(device), shard_size=16,
                                        feature_dim=min(32, 48 if args.tiny else 768)), progress=False)
            dino = DinoFeatures(load_dino(name, "random", size, dynamic=True), 0).to(device)
            results.append(measure(label, Dataset(ds, root), cache, args.views, device, dino, crop, size))
    print(json.dumps({"device": str(device), "dino": f"{name} (random weights)", "n_o": N_O,
                      "date": time.strftime("%Y-%m-%d"), "results": results}, indent=2))


if __name__ == "__main__":
    main()
