"""`oczss data check`: is a dataset root complete and sound? Counts, pairing, readability, sizes, label values.

Per list of a split (train, trainaug, val: `Dataset.parts`): the image count against the publisher's figure
(OFFICIAL; fewer is a warning, a subset; more is a problem), images without labels, labels without images,
files that cannot be decoded, an image and its label of different sizes, label values outside the class range
(255 aside) after the dataset's own decoding, and the pixels per class. Reading is parallel across processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from oczss.errors import OCZSSError
from oczss.model import IGNORE
from oczss.pipeline.console import progress
from oczss.pipeline.data.datasets import SPLITS, Dataset, Part, files_with_suffix
from oczss.pipeline.data.demo_scenes import COUNTS as DEMO_COUNTS
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.data.prepare.runner import default_workers, process_pool

# images per list as published (VOC trainaug: mmseg's voc_aug; Context: the PASCAL in Detail phases)
OFFICIAL = {
    "voc": {"train": 1464, "trainaug": 10582, "val": 1449},
    "context": {"train": 4996, "val": 5104},
    "coco": {"train": 118287, "val": 5000},
    "ade": {"train": 20210, "val": 2000},
    "cityscapes": {"train": 2975, "val": 500},
    "demo": DEMO_COUNTS,
}
_FIGURES = {"voc20": "voc", "voc21": "voc", "context59": "context", "context60": "context", "coco-object": "coco"}
CHUNK = 32


def official(name: str) -> dict[str, int]:
    return OFFICIAL[_FIGURES.get(name, name)]


def check(name: str, data_root: str | Path | None = None, workers: int | None = None) -> dict:
    """Check every split of `name` under `data_root` (default: its default root). Returns a report dict:
    dataset, root, classes, ok (no problems), problems and warnings (lists of lines), and per list: split, images,
    official, labelled (pairs read), histogram (pixels per class, [K]), ignore and out_of_range pixel counts."""
    ds = Dataset(name, data_root)
    classes = ds.spec.classes
    report = {"dataset": name, "root": str(ds.root), "classes": list(classes), "splits": [], "problems": [],
              "warnings": []}
    parts = []
    for split in SPLITS:
        try:
            ds.check(split)
        except OCZSSError as e:
            if str(e) not in report["problems"]:  # a missing root is said once, not per split
                report["problems"].append(str(e))
            continue
        parts += ds.parts(split)
    pairs, seen_labels = [], set()
    for part in parts:
        entry, part_pairs = _pair(part, report, seen_labels)
        report["splits"].append(entry)
        pairs += [(len(report["splits"]) - 1, image, label) for image, label in part_pairs]
    hist = np.zeros((len(report["splits"]), 256), np.int64)
    chunks = [pairs[i: i + CHUNK] for i in range(0, len(pairs), CHUNK)]
    workers = workers or default_workers()
    with progress(total=len(pairs), desc=f"check {name}", unit="pair") as bar:
        if workers <= 1 or len(chunks) <= 1:
            results = (_read_chunk(name, str(ds.root), c) for c in chunks)
            _collect(results, hist, report, bar)
        else:
            with process_pool(workers) as pool:
                _collect(pool.map(_read_chunk, [name] * len(chunks), [str(ds.root)] * len(chunks), chunks), hist,
                         report, bar)
    k = len(classes)
    for entry, h in zip(report["splits"], hist):
        entry.update(histogram=h[:k].tolist(), ignore=int(h[IGNORE]), out_of_range=int(h[k:].sum() - h[IGNORE]))
    report["ok"] = not report["problems"]
    return report


def _pair(part: Part, report: dict, seen_labels: set) -> tuple[dict, list[tuple[str, str]]]:
    """Count a list and pair its images with labels; missing files and orphan labels go to the report."""
    name, problems = report["dataset"], report["problems"]
    try:
        ids = part.read_ids()
    except (OCZSSError, OSError) as e:
        problems.append(f"{part.name}: {e}")
        ids = []
    figure = official(name).get(part.name)
    entry = {"split": part.name, "images": len(ids), "official": figure, "labelled": 0}
    if figure is not None and len(ids) < figure:
        report["warnings"].append(f"{part.name}: {len(ids):,} images, the official figure is {figure:,} (a subset)")
    elif figure is not None and len(ids) > figure:
        problems.append(f"{part.name}: {len(ids):,} images, more than the official {figure:,}")
    pairs = []
    for i in ids:
        image, label = part.image(i), part.label(i)
        if not image.is_file():
            problems.append(f"{part.name}: image missing: {image} (listed in {part.ids})")
        elif not label.is_file():
            problems.append(f"{part.name}: image without label: {image} (no {label})")
        else:
            pairs.append((str(image), str(label)))
    key = (part.labels, part.label_suffix)
    if part.labels.is_dir() and key not in seen_labels:  # a label folder shared by two lists is looked at once
        seen_labels.add(key)
        for i in files_with_suffix(part.labels, part.label_suffix, part.nested):
            if not part.image(i).is_file():
                problems.append(f"label without image: {part.label(i)} (no {part.image(i)})")
    return entry, pairs


def _read_chunk(name: str, root: str, chunk: list[tuple[int, str, str]]) -> list[tuple[int, np.ndarray, list[str]]]:
    """Decode each pair: (list index, label value counts [256], problems) per pair."""
    ds = Dataset(name, root)
    k = len(ds.spec.classes)
    out = []
    for index, image, label in chunk:
        problems, counts = [], np.zeros(256, np.int64)
        try:
            size = load_rgb(image).size[::-1]
        except ImageError as e:
            problems.append(f"unreadable image: {e}")
            size = None
        try:
            lab = ds.read_label(Path(label))
        except OCZSSError as e:
            problems.append(f"unreadable label: {e}")
        else:
            counts = np.bincount(lab.ravel(), minlength=256)[:256]
            if size is not None and lab.shape != size:
                problems.append(f"size mismatch: image {image} is {size[1]}x{size[0]}, label {label} is "
                                f"{lab.shape[1]}x{lab.shape[0]}")
            bad = [v for v in np.flatnonzero(counts) if v >= k and v != IGNORE]
            if bad:
                problems.append(f"label values outside 0..{k - 1} (and {IGNORE}): {label} holds "
                                f"{', '.join(map(str, bad))}")
        out.append((index, counts, problems))
    return out


def _collect(results, hist: np.ndarray, report: dict, bar) -> None:
    for chunk in results:
        for index, counts, problems in chunk:
            hist[index] += counts
            report["splits"][index]["labelled"] += 1
            report["problems"] += [f"{report['splits'][index]['split']}: {p}" for p in problems]
        bar.update(len(chunk))


def format_report(report: dict) -> str:
    """The report as text: counts, the per-class pixel table, then every warning and problem."""
    lines = [f"{report['dataset']} at {report['root']}"]
    for s in report["splits"]:
        fig = f"official {s['official']:,}" if s["official"] is not None else "no official figure"
        lines.append(f"  {s['split']:<9} {s['images']:>7,} images ({fig}), {s['labelled']:,} pairs read")
    if report["splits"]:
        heads = [s["split"] for s in report["splits"]]
        width = max(map(len, report["classes"] + ["class"]))
        lines.append("pixels per class:")
        lines.append(f"  {'class':<{width}}" + "".join(f" {h:>14}" for h in heads))
        rows = [(c, [s["histogram"][i] for s in report["splits"]]) for i, c in enumerate(report["classes"])]
        rows += [("ignore (255)", [s["ignore"] for s in report["splits"]]),
                 ("out of range", [s["out_of_range"] for s in report["splits"]])]
        for c, values in rows:
            lines.append(f"  {c:<{width}}" + "".join(f" {v:>14,}" for v in values))
    return "\n".join(lines + closing_lines(report))


def closing_lines(report: dict) -> list[str]:
    """The end of a report as text: every warning and problem, then the verdict."""
    lines = []
    for kind in ("warnings", "problems"):
        if report[kind]:
            lines.append(f"{kind} ({len(report[kind])}):")
            lines += [f"  {p}" for p in report[kind]]
    lines.append("ok" if report["ok"] else f"{len(report['problems'])} problem(s)")
    return lines


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2)
