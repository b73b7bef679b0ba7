"""Image decoding: every mode becomes RGB; unreadable files raise ImageError naming the file."""

import numpy as np
import pytest
from PIL import Image

from oczss.pipeline.data.images import ImageError, load_resized, load_rgb


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "I;16", "1"])
def test_modes_convert_to_rgb(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    im = rgb.convert("L").convert(mode) if mode in ("I;16", "LA", "1") else rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    im.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (30, 20)
    if mode == "L":
        a = np.asarray(out)
        assert np.array_equal(a[..., 0], a[..., 2]) and np.array_equal(a[..., 0], np.asarray(im))


def test_resized_whole_image(tmp_path):
    path = tmp_path / "x.jpg"
    Image.new("RGB", (300, 100), (10, 200, 30)).save(path)
    out = load_resized(path, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert abs(int(out[32, 32, 1]) - 200) < 4


def test_truncated_garbage_and_missing(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image" * 10)
    for path in (truncated, garbage, tmp_path / "missing.jpg"):
        with pytest.raises(ImageError) as e:
            load_rgb(path)
        assert str(path) in str(e.value)
    assert load_rgb(good).size == (64, 64)
