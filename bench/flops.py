"""Forward FLOP counts of one call, two ways, both counts of arithmetic (device-independent, made on the CPU).

`all_ops`: torch's FlopCounterMode over every matrix product and convolution, 2 FLOPs per multiply-add. On the
CPU, scaled_dot_product_attention dispatches to a fused kernel that FlopCounterMode has no formula for (it records
0), so the count runs with SDPA forced onto its math kernel, whose two batched products (Q Kᵀ, then the weights
times V) it counts: 4 · B · heads · L_q · L_k · head_dim per call.

`mmcv_style`: what mmcv's `get_model_complexity_info` (mmcv 1.x, cnn/utils/flops_counter.py; what OTSeg's and
ZegCLIP's `get_flops.py` call) reports, restricted to the module types this model has: forward hooks on modules
whose type is exactly nn.Linear, nn.Conv2d or nn.LayerNorm (subclasses do not count: open_clip's LayerNorm and
nn.MultiheadAttention's out_proj are invisible to it), 1 "FLOP" per multiply-add, fired only when the module itself
is called (weights used functionally, by F.linear, F.conv2d, SDPA or einsum, are not counted), divided by the
batch size of the first positional input:
    Linear     input elements × out_features (no bias term)
    Conv2d     B × output positions × (kernel area × in_channels × out_channels / groups [+ out_channels if bias])
    LayerNorm  input elements × (2 with an elementwise affine, else 1)
mmcv also counts activations, pools, other norms and upsampling modules; the only such module here is the decoder
FFN's nn.ReLU, which the reference calls functionally (F.relu), so it is left out as the reference's count leaves
it out.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn


def all_ops(run: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of `run()`, attention included."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), counter:
        run()
    return counter.get_total_flops()


def _linear(module: nn.Linear, inputs, output) -> int:
    return inputs[0].numel() * output.shape[-1]


def _conv(module: nn.Conv2d, inputs, output) -> int:
    per_position = math.prod(module.kernel_size) * module.in_channels * (module.out_channels // module.groups)
    if module.bias is not None:
        per_position += module.out_channels
    return per_position * output.shape[0] * math.prod(output.shape[2:])


def _norm(module: nn.LayerNorm, inputs, output) -> int:
    return inputs[0].numel() * (2 if module.elementwise_affine else 1)


MMCV_RULES = {nn.Linear: _linear, nn.Conv2d: _conv, nn.LayerNorm: _norm}


def mmcv_style(model: nn.Module, run: Callable[[], object], batch: int) -> dict[str, int]:
    """Per-module mmcv-style counts of `run()` (a call of `model` on `batch` images), divided by `batch`, keyed by
    module name ("" for the total). Modules never called do not appear."""
    counts: dict[str, int] = {}

    def hook(name: str, rule):
        def count(module, inputs, output):
            counts[name] = counts.get(name, 0) + rule(module, inputs, output)
        return count

    handles = [module.register_forward_hook(hook(name, MMCV_RULES[type(module)]))
               for name, module in model.named_modules() if type(module) in MMCV_RULES]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    per_image = {name: n // batch for name, n in counts.items()}
    per_image[""] = sum(per_image.values())
    return per_image


def reference_build_extra(patches: int, queries: int, dim: int) -> int:
    """mmcv-style count of what OTSeg's decoder runs and oczss does not build: the last decoder layer's value
    projection over the `patches` memory tokens, and its output projection, FFN (dim -> 4 dim -> dim) and two
    LayerNorms over the `queries` = K classes x N templates tokens, whose output feeds nothing (see
    model/decoder.py)."""
    return patches * dim * dim + queries * (dim * dim + 8 * dim * dim + 4 * dim)
