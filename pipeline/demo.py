"""`oczss demo`: the whole pipeline on the built-in demo dataset, on a CPU, in a few minutes.

precompute (tiny random DINO) -> train (the `demo` recipe: tiny random CLIP) -> eval -> predict, then predict
with CASS (training-free, tiny random CLIP and DINO), then Split Matching's train -> eval -> predict (the `sm-demo`
recipe: tiny random Mask2Former, online candidates from the tiny random CLIP; about 25 s on a 2-core CPU), all under
one folder. Running it again continues: finished cache shards are skipped and a finished or interrupted training
run is reused or resumed. Random weights carry no meaning, and the random CLIP text tower gives nearly identical
embeddings for every class name, so the demo uses seeded random unit vectors as class text embeddings (one per
class and template): seen classes become learnable, unseen ones stay at chance by construction.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path

import numpy as np

from oczss.pipeline.data.datasets import DEMO_CLASSES, SPECS
from oczss.pipeline.data.demo_scenes import ensure_demo
from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.evaluation import write_json
from oczss.pipeline.prediction import plan, run as run_predict
from oczss.pipeline.segmenter import load as load_segmenter
from oczss.pipeline.segmenter.evaluate import format_method_report
from oczss.pipeline.stage2.evaluate import evaluate, format_report
from oczss.pipeline.stage2.recipes import resolve
from oczss.pipeline.training.loop import train

log = logging.getLogger(__name__)

PRECOMPUTE = dict(dataset="demo", split="all", ks=(4,), input_size=128, grid=16, batch_size=16, weights="random",
                  dino_model="tiny", shard_size=32)


def random_text(path: Path, seed: int = 0) -> Path:
    """Seeded random unit vectors [classes, templates, 32] standing in for the class text embeddings."""
    if not path.exists():
        spec = SPECS["demo"]
        e = np.random.default_rng(seed).normal(size=(len(spec.classes), spec.templates, 32)).astype(np.float32)
        np.save(path, e / np.linalg.norm(e, axis=-1, keepdims=True))
    return path


def run_demo(out: str | Path, iters: int | None = None, device: str = "cpu") -> dict:
    """Run every stage; returns where everything is and the eval report."""
    out = Path(out)
    root = ensure_demo(out / "data" / "demo")
    cache = str(out / "cache.zarr")
    say = lambda msg: log.info("\n== %s", msg)  # noqa: E731
    say(f"1/6 precompute: DINO clusters of {root} into {cache}")
    precompute(PrecomputeConfig(cache=cache, data_root=str(root), device=device, **PRECOMPUTE))
    text = str(random_text(out / "text-random.npy"))
    cfg = resolve("demo", None)
    cfg = dataclasses.replace(cfg, text=text, iters=iters or cfg.iters, model=dict(cfg.model))
    run = out / "run"
    last = run / "last.pt"
    done = last.exists() and load(last)["step"] >= cfg.iters
    say(f"2/6 train {cfg.iters} iterations into {run}" + (" (already done)" if done else ""))
    if not done:
        train(cfg, out=run, data_root=str(root), cache=cache, device=device, resume=last.exists())
    say("3/6 eval on demo/val")
    report = evaluate(str(last), "demo", data_root=str(root), cache=cache, device=device, text=text)
    log.info("%s", format_report(report))
    write_json(report, out / "eval.json")
    say("4/6 predict three val images with the demo's class names (OC-ZSS, the checkpoint just trained)")
    images = sorted(str(p) for p in (root / "val2017").glob("*.jpg"))[:3]
    written = _predict(images, load_segmenter(str(last), device=device, text=text), out / "predictions")
    say("5/6 predict the same images with CASS, training-free (tiny random CLIP and DINO)")
    cass = load_segmenter("cass", device=device, weights="random", dino_weights="random", backbone="tiny", dino_model="tiny-p8")
    written_cass = _predict(images, cass, out / "predictions-cass")
    if importlib.util.find_spec("transformers") is None:
        say("6/6 Split Matching: skipped, it needs transformers' Mask2Former (pip install 'oczss[sm]')")
        sm = {}
    else:
        say("6/6 Split Matching: train the sm-demo recipe, eval on demo/val, predict the same images")
        sm = _split_matching(out, root, text, images, device)
    return {"out": str(out), "cache": cache, "run": str(run), "eval": str(out / "eval.json"),
            "predictions": [str(p) for p in written], "predictions_cass": [str(p) for p in written_cass],
            "report": report, **sm}


def _split_matching(out: Path, root: Path, text: str, images: list[str], device: str) -> dict:
    """Train (or resume, or reuse) the sm-demo run, evaluate it through oczss.load, predict `images` with it."""
    cfg = dataclasses.replace(resolve("sm-demo", None), text=text)
    run = out / "run-sm"
    last = run / "last.pt"
    if not (last.exists() and load(last)["step"] >= cfg.iters):
        train(cfg, out=run, data_root=str(root), device=device, cache=None, resume=last.exists())
    segmenter = load_segmenter(str(last), device=device)
    report = segmenter.evaluate("demo", data_root=str(root), workers=0)
    log.info("%s", format_method_report(report))
    write_json(report, out / "eval-sm.json")
    written = _predict(images, segmenter, out / "predictions-sm")
    return {"run_sm": str(run), "eval_sm": str(out / "eval-sm.json"), "predictions_sm": [str(p) for p in written],
            "report_sm": report}


def _predict(images: list[str], segmenter, folder: Path) -> list[Path]:
    """The demo's own folder: a rerun refreshes it (--overwrite)."""
    return run_predict(plan(images, list(DEMO_CLASSES), folder, overwrite=True), segmenter, workers=0).files
