"""The one exception type the CLI turns into a clean message and a non-zero exit."""


class OCZSSError(Exception):
    """A user-facing error: bad input, a missing file, a cache that does not match.

    The message names the file or flag at fault and what to do; the CLI prints it without a traceback.
    """
