"""Reading an mmcv / mmseg checkpoint (a `.pth` written by mmcv's `save_checkpoint`) without running pickle code.

`torch.load(weights_only=True)` rebuilds tensors and plain Python values (dict, OrderedDict with its `_metadata`,
list, tuple, str, int, float, bool, None) and nothing else. The allow-list adds what an mmcv checkpoint's `meta`
may also hold: numpy scalars and arrays of numbers or booleans (e.g. a numpy seed), under their numpy 1.x
(`numpy.core`) and 2.x (`numpy._core`) names, with the dtype classes numpy 2 rebuilds them as. Any other global in the pickle (a class, or a function such as `os.system` behind a
`__reduce__`) is refused before anything is rebuilt, and the error names it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from oczss.errors import OCZSSError
from oczss.model.weights import refused_globals

_MULTIARRAY = np._core.multiarray
_NUMERIC_DTYPES = sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}, key=lambda t: t.__name__)
ALLOWED = [np.ndarray, np.dtype, *_NUMERIC_DTYPES, _MULTIARRAY.scalar, _MULTIARRAY._reconstruct,
           (_MULTIARRAY.scalar, "numpy.core.multiarray.scalar"),
           (_MULTIARRAY._reconstruct, "numpy.core.multiarray._reconstruct")]


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, meta) of an mmcv checkpoint: its `state_dict` entry, or the whole object when it is a bare
    state dict (as mmcv's `load_checkpoint` reads it), with a leading `module.` (DDP) stripped; meta is {} when the
    file has none. Every state-dict value must be a tensor."""
    path = Path(path)
    if not path.is_file():
        raise OCZSSError(f"{path}: no such checkpoint file")
    with torch.serialization.safe_globals(ALLOWED):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - every failure is a bad file for the user
            _refuse(path, e)
    if not isinstance(obj, dict):
        raise OCZSSError(f"{path} holds a {type(obj).__name__}, not an mmcv checkpoint (a dict with 'state_dict')")
    state, meta = (obj["state_dict"], obj.get("meta")) if "state_dict" in obj else (obj, None)
    if not isinstance(state, dict):
        raise OCZSSError(f"{path}: its 'state_dict' is a {type(state).__name__}, not a dict of tensors")
    odd = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise OCZSSError(f"{path}: state-dict entries that are not named tensors: {', '.join(map(repr, odd[:10]))}"
                         + (f" ({len(odd)} in all)" if len(odd) > 10 else ""))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, meta if isinstance(meta, dict) else {}


def _refuse(path: Path, error: Exception):
    """Raise the error for a file torch.load refused: named globals outside the allow-list, or not readable."""
    unsafe = refused_globals(path, error)
    message = str(error)
    if unsafe is not None:
        named = f" ({', '.join(unsafe)})" if unsafe else ""
        raise OCZSSError(f"{path}: refused, it holds pickled objects other than tensors, plain Python values and "
                         f"numpy scalars/arrays{named}; nothing in it was run. A checkpoint written by mmcv (OTSeg's "
                         f"train.py) holds none of these: check where the file comes from") from None
    first = message.strip().splitlines()[0][:200] if message.strip() else ""
    raise OCZSSError(f"{path} cannot be read as a PyTorch checkpoint ({type(error).__name__}: {first})") from None
