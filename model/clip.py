"""Frozen open_clip towers by name and weights: `pretrained` (open_clip's `openai` tag), a local path, `random`, or
`checkpoint` (EMBEDDED: an image tower's state dict carried inside an oczss checkpoint, handed over by the caller).

The architecture is open_clip's own CLIP class with QuickGELU (OpenAI CLIP, docs/protocol.md §4), built from open_clip's
model config for a name like `ViT-B-16`, or from TINY for `tiny`; `image_size` lays the position embeddings out for
another input size (a converted OTSeg checkpoint stores them for its 512 or 480 training crop). Local checkpoints
may be open_clip / OpenAI state dicts (.pt, .bin, .safetensors, TorchScript archives) with `visual.`-prefixed
keys, or image-tower-only dicts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.factory import load_state_dict

from oczss.errors import OCZSSError
from oczss.model.names import TINY, check_name
from oczss.model.weights import announce_random, check_hub, fingerprint, load_refusal

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PRETRAINED_TAG = "openai"
EMBEDDED = "checkpoint"  # the weights value of a model whose frozen image tower is stored in its oczss checkpoint
HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # what open_clip asks the hub for


@dataclass
class Tower:
    """A loaded, frozen tower: `module` is CLIP.visual (tower `visual`) or the CLIP with its image tower removed
    (tower `text`, use `module.encode_text`); `fingerprint` identifies its weights; `random` says they are random."""

    module: torch.nn.Module
    fingerprint: str
    random: bool


def model_config(backbone: str, image_size: int = 0) -> dict:
    """open_clip's CLIP kwargs for `backbone` (an open_clip model name, or `tiny`); `image_size` (0: the
    backbone's own) sets the input size its position embeddings are laid out for."""
    if backbone == TINY:
        cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_CONFIG.items()}
    else:
        cfg = open_clip.get_model_config(check_name("clip", backbone, "--backbone"))
    if image_size:
        cfg["vision_cfg"] = {**cfg["vision_cfg"], "image_size": image_size}
    return cfg


def state_shapes(backbone: str, image_size: int = 0) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every entry of the CLIP state dict (image tower under `visual.`, then the text tower),
    without allocating weights: what a foreign checkpoint that embeds this CLIP must hold."""
    with torch.device("meta"):
        clip = open_clip.CLIP(**model_config(backbone, image_size), quick_gelu=True)
    return {k: tuple(v.shape) for k, v in clip.state_dict().items()}


def load_tower(backbone: str, weights: str, tower: str, seed: int = 0, image_size: int = 0,
               state: dict | None = None) -> Tower:
    """Build `backbone` and load `weights` into `tower` ('visual' or 'text'); frozen (no grad) and in eval mode.

    weights EMBEDDED: `state` is the image tower's state dict (open_clip `visual` keys without the prefix), as an
    oczss checkpoint carries it; nothing is read from disk or a hub. image_size: see `model_config`.
    """
    if tower not in ("visual", "text"):
        raise ValueError(f"tower must be 'visual' or 'text', got {tower!r}")
    if (weights == EMBEDDED) != (state is not None) or (state is not None and tower != "visual"):
        _refuse_embedded(weights, tower)
    if weights == "random":
        announce_random(f"CLIP {backbone} ({'image' if tower == 'visual' else 'text'} tower)")
    elif backbone == TINY and weights == "pretrained":
        raise OCZSSError("the tiny CLIP backbone has no pretrained weights: use 'random' or a local checkpoint")
    path = None if weights in ("random", EMBEDDED) else _checkpoint_path(backbone, weights)  # fail before building
    embedded = state is not None  # built without values (meta device): every one of them comes from `state`
    with torch.random.fork_rng(devices=[]), torch.device("meta") if embedded else contextlib.nullcontext():
        torch.manual_seed(seed)
        clip = open_clip.CLIP(**model_config(backbone, image_size), quick_gelu=True)
    if path is not None:
        state = _read_state(path)
        if "conv1.weight" in state:  # an image-tower-only checkpoint
            state = {f"visual.{k}": v for k, v in state.items()}
        _fit(clip, state, f"CLIP checkpoint {path}", tower)
    elif embedded:
        _fit(clip, {f"visual.{k}": v for k, v in state.items()}, "the CLIP image tower stored in the checkpoint",
             tower, assign=True)
    if tower == "visual":
        module = clip.visual
    else:
        clip.visual = None
        module = clip
    module.requires_grad_(False).eval()
    return Tower(module=module, fingerprint=fingerprint(module), random=weights == "random")


def _checkpoint_path(backbone: str, weights: str) -> str:
    if weights != "pretrained":
        if not Path(weights).is_file():
            raise OCZSSError(f"CLIP weights {weights!r}: no such checkpoint file (expected 'pretrained', 'random' "
                             f"or a path to a local checkpoint)")
        return weights
    cfg = open_clip.get_pretrained_cfg(backbone, PRETRAINED_TAG)
    hint = ("Fetch the weights where there is internet, then pass the local checkpoint path as the CLIP weights "
            "(e.g. OpenAI's ViT-B-16.pt or open_clip's open_clip_pytorch_model.bin)")
    if not cfg:
        raise OCZSSError(f"open_clip has no '{PRETRAINED_TAG}' weights for {backbone}. {hint}")
    if cfg.get("hf_hub"):  # fail at once, not after a minute of retries, when neither cache nor hub can serve it
        check_hub(cfg["hf_hub"].rstrip("/"), HUB_FILES, f"CLIP {backbone} ({PRETRAINED_TAG})",
                  "pass a local checkpoint path as the CLIP weights (e.g. OpenAI's ViT-B-16.pt)")
    try:
        return open_clip.download_pretrained(cfg)
    except Exception as e:  # any hub / network / cache failure becomes one actionable message
        raise OCZSSError(f"could not fetch the '{PRETRAINED_TAG}' weights of {backbone} from the hub or its local "
                         f"cache ({type(e).__name__}: {str(e)[:200]}). {hint}") from e


def _read_state(path: str) -> dict:
    """State dict of a checkpoint file; TorchScript archives (OpenAI's own ViT-B-16.pt) through torch.jit.load."""
    try:
        return load_state_dict(path)
    except Exception as e:  # torch.load(weights_only=True) refuses TorchScript archives
        try:
            state = torch.jit.load(path, map_location="cpu").state_dict()
        except Exception:
            why = load_refusal(path, e) or f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
            raise OCZSSError(f"cannot read CLIP checkpoint {path}: {why}") from None
    # metadata of OpenAI's archives, and open_clip's causal text mask (a non-persistent buffer, scripted as state)
    extra = ("input_resolution", "context_length", "vocab_size", "attn_mask")
    return {k: v for k, v in state.items() if k not in extra}


def _refuse_embedded(weights: str, tower: str) -> None:
    """The errors of a state dict handed over without weights EMBEDDED, or EMBEDDED weights without one."""
    if weights != EMBEDDED:
        raise ValueError(f"a state dict is only taken with weights {EMBEDDED!r}")
    if tower == "text":
        raise OCZSSError(f"this model's CLIP weights ({EMBEDDED!r}) are the image tower stored inside its checkpoint "
                         f"(e.g. one converted from OTSeg), without a text tower to compute class text embeddings: "
                         f"pass them as a .npy file with --text (e.g. OTSeg's voc12_otseg.npy)")
    raise OCZSSError(f"CLIP weights {EMBEDDED!r} means the image tower is stored inside an oczss checkpoint: load "
                     f"the model from that checkpoint (`--checkpoint`), or give 'pretrained' or a local path")


def _fit(clip: torch.nn.Module, state: dict, source: str, tower: str, assign: bool = False) -> None:
    """Load `state` into `clip` (`assign`: take its tensors as the parameters); every key of the requested tower
    must be present, no foreign key may be."""
    try:
        result = clip.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as e:  # shape mismatches
        raise OCZSSError(f"{source} does not fit the {tower} tower: {str(e)[:300]}") from e
    in_tower = (lambda k: k.startswith("visual.")) if tower == "visual" else (lambda k: not k.startswith("visual."))
    missing = [k for k in result.missing_keys if in_tower(k)]
    if missing or result.unexpected_keys:
        raise OCZSSError(f"{source} does not fit the {tower} tower: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
