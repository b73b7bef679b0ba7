"""`oczss data prepare`: the layouts that `--data-root` expects, made from the publishers' downloads.

One module per dataset family (coco, voc, context, ade, cityscapes) checks that every input exists, naming what is
missing and where it looked, before any work, and returns a `runner.Plan`; `runner.execute` writes it in parallel,
resumably and atomically. Inputs are read from the extracted folders or straight from the original archives.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.data.demo_scenes import MARKER, VERSION, ensure_demo
from oczss.pipeline.data.names import canonical
from oczss.pipeline.data.prepare import ade, captions, cityscapes, coco, context, voc
from oczss.pipeline.outputs import check_writable
from oczss.pipeline.data.prepare.runner import Summary, default_workers, execute

NAMES = ("coco", "coco-object", "coco-captions", "voc", "context", "ade", "cityscapes", "demo")
ALIASES = {"voc20": "voc", "voc21": "voc", "context59": "context", "context60": "context"}  # same files on disk


def prepare(name: str, raw: str | Path | None, out: str | Path, workers: int | None = None) -> Summary:
    """Make the `name` dataset under `out` from the downloads in `raw`; finished files are kept from earlier runs.

    workers: processes (default: the CPU cores this process may use; 1 = no pool). Raises OCZSSError naming any
    missing input before writing anything, and naming every input that could not be converted after the run.
    """
    name = canonical(name, NAMES + tuple(ALIASES))
    family = ALIASES.get(name, name)
    out = Path(out)
    check_writable(out, "--out")
    if family == "demo":
        start, marker = time.perf_counter(), out / MARKER
        kept = marker.is_file() and marker.read_text().strip() == VERSION
        ensure_demo(out)
        n = sum(1 for p in out.rglob("*") if p.is_file() and p != marker)
        return Summary(0 if kept else n, n if kept else 0, time.perf_counter() - start)
    if raw is None:
        raise OCZSSError(f"prepare {name}: --raw is required (the folder holding the downloads)")
    raw = Path(raw)
    if not raw.is_dir():
        raise OCZSSError(f"--raw {raw} is not a folder; it should hold the {name} downloads (extracted or archives)")
    plans = {"coco": partial(coco.plan, "coco"), "coco-object": partial(coco.plan, "coco-object"), "voc": voc.plan,
             "context": context.plan, "ade": ade.plan, "cityscapes": cityscapes.plan, "coco-captions": captions.plan}
    plan = plans[family](raw, out)
    return execute(plan, out, workers or default_workers(), f"prepare {name}")
