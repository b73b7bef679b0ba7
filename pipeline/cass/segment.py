"""CASS on one image, the training-free protocol (pipeline side of model/cass): resize, the object presence prior,
sliding windows, class probabilities over synonyms, the background threshold.

Per image (uint8 [H, W, 3]): resize so the short side is `short_side` (mmseg's Resize(scale=(2048, S),
keep_ratio): sizes and cv2's interpolation as pipeline/data/resize.py reproduces them), CLIP-normalise; the prior
from the whole resized image (prior_source `image`); windows of `window` x `window` at `stride` (clamped to the
image, as mmseg slides) or the whole image (slide off: one window, whose own [CLS] is the whole image's, so CLIP's
trunk runs once for the prior and the logits), all windows
of an image in batches through CASS.window_logits; overlapping logits averaged, resized bilinearly to the
original size, x logit_scale, softmax over every query name; each class takes the max over its names (synonyms);
argmax; pixels whose best class probability is below prob_threshold become class 0 (the background line).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from oczss.model.cass import CASS, CASSConfig
from oczss.pipeline.data.resize import rescale
from oczss.pipeline.data.transforms import windows
from oczss.pipeline.runtime import autocast

WINDOWS_PER_BATCH = 16


class CassSegmenter:
    """`cass` with its queries set to the flattened names of `classes` (a tuple of synonyms per class)."""

    def __init__(self, cass: CASS, config: CASSConfig, classes: list[tuple[str, ...]], device: torch.device,
                 cache_dir: Path | None = None):
        self.cass, self.config, self.device = cass.to(device), config, device
        names = [name for synonyms in classes for name in synonyms]
        # groups[c] = the query rows of class c, padded with row Q (an all-zero row appended at use)
        widest, first = max(len(s) for s in classes), np.cumsum([0] + [len(s) for s in classes])
        self.groups = torch.tensor([[first[c] + i if i < len(syn) else len(names) for i in range(widest)]
                                    for c, syn in enumerate(classes)], device=device)
        self.cass.set_queries(_cached_queries(cass, names, cache_dir))
        self.mean = torch.tensor(OPENAI_DATASET_MEAN, device=device).view(3, 1, 1) * 255
        self.std = torch.tensor(OPENAI_DATASET_STD, device=device).view(3, 1, 1) * 255

    @torch.no_grad()
    def probabilities(self, image: np.ndarray) -> torch.Tensor:
        """Class probabilities fp32 [K, H, W] at the image's own resolution (max over each class's names)."""
        c = self.config
        h0, w0 = image.shape[:2]
        resized = rescale(image, (2048, c.short_side))
        sh, sw = resized.shape[:2]
        x = (torch.from_numpy(resized).to(self.device).permute(2, 0, 1).float() - self.mean) / self.std
        # whole-image mode: the one window is the image, so its own [CLS] is the image prior (one CLIP trunk pass)
        prior = None
        if c.slide and c.prior_source == "image" and (c.ops or c.ota):
            with autocast(self.device):
                prior = self.cass.prior(x[None])
        boxes = windows(sw, sh, c.window, c.stride) if c.slide else [(0, 0, sw, sh)]
        logits = torch.zeros(self.cass.queries.shape[0], sh, sw, device=self.device)
        count = torch.zeros(1, sh, sw, device=self.device)
        for start in range(0, len(boxes), WINDOWS_PER_BATCH):
            chunk = boxes[start:start + WINDOWS_PER_BATCH]
            batch = torch.stack([x[:, top:top + h, left:left + w] for left, top, w, h in chunk])
            with autocast(self.device):
                out = self.cass.window_logits(batch, prior)
            for j, (left, top, w, h) in enumerate(chunk):
                logits[:, top:top + h, left:left + w] += out[j]
                count[:, top:top + h, left:left + w] += 1
        logits = F.interpolate((logits / count)[None], size=(h0, w0), mode="bilinear", align_corners=False)[0]
        probs = torch.softmax(logits * c.logit_scale, dim=0)
        padded = torch.cat([probs, probs.new_zeros(1, h0, w0)])
        best = padded[self.groups[:, 0]]
        for i in range(1, self.groups.shape[1]):  # one synonym position at a time: [K, H, W] at most twice
            best = torch.maximum(best, padded[self.groups[:, i]])
        return best

    def __call__(self, image: np.ndarray, cached=None, image_id: str | None = None) -> torch.Tensor:
        """The class map int64 [H, W] (the background threshold applied)."""
        return self.labels(self.probabilities(image))

    def labels(self, probs: torch.Tensor) -> torch.Tensor:
        """Class probabilities [K, H, W] -> the class map int64 [H, W]: argmax, and class 0 (the background line)
        where the best probability is below prob_threshold."""
        best, labels = probs.max(0)
        if self.config.prob_threshold > 0:
            labels[best < self.config.prob_threshold] = 0
        return labels


def _cached_queries(cass: CASS, names: list[str], cache_dir: Path | None) -> torch.Tensor:
    """The query embeddings [Q, C] of `names`, kept on disk per CLIP weights and names (80 templates each: a
    large vocabulary costs minutes on a CPU once)."""
    if cache_dir is None:
        return cass.query_embeddings(names)
    key = hashlib.sha256(json.dumps({"clip": cass.fingerprints["clip"], "names": names}).encode()).hexdigest()
    path = Path(cache_dir) / f"cass-queries-{key[:24]}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    embeddings = cass.query_embeddings(names).cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(embeddings, tmp)
    os.replace(tmp, path)
    return embeddings
