"""Checkpoints: atomic saves, `weights_only=True` loads, and rebuilding a trained model from one.

A checkpoint holds the trainable weights (the frozen CLIP is reloaded from `model_config["weights"]` and checked
against `weights_fingerprint`), optimizer, scheduler, step, torch RNG states, the full training and model
configs, the class names and unseen classes it was trained with, and whether its CLIP weights were random.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from oczss.errors import OCZSSError
from oczss.model import OCZSSConfig, build_model
from oczss.pipeline.configs import from_dict

FORMAT = 1


def save(path: str | Path, payload: dict) -> Path:
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> dict:
    """Load with weights_only=True (no arbitrary code from a checkpoint file)."""
    path = Path(path)
    if not path.is_file():
        raise OCZSSError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise OCZSSError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise OCZSSError(f"{path} is not an oczss checkpoint (format {FORMAT})")
    return ckpt


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_trainable(model: torch.nn.Module, state: dict, source: str) -> None:
    """Load trainable weights; every key must fit and only the frozen CLIP may be absent."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("encoder.clip.")]
    if missing or result.unexpected_keys:
        raise OCZSSError(f"{source} does not fit this model: missing {missing[:5]}, unexpected "
                         f"{result.unexpected_keys[:5]} (was it trained with another model config?)")


def restore_model(path: str | Path, device: torch.device, weights: str | None = None):
    """(model in eval mode on `device`, checkpoint dict) from a checkpoint; `weights` overrides where the frozen
    CLIP comes from (e.g. a local path on another machine); its fingerprint must match the training run's."""
    ckpt = load(path)
    config = from_dict(OCZSSConfig, {**ckpt["model_config"], **({"weights": weights} if weights else {})},
                       f"checkpoint {path}: model_config")
    model = build_model(config)
    if model.weights_fingerprint != ckpt["weights_fingerprint"]:
        raise OCZSSError(f"checkpoint {path} was trained on CLIP weights {ckpt['weights_fingerprint'][:12]}…, but "
                         f"{config.weights!r} gives {model.weights_fingerprint[:12]}…; pass the same weights")
    load_trainable(model, ckpt["model"], f"checkpoint {path}")
    return model.to(device).eval(), ckpt
