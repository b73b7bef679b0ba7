"""Test-time segmentation of one image (docs/protocol.md §2 and §5), shared by eval and predict.

The image's short side is resized to the dataset's test size as mmseg does (pipeline/data/resize.py); `slide` runs the model on crop x crop windows
(stride as in the reference, all windows in one batch), `whole` on the whole resized image padded to a multiple
of 16. Per window: probabilities sigmoid(0.5 decoder + 0.5 mps) minus the seen-class calibration; overlapping
windows are averaged, the map is resized bilinearly to the original size. Each window gets its per-patch clusters
in the checkpoint's cluster mode (pipeline/stage2/window_clusters.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from oczss.model import probabilities
from oczss.pipeline.runtime import autocast
from oczss.pipeline.data.resize import rescale
from oczss.pipeline.data.transforms import MEAN, STD, View, windows
from oczss.pipeline.stage2.window_clusters import window_firsts


WINDOWS_PER_FORWARD = 8
INDUCTIVE_CALIBRATION = 0.1  # subtracted from seen-class probabilities of an inductive model (docs/protocol.md §5)


@torch.no_grad()
def segment(model, image: np.ndarray, text: torch.Tensor, seen: list[int], calibration: float, *, short: int,
            crop: int, stride: int, mode: str = "slide", clusters=None, image_id: str = "", seed: int = 0
            ) -> torch.Tensor:
    """Class probabilities fp32 [K, H, W] at the original resolution of `image` (uint8 [H, W, 3]).

    clusters: the windows' object clusters (pipeline/stage2/window_clusters.py), None for mask sources that need
    none; image_id, seed: seed each window's first FPS centre (for `clusters` and the `clip` mask source).
    seen, calibration: subtracted from the probability of each seen class (0.1 for an inductive model, else 0).
    """
    device = text.device
    h0, w0 = image.shape[:2]
    resized = rescale(image, (2048, short), min_size=short)  # mmseg 0.24's Resize(keep_ratio, min_size)
    sh, sw = resized.shape[:2]
    x = torch.from_numpy(resized).to(device).permute(2, 0, 1).float()
    x = (x - torch.from_numpy(MEAN).to(device)[:, None, None]) / torch.from_numpy(STD).to(device)[:, None, None]
    boxes = windows(sw, sh, crop, stride) if mode == "slide" else [(0, 0, sw, sh)]
    bw, bh = boxes[0][2], boxes[0][3]
    patch = model.encoder.patch_size
    pw, ph = -(-bw // patch) * patch, -(-bh // patch) * patch  # window padded to whole patches
    batch = torch.zeros(len(boxes), 3, ph, pw, device=device)
    for i, (left, top, w, h) in enumerate(boxes):
        batch[i, :, :h, :w] = x[:, top:top + h, left:left + w]
    views = [View(w, h, left, top, sw, sh) for left, top, w, h in boxes]
    first = window_firsts(image_id, seed, len(boxes), (ph // patch) * (pw // patch)).to(device)
    probs = torch.zeros(text.shape[0], sh, sw, device=device)
    count = torch.zeros(1, sh, sw, device=device)
    for start in range(0, len(boxes), WINDOWS_PER_FORWARD):
        part = slice(start, start + WINDOWS_PER_FORWARD)
        labels = clusters(batch[part], views[part], patch, first[part]) if clusters is not None else None
        with autocast(device):
            out = model(batch[part], labels, text, first[part])
        p = probabilities(out, seen, calibration)
        for j, (left, top, w, h) in enumerate(boxes[part]):
            probs[:, top:top + h, left:left + w] += p[j, :, :h, :w]
            count[:, top:top + h, left:left + w] += 1
    probs = probs / count
    return F.interpolate(probs[None], size=(h0, w0), mode="bilinear", align_corners=False)[0]
