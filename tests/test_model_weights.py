"""CLIP weights (pretrained / local path / random) and the JSON round trip of OCZSSConfig."""

import dataclasses
import json

import open_clip
import pytest
import torch

from oczss.errors import OCZSSError
from oczss.pipeline.configs import from_dict
from oczss.model import OCZSSConfig, build_model
from oczss.model.clip import load_tower, model_config


def test_pretrained_offline_fails_with_a_hint_to_pass_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OCZSSError, match="local checkpoint path"):
        load_tower("ViT-B-16", "pretrained", "visual")


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")  # torch.jit's deprecation notices
@pytest.mark.parametrize("layout", ["visual-only", "full-clip", "torchscript"])
def test_local_checkpoint_loads(tmp_path, layout):
    source = load_tower("tiny", "random", "visual", seed=7)
    state = source.module.state_dict()
    path = tmp_path / "clip.pt"
    if layout == "torchscript":  # like OpenAI's own ViT-B-16.pt
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            clip = open_clip.CLIP(**model_config("tiny"), quick_gelu=True)
        torch.jit.script(clip).save(str(path))
    else:
        torch.save(state if layout == "visual-only" else {f"visual.{k}": v for k, v in state.items()}, path)
    loaded = load_tower("tiny", str(path), "visual")
    assert loaded.fingerprint == source.fingerprint and not loaded.random
    assert loaded.fingerprint != load_tower("tiny", "random", "visual", seed=0).fingerprint
    model = build_model(OCZSSConfig(backbone="tiny", weights=str(path)))
    assert not model.random_weights and model.weights_fingerprint == source.fingerprint
    assert all(torch.equal(v, source.module.state_dict()[k]) for k, v in model.encoder.clip.state_dict().items())


def test_bad_checkpoints_are_refused_clearly(tmp_path):
    with pytest.raises(OCZSSError, match="no such checkpoint"):
        load_tower("tiny", str(tmp_path / "missing.pt"), "visual")
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pt")
    with pytest.raises(OCZSSError, match="does not fit"):
        load_tower("tiny", str(tmp_path / "wrong.pt"), "visual")
    with pytest.raises(OCZSSError, match="no pretrained weights"):
        load_tower("tiny", "pretrained", "visual")


def test_backbone_names_are_checked_naming_the_closest_and_how_to_list_them():
    from oczss.model.dino import load_dino

    with pytest.raises(OCZSSError, match=r"--backbone ViT-B-61: open_clip has no such model .*open_clip.list_models"):
        model_config("ViT-B-61")
    with pytest.raises(OCZSSError, match=r"did you mean vit_base_patch8_224\.dino.*timm\.list_models"):
        load_dino("vit_base_patch8_224.dinov", "random", 64)
    with pytest.raises(OCZSSError, match="resnet18 is not a ViT"):  # a timm model, but not one DINO's code reads
        load_dino("resnet18", "random", 64)


def test_random_weights_are_announced_and_recorded(caplog):
    model = build_model(OCZSSConfig(backbone="tiny", weights="random"))
    assert "RANDOM WEIGHTS" in caplog.text
    assert model.random_weights and len(model.weights_fingerprint) == 64


def test_config_round_trips_through_json_and_validates():
    config = OCZSSConfig(backbone="tiny", mask_source="region", dilations=(1, 2), num_objects=8)
    again = from_dict(OCZSSConfig, json.loads(json.dumps(dataclasses.asdict(config))), "test")
    assert again == config
    baseline = OCZSSConfig.otseg()
    assert (baseline.mask_source, baseline.refiner, baseline.granular) == ("none", "none", False)
    with pytest.raises(OCZSSError, match="unknown field"):
        from_dict(OCZSSConfig, {"num_object": 6}, "test")
    with pytest.raises(OCZSSError, match="mask_source"):
        OCZSSConfig(mask_source="sam")
    with pytest.raises(OCZSSError, match="granular"):
        OCZSSConfig(refiner="cross_attention")
    with pytest.raises(OCZSSError, match="ora_iterations"):
        OCZSSConfig(ora_iterations=0)


def test_offline_pretrained_loads_fail_at_once_naming_the_cache(monkeypatch, tmp_path):
    import time

    from oczss.model.dino import load_dino

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    for load, name in ((lambda: load_tower("ViT-B-16", "pretrained", "visual"), "vit_base_patch16_clip_224.openai"),
                       (lambda: load_dino("vit_base_patch16_224.dino", "pretrained", 224), "vit_base_patch16_224.dino")):
        start = time.perf_counter()
        with pytest.raises(OCZSSError, match=rf"(?s)not in the local Hugging Face hub cache \({tmp_path}/hub.*{name}.*"
                                             r"HF_HUB_OFFLINE is set.*local"):
            load()
        assert time.perf_counter() - start < 5
