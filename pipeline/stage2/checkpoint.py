"""Checkpoints: atomic saves, `weights_only=True` loads, and rebuilding a trained model from one.

A checkpoint holds the trainable weights (the frozen CLIP is reloaded from `model_config["weights"]` and checked
against `weights_fingerprint`), optimizer, scheduler, step, torch RNG states, the full training and model
configs, the class names and unseen classes it was trained with, the class text embeddings it was trained with
(`text`, so it evaluates the same from any folder), where its clusters came from, and whether its CLIP weights
were random.

A converted checkpoint (`oczss convert otseg`) carries its frozen CLIP image tower itself: `clip` holds its state
dict and `model_config["weights"]` is `checkpoint`, so no hub or CLIP file is needed. It has no optimizer,
scheduler or RNG states (it cannot be resumed, only evaluated, used for prediction or as `--init-from`), and its
`train_config` records where it came from (file, sha256, the source's own metadata) instead of a TrainConfig.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from oczss.errors import OCZSSError
from oczss.model import OCZSSConfig, build_model
from oczss.model.clip import EMBEDDED
from oczss.model.weights import load_refusal
from oczss.pipeline.configs import from_dict

FORMAT = 2
NOT_WEIGHTS = ("weights", "seed", "clip_image_size")  # model-config fields that leave the trainable layout as is
# what eval and predict read of a checkpoint
USED = ("model", "model_config", "train_config", "weights_fingerprint", "random_weights", "dataset", "setting",
        "classes", "unseen", "text", "step", "cluster_source")


def save(path: str | Path, payload: dict) -> Path:
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves half a checkpoint, and a
    failed save (a full disk) leaves no temporary file behind. Written through a Python file, so a full disk is an
    OSError naming the file (ENOSPC), not torch's 'unexpected pos'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(e.filename or path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> dict:
    """Load with weights_only=True (no arbitrary code from a checkpoint file); a file that is not an oczss
    checkpoint is one line saying so and why (naming every global a pickle refused)."""
    path = Path(path)
    if not path.is_file():
        raise OCZSSError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        why = load_refusal(path, e)
        if why is None:
            first = (str(e).strip().splitlines() or [""])[0]
            why = f"not a PyTorch checkpoint file ({type(e).__name__}: {first})"
        raise OCZSSError(f"{path}: not an oczss checkpoint: {why}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else None
        raise OCZSSError(f"{path}: not an oczss checkpoint of format {FORMAT}"
                         + (f" (it is format {found}, from another oczss version)" if found else ""))
    return ckpt


def require(ckpt: dict, path, fields: tuple[str, ...]) -> None:
    """Refuse a checkpoint that lacks any of `fields`, naming them (every oczss checkpoint records them)."""
    missing = [f for f in fields if f not in ckpt]
    if missing:
        raise OCZSSError(f"checkpoint {path} lacks the field{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"that every oczss checkpoint records: it was edited, or not written by `oczss train` or "
                         f"`oczss convert`")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_differences(saved: dict, config: OCZSSConfig) -> list[str]:
    """'field: checkpoint X, this model Y' for every model-config field that changes the weights' layout."""
    now = dataclasses.asdict(config)
    return [f"{k}: checkpoint {saved.get(k)!r}, this model {now[k]!r}" for k in now
            if k not in NOT_WEIGHTS and k in saved and _plain(saved[k]) != _plain(now[k])]


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def load_trainable(model: torch.nn.Module, ckpt: dict, source: str) -> None:
    """Load a checkpoint's trainable weights into `model`; every key must fit and only the frozen CLIP may be
    absent. A checkpoint of another model config is refused naming the fields that differ."""
    diff = config_differences(ckpt.get("model_config", {}), model.config)
    try:
        result = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as e:
        raise OCZSSError(f"{source} does not fit this model ({_first_line(e)}); its model config differs in: "
                         + ("; ".join(diff) if diff else "nothing recorded")) from None
    missing = [k for k in result.missing_keys if not k.startswith("encoder.clip.")]
    if missing or result.unexpected_keys:
        raise OCZSSError(f"{source} does not fit this model: missing {missing[:5]}, unexpected "
                         f"{result.unexpected_keys[:5]}; its model config differs in: "
                         + ("; ".join(diff) if diff else "nothing recorded"))


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
    return lines[0] if lines else str(e).splitlines()[0][:200]


def restore_model(path: str | Path, device: torch.device, weights: str | None = None, ckpt: dict | None = None):
    """(model in eval mode on `device`, checkpoint dict) from a checkpoint; `weights` overrides where the frozen
    CLIP comes from (e.g. a local path on another machine); its fingerprint must match the training run's.
    `ckpt`: the checkpoint `path` holds, when the caller has read it already."""
    ckpt = load(path) if ckpt is None else ckpt
    require(ckpt, path, USED)
    config = from_dict(OCZSSConfig, {**ckpt["model_config"], **({"weights": weights} if weights else {})},
                       f"checkpoint {path}: model_config")
    clip_state = None
    if config.weights == EMBEDDED:
        clip_state = ckpt.get("clip")
        if not isinstance(clip_state, dict):
            raise OCZSSError(f"checkpoint {path}: its model config says its CLIP weights are stored in it, but it "
                             f"holds no CLIP state dict ('clip'); convert or save it again")
    model = build_model(config, clip_state)
    if model.weights_fingerprint != ckpt["weights_fingerprint"]:
        raise OCZSSError(f"checkpoint {path} was trained on CLIP weights {ckpt['weights_fingerprint'][:12]}…, but "
                         f"{config.weights!r} gives {model.weights_fingerprint[:12]}…; pass the same weights")
    load_trainable(model, ckpt, f"checkpoint {path}")
    return model.to(device).eval(), ckpt
