"""The Split Matching model: config checks, query groups, MFE, random queries, the loss, weights, a few steps."""

import dataclasses
import logging
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.losses import IGNORE
from oczss.model.sm import ABLATIONS, Batch, SMConfig, ablation, build_sm, param_groups, resnet50
from oczss.model.sm.mfe import MFE
from oczss.model.sm.objective import match_image
from oczss.model.sm.targets import image_targets

TEXT = F.normalize(torch.randn(3, 32, generator=torch.Generator().manual_seed(3)), dim=-1)  # A_s, 3 seen classes


@pytest.fixture(scope="module")
def model():
    return build_sm(SMConfig.tiny())


def synthetic_batch() -> tuple[torch.Tensor, Batch]:
    """Two 64 x 64 views: seen classes 0-2 in the left half, two unannotated candidate regions in the right."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=g)
    target = torch.full((2, 64, 64), IGNORE)
    target[0, :, :32], target[1, :32, :32], target[1, 32:, :32] = 0, 1, 2
    images[:, :, :, :32] += target[:, None, :, :32].float()  # the classes show in the pixels
    cands = torch.full((2, 64, 64), IGNORE, dtype=torch.uint8)
    cands[:, :40, 32:], cands[:, 40:, 32:] = 0, 1
    images[:, 0, :40, 32:] += 2.0
    embeddings = F.normalize(torch.randn(2, 4, 32, generator=g), dim=-1)
    return images, Batch(target, TEXT, cands, embeddings)


def test_forward_shapes_and_random_queries_at_inference_only(model):
    images = torch.randn(2, 3, 64, 64)
    c = model.config
    model.train()
    out = model(images)
    assert len(out["features"]) == len(out["masks"]) == c.decoder_layers
    assert out["features"][-1].shape == (2, c.queries, c.embed_dim)
    assert out["masks"][-1].shape == (2, c.queries, 16, 16)
    assert out["mfe"].shape == (2, c.embed_dim, 8, 8)
    model.eval()
    with torch.no_grad():
        inference = model(images)
        trained_only = model(images, random_queries=False)
        probs = model.probabilities(inference, torch.randn(5, 2, 32))
    assert "mfe" not in inference  # MFE is dropped at inference (§3.4)
    assert inference["features"][-1].shape[1] == c.queries + c.random_queries
    assert torch.allclose(trained_only["masks"][-1], out["masks"][-1], atol=1e-5)
    # Q_r join the decoder's self-attention: the trained queries' predictions change with them
    assert not torch.allclose(inference["masks"][-1][:, :c.queries], out["masks"][-1], atol=1e-5)
    assert probs.shape == (2, 5, 64, 64) and (probs >= 0).all()
    assert torch.equal(build_sm(c).random_content, model.random_content)  # Q_r: fixed by the seed


def test_mfe_fuses_coarse_to_fine():
    mfe = MFE(32, 8, "group")
    for i in range(3):
        mfe.blocks[i] = nn.Identity()
    f0, f1, f2 = torch.randn(1, 32, 2, 2), torch.randn(1, 32, 4, 4), torch.randn(1, 32, 8, 8)
    up = lambda x, ref: F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)  # noqa: E731
    fused = mfe((f0, f1, f2))
    assert fused.shape == f2.shape
    assert torch.allclose(fused, up(up(f0, f1) + f1, f2) + f2, atol=1e-6)
    assert not torch.allclose(fused, up(f0, f2) + up(f1, f2) + f2, atol=1e-3)  # F_0 passes through F_1's size
    for norm, kind in (("group", nn.GroupNorm), ("batch", nn.BatchNorm2d), ("none", None)):
        block = MFE(32, 8, norm).blocks[0]
        assert [type(m) for m in block] == [nn.Conv2d] + ([kind] if kind else []) + [nn.ReLU]
        assert (block[0].bias is not None) == (norm == "none")


def test_mfe_weights_do_not_change_inference(model):
    images = torch.randn(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        before = model(images)["masks"][-1]
        for p in model.mfe.parameters():
            p.add_(1.0)
        after = model(images)["masks"][-1]
        for p in model.mfe.parameters():
            p.sub_(1.0)
    assert torch.equal(before, after)


def test_each_query_group_is_matched_to_its_own_targets_only():
    c = SMConfig.tiny()
    target = torch.tensor([[0, 0, IGNORE, IGNORE]] * 2)
    cands = torch.tensor([[1, 1, 0, 0]] * 2)
    t = image_targets(target, cands, (2, 4), num_seen=3, limit=c.candidate_queries, unannotated=True,
                      min_fraction=0.0)
    masks = torch.full((c.queries, 8), -20.0)
    masks[0].view(2, 4)[:, 2:] = 20.0  # a seen query predicts the candidate's mask perfectly,
    masks[c.seen_queries].view(2, 4)[:, :2] = 20.0  # a candidate query the seen class's
    scores = torch.zeros(c.queries, 4)
    scores[0, 3] = scores[c.seen_queries, 0] = 10.0  # and each scores the other group's column
    queries, targets = match_image(scores, masks, t, c)
    assert targets.tolist() == [0, 1]  # target 0: seen class 0; target 1: the candidate
    assert queries[0] < c.seen_queries <= queries[1]
    assert queries[0] != 0 and queries[1] != c.seen_queries


def test_a_few_steps_on_a_synthetic_batch_lower_the_loss():
    model = build_sm(SMConfig.tiny(decoder_layers=2))
    model.train()
    images, batch = synthetic_batch()
    optimizer = torch.optim.AdamW(param_groups(model, 3e-3, 0.05, 0.1))
    losses = []
    for _ in range(4):
        terms = model.loss(model(images), batch)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(terms["total"].item())
    assert set(terms) == {"cls", "iou", "dice", "cos", "mfe_ce", "mfe_focal", "total"}
    assert all(torch.isfinite(v) for v in terms.values()) and terms["cos"].item() > 0
    assert losses[-1] < losses[-2] < losses[0] and losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("name", ["baseline", "cu_features_mlp", "mfe_bn"])
def test_ablation_rows_build_and_train(name):
    config = dataclasses.replace(ablation(name, SMConfig.tiny()), decoder_layers=2)
    model = build_sm(config)
    model.train()
    images, batch = synthetic_batch()
    terms = model.loss(model(images), batch)
    terms["total"].backward()
    assert torch.isfinite(terms["total"])
    if name == "baseline":
        assert model.mfe is None and terms["cos"].item() == 0 and "mfe_ce" not in terms
        assert model(images)["features"][-1].shape[1] == config.seen_queries
    if name == "cu_features_mlp":
        assert model.candidate_mlp[0].weight.grad is not None  # trained through L_cls and L_cos
    if name == "mfe_bn":
        assert isinstance(model.mfe.blocks[0][1], nn.BatchNorm2d)


def test_config_checks_and_table_rows():
    assert set(ABLATIONS) >= {"baseline", "sm", "sm_mfe", "sm_mfe_rq", "cu_features", "mfe_no_norm"}
    assert resnet50().backbone.startswith("resnet50") and ablation("sm").mfe is False
    assert ablation("sm_mfe_rq") == resnet50()
    for bad, match in ((dict(mfe_norm="layer"), "mfe_norm"), (dict(split_matching=False), "candidate_queries"),
                       (dict(candidate_queries=0), "split_matching"), (dict(mfe=False, candidate_embedding="features"),
                                                                       "needs mfe"),
                       (dict(hidden_dim=48), "multiple of 32"), (dict(min_candidate_fraction=2.0), "min_candidate")):
        with pytest.raises(OCZSSError, match=match):
            SMConfig(**bad)
    with pytest.raises(OCZSSError, match="tiny"):
        SMConfig.tiny(weights="pretrained")
    with pytest.raises(OCZSSError, match="no SM ablation"):
        ablation("sm_rq")


def test_param_groups_split_backbone_and_no_decay(model):
    groups = {g["name"]: g for g in param_groups(model, 1e-4, 0.05, 0.1)}
    assert groups["backbone"]["lr"] == pytest.approx(1e-5) and groups["head"]["lr"] == 1e-4
    assert groups["head_no_decay"]["weight_decay"] == 0 and groups["head"]["weight_decay"] == 0.05
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    embeddings = model.mask2former.transformer_module.queries_features.weight
    assert any(p is embeddings for p in groups["head_no_decay"]["params"])


def test_random_backbone_is_announced(caplog):
    with caplog.at_level(logging.WARNING):
        model = build_sm(SMConfig.tiny(decoder_layers=2))
    assert "RANDOM WEIGHTS" in caplog.text and model.random_weights


def test_pretrained_backbone_offline_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(OCZSSError, match=r"(?s)not in the local Hugging Face hub cache.*resnet101.tv_in1k.*"
                                         r"HF_HUB_OFFLINE is set.*model weights PATH"):
        build_sm(SMConfig())
    assert time.perf_counter() - start < 5
    with pytest.raises(OCZSSError, match="no such checkpoint"):
        build_sm(SMConfig(weights=str(tmp_path / "missing.pth")))


def test_backbone_loads_from_a_local_checkpoint(tmp_path):
    import timm

    torch.manual_seed(5)
    source = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), path)
    model = build_sm(SMConfig.tiny(backbone="test_resnet", weights=str(path), decoder_layers=2))
    backbone = model.mask2former.pixel_level_module.encoder._backbone
    assert torch.equal(backbone.conv1[0].weight, source.conv1[0].weight) and not model.random_weights
    assert type(backbone.bn1).__name__ == "FrozenBatchNorm2d"  # Mask2Former's ResNets freeze BatchNorm
    assert torch.equal(backbone.bn1.running_var, source.bn1.running_var)
    assert model.weights_fingerprint != build_sm(SMConfig.tiny(decoder_layers=2)).weights_fingerprint
