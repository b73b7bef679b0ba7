"""`oczss predict`: a Segmenter over files, folders and globs, resumable, with a record of every image.

For each image it writes what `--save` asks for (pipeline/segmenter/outputs.py: `overlay`, `labels`, `probs`) and
then appends one line to `<out>/predictions.jsonl`: the input, its output files, the classes, each class's share
of the pixels, the seconds spent, the method, the weights and the random-weights flag. That line is the image's
completion record: a rerun skips every image whose line and files are there, and redoes the rest (`--overwrite`
redoes everything and starts the record afresh). A rerun into a folder that holds another run's predictions
(other classes, method or weights) is refused. Files are written under temporary names and renamed, so neither
Ctrl-C nor a kill leaves a partial file; a kill's leftover temporary files are removed by the next run.

Decoding runs in `workers` threads ahead of the model, writing in as many threads behind it; unreadable images are
reported and skipped (retried by the next run), and a run that could read none of its images is an error.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from oczss.errors import ImageInputError, OCZSSError
from oczss.pipeline.console import progress
from oczss.pipeline.segmenter.api import Segmenter
from oczss.pipeline.segmenter.classes import parse_classes
from oczss.pipeline.segmenter.files import expand, output_names
from oczss.pipeline.segmenter.outputs import PARTIAL, identity, parse_save, write
from oczss.pipeline.segmenter.result import Result

log = logging.getLogger(__name__)
RECORDS = "predictions.jsonl"


@dataclass
class Plan:
    """What a predict run will do, settled before any model is loaded."""

    jobs: list[tuple[Path, str]]  # (input file, output name)
    classes: tuple[tuple[str, ...], ...]
    out_dir: Path
    save: tuple[str, ...]
    overwrite: bool
    done: dict[str, dict] = field(default_factory=dict)  # output name -> its record, for complete images


@dataclass
class Summary:
    written: int
    skipped: int
    failed: list[str]
    seconds: float
    files: list[Path]

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


def plan(inputs: list[str], classes, out_dir: str | Path, save="overlay,labels", overwrite: bool = False) -> Plan:
    """Expand the inputs, parse classes and --save, read the output folder's records; refuses (one line) missing
    inputs, bad class names, an unwritable folder and one holding predictions for other classes."""
    out_dir = Path(out_dir)
    save, parsed = parse_save(save, "--save"), parse_classes(classes, "--classes")
    found = expand(inputs, out_dir)
    jobs = list(zip([p for p, _ in found], output_names(found)))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OCZSSError(f"--out {out_dir}: cannot create it ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK):
        raise OCZSSError(f"--out {out_dir}: not writable")
    records = {} if overwrite else read_records(out_dir / RECORDS)
    _same_run(records, {"oczss:classes": identity(parsed, "", {})["oczss:classes"]}, out_dir)
    done = {name: records[name] for path, name in jobs if name in records and _complete(records[name], path, out_dir,
                                                                                       save)}
    return Plan(jobs, parsed, out_dir, save, overwrite, done)


def read_records(path: Path) -> dict[str, dict]:
    """Output name -> its last record in a predictions.jsonl (a torn last line, from a kill, is ignored)."""
    records = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                records[record["name"]] = record
            except (ValueError, KeyError, TypeError):
                continue
    return records


def _complete(record: dict, path: Path, out_dir: Path, save: tuple[str, ...]) -> bool:
    return record.get("input") == str(path.resolve()) and all(
        kind in record.get("outputs", {}) and (out_dir / record["outputs"][kind]).is_file() for kind in save)


def _same_run(records: dict[str, dict], expected: dict[str, str], out_dir: Path) -> None:
    """Refuse a folder whose records were made with other classes / method / weights (the keys of `expected`)."""
    for record in records.values():
        differ = [k.split(":")[1] for k, v in expected.items() if record.get("run", {}).get(k) != v]
        if differ:
            raise OCZSSError(f"--out {out_dir} holds predictions made with other {' and '.join(differ)} "
                             f"({out_dir / RECORDS}); choose another --out, or pass --overwrite to replace them")


def run(p: Plan, segmenter: Segmenter, *, batch_size: int = 4, workers: int = 2, show_progress: bool = True) -> Summary:
    """Segment every image of the plan not done before; see the module docstring."""
    records_path = p.out_dir / RECORDS
    if not p.overwrite:
        _same_run(read_records(records_path), identity(p.classes, segmenter.method, segmenter.weights), p.out_dir)
    _remove_leftovers(p.out_dir)
    todo = [(path, name) for path, name in p.jobs if name not in p.done]
    if p.done:
        log.info("%d of %d images are done already (%s); segmenting the other %d", len(p.done), len(p.jobs),
                 records_path, len(todo))
    summary, start = Summary(0, len(p.done), [], 0.0, []), time.perf_counter()
    if not todo:
        return summary
    text, names = segmenter.text(p.classes), dict((str(path), name) for path, name in todo)
    results = segmenter.stream([path for path, _ in todo], text, batch_size, workers, "probs" in p.save)
    with _Writer(p, records_path, workers) as writer, progress(len(todo), desc="predict", unit="img",
                                                              enabled=show_progress) as bar:
        try:
            for r in results:
                if isinstance(r, ImageInputError):
                    log.warning("skipped unreadable image %s", r)
                    summary.failed.append(str(r))
                else:
                    writer.submit(r, names[r.source], summary)
                bar.update(1)
        except KeyboardInterrupt:
            log.warning("interrupted: the images finished so far are written; the same command continues")
            raise
    summary.seconds = time.perf_counter() - start
    if summary.failed and not summary.written:
        raise OCZSSError(f"none of the {len(todo)} image(s) could be read (see the warnings above); nothing written")
    return summary


def _remove_leftovers(out_dir: Path) -> None:
    """Temporary files of killed runs (their process is gone) below `out_dir`."""
    for tmp in out_dir.rglob(f".*{PARTIAL}"):
        pid = tmp.name[:-len(PARTIAL)].rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Writer:
    """Writes results' files in threads behind the model (at most 2 x threads waiting) and appends each image's
    record once its files are in place. Leaving the block waits for every submitted write, Ctrl-C included."""

    def __init__(self, p: Plan, records_path: Path, threads: int):
        self.plan, self.threads, self.lock = p, max(1, threads), threading.Lock()
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="oczss-write")
        self.pending = deque()
        self.records = open(records_path, "w" if p.overwrite else "a", encoding="utf-8")
        if not p.overwrite and records_path.stat().st_size:
            with open(records_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn line from a kill: start on a fresh one
                    self.records.write("\n")

    def __enter__(self):
        return self

    def submit(self, result: Result, name: str, summary: Summary) -> None:
        while len(self.pending) >= 2 * self.threads:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, result, name, summary))

    def _write(self, result: Result, name: str, summary: Summary) -> None:
        files = write(result, self.plan.out_dir, name, self.plan.save)
        run = identity(result.class_names, result.method, result.weights)
        line = {"input": str(Path(result.source).resolve()), "name": name,
                "outputs": {k: v.relative_to(self.plan.out_dir).as_posix() for k, v in files.items()},
                "classes": json.loads(run["oczss:classes"]), "shares": {k: round(v, 6) for k, v in
                                                                         result.shares().items()},
                "seconds": round(result.seconds, 4), "size": [result.image.shape[1], result.image.shape[0]],
                "method": result.method, "weights": result.weights, "random_weights": result.random_weights,
                "run": run}
        with self.lock:
            self.records.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.records.flush()
            summary.written += 1
            summary.files += files.values()

    def __exit__(self, *exc) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)
            self.records.close()
