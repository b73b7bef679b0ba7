"""Class text embeddings: computed per template and cached on disk, or loaded from OTSeg's shipped arrays."""

import numpy as np
import pytest
import torch

from oczss.errors import OCZSSError
from oczss.model import text
from oczss.model.clip import load_tower


def embed(classes, count, cache_dir):
    return text.class_embeddings(classes, text.templates(count), cache_dir, backbone="tiny", weights="random")


def test_embeddings_are_per_template_unit_vectors_and_cached(tmp_path, monkeypatch):
    first = embed(["cat", "dog", "traffic light"], 3, tmp_path)
    assert first.shape == (3, 3, 32) and first.dtype == torch.float32
    assert torch.allclose(first.norm(dim=-1), torch.ones(3, 3), atol=1e-5)
    assert not torch.allclose(first[:, 0], first[:, 1])  # templates are kept apart, not averaged
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def no_encoding(*_):
        raise AssertionError("a cache hit must not encode")

    monkeypatch.setattr(text, "_encode", no_encoding)
    assert torch.equal(embed(["cat", "dog", "traffic light"], 3, tmp_path), first)  # hit
    monkeypatch.undo()

    other_classes = embed(["cat", "dog"], 3, tmp_path)  # miss: another key
    assert torch.allclose(other_classes, first[:2], atol=1e-6)  # the same text encodes the same
    embed(["cat", "dog"], 2, tmp_path)  # miss: other templates
    assert len(list(tmp_path.glob("*.pt"))) == 3
    with pytest.raises(OCZSSError, match="templates"):
        text.templates(9)


def test_weights_fingerprint_is_part_of_the_key(tmp_path):
    a = text.class_embeddings(["cat"], text.templates(2), tmp_path, backbone="tiny", weights="random")
    checkpoint = tmp_path / "other.pt"
    torch.save(load_tower("tiny", "random", "text", seed=5).module.state_dict(), checkpoint)
    b = text.class_embeddings(["cat"], text.templates(2), tmp_path, backbone="tiny", weights=str(checkpoint))
    assert len(list(tmp_path.glob("text-*.pt"))) == 2 and not torch.allclose(a, b)


def test_shipped_arrays_load_as_fp32(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.standard_normal((20, 6, 512)).astype(np.float16)  # voc12_otseg.npy's shape and dtype
    np.save(tmp_path / "voc12_otseg.npy", array)
    loaded = text.load_text_embeddings(tmp_path / "voc12_otseg.npy")
    assert loaded.dtype == torch.float32 and loaded.shape == (20, 6, 512)
    assert torch.equal(loaded, torch.from_numpy(array.astype(np.float32)))
    np.save(tmp_path / "flat.npy", array[0])
    with pytest.raises(OCZSSError, match="expected"):
        text.load_text_embeddings(tmp_path / "flat.npy")
