"""`oczss eval`: a checkpoint on a whole split: per-class IoU, mIoU(S), mIoU(U), hIoU, mIoU, pixel accuracy.

Same dataset as training: the checkpoint's seen/unseen classes and its own text embeddings, calibration on seen
classes for an inductive model (0 transductive). Another dataset (Table 3, cross-dataset): the target's class
names and its standard split for S/U, no calibration (the target's classes were never the model's seen set);
mIoU over all target classes is the Table 3 figure.

The report never passes a subset off as the split: it records the images evaluated against the images in the
split, and images without cached clusters (shards not done) are refused unless `allow_subset` is given. A cache
made with other parameters than the training cache (another DINO, seed, grid or feature width: other clusters
than the model was trained with) is evaluated with a warning naming each one, and the report lists them.
"""

from __future__ import annotations

import datetime
import logging

from oczss.cache.store import default_cache_url
from oczss.errors import OCZSSError
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.console import rate_text
from oczss.pipeline.data.datasets import Dataset, spec as dataset_spec
from oczss.pipeline.data.names import canonical, images_of
from oczss.pipeline.data.pairs import check_pairs
from oczss.pipeline.evaluation import run_split, subset_note
from oczss.pipeline.runtime import resolve_device
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.clusters import open_cached
from oczss.pipeline.stage2.inference import INDUCTIVE_CALIBRATION, segment
from oczss.pipeline.metrics import scores
from oczss.pipeline.stage2.text import class_text
from oczss.pipeline.stage2.window_clusters import factory, online_dino, trained_mode

log = logging.getLogger(__name__)


def evaluate(checkpoint: str, dataset_name: str, *, split: str = "val", mode: str = "slide",
             data_root: str | None = None, cache: str | None = None, device: str = "auto", weights: str | None = None,
             text: str | None = None, workers: int = 2, limit: int | None = None, allow_subset: bool = False,
             cluster_mode: str | None = None, dino_weights: str | None = None, progress: bool = True) -> dict:
    """Evaluate and return the report (also what `--json` writes). dataset_name: any case."""
    dataset_name = canonical(dataset_name)
    if mode not in ("slide", "whole"):
        raise OCZSSError(f"--mode {mode!r}: choose slide or whole")
    if limit is not None and limit < 1:
        raise OCZSSError(f"--limit {limit}: must be at least 1")
    dev = resolve_device(device)
    dataset = Dataset(dataset_name, data_root)
    in_split = dataset.samples(split)
    samples = in_split[:limit]
    check_pairs(samples, f"{dataset_name} {split}", show_progress=progress)
    model, ckpt = ckpt_io.restore_model(checkpoint, dev, weights)
    same = dataset_name == ckpt["dataset"]
    spec = dataset.spec
    unseen = ckpt["unseen"] if same else list(spec.unseen)
    seen = [c for c in range(len(spec.classes)) if c not in set(unseen)]
    calibration = INDUCTIVE_CALIBRATION if same and ckpt["setting"] == "inductive" else 0.0
    templates = dataset_spec(ckpt["dataset"]).templates  # the model was trained with this many templates
    if same and not text:
        emb = ckpt["text"].to(dev)  # what it was trained with, whatever folder this runs in
    else:
        emb = class_text(list(spec.classes), templates, model.config, text, dev)
    cluster_mode = trained_mode(ckpt, cluster_mode) if model.config.mask_source == "dino" else None
    k = model.config.num_objects
    samples, maps, without_clusters, make, cache, differences = _eval_clusters(
        ckpt, cluster_mode, samples, cache, dataset_name, split, k, allow_subset, dino_weights, spec.crop, dev)
    seed = ckpt["train_config"].get("seed", 0)  # seeds the first FPS centres (converted checkpoints carry none)

    def segmenter(image, cached, image_id):
        probs = segment(model, image, emb, seen, calibration, short=spec.test_short, crop=spec.crop,
                        stride=spec.slide_stride, mode=mode, clusters=make(cached, k) if make else None,
                        image_id=image_id, seed=seed)
        return probs.argmax(0)

    conf, failed, seconds = run_split(dataset, samples, segmenter, dev, maps=maps, workers=workers, progress=progress,
                                      desc=f"eval {dataset_name} {split}")
    evaluated = len(samples) - len(failed)
    return {"checkpoint": str(checkpoint), "dataset": dataset_name, "split": split, "mode": mode,
            "cluster_mode": cluster_mode,
            "images": evaluated, "images_in_split": len(in_split), "limit": limit, "cache": cache,
            "cache_differences": differences,
            "without_clusters": without_clusters, "failed": failed, "seconds": seconds,
            "images_per_second": evaluated / seconds if seconds else 0.0,
            "classes": list(spec.classes), "seen": seen, "unseen": unseen, "calibration": calibration,
            "cross_dataset": not same, "trained_on": ckpt["dataset"], "setting": ckpt["setting"],
            "step": ckpt["step"], "random_weights": ckpt["random_weights"], "model_config": ckpt["model_config"],
            "train_config": ckpt["train_config"], "weights": weights or ckpt["model_config"]["weights"],
            "device": str(dev), "date": datetime.date.today().isoformat(), **scores(conf, seen, unseen)}


def _eval_clusters(ckpt: dict, cluster_mode: str | None, samples: list, cache: str | None, dataset_name: str,
                   split: str, k: int, allow_subset: bool, dino_weights: str | None, crop: int, dev):
    """What the cluster mode needs at eval -> (samples, CachedMaps or None, images without cached clusters, a
    factory (cached array, k) -> window clusters or None, the cache used, its parameters that differ from the
    training cache's)."""
    if cluster_mode in ("whole", "view"):
        cache = cache or ckpt.get("cache") or default_cache_url()  # by default the cache it was trained with
        kept, maps, without, source = open_cached(samples, cache, dataset_name, split, cluster_mode, k)
        differences = cache_differences(ckpt.get("cluster_source"), source, cluster_mode)
        if differences:
            log.warning("cache %s was made with other parameters than the cache this checkpoint was trained with (%s):"
                        " its clusters differ from those of training, and so may the scores", cache,
                        "; ".join(differences))
        if without and not allow_subset:
            raise OCZSSError(f"{without} of {len(samples)} {dataset_name}/{split} images have no cluster labels in "
                             f"{cache}; finish the cache (`oczss precompute --dataset {images_of(dataset_name)} --split "
                             f"{split} --cache {cache}`, with --retry-failed for failed images) or pass --allow-subset to "
                             f"evaluate the others only")
        return kept, maps, without, factory(cluster_mode), cache, differences
    if cluster_mode == "online":
        dino = online_dino(ckpt["cluster_source"], dino_weights, crop, dev)
        return samples, None, 0, factory(cluster_mode, dino), cache, []
    return samples, None, 0, None, cache, []


def cache_differences(trained: dict | None, now: dict, mode: str) -> list[str]:
    """'name: trained with X, this cache Y' for every cache parameter that changes the clusters of `mode` (whole:
    the cluster maps; view: the compact features) and differs from the training run's cluster source."""
    fields = ("dino_model", "fingerprint", "random_weights", "input_size", "device", "dtype")
    fields += ("grid", "seed") if mode == "whole" else ("feature_dim", "feature_grid")
    trained = trained or {}
    show = lambda v: f"{v[:12]}…" if isinstance(v, str) and len(v) > 16 else v  # noqa: E731
    return [f"{f}: trained with {show(trained[f])}, this cache {show(now[f])}" for f in fields
            if f in trained and f in now and trained[f] != now[f]]


def format_report(r: dict) -> str:
    subset = subset_note(r)
    lines = [f"{r['checkpoint']} (step {r['step']}, {r['setting']}, trained on {r['trained_on']}) on "
             f"{r['dataset']}/{r['split']}, {r['mode']}, {r['images']} images{subset}"
             + (f", {RANDOM_NOTE}" if r["random_weights"] else "")]
    width = max(len(c) for c in r["classes"])
    for c, name in enumerate(r["classes"]):
        tag = "unseen" if c in set(r["unseen"]) else "seen"
        lines.append(f"  {name:<{width}}  {tag:<6}  {r['iou'][c]:6.2f}")
    lines.append(f"mIoU(S) {r['mIoU_seen']:.2f}  mIoU(U) {r['mIoU_unseen']:.2f}  hIoU {r['hIoU']:.2f}  "
                 f"mIoU {r['mIoU']:.2f}  pAcc {r['pAcc']:.2f}  ({rate_text(r['images_per_second'], 'img')})")
    return "\n".join(lines)
