"""Split Matching's training data: OC-ZSS's augmented views (pipeline/stage2/loader.py) with each view's unseen
candidates, per pixel, and the online candidate source.

Augmentation (paper: Mask2Former's, "all other hyperparameters unchanged"): the views are the loader's mmseg ones
(pipeline/data/transforms.py `train_view`), shared with OC-ZSS so both methods see the same data. They match
Mask2Former's semantic augmentation but for one constant: the resize (0.5-2 x the dataset's img_scale, aspect
kept: short side 256-1024 for a 2048 x 512 scale, Mask2Former's range), the 512 crop, the flip and the
photometric distortion (both SSD's colour jitter) agree; the crop retries until no class covers 75 % of it
(mmseg's cat_max_ratio 0.75) where Mask2Former's single-category area cap is 1.0 (no retry). Kept as the loader
has it (recorded here; not a field).

Candidates (§3.2), two sources (TrainConfig.candidates):
- `cache`: Stage 1's stored S x S candidate grid of the whole image, sampled at every pixel of the view with the
  view's crop, flip and resize (`pixel_candidates`, nearest: the grid cell under each pixel's centre; padding
  gets none), and the stored candidate embeddings as they are (row u = C_u of label u);
- `online`: the frozen CLIP on each view in the training step (`OnlineCandidates`), no cache: the view is
  clustered on its own patch grid, so labels and embeddings follow the view by construction.
"""

from __future__ import annotations

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from oczss.model import IGNORE
from oczss.model.sm.candidates import CandidateParams, unseen_candidates
from oczss.model.sm.targets import resize_labels
from oczss.pipeline.data.transforms import MEAN, STD, View
from oczss.pipeline.stage2.loader import TrainData

PATCH = 32  # the backbone's stride: the unused patch grid of the shared items (first, valid) is laid out on it


def pixel_candidates(view: View, grid: np.ndarray, crop: int) -> np.ndarray:
    """The candidate label of every pixel of a crop x crop view: uint8 [crop, crop], from the whole image's stored
    grid uint8 [S, S] (the cell under each pixel centre, through the view's crop / flip / resize; IGNORE on
    padding)."""
    labels = view.patch_clusters(grid, crop, crop, 1).reshape(crop, crop).astype(np.uint8)
    labels[~view.patch_valid(crop, crop, 1).reshape(crop, crop)] = IGNORE
    return labels


class SMData(TrainData):
    """Items (index, position) -> TrainData's {image float32 [3, C, C], label int64 [C, C] (inductive remap)} and
    `content` int64 [2] (the view's content height and width; padding lies below / right of it), plus with the
    `cache` source candidate_labels uint8 [C, C] and candidate_embeddings float32 [U, D] (`maps.get(image_id)`
    gives the stored {"candidate_labels": uint8 [S, S], "candidate_embeddings": [U, D], ...}, Stage 1's rows)."""

    def __init__(self, dataset, samples, maps, crop: int, seed: int):
        super().__init__(dataset, samples, "inductive", maps, "sm", crop, PATCH, seed)

    def add_cached(self, item: dict, view: View, cached) -> None:
        item["content"] = torch.tensor([view.height, view.width])
        if cached is not None:
            grid = np.asarray(cached["candidate_labels"])
            item["candidate_labels"] = torch.from_numpy(pixel_candidates(view, grid, self.crop))
            item["candidate_embeddings"] = torch.from_numpy(np.asarray(cached["candidate_embeddings"], np.float32))


def online_params(crop: int, patch: int) -> CandidateParams:
    """The online source's candidate params for crop x crop views and a CLIP of `patch` pixels: the view's own
    patch grid (grid 0), window sizes a quarter and a half of it (CandidateParams' 8 and 16 cells of a 512 view's
    32 x 32 grid), regions fed to CLIP at 224 or the view's size if smaller (the demo's 128), the rest
    CandidateParams' defaults."""
    side = crop // patch
    return CandidateParams(grid=0, windows=(max(side // 4, 1), max(side // 2, 1)), crop_size=min(crop, 224))


class OnlineCandidates:
    """The `online` source: `unseen_candidates` with the frozen CLIP image tower on each training view."""

    def __init__(self, visual: torch.nn.Module, params: CandidateParams):
        self.visual, self.params = visual, params

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ImageNet-normalised views [B, 3, H, W], content LongTensor[B, 2] -> (candidate labels long [B, H, W],
        IGNORE on padding; candidate embeddings fp32 [B, U, D]), ordinary tensors (usable in autograd). In fp32 even
        under the training step's autocast, as Stage 1 would compute them."""
        with torch.autocast(images.device.type, enabled=False):
            return self._candidates(images.float(), content)

    def _candidates(self, images: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = (images.new_tensor(v).view(1, 3, 1, 1) for v in (MEAN, STD))
        clip_mean, clip_std = (images.new_tensor(v).view(1, 3, 1, 1) for v in (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD))
        x = ((images * std + mean) / 255 - clip_mean) / clip_std
        found = unseen_candidates(x, self.visual, self.params)
        h, w = images.shape[-2:]
        labels = resize_labels(found.labels.long(), (h, w)).clone()
        rows, cols = torch.arange(h, device=images.device), torch.arange(w, device=images.device)
        inside = (rows[None, :, None] < content[:, 0, None, None]) & (cols[None, None, :] < content[:, 1, None, None])
        return labels.masked_fill(~inside, IGNORE), found.embeddings.clone()
