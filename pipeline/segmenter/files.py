"""Which files `predict` segments, and the name each one's outputs get.

Arguments may be image files (taken whatever their extension), folders (searched recursively for files with an
image extension; hidden files and the output folder skipped) and glob patterns (`photos/**/*.jpg`, quoted so the
shell leaves them; matches filtered by image extension). Every missing file, empty folder and glob that matches
nothing is named in one error before any work. A file reached twice is segmented once.

Output names: a file inside a folder argument keeps its place below the folder (photos/a/b.jpg -> <out>/a/b_*),
other files their stem; names that would collide are widened with the extension, then the parent folder, then a
number (said on stderr).
"""

from __future__ import annotations

import glob
import logging
from collections import Counter
from pathlib import Path

from oczss.errors import ImageInputError

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
GLOB_CHARS = "*?["


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def expand(inputs: list[str], out_dir: Path | None = None) -> list[tuple[Path, str]]:
    """(file, base output name) for every image the arguments reach, in argument order (folders and globs sorted)."""
    out_dir = out_dir.resolve() if out_dir else None
    found, problems, seen = [], [], set()
    for arg in inputs:
        path = Path(arg)
        if path.is_file():
            items = [(path, path.stem)]
        elif path.is_dir():
            items = [(p, p.relative_to(path).with_suffix("").as_posix()) for p in sorted(path.rglob("*"))
                     if p.is_file() and is_image_name(p) and not _hidden(p.relative_to(path))
                     and not (out_dir and p.resolve().is_relative_to(out_dir))]
            if not items:
                problems.append(f"folder {arg} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        elif any(c in arg for c in GLOB_CHARS):
            items = [(Path(p), Path(p).stem) for p in sorted(glob.glob(arg, recursive=True))
                     if Path(p).is_file() and is_image_name(Path(p))]
            if not items:
                problems.append(f"{arg} matches no image file")
        else:
            problems.append(f"no such image file or folder: {arg}")
            continue
        for p, name in items:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                found.append((p, name))
    if problems:
        raise ImageInputError("; ".join(problems))
    return found


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def output_names(found: list[tuple[Path, str]]) -> list[str]:
    """A distinct output name per file: its base name, then name_ext, then parent_name_ext, then a number."""
    names = [base for _, base in found]
    widen = (lambda p, n: f"{n}_{p.suffix.lstrip('.')}",
             lambda p, n: str(Path(n).parent / f"{p.parent.name}_{Path(n).name}"))
    for step in widen:
        counts = Counter(n.lower() for n in names)
        names = [step(p, n) if counts[n.lower()] > 1 else n for (p, _), n in zip(found, names)]
    counts, seen, out = Counter(n.lower() for n in names), Counter(), []
    for n in names:
        seen[n.lower()] += 1
        out.append(f"{n}_{seen[n.lower()]}" if counts[n.lower()] > 1 else n)
    for (path, base), name in zip(found, out):
        if name != base:
            log.info("%s -> %s_* (another input has the same name)", path, name)
    return out
