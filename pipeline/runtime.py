"""Where the work runs: device, autocast, torchrun / DDP process group."""

from __future__ import annotations

import contextlib
import os

import torch

from oczss.errors import OCZSSError


def device_type(device: str) -> str:
    """'cpu' or 'cuda' for a --device value other than auto; refuses anything else."""
    if device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return device.split(":")[0]
    raise OCZSSError(f"--device {device!r}: choose auto, cpu or cuda[:N]")


def resolve_device(device: str) -> torch.device:
    """auto -> cuda if available else cpu; refuses cuda where there is none."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device_type(device) == "cuda" and not torch.cuda.is_available():
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
