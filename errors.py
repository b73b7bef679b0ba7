"""The exception types the CLI turns into a clean message and a non-zero exit, and the Python API raises."""


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
