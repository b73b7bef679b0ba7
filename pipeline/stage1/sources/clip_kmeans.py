"""clip-kmeans: Split Matching's unseen candidates (§3.2), computed once per image into a cache of their own.

The whole image is resized to R x R (R = 512 by default, a multiple of CLIP's patch), CLIP-normalised and given to
`unseen_candidates` (model/sm/candidates.py) with the frozen CLIP image tower: multi-scale K-Means pseudo masks on
CLIP's dense features and each pseudo-masked region's CLS embedding. Per image:
    candidate_labels      uint8 [S, S]        (y, x): pseudo mask of each cell (0 = the largest), 255 = none; the
                                              S x S grid covers the whole image in normalised coordinates, as
                                              labels_k{K} does (S = CandidateParams.grid, or R / patch when 0)
    candidate_embeddings  float16 [M, C]      (candidate, channel): row u = C_u of mask u, L2-normalised, zero rows
                                              past the count (M = max_candidates, C = CLIP's output width, 512)
    candidate_counts      uint8 []            pseudo masks of the image
Parameters (SourceParams.values): clip_model, fingerprint (model/weights.py of the image tower), input_size R,
grid S, candidates (dataclasses.asdict(CandidateParams)), device, dtype (fp32: the function runs without autocast),
random_weights, view. model/sm is imported when a worker first needs it (it brings transformers, ~10 s).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from oczss.cache.schema import SourceParams
from oczss.errors import OCZSSError
from oczss.model.clip import Tower, load_tower
from oczss.pipeline.stage1.sources.base import Source, fingerprint_mismatch

VIEW = "the whole image resized to R x R (bilinear), CLIP-normalised"


def candidate_params(cfg):
    """CandidateParams of the run's flags (refused in one line if out of range)."""
    from oczss.model.sm.candidates import CandidateParams

    try:
        return CandidateParams(grid=cfg.grid, windows=cfg.windows, iters=cfg.kmeans_iters, threshold=cfg.threshold,
                               max_candidates=cfg.max_candidates, region=cfg.region, crop_size=cfg.crop_size)
    except OCZSSError as e:
        raise OCZSSError(f"--masks clip-kmeans: {e}") from None


class ClipKmeans(Source):
    name = "clip-kmeans"
    default_input_size = 512

    def load(self, cfg) -> Tower:
        candidate_params(cfg)  # bad K-Means settings are refused before the model loads
        return load_tower(cfg.clip_model, cfg.weights, "visual")

    def params(self, cfg, tower: Tower, device_type: str) -> SourceParams:
        patch = tower.module.patch_size[0]
        if cfg.input_size % patch:
            raise OCZSSError(f"--input-size {cfg.input_size}: must be a multiple of {cfg.clip_model}'s patch, {patch}")
        cp = candidate_params(cfg)
        grid, m, c = cp.grid or cfg.input_size // patch, cp.max_candidates, tower.module.output_dim
        values = {"clip_model": cfg.clip_model, "fingerprint": tower.fingerprint, "input_size": cfg.input_size,
                  "grid": grid, "candidates": {**dataclasses.asdict(cp), "windows": list(cp.windows)},
                  "device": device_type, "dtype": "float32", "random_weights": tower.random, "view": VIEW}
        arrays = {"candidate_labels": ((grid, grid), "uint8", ("y", "x")),
                  "candidate_embeddings": ((m, c), "float16", ("candidate", "channel")),
                  "candidate_counts": ((), "uint8", ())}
        return SourceParams(self.name, values, arrays, cfg.shard_size)

    def worker(self, params: SourceParams, weights: str, device: torch.device, model: Tower | None = None):
        """(the CLIP image tower on `device`, CandidateParams)."""
        from oczss.model.sm.candidates import CandidateParams

        v = params.values
        if model is None:
            model = load_tower(v["clip_model"], weights, "visual")
            if model.fingerprint != v["fingerprint"]:
                raise fingerprint_mismatch("CLIP", weights, v["fingerprint"])
        return model.module.to(device), CandidateParams(**v["candidates"])

    def compute(self, runner, images: torch.Tensor, ids: list[str], params: SourceParams,
                extra) -> dict[str, np.ndarray]:
        """uint8 images [B, R, R, 3] on the device -> the three arrays of the module docstring, [B, ...]."""
        from oczss.model.sm.candidates import clip_normalise, unseen_candidates

        visual, cp = runner
        out = unseen_candidates(clip_normalise(images), visual, cp)
        return {"candidate_labels": out.labels.cpu().numpy(),
                "candidate_embeddings": out.embeddings.cpu().numpy().astype(np.float16),
                "candidate_counts": out.counts.cpu().numpy().astype(np.uint8)}


SOURCE = ClipKmeans()
