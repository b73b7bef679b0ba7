"""Writing a prepared dataset: parallel across processes, resumable, every file atomic.

A `Plan` lists the files to write as `Task`s (one source tree and one way of making its outputs each) and the
small text files (split lists) written last. An output that exists is finished: every file is written to a
temporary name in `<out>/.oczss-prepare/` and renamed into place (`os.replace`), so a killed run leaves only whole
files, and a rerun skips them. The temporary folder is cleared at the start of a run and removed at its end.
Copies of plain files are hard links where the filesystem allows (no space used), else byte copies.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.console import progress
from oczss.pipeline.data.prepare.sources import FileRef, Tree

log = logging.getLogger(__name__)
TMP = ".oczss-prepare"
CHUNK = 16  # files per task handed to a worker


@dataclass
class Task:
    """Outputs made one way. items: (source, output path); a source is a name in `tree`, or (without a tree) the
    payload itself. make(source_ref_or_payload, *args) -> the file's bytes; None copies the source."""

    items: list[tuple[object, Path]]
    make: Callable[..., bytes] | None = None
    tree: Tree | None = None
    args: tuple = ()


@dataclass
class Plan:
    tasks: list[Task]
    texts: dict[Path, str] = field(default_factory=dict)


@dataclass
class Summary:
    written: int
    skipped: int
    seconds: float


def execute(plan: Plan, out: Path, workers: int, desc: str) -> Summary:
    """Write every missing output of `plan` under `out` with `workers` processes (1: in this process)."""
    start = time.perf_counter()
    tmp = out / TMP
    if tmp.exists():
        shutil.rmtree(tmp)  # our own temporary files from an interrupted run
    tmp.mkdir(parents=True)
    todo = [[(src, dst) for src, dst in t.items if not dst.exists()] for t in plan.tasks]
    total = sum(len(t.items) for t in plan.tasks)
    pending = sum(map(len, todo))
    log.info("%s: %d files to write, %d already done", desc, pending, total - pending)
    failures: list[str] = []
    try:
        with progress(total=total, initial=total - pending, desc=desc, unit="file") as bar:
            jobs = _jobs(plan.tasks, todo)
            if workers <= 1:
                for chunk in _chunks(jobs):
                    failures += _run_chunk(chunk, str(tmp))
                    bar.update(len(chunk))
            else:
                failures += _parallel(jobs, str(tmp), workers, bar)
        if failures:
            listed = "\n  ".join(failures)
            raise OCZSSError(f"{desc}: {len(failures)} file(s) could not be made (the others are written; fix "
                             f"these and run again to finish):\n  {listed}")
        for path, text in plan.texts.items():  # last: a run that stopped early has no split lists
            write_atomic(path, text.encode(), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Summary(pending, total - pending, time.perf_counter() - start)


def _jobs(tasks: list[Task], todo: list[list[tuple[object, Path]]]) -> Iterator[tuple]:
    """(output, make, args, what) per file to write, sources resolved lazily (a gzip tar is streamed)."""
    for task, items in zip(tasks, todo):
        if task.tree is None:
            for payload, dst in items:
                yield str(dst), task.make, (payload, *task.args), str(dst)
            continue
        dsts = dict(items)
        for name, ref in task.tree.refs(dsts):
            yield str(dsts[name]), task.make, (ref, *task.args), task.tree.where(name)


def _chunks(jobs: Iterator[tuple]) -> Iterator[list[tuple]]:
    while chunk := list(itertools.islice(jobs, CHUNK)):
        yield chunk


def _parallel(jobs: Iterator[tuple], tmp: str, workers: int, bar) -> list[str]:
    """Chunks of jobs across a process pool, at most 4 chunks per worker in flight (a streamed archive's bytes wait in
    memory only that long)."""
    failures, running = [], {}

    def settle(futures) -> None:
        for fut in futures:
            failures.extend(fut.result())
            bar.update(running.pop(fut))

    with process_pool(workers, initializer=_die_with_parent) as pool:
        try:
            for chunk in _chunks(jobs):
                if len(running) >= 4 * workers:
                    settle(wait(running, return_when=FIRST_COMPLETED).done)
                running[pool.submit(_run_chunk, chunk, tmp)] = len(chunk)
            settle(list(running))
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return failures


def process_pool(workers: int, **kwargs) -> ProcessPoolExecutor:
    """A process pool; forked on Linux, so workers start in milliseconds with the modules already loaded (no torch
    import per worker) whatever Python's default start method."""
    context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    return ProcessPoolExecutor(workers, mp_context=context, **kwargs)


def _die_with_parent() -> None:
    """Worker start: on Linux, be killed with the parent process, so a killed run leaves no writer behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent, which cancels the pool


_COUNTER = itertools.count()


def _run_chunk(chunk: list[tuple], tmp: str) -> list[str]:
    """Make and write each job of a chunk; returns 'where: what went wrong' for each one that failed."""
    failures = []
    for dst, make, args, what in chunk:
        try:
            if make is None:
                copy_atomic(args[0], Path(dst), Path(tmp))
            else:
                write_atomic(Path(dst), make(*args), Path(tmp))
        except Exception as e:  # noqa: BLE001 - one bad input is reported by name; the others are still written
            failures.append(f"{what}: {e}" if isinstance(e, OCZSSError) else f"{what}: {type(e).__name__}: {e}")
    return failures


def _tmp_name(tmp: Path, dst: Path) -> Path:
    return tmp / f"{os.getpid()}-{next(_COUNTER)}-{dst.name}"


def write_atomic(dst: Path, data: bytes, tmp: Path) -> None:
    """Write `data` to a temporary file in `tmp` (same filesystem as `dst`) and rename it to `dst`."""
    part = _tmp_name(tmp, dst)
    part.write_bytes(data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dst)


def copy_atomic(ref, dst: Path, tmp: Path) -> None:
    """A source file at `dst`: hard-linked when it is a plain file on the same filesystem, else its bytes copied."""
    if isinstance(ref, FileRef):
        part = _tmp_name(tmp, dst)
        try:
            os.link(ref.path, part)
        except OSError:
            shutil.copyfile(ref.path, part)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, dst)
    else:
        write_atomic(dst, ref.read(), tmp)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def texts(lines_by_path: dict[Path, Iterable[str]]) -> dict[Path, str]:
    """Split lists as file contents: one id per line, newline-terminated."""
    return {p: "".join(f"{i}\n" for i in ids) for p, ids in lines_by_path.items()}
