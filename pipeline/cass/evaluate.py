"""`oczss eval --method cass`: CASS on a whole split of a benchmark, the training-free protocol: every class is
evaluated (no seen/unseen split), class names with synonyms from the benchmark's class-name file, the authors'
constants for that benchmark (or a named recipe: an ablation row, the paper's reading). The report gives mIoU,
pixel accuracy, per-class IoU, the config and the weights used.
"""

from __future__ import annotations

import dataclasses
import datetime

from oczss.errors import OCZSSError
from oczss.model.cass import build_cass
from oczss.model.names import CLIP_B16, DINO_B8, check_name
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.cass.recipes import TABLE1, resolve
from oczss.pipeline.cass.segment import CassSegmenter
from oczss.pipeline.console import rate_text
from oczss.pipeline.data.classes import class_names
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.names import canonical
from oczss.pipeline.data.pairs import check_pairs
from oczss.pipeline.evaluation import run_split, subset_note
from oczss.pipeline.metrics import scores
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2.text import text_cache_dir

DEFAULT_CLIP, DEFAULT_DINO = CLIP_B16, DINO_B8


def build(recipe: str | None, benchmark: str, weights: str, dino_weights: str, backbone: str, dino_model: str,
          classes: list[tuple[str, ...]], device):
    """(CassSegmenter, its CASSConfig) for `classes` on `benchmark`'s constants."""
    config = resolve(recipe, benchmark)
    cass = build_cass(config, weights, dino_weights, backbone=backbone, dino_model=dino_model)
    return CassSegmenter(cass, config, classes, device, text_cache_dir()), config


def evaluate(dataset_name: str, *, split: str = "val", recipe: str | None = None, data_root: str | None = None,
             device: str = "auto", weights: str = "pretrained", dino_weights: str = "pretrained",
             backbone: str = DEFAULT_CLIP, dino_model: str = DEFAULT_DINO, workers: int = 2, limit: int | None = None,
             progress: bool = True) -> dict:
    """Evaluate CASS and return the report (what `--json` writes). dataset_name: any case."""
    dataset_name = canonical(dataset_name)
    check_name("clip", backbone, "--backbone")
    check_name("dino", dino_model, "--dino-model")
    names = class_names(dataset_name)
    if names is None:
        raise OCZSSError(f"--method cass evaluates the training-free benchmarks, which have class-name files: "
                         f"{dataset_name} has none")
    dev = resolve_device(device)
    dataset = Dataset(dataset_name, data_root)
    in_split = dataset.samples(split)
    samples = in_split[:limit]
    check_pairs(samples, f"{dataset_name} {split}", show_progress=progress)
    segmenter, config = build(recipe, dataset_name, weights, dino_weights, backbone, dino_model, names, dev)
    conf, failed, seconds = run_split(dataset, samples, segmenter, dev, workers=workers, progress=progress,
                                      desc=f"eval cass {dataset_name} {split}")
    every = list(range(len(dataset.spec.classes)))
    evaluated = len(samples) - len(failed)
    s = scores(conf, every, [])  # every class is evaluated: no seen / unseen figures
    return {"method": "cass", "recipe": recipe or "cass", "dataset": dataset_name, "split": split,
            "images": evaluated, "images_in_split": len(in_split), "limit": limit, "failed": failed,
            "seconds": seconds, "images_per_second": evaluated / seconds if seconds else 0.0,
            "classes": list(dataset.spec.classes), "class_names": [list(n) for n in names],
            "config": dataclasses.asdict(config), "weights": weights, "dino_weights": dino_weights,
            "backbone": backbone, "dino_model": dino_model, "fingerprints": segmenter.cass.fingerprints,
            "random_weights": segmenter.cass.random_weights, "paper_mIoU": TABLE1.get(dataset_name),
            "device": str(dev), "date": datetime.date.today().isoformat(), "mIoU": s["mIoU"], "pAcc": s["pAcc"],
            "iou": s["iou"]}


def format_report(r: dict) -> str:
    subset = subset_note(r)
    lines = [f"CASS ({r['recipe']}) on {r['dataset']}/{r['split']}, {r['images']} images{subset}, CLIP "
             f"{r['backbone']} ({r['weights']}), DINO {r['dino_model']} ({r['dino_weights']})"
             + (f", {RANDOM_NOTE}" if r["random_weights"] else "")]
    width = max(len(c) for c in r["classes"])
    lines += [f"  {name:<{width}}  {r['iou'][c]:6.2f}" for c, name in enumerate(r["classes"])]
    paper = f"  (paper, real weights: {r['paper_mIoU']})" if r["paper_mIoU"] is not None else ""
    lines.append(f"mIoU {r['mIoU']:.2f}  pAcc {r['pAcc']:.2f}{paper}  ({rate_text(r['images_per_second'], 'img')})")
    return "\n".join(lines)
