"""Where Stage 2 runs: device, autocast, torchrun / DDP process group, and class text embeddings."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from oczss.errors import OCZSSError


def resolve_device(device: str) -> torch.device:
    """auto -> cuda if available else cpu; refuses cuda where there is none."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise OCZSSError(f"--device {device!r}: choose auto, cpu or cuda[:N]")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OCZSSError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing (fp32) on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def init_distributed(device_flag: str) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device). Under torchrun (WORLD_SIZE > 1) joins the process group:
    NCCL with one GPU per process (LOCAL_RANK), or gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device_flag)
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_flag)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def text_cache_dir() -> Path:
    return Path(os.environ.get("OCZSS_HOME", Path.home() / ".cache" / "oczss")) / "text"


def class_text(classes: list[str], template_count: int, model_config, text_path: str | None,
               device: torch.device) -> torch.Tensor:
    """Class x template embeddings fp32 [K, N, C] on `device`: from `text_path` (.npy, e.g. OTSeg's shipped
    arrays) or computed with the model's CLIP text tower (cached on disk by oczss.model.text)."""
    from oczss.model import text as text_mod

    if text_path:
        emb = text_mod.load_text_embeddings(text_path)
        if emb.shape[0] != len(classes):
            raise OCZSSError(f"text embeddings {text_path} hold {emb.shape[0]} classes, the dataset has {len(classes)}")
    else:
        emb = text_mod.class_embeddings(list(classes), text_mod.templates(template_count), text_cache_dir(),
                                        backbone=model_config.backbone, weights=model_config.weights,
                                        device=str(device))
    return emb.to(device)
