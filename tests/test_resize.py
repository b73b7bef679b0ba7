"""The references' resizing without OpenCV (pipeline/data/resize.py) against cv2 itself (opencv-python-headless,
installed with the test extra only), and both methods' eval inputs against the mmcv pipeline's."""

import cv2
import numpy as np
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from oczss.model import OCZSSConfig, build_model
from oczss.model.cass import build_cass, for_benchmark
from oczss.pipeline.cass.segment import CassSegmenter
from oczss.pipeline.data.resize import (bilinear, nearest, ratio_scale, rescale, rescale_size,
                                        short_side_size)
from oczss.pipeline.data.transforms import MEAN, STD
from oczss.pipeline.stage2.inference import segment

SHAPES = [((375, 500), (512, 683)), ((480, 640), (512, 683)), ((500, 375), (1365, 1024)), ((37, 64), (18, 32)),
          ((37, 64), (74, 128)), ((5, 7), (1, 1)), ((1, 1), (9, 5)), ((300, 200), (299, 201)), ((64, 64), (64, 64))]


@pytest.mark.parametrize("src, dst", SHAPES)
def test_bilinear_and_nearest_equal_cv2_bit_for_bit(src, dst):
    rng = np.random.default_rng(sum(src) + sum(dst))
    for channels in (None, 1, 3):
        shape = src if channels is None else (*src, channels)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        ref = cv2.resize(image, dst[::-1], interpolation=cv2.INTER_LINEAR).reshape(*dst, *shape[2:])
        assert np.array_equal(bilinear(image, dst[::-1]), ref)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (*src, 3), dtype=np.uint8), (0, 0), 2)  # photo-like gradients
    assert np.array_equal(bilinear(smooth, dst[::-1]), cv2.resize(smooth, dst[::-1]))
    label = rng.integers(0, 21, src, dtype=np.uint8)
    assert np.array_equal(nearest(label, dst[::-1]), cv2.resize(label, dst[::-1], interpolation=cv2.INTER_NEAREST))


def test_a_box_of_the_output_equals_the_crop_of_the_whole_output():
    image = np.random.default_rng(0).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    whole = cv2.resize(image, (173, 130))
    assert np.array_equal(bilinear(image, (173, 130), (40, 17, 64, 64)), whole[17:81, 40:104])


def test_sizes_as_mmcv_and_mmseg_compute_them():
    assert rescale_size(500, 375, (2048, 512)) == (683, 512)
    assert rescale_size(500, 375, (520, 520)) == (520, 390)  # Context's training scale: the long side decides
    assert short_side_size(500, 375, 520) == (693, 520)  # Context's test: min_size makes the short side 520
    assert short_side_size(375, 500, 512) == (512, 683)
    assert ratio_scale((2048, 512), 0.7) == (1433, 358)  # int(), not round(): 1433.6, 358.4
    # mmseg's min_size branch computes the factor from the float scale (new_short * h / w) / h, which can differ
    # from new_short / w in the last bit; the rule must give mmcv's integer wherever the two could disagree
    for w in range(100, 700, 7):
        for h in (w // 3, w // 2 + 1, w - 1):
            scale = (512 * w / h, 512) if w > h else (512, 512 * h / w)
            factor = min(max(scale) / max(w, h), min(scale) / min(w, h))
            assert short_side_size(w, h, 512) == (int(w * factor + 0.5), int(h * factor + 0.5))


def test_oczss_eval_windows_are_the_mmcv_pipeline_output():
    """segment's window batch equals cv2-resized, ImageNet-normalised pixels (mmseg's test pipeline)."""
    model = build_model(OCZSSConfig.otseg(backbone="tiny", weights="random")).eval()
    seen = []
    forward = model.forward
    model.forward = lambda images, *a, **k: (seen.append(images.clone()), forward(images, *a, **k))[1]
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (50, 75, 3), dtype=np.uint8), (0, 0), 1.5)
    text = torch.nn.functional.normalize(torch.randn(3, 2, 32), dim=-1)
    probs = segment(model, image, text, [0], 0.1, short=64, crop=64, stride=48, mode="slide")
    assert probs.shape == (3, 50, 75)
    ref = (cv2.resize(image, (96, 64)).astype(np.float32) - MEAN) / STD  # short_side_size(75, 50, 64) = (96, 64)
    windows = torch.cat(seen)
    assert windows.shape == (2, 3, 64, 64)
    assert torch.allclose(windows[0], torch.from_numpy(ref[:, :64]).permute(2, 0, 1), atol=1e-5)
    assert torch.allclose(windows[1], torch.from_numpy(ref[:, 32:]).permute(2, 0, 1), atol=1e-5)


def test_cass_eval_input_is_the_mmcv_pipeline_output():
    config = for_benchmark("voc21", short_side=48, window=32, stride=16, slide=True)
    cass = build_cass(config, "random", "random", backbone="tiny", dino_model="tiny-p8")
    seen = []
    prior = cass.prior
    cass.prior = lambda x: (seen.append(x.clone()), prior(x))[1]
    image = np.random.default_rng(2).integers(0, 256, (61, 40, 3), dtype=np.uint8)
    CassSegmenter(cass, config, [("a",), ("b",)], torch.device("cpu")).probabilities(image)
    mean, std = np.array(OPENAI_DATASET_MEAN) * 255, np.array(OPENAI_DATASET_STD) * 255
    ref = (cv2.resize(image, (48, 73)).astype(np.float32) - mean) / std  # rescale_size(40, 61, (2048, 48))
    assert torch.allclose(seen[0][0], torch.from_numpy(ref).permute(2, 0, 1).float(), atol=1e-5)
    assert np.array_equal(rescale(image, (2048, 48)), cv2.resize(image, (48, 73)))
