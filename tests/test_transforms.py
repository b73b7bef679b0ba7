"""Joint transforms: mmseg resize/crop/window rules, and the cluster grid sampled under every view's patches."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from oczss.pipeline.stage2.loader import UNSEEN, Positions, label_lut
from oczss.pipeline.data.datasets import SPECS
from oczss.pipeline.data.transforms import View, normalise, photometric, random_crop, train_view, windows


def test_windows():
    assert windows(683, 512, 512, 426) == [(0, 0, 512, 512), (171, 0, 512, 512)]
    wins = windows(700, 520, 480, 80)
    assert wins[0] == (0, 0, 480, 480) and wins[-1] == (220, 40, 480, 480) and len(wins) == 2 * 4
    assert windows(100, 90, 128, 96) == [(0, 0, 100, 90)]


def test_patch_clusters_identity_flip_and_crop():
    grid = np.arange(16, dtype=np.uint8).reshape(4, 4)
    ident = View(64, 64, 0, 0, 64, 64)
    assert np.array_equal(ident.patch_clusters(grid, 4, 4, 16).reshape(4, 4), grid)
    flipped = View(64, 64, 0, 0, 64, 64, flip=True)
    assert np.array_equal(flipped.patch_clusters(grid, 4, 4, 16).reshape(4, 4), grid[:, ::-1])
    crop = View(32, 32, 32, 16, 64, 64)  # lower-right-ish quarter, content 2 x 2 patches
    assert np.array_equal(crop.patch_clusters(grid, 2, 2, 16).reshape(2, 2), grid[1:3, 2:4])
    padded = View(32, 32, 32, 32, 64, 64)  # 2x2 content in a 3x3 patch view: padding takes the edge cell
    assert np.array_equal(padded.patch_clusters(grid, 3, 3, 16).reshape(3, 3),
                          np.array([[10, 11, 11], [14, 15, 15], [14, 15, 15]]))


@pytest.mark.parametrize("seed", range(10))
def test_train_view_clusters_follow_the_pixels(seed):
    """Paint the grid onto the image as its label: after any augmentation, each patch's cluster equals the
    label under the patch centre (patches within a pixel of a cell boundary are ambiguous and left out)."""
    rng = np.random.default_rng(seed)
    s = 4
    grid = rng.integers(0, 6, (s, s)).astype(np.uint8)
    h, w = 160, 240
    label = np.asarray(Image.fromarray(grid).resize((w, h), Image.NEAREST))
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img, lab, view = train_view(image, label, (1024, 256), 64, rng)
    assert img.shape == (3, 64, 64) and img.dtype == np.float32 and lab.shape == (64, 64)
    clusters = view.patch_clusters(grid, 4, 4, 16)
    shifted = [replace(view, left=view.left + dx, top=view.top + dy).patch_clusters(grid, 4, 4, 16)
               for dx in (-1, 1) for dy in (-1, 1)]
    clear = np.all([c == clusters for c in shifted], axis=0) & (lab[8::16, 8::16].ravel() != 255)
    assert clear.sum() >= 4
    assert np.array_equal(clusters[clear], lab[8::16, 8::16].ravel()[clear])
    assert (lab[view.height:, :] == 255).all() and (img[:, view.height:, :] == 0).all()


def test_random_crop_respects_cat_max_ratio():
    label = np.zeros((100, 100), np.uint8)
    label[:, 60:] = 1
    for seed in range(10):
        top, left = random_crop(label, 50, np.random.default_rng(seed))
        crop = label[top:top + 50, left:left + 50]
        assert 0 < crop.mean() < 1 and max(crop.mean(), 1 - crop.mean()) < 0.75


def test_photometric_deterministic_and_bounded():
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    a = photometric(image, np.random.default_rng(5))
    assert np.array_equal(a, photometric(image, np.random.default_rng(5)))
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert any(not np.array_equal(photometric(image, np.random.default_rng(i)), image) for i in range(5))
    n = normalise(np.full((2, 2, 3), [123.675, 116.28, 103.53], np.float32).astype(np.uint8))
    assert n.shape == (3, 2, 2) and np.abs(n).max() < 0.02


def test_label_lut_settings():
    voc = SPECS["voc"]
    ind, tra = label_lut(voc, "inductive"), label_lut(voc, "transductive")
    assert ind[14] == 14 and ind[15] == 255 and ind[255] == 255
    assert tra[15] == UNSEEN and tra[14] == 14 and tra[255] == 255
    ctx = label_lut(SPECS["context"], "inductive")
    assert ctx[0] == 255 and ctx[1] == 0 and ctx[58] == 48  # aeroplane unseen; bag is seen class 0


def test_positions_resume_and_ranks():
    full = Positions(n=10, seed=3, start=0, per_rank=4)
    stream = [next(it) for it in [iter(full)] for _ in range(24)]
    assert sorted(i for i, _ in stream[:10]) == list(range(10))  # one epoch is a permutation
    assert [p for _, p in stream] == list(range(24))
    resumed = iter(Positions(n=10, seed=3, start=3, per_rank=4))
    assert [next(resumed) for _ in range(12)] == stream[12:24]
    r0, r1 = iter(Positions(10, 3, 0, 2, world=2, rank=0)), iter(Positions(10, 3, 0, 2, world=2, rank=1))
    merged = [x for _ in range(3) for x in (next(r0), next(r0), next(r1), next(r1))]
    assert merged == stream[:12]
