"""What every backbone shares: the fingerprint of its weights, the announcement of random weights, the fast check of
the Hugging Face hub cache before a `pretrained` load, and timm models with real weights (by name or local path).

Random weights exist for tests and the demo only. `announce_random` is the one place that says so when they
are loaded, and `RANDOM_NOTE` the one wording every output made with them carries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import socket
import urllib.parse
from pathlib import Path

import torch

from oczss.errors import OCZSSError

log = logging.getLogger(__name__)

RANDOM_NOTE = "RANDOM WEIGHTS: for tests and the demo only"
TIMM_HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm asks the hub for


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


def check_hub(repo: str, files: tuple[str, ...], what: str, instead: str) -> None:
    """Fail at once, naming where it looked, when none of `files` of the Hugging Face repo `repo` is in the local
    hub cache and the hub cannot be asked (HF_HUB_OFFLINE set, or its endpoint unreachable within 3 s): the
    libraries would otherwise spend about a minute in retries before a cut-off error. `instead` says what to pass
    instead (a local path)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in files):
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline and _reachable(constants.ENDPOINT):
        return
    why = "HF_HUB_OFFLINE is set" if offline else f"{constants.ENDPOINT} cannot be reached"
    raise OCZSSError(f"{what}: the pretrained weights are not in the local Hugging Face hub cache "
                     f"({constants.HF_HUB_CACHE}: looked for {repo} / {' or '.join(files)}) and {why}. Fetch them "
                     f"where there is internet (they land in that cache, which HF_HUB_CACHE can point to), or "
                     f"{instead}. HF_HUB_OFFLINE=1 makes every hub lookup fail at once instead of retrying.")


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    parsed = urllib.parse.urlparse(endpoint)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def timm_weights(name: str, weights: str, flag: str, example: str, **kwargs) -> torch.nn.Module:
    """timm model `name` (built with `kwargs`) with real weights: `pretrained` (timm's hub cache, checked first by
    `check_hub`) or a local checkpoint path. Every failure is one OCZSSError naming `flag` (the option that set
    `weights`) and suggesting a local file like `example`."""
    import timm

    instead = f"pass {flag} PATH to a local checkpoint (e.g. {example})"
    if weights == "pretrained":
        hub = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None)
        if hub:  # fail at once, not after a minute of retries, when neither cache nor hub can serve it
            check_hub(hub, TIMM_HUB_FILES, name, instead)
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except (OSError, RuntimeError) as e:
            raise OCZSSError(f"could not load pretrained {name} from the hub or its local cache ({type(e).__name__}: "
                             f"{str(e)[:200]}). Download it where you have internet, or {instead}") from e
    path = Path(weights)
    if not path.is_file():
        raise OCZSSError(f"{flag} {weights}: no such checkpoint file (expected 'pretrained', 'random' or a path)")
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    except (RuntimeError, KeyError, ValueError, OSError, pickle.UnpicklingError) as e:
        why = load_refusal(path, e) or (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise OCZSSError(f"checkpoint {path} does not load into {name}: {why}") from None


def refused_globals(path, error: Exception) -> list[str] | None:
    """The globals a `torch.load(weights_only=True)` of `path` refused (pickled code or objects that are not
    weights; [] when torch names none), or None when `error` is another failure (not a PyTorch file at all)."""
    message = str(error)
    if not any(m in message.lower() for m in ("weights only load failed", "weights_only=true blocked")):
        return None  # torch's own wording, and timm's (which loads DINO checkpoint files)
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the static scan cannot follow it
        names = []
    listed = re.search(r"Unsupported globals: ([\w., ]+?)\.(?:\s|$)", message)
    return names or sorted(set(re.findall(r"GLOBAL ([\w.]+)", message))
                           | set(listed.group(1).replace(" ", "").split(",") if listed else ()))


def load_refusal(path, error: Exception) -> str | None:
    """Why a weights-only load of `path` refused it, as one uncut clause naming every blocked global, or None when
    `error` is another failure. Nothing in the file is run either way."""
    names = refused_globals(path, error)
    if names is None:
        return None
    if names:
        return (f"it holds pickled code or objects that are not weights (the global{'s' if len(names) > 1 else ''} "
                f"{', '.join(names)}), which oczss never loads; nothing in it was run")
    advice = ("weights_only", "pytorch 2.6", "re-running", "please file an issue", "check the documentation")
    detail = " ".join(line.strip() for line in str(error).splitlines()
                      if line.strip() and not any(a in line.lower() for a in advice))
    return f"PyTorch's weights-only loading refused it ({detail or 'an object that is not weights'}); nothing in it was run"
