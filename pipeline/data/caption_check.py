"""`data check` for COCO Captions: counts against the official figures, pairing of the captions files with the
image folders, empty captions and undecodable images, like `check` does for the segmentation datasets.

Problems: a captions file that is missing or not COCO's layout, an image listed without its file, an image file
the captions do not list, a listed image without captions, an empty caption, an image that cannot be decoded, more
images than the official figure. Fewer images than the official figure (a subset) is a warning.
"""

from __future__ import annotations

from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.console import progress
from oczss.pipeline.data.captions import NAME, OFFICIAL, SPLITS, CaptionDataset
from oczss.pipeline.data.check import closing_lines
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.data.prepare.runner import default_workers, process_pool

CHUNK = 64


def check_captions(data_root: str | Path | None = None, workers: int | None = None) -> dict:
    """Check both splits under `data_root` (default: the MSCOCO root). Returns a report dict: dataset, root, ok,
    problems, warnings (lists of lines), and per split: split, images, captions, official figures of both, the
    fewest and most captions of an image, and how many images were decoded."""
    ds = CaptionDataset(data_root)
    report = {"dataset": NAME, "root": str(ds.root), "splits": [], "problems": [], "warnings": []}
    paths = []
    for split in SPLITS:
        try:
            captions = ds.captions(split)
        except OCZSSError as e:
            report["problems"].append(str(e))
            continue
        entry, present = _pair(ds, split, captions, report)
        report["splits"].append(entry)
        paths += [(len(report["splits"]) - 1, str(p)) for p in present]
    chunks = [paths[i: i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = workers or default_workers()
    with progress(total=len(paths), desc=f"check {NAME}", unit="image") as bar:
        if workers <= 1 or len(chunks) <= 1:
            _collect(map(_decode, chunks), report, bar)
        else:
            with process_pool(workers) as pool:
                _collect(pool.map(_decode, chunks), report, bar)
    report["ok"] = not report["problems"]
    return report


def _pair(ds: CaptionDataset, split: str, captions: dict[str, tuple[str, ...]], report: dict) -> tuple[dict, list]:
    """Count a split, pair its captions file with its image folder; problems and warnings go to the report."""
    problems, folder, where = report["problems"], ds.images(split), ds.annotations(split)
    files = {p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")}
    counts = [len(c) for c in captions.values()]
    official = OFFICIAL[split]
    entry = {"split": split, "images": len(captions), "captions": sum(counts), "official_images": official["images"],
             "official_captions": official["captions"], "captions_per_image": [min(counts, default=0),
                                                                               max(counts, default=0)], "decoded": 0}
    for name in sorted(set(captions) - files):
        problems.append(f"{split}: image missing: {folder / name} (listed in {where})")
    for name in sorted(files - set(captions)):
        problems.append(f"{split}: image without captions: {folder / name} is not listed in {where}")
    for name, caps in sorted(captions.items()):
        if not caps:
            problems.append(f"{split}: image without captions: {name} is listed in {where} with no caption")
        problems += [f"{split}: empty caption of {name} in {where}" for c in caps if not c.strip()]
    if len(captions) < official["images"]:
        report["warnings"].append(f"{split}: {len(captions):,} images, the official figure is "
                                  f"{official['images']:,} (a subset)")
    elif len(captions) > official["images"]:
        problems.append(f"{split}: {len(captions):,} images, more than the official {official['images']:,}")
    return entry, [folder / name for name in sorted(set(captions) & files)]


def _decode(chunk: list[tuple[int, str]]) -> list[tuple[int, str | None]]:
    out = []
    for index, path in chunk:
        try:
            load_rgb(path)
            out.append((index, None))
        except ImageError as e:
            out.append((index, f"unreadable image: {e}"))
    return out


def _collect(results, report: dict, bar) -> None:
    for chunk in results:
        for index, problem in chunk:
            entry = report["splits"][index]
            entry["decoded"] += problem is None
            if problem:
                report["problems"].append(f"{entry['split']}: {problem}")
        bar.update(len(chunk))


def format_caption_report(report: dict) -> str:
    """The report as text: counts per split, then every warning and problem."""
    lines = [f"{report['dataset']} at {report['root']}"]
    for s in report["splits"]:
        low, high = s["captions_per_image"]
        lines.append(f"  {s['split']:<6} {s['images']:>7,} images (official {s['official_images']:,}), "
                     f"{s['captions']:>7,} captions (official {s['official_captions']:,}), {low}-{high} per image, "
                     f"{s['decoded']:,} decoded")
    return "\n".join(lines + closing_lines(report))
