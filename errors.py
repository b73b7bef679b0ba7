"""The exception types the CLI turns into a clean message and a non-zero exit, and the Python API raises; the
wording of an operating system's error in such a message."""

from __future__ import annotations

import errno


class OCZSSError(Exception):
    """A user-facing error: bad input, a missing file, a cache that does not match.

    The message names the file or flag at fault and what to do; the CLI prints it without a traceback.
    """


class ClassListError(OCZSSError):
    """Class names that cannot be used: none, an empty name, a name given twice (ignoring case, synonyms included),
    or more classes than a label map can hold."""


class ImageInputError(OCZSSError):
    """An input image that cannot be used: a missing or undecodable file, an array or tensor of an unusable shape
    or type, a glob or folder that holds no images."""


def os_error(error: OSError, path=None) -> str:
    """'PATH: what the errno means (ENAME)' for an OSError (a read-only folder, a full disk, ...): `path` names the
    file when the error itself does not (a failed write() carries no file name)."""
    where = error.filename if error.filename is not None else path
    code = errno.errorcode.get(error.errno or 0)
    meaning = error.strerror or str(error) or type(error).__name__
    return (f"{where}: " if where is not None else "") + meaning + (f" ({code})" if code else "")
