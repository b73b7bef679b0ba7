"""The one exception type the CLI turns into a clean message and a non-zero exit, and the wording of an operating
system's error in such a message."""

from __future__ import annotations

import errno


class OCZSSError(Exception):
    """A user-facing error: bad input, a missing file, a cache that does not match.

    The message names the file or flag at fault and what to do; the CLI prints it without a traceback.
    """


def os_error(error: OSError, path=None) -> str:
    """'PATH: what the errno means (ENAME)' for an OSError (a read-only folder, a full disk, ...): `path` names the
    file when the error itself does not (a failed write() carries no file name)."""
    where = error.filename if error.filename is not None else path
    code = errno.errorcode.get(error.errno or 0)
    meaning = error.strerror or str(error) or type(error).__name__
    return (f"{where}: " if where is not None else "") + meaning + (f" ({code})" if code else "")
