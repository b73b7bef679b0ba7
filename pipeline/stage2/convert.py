"""`oczss convert otseg`: one of OTSeg's released mmseg checkpoints as an oczss checkpoint of the OTSeg baseline
(`OCZSSConfig.otseg()`) that `oczss eval` and `oczss predict` take, with no hub and no CLIP file needed.

Every key of the file is accounted for by `expected_layout` (a released ViT-B/16 file holds 376: 158 `backbone.`,
69 `decode_head.`, 149 `text_encoder.`); a missing or unexpected key or a wrong shape is refused, listing them.
  - kept, trainable (44): the deep VPT (`prompt_embeddings`, `deep_prompt_embeddings`, `prompt_proj`,
    `prompt_norm`), the decoder's `q_proj`, its first layers (MPSA q/k/v/proj, norm2 -> norm_attn, norm3 ->
    norm_ffn, linear1/linear2 -> ffn) and the last layer's MPSA q/k (-> last_q/last_k);
  - kept, frozen (152): the CLIP image tower under `backbone.`, stored as the output's `clip` with
    `model_config.weights = "checkpoint"`. Its `positional_embedding` is kept as OTSeg stores it, resized to the
    training crop ([1025, 768] for 512; [901, 768] for Context's 480), and `clip_image_size` says so: the encoder
    resizes from that grid to the input's, as OTSeg's forward does (an identity at the test crop);
  - dropped, dead (30): every layer's never-called `self_attn` and `norm1`, and the last layer's MPSA v/proj, FFN
    and norms, whose output feeds nothing; dropped, unused: the CLIP text tower (`text_encoder.`: OTSeg reads its
    class text embeddings from the shipped .npy, which `text` gives) and the loss's `empty_weight` buffer.

--dataset and --setting say what the file is. The file's `meta` checks them where it can: a class count or a
training setting (`self_training=True`, `novel_class = []`) that contradicts them is refused, and so is a ZegCLIP
checkpoint (same keys, another decoder). Without meta the setting cannot be checked (warned). Settings:
`inductive` (seen-class calibration 0.1 at test), `transductive` (0) and `fully` (every class trained; evaluated
over the standard seen/unseen split with no calibration: OTSeg subtracts 0.1 from every class, which leaves the
argmax as is). The text embeddings (`text`, e.g. OTSeg's voc12_otseg.npy) are required and stored, so `oczss eval`
on the same dataset runs OTSeg's protocol with no further flag. The output's `train_config` records the source
file, its sha256, the text file and the source's meta.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from oczss import __version__
from oczss.errors import OCZSSError
from oczss.model import OCZSSConfig, build_model
from oczss.model.clip import EMBEDDED, model_config, state_shapes
from oczss.model.text import load_text_embeddings
from oczss.pipeline.data.datasets import spec as dataset_spec
from oczss.pipeline.stage2 import checkpoint as ckpt_io
from oczss.pipeline.stage2.mmcv_pickle import read_checkpoint, sha256
from oczss.pipeline.stage2.recipes import MODEL

log = logging.getLogger(__name__)
DATASETS = ("voc", "context", "coco")
SETTINGS = ("inductive", "transductive", "fully")
META_KEYS = ("exp_name", "iter", "epoch", "mmseg_version", "mmcv_version", "time", "seed")
LISTED = 40  # keys named per kind of layout error (a foreign file may differ in hundreds)


class Entry(NamedTuple):
    """One key of an OTSeg state dict: its shape (None: any 1-D), what it is, and its oczss name (kept keys)."""

    shape: tuple[int, ...] | None
    kind: str  # trainable | clip | dead | text | buffer
    target: str | None = None


def expected_layout(backbone: str, num_vpt: int, image_size: int) -> dict[str, Entry]:
    """Every key of an OTSeg checkpoint with this CLIP, `num_vpt` prompts per layer and position embeddings laid
    out for `image_size`, with the decoder of `OCZSSConfig.otseg()`."""
    shapes = state_shapes(backbone, image_size)
    visual = {k.removeprefix("visual."): s for k, s in shapes.items() if k.startswith("visual.")}
    width, embed = visual["conv1.weight"][0], visual["proj"][1]
    depth = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
    out = {f"backbone.{k}": Entry(s, "clip", k) for k, s in visual.items()}
    vpt = {"prompt_embeddings": (1, num_vpt, width), "deep_prompt_embeddings": (depth - 1, num_vpt, width),
           "prompt_proj.weight": (width, width), "prompt_proj.bias": (width,), "prompt_norm.weight": (width,),
           "prompt_norm.bias": (width,)}
    out.update({f"backbone.{k}": Entry(s, "trainable", f"encoder.{k}") for k, s in vpt.items()})
    head = "decode_head."
    out[f"{head}loss_decode.criterion.empty_weight"] = Entry(None, "buffer")
    out.update({f"{head}q_proj.{p}": Entry(s, "trainable", f"decoder.q_proj.{p}")
                for p, s in (("weight", (embed, 2 * embed)), ("bias", (embed,)))})
    layers = OCZSSConfig.otseg().decoder_layers
    modules = {"multihead_attn.q": ("attn.q", (embed, embed)), "multihead_attn.k": ("attn.k", (embed, embed)),
               "multihead_attn.v": ("attn.v", (embed, embed)), "multihead_attn.proj": ("attn.out", (embed, embed)),
               "linear1": ("ffn.0", (4 * embed, embed)), "linear2": ("ffn.3", (embed, 4 * embed)),
               "norm2": ("norm_attn", (embed,)), "norm3": ("norm_ffn", (embed,)),
               "self_attn.out_proj": (None, (embed, embed)), "norm1": (None, (embed,))}
    last = {"multihead_attn.q": "last_q", "multihead_attn.k": "last_k"}  # all the last layer keeps (A_L's Q, K)
    for i in range(layers):
        prefix = f"{head}decoder_1.layers.{i}."
        out[f"{prefix}self_attn.in_proj_weight"] = Entry((3 * embed, embed), "dead")
        out[f"{prefix}self_attn.in_proj_bias"] = Entry((3 * embed,), "dead")
        for name, (ours, weight) in modules.items():
            if i == layers - 1:
                target = f"decoder.{last[name]}" if name in last else None
            else:
                target = f"decoder.layers.{i}.{ours}" if ours else None
            for p, s in (("weight", weight), ("bias", (weight[0],))):
                out[f"{prefix}{name}.{p}"] = Entry(s, "trainable", f"{target}.{p}") if target else Entry(s, "dead")
    out.update({f"text_encoder.{k}": Entry(s, "text") for k, s in shapes.items()
                if not k.startswith("visual.") and k != "logit_scale"})
    return out


def check_layout(state: dict[str, torch.Tensor], layout: dict[str, Entry], source: str) -> None:
    """Refuse `state` unless it holds exactly the keys of `layout`, each of its shape; the error counts the missing
    keys, the unexpected keys and the wrong shapes and lists them (the first LISTED of each)."""
    missing = [k for k in layout if k not in state]
    unexpected = [k for k in state if k not in layout]
    wrong = [f"{k} {list(state[k].shape)} (expected {'1-D' if e.shape is None else list(e.shape)})"
             for k, e in layout.items() if k in state
             and (state[k].dim() != 1 if e.shape is None else tuple(state[k].shape) != e.shape)]
    if missing or unexpected or wrong:
        parts = [f"{what} ({len(keys)}): {', '.join(keys[:LISTED])}" + (" ..." if len(keys) > LISTED else "")
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise OCZSSError(f"{source} is not an OTSeg checkpoint of the released layout ({len(layout)} keys): "
                         + "; ".join(parts))


def convert_otseg(path: str | Path, dataset: str, setting: str, out: str | Path, text: str | Path, *,
                  backbone: str = "ViT-B-16") -> dict:
    """Convert the OTSeg checkpoint `path` (trained on `dataset` in `setting`) into the oczss checkpoint `out`,
    with the class text embeddings `text` ([K, N, C] .npy); -> a summary. `out` must not exist yet."""
    path, out = Path(path), Path(out)
    if dataset not in DATASETS or setting not in SETTINGS:
        raise OCZSSError(f"--dataset {dataset!r} --setting {setting!r}: choose a dataset of {', '.join(DATASETS)} "
                         f"and a setting of {', '.join(SETTINGS)}")
    if out.exists():
        raise OCZSSError(f"--out {out} already exists; remove it or choose another path")
    spec = dataset_spec(dataset)
    state, meta = read_checkpoint(path)
    digest = sha256(path)
    image_size = _image_size(state, backbone, spec.crop)
    num_vpt = _num_vpt(state, MODEL[dataset]["num_vpt"])
    layout = expected_layout(backbone, num_vpt, image_size)
    check_layout(state, layout, str(path))
    _check_meta(meta, dataset, setting, str(path))
    _check_hints(state, spec, setting, image_size, num_vpt, str(path))
    emb = _text(text, spec, layout, meta)
    if dataset == "context" and setting == "transductive":
        log.warning("OTSeg's Context transductive config tests with 420 px windows; oczss evaluates Context at 480 px "
                    "(stride 80, its inductive protocol): expect a small difference from OTSeg's published figure")
    model_state = {e.target: state[k].float() for k, e in layout.items() if e.kind == "trainable"}
    clip_state = {e.target: state[k].float() for k, e in layout.items() if e.kind == "clip"}
    dropped = {kind: [k for k, e in layout.items() if e.kind == kind] for kind in ("dead", "text", "buffer")}
    log.info("%s: %d keys: kept %d trainable and %d frozen CLIP image-tower tensors; dropped %d dead weights "
             "(%s values: every layer's self_attn and norm1, the last layer's V, output projection, FFN and norms), "
             "%d CLIP text-tower tensors (unused: the text embeddings come from %s) and %d unused loss buffer",
             path, len(state), len(model_state), len(clip_state), len(dropped["dead"]),
             f"{sum(state[k].numel() for k in dropped['dead']):,}", len(dropped["text"]), text,
             len(dropped["buffer"]))
    config = OCZSSConfig.otseg(backbone=backbone, weights=EMBEDDED, num_vpt=num_vpt, clip_image_size=image_size)
    model = build_model(config, clip_state)
    ckpt_io.load_trainable(model, {"model": model_state, "model_config": dataclasses.asdict(config)},
                           f"{path} (converted)")
    source = {"converted_from": "OTSeg", "file": str(path.resolve()), "sha256": digest,
              "text": str(Path(text).resolve()), "text_sha256": sha256(text),
              "meta": {k: _plain(meta[k]) for k in META_KEYS if k in meta},
              "load_text_embedding": _config_value(meta, "load_text_embedding"),
              "dropped": {kind: len(keys) for kind, keys in dropped.items()}}
    iteration = meta.get("iter")
    ckpt_io.save(out, {"train_config": source, "model_config": dataclasses.asdict(config), "dataset": dataset,
                       "setting": setting, "classes": list(spec.classes), "unseen": list(spec.unseen),
                       "random_weights": False, "weights_fingerprint": model.weights_fingerprint,
                       "cluster_source": None, "text": emb, "oczss_version": __version__,
                       "step": int(iteration) + 1 if isinstance(iteration, (int, np.integer)) else 0,
                       "model": model_state, "clip": clip_state})
    return {"out": str(out), "sha256": digest, "dataset": dataset, "setting": setting, "num_vpt": num_vpt,
            "clip_image_size": image_size, "keys": len(state), "trainable": len(model_state),
            "clip": len(clip_state), **{f"dropped_{kind}": len(keys) for kind, keys in dropped.items()}}


def _image_size(state: dict, backbone: str, default: int) -> int:
    """The input size the stored position embeddings are laid out for ((size / patch)^2 + 1 rows)."""
    pos, patch = state.get("backbone.positional_embedding"), model_config(backbone)["vision_cfg"]["patch_size"]
    if pos is not None and pos.dim() == 2 and pos.shape[0] > 1:
        grid = math.isqrt(pos.shape[0] - 1)
        if grid * grid == pos.shape[0] - 1:
            return grid * patch
    return default  # the layout check then reports the shape


def _num_vpt(state: dict, default: int) -> int:
    prompts = state.get("backbone.prompt_embeddings")
    return prompts.shape[1] if prompts is not None and prompts.dim() == 3 and prompts.shape[1] else default


def _config_value(meta: dict, name: str) -> str | None:
    """A `name=value` of the source's training config text (meta['config'], never executed), as written."""
    config = meta.get("config")
    if not isinstance(config, str):
        return None
    found = re.search(rf"\b{name}\s*=\s*(?:'([^']*)'|\"([^\"]*)\"|([^,\n)]+))", config)
    return next(g for g in found.groups() if g is not None).strip() if found else None


def _meta_setting(meta: dict) -> str | None:
    """The training setting the source's meta states (config text, else the config's file name), or None."""
    config = meta.get("config") if isinstance(meta.get("config"), str) else ""
    name = meta.get("exp_name") if isinstance(meta.get("exp_name"), str) else ""
    if _config_value(meta, "self_training") == "True" or (not config and re.search(r"(^|[_-])st([_.-]|$)", name)):
        return "transductive"
    if re.search(r"\bnovel_class\s*=\s*\[\s*\]", config) or (not config and "fully" in name):
        return "fully"
    return "inductive" if config or name else None


def _check_meta(meta: dict, dataset: str, setting: str, source: str) -> None:
    """Refuse what the source's meta contradicts: its method, its class count, its training setting."""
    if re.search(r"type\s*=\s*['\"]ZegCLIP['\"]", str(meta.get("config", ""))):
        raise OCZSSError(f"{source} is a ZegCLIP checkpoint (its meta config says type='ZegCLIP'): same keys as "
                         f"OTSeg but another decoder (softmax attention); only OTSeg checkpoints convert")
    classes = meta.get("CLASSES")
    count = len(dataset_spec(dataset).classes)
    if isinstance(classes, (list, tuple)) and len(classes) != count:
        raise OCZSSError(f"{source} was trained on {len(classes)} classes (its meta CLASSES), but --dataset "
                         f"{dataset} has {count}: give the dataset it was trained on")
    said = _meta_setting(meta)
    if said is None:
        log.warning("%s has no meta: --setting %s cannot be checked against the file", source, setting)
    elif said != setting:
        why = {"transductive": "self_training=True", "fully": "novel_class = []", "inductive": "neither "
               "self_training=True nor novel_class = []"}[said]
        raise OCZSSError(f"{source} was trained {said} (its meta: {why}; config {meta.get('exp_name')}), but "
                         f"--setting is {setting}: pass --setting {said}. OTSeg's README links one file for both "
                         f"VOC transductive and fully supervised: check which one you downloaded")


def _check_hints(state: dict, spec, setting: str, image_size: int, num_vpt: int, source: str) -> None:
    """Warn where the weights look unlike OTSeg's config for this dataset and setting (never decisive)."""
    if image_size != spec.crop:
        log.warning("%s: its position embeddings are laid out for %d px, OTSeg's %s config trains at %d: is "
                    "--dataset right?", source, image_size, spec.name, spec.crop)
    if num_vpt != MODEL[spec.name]["num_vpt"]:
        log.warning("%s: %d VPT tokens per layer, OTSeg's %s config has %d: is --dataset right?", source, num_vpt,
                    spec.name, MODEL[spec.name]["num_vpt"])
    seen, every = len(spec.seen), len(spec.classes)
    usual = seen if setting == "inductive" or (setting == "transductive" and spec.name == "coco") else every
    buffer = state["decode_head.loss_decode.criterion.empty_weight"].numel() - 1
    if buffer != usual:
        log.warning("%s: its (unused) loss buffer is sized for %d classes; OTSeg's %s %s config sizes it for %d: "
                    "is --setting right?", source, buffer, spec.name, setting, usual)


def _text(path: str | Path, spec, layout: dict[str, Entry], meta: dict) -> torch.Tensor:
    """The class text embeddings fp32 [K, N, C], checked against the dataset and the model's embedding width."""
    emb = load_text_embeddings(path)
    classes, dim = len(spec.classes), layout["decode_head.q_proj.weight"].shape[0]
    if emb.shape[0] != classes or emb.shape[2] != dim:
        hint = (" (OTSeg's VOC transductive and fully supervised configs name context_otseg.npy by mistake: VOC "
                "takes voc12_otseg.npy)") if spec.name == "voc" else ""
        raise OCZSSError(f"--text {path}: shape {list(emb.shape)}, but {spec.name} needs [{classes}, templates, "
                         f"{dim}]{hint}")
    if emb.shape[1] != spec.templates:
        log.warning("--text %s: %d templates per class; OTSeg's %s arrays have %d", path, emb.shape[1], spec.name,
                    spec.templates)
    trained = _config_value(meta, "load_text_embedding")
    if trained and Path(trained).name != Path(path).name:
        log.warning("--text %s: the source was trained with %s (its meta config); OTSeg's VOC transductive and "
                    "fully supervised configs name context_otseg.npy by mistake", path, Path(trained).name)
    return emb


def _plain(value):
    """A meta value as a plain Python value (numpy scalars unwrapped), loadable with weights_only=True."""
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
