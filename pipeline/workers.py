"""What crosses a DataLoader's worker boundary besides the data: errors with their own one-line message, notes for
the user, and no signals.

torch re-raises an exception of a loader worker in the main process with the worker's whole traceback inside its
message, so an OCZSSError met in a worker (a damaged cache shard) would print that traceback above its line.
Instead, a dataset's `__getitem__` wrapped by `guarded` returns a `Failure` in place of the item; `collate` hands
it on as the batch, and `unwrap` (main process) raises the error again with its own message: an OCZSSError as
itself, an OSError with its errno and file, anything else as a WorkerError naming its type. The worker's
traceback is logged at debug level (`oczss -v` shows it).

Items may carry a `note` (a str, '' for none): `unwrap` logs each distinct note once as a warning, whichever
worker made it and however often.

`ignore_signals` (the workers' start) makes them ignore SIGINT and SIGTERM: Ctrl-C in a terminal and a scheduler's
SIGTERM to the whole process group (Slurm, Docker, Kubernetes) reach every process, and the main process alone
handles them (it saves, stops, then shuts its workers down), so the run ends exactly as when only the main process
is signalled. A worker whose main process died exits by itself (torch's watchdog). Since SIGTERM no longer ends a
worker, `stop` ends them in order (then SIGKILL) when their loop is done, and any worker still alive when the
process exits is killed first, so that multiprocessing's exit (SIGTERM, then a join without limit) cannot hang.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import multiprocessing
import signal
import traceback

from torch.utils.data import _utils, default_collate

from oczss.errors import OCZSSError

log = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    """An unexpected error inside a loader worker (a bug): its type and message, the traceback logged at debug."""


class Failure:
    """An exception of a loader worker as plain, picklable data: what `unwrap` raises again in the main process."""

    def __init__(self, error: Exception):
        self.kind = "oczss" if isinstance(error, OCZSSError) else "os" if isinstance(error, OSError) else "other"
        self.type, self.message = type(error).__name__, str(error)
        self.os = (error.errno, error.strerror, error.filename) if isinstance(error, OSError) else None
        self.traceback = "".join(traceback.format_exception(error))

    def error(self) -> Exception:
        if self.kind == "oczss":
            return OCZSSError(self.message)
        if self.kind == "os" and self.os[0] is not None:
            return OSError(self.os[0], self.os[1], self.os[2]) if self.os[2] else OSError(self.os[0], self.os[1])
        return WorkerError(f"{self.type} in a data loader worker: {self.message}")


def guarded(get):
    """Decorator of a Dataset's __getitem__: an exception becomes a Failure returned in place of the item."""

    @functools.wraps(get)
    def wrapper(self, key):
        try:
            return get(self, key)
        except Exception as e:  # noqa: BLE001 - carried to the main process, raised there (unwrap)
            return Failure(e)

    return wrapper


def collate(items: list):
    """default_collate, unless an item is a Failure: then that Failure is the batch."""
    for item in items:
        if isinstance(item, Failure):
            return item
    return default_collate(items)


def unwrap(batches):
    """The loader's batches, each Failure raised again as its error and each batch's notes logged once."""
    noted: set[str] = set()
    for batch in batches:
        if isinstance(batch, Failure):
            log.debug("in a data loader worker:\n%s", batch.traceback.rstrip())
            raise batch.error()
        if isinstance(batch, dict) and "note" in batch:
            for note in batch.pop("note"):
                if note and note not in noted:
                    noted.add(note)
                    log.warning("%s", note)
        yield batch


def ignore_signals(*_) -> None:
    """A loader worker's start (worker_init_fn): SIGINT and SIGTERM are the main process's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop(iterator) -> None:
    """End a DataLoader iterator's workers now: torch's orderly shutdown, then SIGKILL for any still alive (its own
    fallback, SIGTERM, no longer ends them)."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    for worker in getattr(iterator, "_workers", ()):
        if worker.is_alive():
            worker.kill()
            worker.join(5)


@contextlib.contextmanager
def stopping(iterator):
    """`stop` the iterator's workers when the block ends, however it ends."""
    try:
        yield iterator
    finally:
        stop(iterator)


@atexit.register  # runs before multiprocessing's own exit handler (registered earlier, atexit runs last-first)
def _kill_left_workers() -> None:
    for child in multiprocessing.active_children():
        if getattr(child, "_target", None) is _utils.worker._worker_loop:
            child.kill()
            child.join(5)
