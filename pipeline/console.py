"""What a person sees while oczss works: one `logging` setup and progress bars with rate and ETA.

Diagnostics go through `logging` under the `oczss` logger (and Python warnings through `py.warnings`, without
source lines); results go to stdout from the CLI. On a terminal, progress is a tqdm bar and log lines are written
above it. Anywhere else (a log file, a pipe, a batch job) there is no carriage-return animation: a progress line
with count, rate and ETA is logged at most every `OCZSS_PROGRESS_SECONDS` (default 30) seconds, and at the end.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm

LOGGER = "oczss"


class _Handler(logging.Handler):
    """Writes records to stderr through tqdm.write, so a running bar is redrawn below them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.WARNING and record.name != "py.warnings":
                msg = f"{record.levelname.lower()}: {msg}"
            tqdm.write(msg, file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _WarningFormatter(logging.Formatter):
    """`warnings.warn` text without the file name and source line Python adds."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().strip().splitlines()[0]
        # "path.py:12: UserWarning: message" -> "warning: message"
        parts = text.split(": ", 2)
        return f"warning: {parts[2] if len(parts) == 3 and parts[1].endswith('Warning') else text}"


def setup_logging(verbosity: int = 0) -> None:
    """-1 quiet (warnings and errors), 0 normal (progress notes), 1 verbose (debug). Idempotent."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    for name, formatter in ((LOGGER, logging.Formatter("%(message)s")), ("py.warnings", _WarningFormatter())):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, _Handler)]
        handler = _Handler()
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    logging.captureWarnings(True)


def progress(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
             enabled: bool = True):
    """A progress bar (tqdm on a terminal, periodic log lines elsewhere); off when `enabled` is False, with -q, or
    with TQDM_DISABLE=1. Supports update(n), set_postfix(**kw), close() and use as a context manager."""
    quiet = logging.getLogger(LOGGER).level > logging.INFO  # set by setup_logging(-1); NOTSET otherwise
    if not enabled or quiet or os.environ.get("TQDM_DISABLE") == "1":
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                    smoothing=0.1)
    return _LogProgress(total, desc, unit, initial, float(os.environ.get("OCZSS_PROGRESS_SECONDS", "30")))


class _LogProgress:
    """Progress as plain log lines: 'desc: n/total unit, rate, ETA h:mm:ss [postfix]'; the rate is unit/s, or s/unit
    below 1 unit/s (as tqdm shows it). Closing writes the last state unless the line before already showed it."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, every: float):
        self.total, self.desc, self.unit, self.n, self.every = total, desc, unit, initial, every
        self.start = self.last = time.monotonic()
        self.first, self.postfix, self.closed, self.shown = initial, "", False, None
        self.log = logging.getLogger(LOGGER)

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._emit()

    def set_postfix(self, **kw) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.shown != (self.n, self.postfix):
                self._emit()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _emit(self) -> None:
        self.last = now = time.monotonic()
        self.shown = (self.n, self.postfix)
        done = self.n - self.first
        rate = done / (now - self.start) if now > self.start else 0.0
        where = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        eta = ""
        if self.total and rate > 0 and self.n < self.total:
            eta = f", ETA {_clock((self.total - self.n) / rate)}"
        self.log.info("%s: %s %s, %s%s%s", self.desc, where, self.unit, rate_text(rate, self.unit), eta,
                      f"  {self.postfix}" if self.postfix else "")


def rate_text(rate: float, unit: str) -> str:
    """'12.34 img/s', or below 1 per second the time per item, '42.0 s/img' (0 when nothing is done yet)."""
    if rate >= 1 or rate <= 0:
        return f"{rate:.2f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit}"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
