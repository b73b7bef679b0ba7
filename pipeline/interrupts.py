"""How a long job in the main process meets Ctrl-C and SIGTERM: SIGTERM (a scheduler stopping the job) raised as
KeyboardInterrupt like Ctrl-C, and blocks that neither can split (the signal is deferred to the block's end).
Both do nothing outside the main thread, where Python delivers no signals.
"""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler stopping the job) raises KeyboardInterrupt, as Ctrl-C does, inside the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def uninterruptible(then_interrupt: bool = True):
    """Defer Ctrl-C and SIGTERM until the block ends (then raise KeyboardInterrupt if one came, unless
    `then_interrupt` is False: the run is stopping already)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {sig: signal.signal(sig, lambda *args: pending.append(args)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending and then_interrupt:
            raise KeyboardInterrupt
