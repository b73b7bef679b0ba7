"""What every frozen backbone shares: the fingerprint of its weights and the announcement of random weights.

Random weights exist for tests and the demo only. `announce_random` is the one place that says so when they
are loaded, and `RANDOM_NOTE` the one wording every output made with them carries.
"""

from __future__ import annotations

import hashlib
import logging

import torch

log = logging.getLogger(__name__)

TINY = "tiny"  # the 2-layer test backbones (CLIP and DINO): same code paths, seconds on a CPU
RANDOM_NOTE = "RANDOM WEIGHTS: for tests and the demo only"


def announce_random(what: str) -> None:
    """Log, as a warning, that `what` runs on randomly initialised weights."""
    log.warning("%s (%s is randomly initialised; its results mean nothing)", RANDOM_NOTE, what)


def fingerprint(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (names, dtypes, shapes, bytes): identifies the weights."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
