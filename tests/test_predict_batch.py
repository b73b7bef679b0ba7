"""`oczss predict` over folders and globs: which files, their output names, what --save writes, predictions.jsonl,
resuming (skip complete images, redo incomplete ones), Ctrl-C leaving no partial file, refusal of a folder made
for other classes. Runs the `fake` method (conftest.FakeMethod) through the real registry, loader and writer."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import oczss
from oczss.errors import ImageInputError, OCZSSError
from oczss.pipeline.prediction import RECORDS, plan, run
from oczss.pipeline.segmenter.outputs import PARTIAL, atomic

pytestmark = pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS")  # the fake method's weights are random


def ramp(path, width=32, height=8, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(path)


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for i, name in enumerate(("a.jpg", "b.png", "sub/c.jpg", "sub/deeper/a.JPG", ".hidden/x.jpg", "out/old.png")):
        ramp(root / name, seed=i)
    (root / "notes.txt").write_text("not an image")
    return root


def records(out):
    """The complete lines of predictions.jsonl (a torn one, from a kill, left out)."""
    return [json.loads(line) for line in (out / RECORDS).read_text().splitlines() if line.endswith("}")]


def test_folders_and_globs_reach_images_only_and_outputs_mirror_the_folder(photos, tmp_path, fake_method):
    out = photos / "out"  # inside the input folder: never taken as input
    p = plan([str(photos), str(photos / "sub" / "*.jpg"), str(tmp_path / "photos" / "a.jpg")], "dark,mid,bright",
             out, "overlay,labels,probs")
    assert [name for _, name in p.jobs] == ["a", "b", "sub/c", "sub/deeper/a"]  # sorted; each file once
    summary = run(p, oczss.load("fake"), batch_size=3, workers=2, show_progress=False)
    assert (summary.written, summary.skipped, summary.failed) == (4, 0, [])
    assert (out / "sub" / "deeper" / "a_overlay.png").is_file() and (out / "sub" / "c_labels.png").is_file()
    probs = np.load(out / "b_probs.npy")
    assert probs.dtype == np.float16 and probs.shape == (3, 8, 32)
    lines = records(out)
    assert sorted(r["name"] for r in lines) == ["a", "b", "sub/c", "sub/deeper/a"]  # in the order written
    first = next(r for r in lines if r["name"] == "a")
    assert first["input"] == str((photos / "a.jpg").resolve()) and first["classes"] == ["dark", "mid", "bright"]
    assert first["outputs"] == {"overlay": "a_overlay.png", "labels": "a_labels.png", "probs": "a_probs.npy"}
    assert sum(first["shares"].values()) == pytest.approx(1) and first["seconds"] >= 0 and first["size"] == [32, 8]
    assert first["method"] == "fake" and first["random_weights"] is True
    labels = np.asarray(Image.open(out / "a_labels.png"))
    grey = np.asarray(Image.open(photos / "a.jpg").convert("L")).astype(float)
    assert np.abs(labels - np.clip(grey / 255 * 3, 0, 2.999).astype(int)).max() <= 1  # the fake's brightness bands
    with pytest.raises(ImageInputError, match=r"no such image file or folder: nope\.jpg; .*empty\*\.png matches no "
                                              r"image file"):
        plan(["nope.jpg", str(photos / "empty*.png")], "a", tmp_path / "o2")


def test_a_rerun_skips_complete_images_and_redoes_the_rest(photos, tmp_path, fake_method):
    out = tmp_path / "out"
    seg = oczss.load("fake")
    run(plan([str(photos / "sub")], "dark,bright", out), seg, show_progress=False)
    (out / "c_overlay.png").unlink()  # an incomplete image
    with open(out / RECORDS, "a") as f:
        f.write('{"name": "torn')  # a kill in the middle of a record
    again = plan([str(photos / "sub")], "dark,bright", out)
    assert list(again.done) == ["deeper/a"]
    summary = run(again, seg, show_progress=False)
    assert (summary.written, summary.skipped) == (1, 1) and (out / "c_overlay.png").is_file()
    assert [r["name"] for r in records(out)[-1:]] == ["c"]
    more = plan([str(photos / "sub")], "dark,bright", out, "overlay,labels,probs")  # asks for a file not written
    assert more.done == {}
    with pytest.raises(OCZSSError, match="holds predictions made with other classes .* --overwrite"):
        plan([str(photos / "sub")], "dark,mid,bright", out)
    fresh = plan([str(photos / "sub")], "dark,mid,bright", out, overwrite=True)
    assert run(fresh, seg, show_progress=False).written == 2 and len(records(out)) == 2
    with pytest.raises(OCZSSError, match="other weights"):
        run(plan([str(photos / "sub")], "dark,mid,bright", out, overwrite=False), oczss.load("fake", weights="b"))


def test_ctrl_c_leaves_no_partial_file_and_the_rerun_finishes(photos, tmp_path, fake_method):
    out = tmp_path / "out"
    seg = oczss.load("fake")
    seg._method.fail_on = "c"  # Ctrl-C while the fourth image (sub/c.jpg) is segmented
    with pytest.raises(KeyboardInterrupt):
        run(plan([str(photos)], "dark,bright", out), seg, batch_size=1, workers=2, show_progress=False)
    done = sorted(r["name"] for r in records(out))
    assert done == ["a", "b", "out/old"] and not list(out.rglob(f"*{PARTIAL}"))
    assert sorted(p.name for p in out.glob("*.png")) == ["a_labels.png", "a_overlay.png", "b_labels.png",
                                                         "b_overlay.png"]
    leftover = out / f".c_labels.png.{2 ** 22 + 7}{PARTIAL}"  # a killed run's (no such process)
    leftover.write_bytes(b"half")
    seg._method.fail_on = None
    summary = run(plan([str(photos)], "dark,bright", out), seg, show_progress=False)
    assert (summary.written, summary.skipped) == (2, 3) and not leftover.exists()
    target = tmp_path / "x.png"

    def interrupted(f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic(target, interrupted)
    assert os.listdir(tmp_path).count("x.png") == 0 and not list(tmp_path.glob(".x.png*"))


def test_unreadable_images_are_skipped_and_a_run_of_none_is_an_error(tmp_path, fake_method):
    ramp(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    summary = run(plan([str(tmp_path / "in")], "a,b", tmp_path / "out"), oczss.load("fake"), show_progress=False)
    assert summary.written == 1 and len(summary.failed) == 1 and "broken.jpg" in summary.failed[0]
    with pytest.raises(OCZSSError, match="none of the 1 image"):
        run(plan([str(tmp_path / "in" / "broken.jpg")], "a,b", tmp_path / "o2"), oczss.load("fake"),
            show_progress=False)
