"""Forward shapes at 512, 480 and a non-square size, bf16 autocast, every mask source and refiner, inference."""

import pytest
import torch
import torch.nn.functional as F

from oczss.model import OCZSSConfig, build_model, probabilities

TEXT = F.normalize(torch.randn(5, 8, 32, generator=torch.Generator().manual_seed(0)), dim=-1)


def tiny(**overrides):
    return build_model(OCZSSConfig(backbone="tiny", weights="random", **overrides)).eval()


def labels_for(images, n=6):
    b, _, h, w = images.shape
    return torch.randint(0, n, (b, (h // 16) * (w // 16)), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("size", [(512, 512), (480, 480), (320, 192)])
def test_output_shapes(size):
    model = tiny()
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model(images, labels_for(images), TEXT)
    assert set(out) >= {"decoder", "mps"}
    for logits in out.values():
        assert logits.shape == (2, 5, *size) and torch.isfinite(logits).all()


def test_bf16_autocast_runs_and_stays_close_to_fp32():
    model = tiny()
    images = torch.randn(2, 3, 96, 64)
    labels = labels_for(images)
    with torch.no_grad():
        full = model(images, labels, TEXT)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(images, labels, TEXT)
    for name in ("decoder", "mps"):
        assert half[name].shape == full[name].shape and torch.isfinite(half[name]).all()
        assert (half[name].float() - full[name]).abs().mean() < 0.1 * full[name].abs().mean()


@pytest.mark.parametrize("overrides", [
    dict(mask_source="clip"), dict(mask_source="region"), dict(mask_source="none"),
    dict(mask_source="region", refiner="none", granular=False),
    dict(refiner="cross_attention", granular=False, cross_attention_layers=2),
    dict(ora_update="residual", shared_gru=False), dict(ora_space="embed"), dict(mps_on_refined=False),
    dict(mask_source="none", refiner="none", granular=False, decoder_layers=1),
])
def test_every_variant_runs(overrides):
    model = tiny(**overrides)
    images = torch.randn(1, 3, 64, 80)
    labels = labels_for(images) if model.config.mask_source == "dino" else None  # the others make their own
    with torch.no_grad():
        out = model(images, labels, TEXT)
    assert out["decoder"].shape == out["mps"].shape == (1, 5, 64, 80)


def test_cluster_labels_drive_the_dino_mask():
    model = tiny()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model(images, torch.zeros(1, 16, dtype=torch.long), TEXT)["decoder"]
        b = model(images, torch.arange(16).remainder(6)[None], TEXT)["decoder"]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="cluster_labels"):
        model(images, None, TEXT)
    with pytest.raises(ValueError, match="cluster labels of shape"):
        model(images, torch.zeros(1, 15, dtype=torch.long), TEXT)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.randn(1, 3, 64, 72), torch.zeros(1, 16, dtype=torch.long), TEXT)


def test_probabilities_average_the_two_outputs_and_calibrate_seen_classes():
    outputs = {"decoder": torch.randn(2, 4, 3, 3), "mps": torch.randn(2, 4, 3, 3)}
    plain = torch.sigmoid(0.5 * outputs["decoder"] + 0.5 * outputs["mps"])
    assert torch.equal(probabilities(outputs, [0, 2], calibration=0.0), plain)
    calibrated = probabilities(outputs, [0, 2], calibration=0.1)
    assert torch.allclose(calibrated[:, [0, 2]], plain[:, [0, 2]] - 0.1)
    assert torch.equal(calibrated[:, [1, 3]], plain[:, [1, 3]])
