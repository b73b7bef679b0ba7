"""The Python API: oczss.load -> Segmenter -> Result, for every input type, one image or many, with the class-list
rules, the text cache, the random-weights warning and the files a result saves."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import oczss
from oczss.errors import ClassListError, ImageInputError, OCZSSError
from oczss.model.cass import for_benchmark

TINY_CASS = dict(weights="random", backbone="tiny", dino_model="tiny-p8", device="cpu",
                 config=for_benchmark("voc21", short_side=64, window=32, stride=16, slide=True))


def photo(seed=0, size=(40, 28)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cass():
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        return oczss.load("cass", **TINY_CASS)


def test_import_oczss_is_cheap_and_lists_the_public_names():
    code = "import sys, oczss; assert 'torch' not in sys.modules, 'torch imported'; print(sorted(oczss.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['OCZSSError', 'Result', 'Segmenter', 'load']"
    assert oczss.load.__module__ == "oczss.pipeline.segmenter.api" and oczss.OCZSSError is OCZSSError


def test_every_input_type_gives_the_same_map_in_the_inputs_size(cass, tmp_path):
    rgb = photo()
    Image.fromarray(rgb).save(tmp_path / "p.png")
    by_path = cass(tmp_path / "p.png", classes="cat,sofa|couch,window")
    assert by_path.labels.shape == (28, 40) and by_path.labels.dtype == np.uint8 and by_path.labels.max() < 3
    assert by_path.classes == ["cat", "sofa", "window"] and by_path.class_names[1] == ("sofa", "couch")
    assert by_path.source == str(tmp_path / "p.png") and by_path.method == "cass" and by_path.random_weights
    assert by_path.weights["clip"] == "random" and by_path.scores is None
    same = [cass(x, ["cat", "sofa|couch", "window"]) for x in
            (str(tmp_path / "p.png"), Image.fromarray(rgb), rgb, rgb.astype(np.float64) / 255,
             torch.from_numpy(rgb).permute(2, 0, 1), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)]
    for r in same:
        assert np.array_equal(r.labels, by_path.labels)
    grey = cass(rgb[..., 0], "cat,window", scores=True)
    assert grey.labels.shape == (28, 40) and grey.scores.shape == (2, 28, 40) and grey.scores.dtype == np.float32
    for bad, message in ((torch.zeros(4, 8, 8), r"\[3, H, W\]"), (rgb.astype(np.int32), "uint8 or floating"),
                         (rgb / 255 * 2, r"\[0, 1\]"), (tmp_path / "missing.jpg", "missing.jpg: file not found"),
                         (42, "cannot segment a int")):
        with pytest.raises(ImageInputError, match=message):
            cass(bad, "cat")


def test_a_rotated_phone_photo_is_segmented_the_right_way_up(cass, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    Image.fromarray(photo(1, (40, 28))).save(tmp_path / "phone.jpg", exif=exif)
    r = cass(tmp_path / "phone.jpg", "cat,sky")
    assert r.labels.shape == (40, 28) and r.image.shape == (40, 28, 3)


def test_many_images_yield_results_in_order_equal_to_one_at_a_time(cass, tmp_path):
    images = [photo(s, (24 + 8 * s, 24)) for s in range(3)]
    one = cass(images[0], "cat,dog").labels
    Image.fromarray(images[2]).save(tmp_path / "c.png")
    many = cass((x for x in [images[0], images[1], tmp_path / "c.png"]), "cat,dog", batch_size=2, workers=1)
    assert not isinstance(many, oczss.Result)  # a generator: results as they finish
    results = list(many)
    assert [r.labels.shape for r in results] == [(24, 24), (24, 32), (24, 40)]
    assert np.array_equal(results[0].labels, one) and results[2].source == str(tmp_path / "c.png")
    stacked = list(cass(np.stack([images[0], images[0]]), ["cat", "dog"], batch_size=2))
    assert len(stacked) == 2 and all(np.array_equal(r.labels, one) for r in stacked)
    with pytest.raises(ImageInputError, match="nope.png"):
        list(cass([tmp_path / "nope.png", images[0]], "cat,dog"))
    assert len(list(cass([tmp_path / "nope.png", images[0]], "cat,dog", skip_unreadable=True))) == 1


def test_text_is_embedded_once_per_class_list_and_lists_can_alternate(cass):
    image = photo(2)
    calls = []
    embed = cass._method.embed
    cass._method.embed = lambda classes: calls.append(classes) or embed(classes)
    try:
        first = cass(image, "tree,road|street,sky", scores=True)
        cass(image, "lamp,desk")
        again = cass(image, ["tree", "road|street", "sky"], scores=True)
    finally:
        del cass._method.embed
    assert calls == [(("tree",), ("road", "street"), ("sky",)), (("lamp",), ("desk",))]
    assert np.array_equal(first.scores, again.scores)  # the other list's queries were switched back


@pytest.mark.parametrize("classes, message", [
    ("cat,|", "class 2 .* has an empty name"), ("cat,,dog", "class 2 .* has an empty name"), ("", "no class names"),
    ("Cat,cat", "'cat' is given twice"), ("cat,cat|cat", "'cat' is given twice"), (["a|b", "B"], "'B' is given twice")])
def test_bad_class_lists_are_refused_before_any_image_is_read(cass, tmp_path, classes, message):
    with pytest.raises(ClassListError, match=message):
        cass(tmp_path / "never-read.jpg", classes)


def test_options_a_method_does_not_take_and_unknown_sources_are_refused():
    with pytest.raises(OCZSSError, match="cass .* takes no mode; its options are device, weights"):
        oczss.load("cass", mode="whole")
    with pytest.raises(OCZSSError, match="neither a method .* nor a checkpoint file"):
        oczss.load("no-such-method-or-file.pt")


def test_a_method_plugs_in_through_the_registry(fake_method, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seg = oczss.load("fake", weights="real")  # no random weights: no warning
    names = [f"class{i}" for i in range(300)]  # more than a palette holds
    ramp = np.repeat(np.linspace(0, 255, 60, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(4, axis=0)
    r = seg(ramp, names, scores=True)
    assert r.labels.dtype == np.uint16 and r.labels.max() > 255 and r.method == "fake" and not r.random_weights
    files = r.save(tmp_path, save=("overlay", "labels", "probs"), name="ramp")
    labels = Image.open(files["labels"])
    assert labels.mode.startswith("I;16") and np.array_equal(np.asarray(labels), r.labels)
    assert json.loads(labels.text["oczss:classes"]) == names and labels.text["oczss:random_weights"] == "false"
    probs = np.load(files["probs"])
    assert probs.dtype == np.float16 and probs.shape == (300, 4, 60)
    assert Image.open(files["overlay"]).text["oczss:method"] == "fake"
    with pytest.raises(ClassListError, match="at most 65536"):
        seg(ramp, [f"c{i}" for i in range(65537)])


def test_results_save_the_pictures_predict_writes_with_what_made_them(cass, tmp_path):
    r = cass(photo(3), "cat,sofa|couch")
    files = r.save(tmp_path)
    assert sorted(p.name for p in files.values()) == ["image_labels.png", "image_overlay.png"]
    labels = Image.open(files["labels"])
    assert labels.mode == "P" and np.array_equal(np.asarray(labels), r.labels)
    assert json.loads(labels.text["oczss:classes"]) == ["cat", "sofa|couch"]
    assert labels.text["oczss:random_weights"] == "true" and "RANDOM WEIGHTS" in labels.text["oczss:notice"]
    assert json.loads(labels.text["oczss:weights"])["backbone"] == "tiny"
    assert r.overlay().size == Image.open(files["overlay"]).size
    assert sum(r.shares().values()) == pytest.approx(1.0)
    with pytest.raises(OCZSSError, match="scores=True"):
        r.save(tmp_path, save=["probs"])
