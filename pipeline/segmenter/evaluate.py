"""`oczss eval` for any method behind `oczss.load` (pipeline/segmenter/methods.py): a whole split of a benchmark
through `Method.segment`, one confusion matrix, the JSON report.

The classes asked for are the benchmark's, with the synonyms of its class-name file where it has one (the
training-free benchmarks), else its class names. On a zero-shot benchmark (seen / unseen classes) the report
gives mIoU(S), mIoU(U) and hIoU as well; the unseen classes are the checkpoint's when it was trained on this
benchmark (its `unseen` entry), else the benchmark's. OC-ZSS and CASS keep their own evaluations (sliding
windows with cached clusters; the authors' per-benchmark constants); this one serves every other method.
"""

from __future__ import annotations

import datetime

from oczss.errors import OCZSSError
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.console import rate_text
from oczss.pipeline.data.classes import class_names
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.names import canonical
from oczss.pipeline.data.pairs import check_pairs
from oczss.pipeline.evaluation import run_split, subset_note
from oczss.pipeline.metrics import scores
from oczss.pipeline.segmenter.methods import Method


def evaluate_method(method: Method, dataset_name: str, *, split: str = "val", data_root: str | None = None,
                    workers: int = 2, limit: int | None = None, trained: dict | None = None,
                    progress: bool = True) -> dict:
    """The report of `method` on `dataset_name`/`split` (first `limit` images). trained: the checkpoint's
    {"dataset", "unseen"} when it has them (its own unseen classes then apply on its own dataset)."""
    dataset_name = canonical(dataset_name)
    if limit is not None and limit < 1:
        raise OCZSSError(f"--limit {limit}: must be at least 1")
    dataset = Dataset(dataset_name, data_root)
    spec = dataset.spec
    in_split = dataset.samples(split)
    samples = in_split[:limit]
    check_pairs(samples, f"{dataset_name} {split}", show_progress=progress)
    classes = tuple(class_names(dataset_name) or ((c,) for c in spec.classes))
    text = method.embed(tuple(tuple(n) for n in classes))
    trained = trained or {}
    unseen = list(trained["unseen"]) if trained.get("dataset") == dataset_name else list(spec.unseen)
    seen = [c for c in range(len(spec.classes)) if c not in set(unseen)]

    def segmenter(image, cached, image_id):
        return method.labels(method.segment([image], text, [image_id])[0], text)

    conf, failed, seconds = run_split(dataset, samples, segmenter, method.device, workers=workers, progress=progress,
                                      desc=f"eval {method.name} {dataset_name} {split}")
    evaluated = len(samples) - len(failed)
    return {"method": method.name, "dataset": dataset_name, "split": split, "images": evaluated,
            "images_in_split": len(in_split), "limit": limit, "failed": failed, "seconds": seconds,
            "images_per_second": evaluated / seconds if seconds else 0.0, "classes": list(spec.classes),
            "class_names": [list(n) for n in classes], "seen": seen, "unseen": unseen, "weights": method.weights,
            "random_weights": method.random_weights, "device": str(method.device),
            "date": datetime.date.today().isoformat(), **scores(conf, seen, unseen)}


def checkpoint_method(path: str) -> str:
    """The method a checkpoint file holds (its `method` entry; absent: OC-ZSS)."""
    from oczss.pipeline.stage2.checkpoint import load

    return load(path).get("method", "oczss")


def format_method_report(r: dict) -> str:
    """The report as `oczss eval` prints it: a line per class (seen / unseen on zero-shot benchmarks), then the
    summary (mIoU(S), mIoU(U), hIoU only where there are unseen classes)."""
    source = r["weights"].get("checkpoint") or ", ".join(f"{k} {v}" for k, v in r["weights"].items())
    lines = [f"{r['method']} ({source}) on {r['dataset']}/{r['split']}, {r['images']} images{subset_note(r)}"
             + (f", {RANDOM_NOTE}" if r["random_weights"] else "")]
    width = max(len(c) for c in r["classes"])
    unseen = set(r["unseen"])
    for c, name in enumerate(r["classes"]):
        tag = ("unseen" if c in unseen else "seen") if unseen else ""
        lines.append(f"  {name:<{width}}  {tag:<6}  {r['iou'][c]:6.2f}")
    split = f"mIoU(S) {r['mIoU_seen']:.2f}  mIoU(U) {r['mIoU_unseen']:.2f}  hIoU {r['hIoU']:.2f}  " if unseen else ""
    lines.append(f"{split}mIoU {r['mIoU']:.2f}  pAcc {r['pAcc']:.2f}  ({rate_text(r['images_per_second'], 'img')})")
    return "\n".join(lines)
