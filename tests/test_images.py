"""Image decoding: every mode becomes RGB; unreadable files raise ImageError naming the file."""

import numpy as np
import pytest
from PIL import Image

from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.stage1.tokens import input_size, load_input


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


def test_stage1_input_keeps_the_aspect_ratio(tmp_path):
    path = tmp_path / "x.jpg"
    Image.new("RGB", (300, 100), (10, 200, 30)).save(path)
    out = load_input(path, 64, 16, 8)  # the long side 192 -> at most 8 patches of 16 = 128
    assert out.shape == (64, 128, 3) and out.dtype == np.uint8
    assert abs(int(out[32, 64, 1]) - 200) < 4
    assert input_size(500, 375, 64, 16, 8) == (80, 64)  # 85.3 -> the nearest multiple of 16
    assert input_size(375, 500, 64, 16, 8) == (64, 80) and input_size(64, 64, 64, 16, 8) == (64, 64)


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


def test_exif_orientation_is_applied_and_transparency_becomes_the_mean_colour(tmp_path):
    from oczss.pipeline.data.images import TRANSPARENT_FILL

    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:, :20] = 255  # left half white in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(raw).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(load_rgb(tmp_path / "phone.jpg"))
    assert upright.shape == (40, 20, 3)  # displayed portrait
    assert upright[:18].mean() > 200 and upright[22:].mean() < 50  # the white half is now on top
    rgba = np.zeros((4, 4, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert tuple(np.asarray(load_rgb(tmp_path / "clear.png"))[0, 0]) == TRANSPARENT_FILL


def test_pair_check_names_every_bad_pair_and_sees_exif_rotation(tmp_path):
    from oczss.errors import OCZSSError
    from oczss.pipeline.data.datasets import Sample
    from oczss.pipeline.data.pairs import check_pairs

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20)).save(tmp_path / "a.jpg", exif=exif)
    Image.new("L", (40, 20)).save(tmp_path / "a.png")  # label drawn on the stored, unrotated pixels
    Image.new("RGB", (8, 8)).save(tmp_path / "b.jpg")
    Image.new("L", (8, 8)).save(tmp_path / "b.png")
    samples = [Sample("a", tmp_path / "a.jpg", tmp_path / "a.png"), Sample("b", tmp_path / "b.jpg", tmp_path / "b.png"),
               Sample("c", tmp_path / "b.jpg", tmp_path / "missing.png")]
    with pytest.raises(OCZSSError, match=r"(?s)2 of 3 .*a.jpg is 20x40 but its label .*a.png is 40x20.*missing.png: label missing"
                       ) as e:
        check_pairs(samples, "fixture", show_progress=False)
    assert "b.png" not in str(e.value).replace("missing.png", "")
