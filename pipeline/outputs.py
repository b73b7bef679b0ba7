"""Where outputs go: a folder that cannot be written is refused before any work, and an operating-system error
while writing (a full disk, a folder made read-only meanwhile) is one line naming the file and what the errno means.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from oczss.errors import OCZSSError, os_error


def check_writable(folder: str | Path, flag: str) -> None:
    """Refuse `folder` (given as `flag`) unless a file can be created in it, or in its nearest existing parent when
    it does not exist yet; nothing is left behind (an anonymous temporary file)."""
    folder = Path(folder)
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OCZSSError(f"{flag} {folder}: cannot write there ({os_error(e, existing)})") from None


@contextlib.contextmanager
def writing(path: str | Path):
    """An OSError raised inside becomes the one-line OCZSSError naming `path` (or the error's own file)."""
    try:
        yield
    except OSError as e:
        raise OCZSSError(f"cannot write {os_error(e, path)}") from None
