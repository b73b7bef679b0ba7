"""Pictures: distinct colours for many classes, a real font that keeps spaces, titles that wrap instead of being
cut, a notice that stays visible on narrow images, legends that cannot be misread."""

import numpy as np
from PIL import Image

from oczss.pipeline.render import MIN_LIGHTNESS, MIN_WIDTH, _fit, _font, _lab, colours, render, wrap


def test_colours_stay_distinct_past_171_classes():
    c = colours(200)
    lab = _lab(c)
    distances = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.eye(200) * 1e9
    assert len({tuple(x) for x in c}) == 200 and distances.min() > 8  # clearly different to the eye
    assert np.array_equal(colours(16), colours(200)[:16])  # stable: a class keeps its colour as the list grows


def test_many_class_colours_keep_away_from_black():
    c = colours(256)
    lab = _lab(c)
    assert not (c.max(axis=1) < 40).any()  # the near-black: every channel below 40
    assert lab[16:, 0].min() >= MIN_LIGHTNESS and lab[:, 0].min() > 25  # BASE's maroon is the darkest, L* 25.5
    assert np.linalg.norm(lab, axis=1).min() > 40  # every colour far from black (Lab distance; 40 is unmistakable)


def test_the_font_keeps_word_spaces_and_titles_wrap_without_losing_words():
    font = _font()
    assert font.getlength("DINO tiny") > font.getlength("DINOtiny")
    title = "demo/val val_0003   K=5  S=8  DINO vit_base_patch16_224.dino @ 512 a_very_long_unbroken_identifier_xyz"
    lines = wrap(title, 120, font)
    assert all(font.getlength(line) <= 120 for line in lines) and len(lines) > 2
    assert "".join(lines).replace(" ", "") == title.replace(" ", "")


def test_legend_entries_separate_the_name_from_its_share():
    font = _font()
    assert _fit("cluster 1", ": 9 %", 200, font) == "cluster 1: 9 %"
    short = _fit("a very long class name that does not fit", ": 12 %", 120, font)
    assert short.endswith("…: 12 %") and font.getlength(short) <= 120


def test_a_narrow_image_keeps_its_title_and_notice():
    image = Image.new("RGB", (31, 500), (90, 90, 90))
    labels = np.zeros((500, 31), np.uint8)
    labels[:, 15:] = 1
    pic = np.asarray(render(image, labels, ["a", "b"], "narrow.jpg (2 classes)", notice="RANDOM WEIGHTS: tests only"))
    assert pic.shape[1] == MIN_WIDTH
    red = (pic[..., 0] > 150) & (pic[..., 1] < 60) & (pic[..., 2] < 60)
    assert red[:48, 200:].any()  # the notice runs past the image's own width
