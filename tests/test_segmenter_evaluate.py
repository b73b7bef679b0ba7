"""Evaluation of any method behind `oczss.load` (pipeline/segmenter/evaluate.py), the path Split Matching and
SimZSS checkpoints take through `oczss eval`."""

import numpy as np
import pytest
import torch

import oczss
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.images import load_rgb
from oczss.pipeline.metrics import confusion, scores
from oczss.pipeline.segmenter.evaluate import format_method_report


def test_a_method_is_scored_on_every_image_against_its_label(demo_root, fake_method):
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        seg = oczss.load("fake", weights="random")
    report = seg.evaluate("DEMO", split="val", data_root=str(demo_root), workers=0, limit=3, progress=False)
    dataset = Dataset("demo", str(demo_root))
    spec, k = dataset.spec, len(dataset.spec.classes)
    assert seg._method.embedded == [tuple((c,) for c in spec.classes)]  # the benchmark's classes, asked once
    conf = torch.zeros(k, k, dtype=torch.int64)
    for s in dataset.samples("val")[:3]:
        image = np.asarray(load_rgb(s.image))
        grey = image.astype(np.float32).mean(-1) / 255 * k  # FakeMethod's bands
        pred = torch.from_numpy(np.clip(np.floor(grey), 0, k - 1).astype(np.int64))
        conf += confusion(pred, torch.from_numpy(np.array(dataset.read_label(s.label))), k)
    expected = scores(conf.numpy(), [c for c in range(k) if c not in spec.unseen], list(spec.unseen))
    assert report["images"] == 3 and report["images_in_split"] == len(dataset.samples("val"))
    assert report["unseen"] == list(spec.unseen) and report["random_weights"] is True
    assert np.allclose(report["iou"], expected["iou"], equal_nan=True) and report["hIoU"] == expected["hIoU"]
    text = format_method_report(report)
    assert "hIoU" in text and "RANDOM" in text.upper() and "(A SUBSET)" in text
