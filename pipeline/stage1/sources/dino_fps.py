"""dino-fps: OC-ZSS's Stage 1 (Alg. 1), the source of every cache written before sources existed; output unchanged.

Per image: DINO's tokens at the image's aspect ratio (pipeline/stage1/tokens.py) clustered by FPS-Voronoi into
`labels_k{K}` uint8 [S, S] for every K, and (feature_dim > 0) the compact tokens `features` float16 [T, L, D] with
`feature_shape` uint16 [2]. Its parameters are CacheParams (cache/schema.py); the per-dataset PCA basis of the
compact features is fitted on the client before the cache is created (`prepare`) and bound in every shard record.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from oczss.cache.schema import CacheParams, pack_grid
from oczss.errors import OCZSSError
from oczss.model.compaction import fit_basis
from oczss.model.dino import DinoFeatures, load_dino
from oczss.model.weights import fingerprint
from oczss.pipeline.data.images import ImageError
from oczss.pipeline.stage1.sources.base import Source, fingerprint_mismatch
from oczss.pipeline.stage1.tokens import MAX_ASPECT, image_arrays, load_input

log = logging.getLogger(__name__)


class DinoFps(Source):
    name = "dino-fps"
    default_input_size = 448  # the short side; chosen from bench/view_features.py (README)

    def load(self, cfg) -> torch.nn.Module:
        return load_dino(cfg.dino_model, cfg.weights, cfg.input_size, dynamic=True)

    def params(self, cfg, model: torch.nn.Module, device_type: str) -> CacheParams:
        """The cache parameters of this run; a feature width beyond the DINO's channels is refused."""
        if cfg.feature_dim > model.embed_dim:
            raise OCZSSError(f"--feature-dim {cfg.feature_dim} exceeds the {model.embed_dim} channels of "
                             f"{cfg.dino_model}")
        patch = model.patch_embed.patch_size[0]
        return CacheParams(dino_model=cfg.dino_model, fingerprint=fingerprint(model), input_size=cfg.input_size,
                           grid=cfg.grid, ks=tuple(sorted(set(cfg.ks))), seed=cfg.seed, device=device_type,
                           dtype="bfloat16" if device_type == "cuda" else "float32", shard_size=cfg.shard_size,
                           feature_dim=cfg.feature_dim, feature_grid=cfg.input_size // patch,
                           feature_long=MAX_ASPECT * cfg.input_size // patch)

    def prepare(self, cfg, model, params: CacheParams, existing, paths: list[Path]):
        """The dataset's (mean, basis) of the compact features: the cache's, or fitted on `paths` (None without
        features)."""
        if not cfg.feature_dim:
            return None
        basis = existing.basis(cfg.dataset) if existing is not None else None
        return basis if basis is not None else fit_dataset_basis(model, paths, cfg, params.device)

    def created(self, cache, dataset: str, extra) -> None:
        if extra is not None and cache.basis(dataset) is None:
            cache.set_basis(dataset, *extra)

    def worker(self, params: CacheParams, weights: str, device: torch.device,
               model: torch.nn.Module | None = None) -> DinoFeatures:
        if model is None:
            model = load_dino(params.dino_model, weights, params.input_size, dynamic=True)
            if fingerprint(model) != params.fingerprint:
                raise fingerprint_mismatch("DINO", weights, params.fingerprint)
        return DinoFeatures(model, params.grid).to(device)

    def decode(self, path, params: CacheParams) -> np.ndarray:
        """The image as DINO sees it (pipeline/stage1/tokens.py), uint8 [h, w, 3]."""
        return load_input(path, params.input_size, params.input_size // params.feature_grid, params.feature_long)

    def compute(self, extract: DinoFeatures, images: torch.Tensor, ids: list[str], params: CacheParams,
                basis) -> dict[str, np.ndarray]:
        """labels_k{K} uint8 [B, S, S]; with a basis, features float16 [B, T, L, D] and feature_shape uint16 [B, 2]."""
        on_device = None if basis is None else tuple(torch.from_numpy(a).to(images.device) for a in basis)
        maps, features = image_arrays(extract, images, ids, params.seed, list(params.ks), on_device)
        out = {f"labels_k{k}": lab for k, lab in maps.items()}
        if features is not None:
            out["feature_shape"] = np.tile(np.array(features.shape[1:3], np.uint16), (len(features), 1))
            out["features"] = np.stack([pack_grid(f, params.feature_grid, params.feature_long) for f in features])
        return out


def fit_dataset_basis(model: torch.nn.Module, paths: list, cfg, device_type: str) -> tuple[np.ndarray, np.ndarray]:
    """The PCA basis of the compact features (model/compaction.py), fitted on the DINO tokens of `paths` (the
    dataset's first images, each as DINO sees it in Stage 1; corrupt ones are left out): (mean float32 [C],
    basis float32 [C, D])."""
    device = torch.device(device_type)
    extract = DinoFeatures(model, cfg.grid).to(device)
    patch = model.patch_embed.patch_size[0]
    tokens = []
    for path in paths:
        try:
            image = load_input(path, cfg.input_size, patch, MAX_ASPECT * cfg.input_size // patch)
        except ImageError:
            continue
        grid = extract.token_grid(extract.normalise(torch.from_numpy(image)[None].to(device)))
        tokens.append(grid[0].flatten(1).T.cpu())
    if not tokens:
        raise OCZSSError(f"none of the first {len(paths)} images of {cfg.dataset} could be decoded to fit the "
                         f"compact features' basis")
    tokens = torch.cat(tokens)
    if cfg.feature_dim > tokens.shape[1]:
        raise OCZSSError(f"--feature-dim {cfg.feature_dim} exceeds the {tokens.shape[1]} channels of {cfg.dino_model}")
    mean, basis = fit_basis(tokens, cfg.feature_dim)
    log.info("fitted the %d-d basis of %s's compact features on %d tokens of %d images", cfg.feature_dim,
             cfg.dataset, len(tokens), len(paths))
    return mean.numpy(), basis.numpy()


SOURCE = DinoFps()
