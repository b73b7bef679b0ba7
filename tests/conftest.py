"""Shared fixtures: offline hubs, a generated demo dataset, builders for the real on-disk dataset formats."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a model hub
os.environ["OCZSS_HOME"] = tempfile.mkdtemp(prefix="oczss-home-")  # text-embedding cache: not the user's home
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """The built-in demo dataset, generated once per test session (treat as read-only)."""
    from oczss.pipeline.data.demo_scenes import ensure_demo

    return ensure_demo(tmp_path_factory.mktemp("data") / "demo")


def write_jpeg(path: Path, rng: np.random.Generator, size=(40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def write_palette_png(path: Path, values: np.ndarray) -> None:
    """A VOC-style palette PNG whose pixel indices are `values` (uint8 [H, W])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(values.astype(np.uint8), mode="P")
    im.putpalette([(i * 37) % 256 for i in range(768)])
    im.save(path)


def make_voc(root: Path, train=("a", "b"), aug=("a", "c"), val=("d",)) -> Path:
    """A tiny VOC 2012 + SBD aug tree in the mmseg voc_aug layout."""
    rng = np.random.default_rng(0)
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    for name, ids, label_dir in (("train", train, "SegmentationClass"), ("trainaug", aug, "SegmentationClassAug"),
                                 ("val", val, "SegmentationClass")):
        (seg / f"{name}.txt").write_text("\n".join(ids) + "\n")
        for i in ids:
            write_jpeg(root / "JPEGImages" / f"{i}.jpg", rng)
            write_palette_png(root / label_dir / f"{i}.png", rng.choice([0, 1, 15, 20, 255], size=(32, 40)))
    return root


# captions of the COCO Captions fixture, per image; every image gets its own colour (what L_g can tell apart)
FIXTURE_CAPTIONS = (
    ("A dog lying on the grass next to a red frisbee.", "Two dogs play on a lawn."),
    ("A man riding a horse on a beach.", "A person on a brown horse near the sea."),
    ("A cat sleeping on a sofa.", "A grey cat curled up on the couch."),
    ("A pizza on a plate on a dining table.", "Slices of pizza and plates on the table."),
    ("A bus driving down a city road.", "A red bus on the road beside a building."),
    ("Two giraffes standing by a tree.", "A giraffe eating leaves from a tree."),
)


def coco_captions_json(split: str, image_ids: list[int], captions: list[tuple[str, ...]], size=(40, 32)) -> dict:
    """A captions_{split}2017.json document in the official layout (info, licenses, images, annotations)."""
    images = [{"license": 1, "file_name": f"{i:012d}.jpg", "coco_url": f"http://images.cocodataset.org/{split}2017/"
               f"{i:012d}.jpg", "height": size[1], "width": size[0], "date_captured": "2013-11-14 11:18:45",
               "flickr_url": "http://farm.example/x.jpg", "id": i} for i in image_ids]
    notes, n = [], 0
    for i, caps in zip(image_ids, captions):
        for c in caps:
            n += 1
            notes.append({"image_id": i, "id": 1000 + n, "caption": c})
    return {"info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
            "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "BY-NC-SA"}],
            "images": images, "annotations": notes}


def make_coco_captions(root: Path, train: int = 4, val: int = 2, size=(40, 32)) -> Path:
    """A tiny COCO Captions root: {train,val}2017/*.jpg (one flat colour per image, a little noise) and
    annotations/captions_{train,val}2017.json, captions from FIXTURE_CAPTIONS in turn."""
    import json

    rng = np.random.default_rng(0)
    start = 0
    for split, count in (("train", train), ("val", val)):
        ids = [139 + 1000 * (start + k) for k in range(count)]
        caps = [FIXTURE_CAPTIONS[(start + k) % len(FIXTURE_CAPTIONS)] for k in range(count)]
        for k, i in enumerate(ids):
            colour = np.array([(53 * (start + k)) % 256, (97 * (start + k) + 80) % 256, (31 * (start + k) + 160) % 256])
            pixels = np.clip(colour + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / f"{split}2017" / f"{i:012d}.jpg")
        doc = coco_captions_json(split, ids, caps, size)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(doc))
        start += count
    return root


@pytest.fixture(scope="session")
def demo_stage1(demo_root, tmp_path_factory) -> dict:
    """A demo mask cache (both splits, the demo's K=4) and the demo's random text embeddings, built once."""
    from oczss.pipeline.demo import PRECOMPUTE, random_text
    from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute

    folder = tmp_path_factory.mktemp("stage1")
    cache = str(folder / "cache.zarr")
    precompute(PrecomputeConfig(cache=cache, data_root=str(demo_root), device="cpu", **PRECOMPUTE), progress=False)
    return {"root": str(demo_root), "cache": cache, "text": str(random_text(folder / "text.npy"))}


@pytest.fixture(autouse=True)
def _library_logging():
    """Each test starts with logging as a library user has it: records propagate (pytest's caplog sees them);
    a CLI test's `setup_logging` is undone afterwards."""
    import logging

    yield
    for name in ("oczss", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    logging.captureWarnings(False)


class FakeMethod:
    """A method for the API's own tests, registered as `fake` by the `fake_method` fixture: class k scores
    -(grey / 255 * K - k)^2 per pixel, so the map is the image's brightness in K bands. Counts its embed calls."""

    name = "fake"
    trained = None

    @classmethod
    def load(cls, source: str, *, device: str = "auto", weights: str = "random"):
        import torch

        self = cls()
        self.device, self.weights, self.random_weights = torch.device("cpu"), {"w": weights}, weights == "random"
        self.embedded, self.fail_on = [], None
        return self

    def embed(self, classes):
        self.embedded.append(classes)
        return len(classes)

    def segment(self, images, text, image_ids):
        import torch

        if self.fail_on is not None and self.fail_on in image_ids:
            raise KeyboardInterrupt
        out = []
        for image in images:
            grey = torch.from_numpy(image.astype(np.float32).mean(-1)) / 255 * text
            out.append(-((grey[None] - torch.arange(text, dtype=torch.float32)[:, None, None] - 0.5) / text) ** 2)
        return out

    def labels(self, scores, text):
        return scores.argmax(0)

    def palette(self, text):
        return None


@pytest.fixture
def fake_method(monkeypatch):
    """`oczss.load("fake")` gives a FakeMethod (the registry's plug-in path, as a new method would use it)."""
    from oczss.pipeline.segmenter import methods

    monkeypatch.setitem(methods._REGISTRY, "fake", ("conftest:FakeMethod", True))
    return FakeMethod
