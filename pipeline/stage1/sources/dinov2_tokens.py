"""dinov2-tokens: SimZSS's frozen vision tower f_v (model/simzss/vision.py), its tokens computed once per image.

The view is the whole image resized to R x R (R = 224 by default, a multiple of the patch, 14), ImageNet-normalised
with the tower's own constants; the public code's per-step RandomResizedCrop cannot be cached (notes: the online
mode keeps it). Per image, in fp16 (the tower computes in fp32 on a CPU, bf16 autocast on CUDA):
    cls      float16 [C]          (channel): the last layer's normalised CLS token (L_g's image embedding)
    patches  float16 [T*T, C]     (token, channel): its patch tokens, row-major, registers dropped (T = R / 14)
At ViT-B/14 (C = 768) and R = 224: (1 + 256) x 768 x 2 = 394,752 bytes per image before compression.
Parameters (SourceParams.values): vision_model, fingerprint, input_size R, patch, grid T, device, dtype (compute),
stored_dtype, mean and std (0-255 scale), random_weights, view. The rows of a coco-captions split are in
CaptionDataset.samples(split) order, keyed by the file stem.
"""

from __future__ import annotations

import numpy as np
import torch

from oczss.cache.schema import SourceParams
from oczss.errors import OCZSSError
from oczss.model.simzss.vision import VisionTokens, load_vision
from oczss.model.weights import fingerprint
from oczss.pipeline.stage1.sources.base import Source, fingerprint_mismatch

VIEW = "the whole image resized to R x R (bilinear), normalised with the tower's mean and std"


class Dinov2Tokens(Source):
    name = "dinov2-tokens"
    default_input_size = 224

    def load(self, cfg) -> VisionTokens:
        return load_vision(cfg.vision_model, cfg.weights, cfg.input_size)

    def params(self, cfg, vision: VisionTokens, device_type: str) -> SourceParams:
        patch, c = vision.patch, vision.width
        if cfg.input_size % patch:
            raise OCZSSError(f"--input-size {cfg.input_size}: must be a multiple of {cfg.vision_model}'s patch, "
                             f"{patch}")
        t = cfg.input_size // patch
        values = {"vision_model": cfg.vision_model, "fingerprint": fingerprint(vision.model),
                  "input_size": cfg.input_size, "patch": patch, "grid": t, "device": device_type,
                  "dtype": "bfloat16" if device_type == "cuda" else "float32", "stored_dtype": "float16",
                  "mean": vision.mean.flatten().tolist(), "std": vision.std.flatten().tolist(),
                  "random_weights": cfg.weights == "random", "view": VIEW}
        arrays = {"cls": ((c,), "float16", ("channel",)), "patches": ((t * t, c), "float16", ("token", "channel"))}
        return SourceParams(self.name, values, arrays, cfg.shard_size)

    def worker(self, params: SourceParams, weights: str, device: torch.device,
               model: VisionTokens | None = None) -> VisionTokens:
        v = params.values
        if model is None:
            model = load_vision(v["vision_model"], weights, v["input_size"])
            if fingerprint(model.model) != v["fingerprint"]:
                raise fingerprint_mismatch("vision tower", weights, v["fingerprint"])
        return model.to(device)

    def compute(self, vision: VisionTokens, images: torch.Tensor, ids: list[str], params: SourceParams,
                extra) -> dict[str, np.ndarray]:
        """uint8 images [B, R, R, 3] on the device -> cls float16 [B, C], patches float16 [B, T*T, C]."""
        cls, patches = vision(images)
        return {"cls": cls.half().cpu().numpy(), "patches": patches.half().cpu().numpy()}


SOURCE = Dinov2Tokens()
