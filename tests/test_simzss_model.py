"""SimZSS model side: the losses against hand computations, the text tower's size, the frozen DINOv2 up to the hub,
cached and online vision tokens giving the same loss, dense inference and the schedule."""

from __future__ import annotations

import math

import pytest
import torch

from oczss.errors import OCZSSError
from oczss.model.simzss import SimZSS, SimZSSConfig, SimZSSSchedule, TextBatch, dense_logits, load_vision, segment
from oczss.model.simzss.losses import concept_loss, global_loss, span_means
from oczss.model.simzss.text import count_parameters, tokenizer
from oczss.model.simzss.vision import VisionTokens


def _norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


# a toy batch: two captions share the concept "dog" (label 7); the second also has "grass" (label 3)
PATCHES = [[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [1.0, 0.0]]]  # z_v: 2 images x 2 patches x 2 dims
CONCEPTS = [[[1.0, 0.0], [5.0, 5.0]], [[0.8, 0.6], [0.0, 2.0]]]  # c~_t per caption slot (slot [0][1] is empty)
LABELS = [[7, -1], [7, 3]]


def _hand_loss(query: str, targets: str, tau: float, scale: float) -> float:
    """The poster's equations in plain arithmetic: classes in sorted label order (grass 3 -> 0, dog 7 -> 1)."""
    occurrences = [(0, CONCEPTS[0][0], 1), (1, CONCEPTS[1][0], 1), (1, CONCEPTS[1][1], 0)]  # (image, c~_t, q)
    h = [_norm(CONCEPTS[1][1]), _norm([a + b for a, b in zip(_norm(CONCEPTS[0][0]), _norm(CONCEPTS[1][0]))])]
    total = 0.0
    for image, concept, q in occurrences:
        z = [_norm(p) for p in PATCHES[image]]
        c = _norm(concept) if query == "concept" else h[q]
        s = _softmax([_dot(p, c) / tau for p in z])  # over patches
        c_v = _norm([sum(s[n] * z[n][d] for n in range(2)) for d in range(2)])  # z_v^T s
        p = _softmax([scale * _dot(c_v, row) for row in h])
        target = q if targets == "caption" else max(range(2), key=lambda i: p[i])
        total += -math.log(p[target])
    return total / len(occurrences)


@pytest.mark.parametrize("query,targets", [("concept", "caption"), ("class", "caption"), ("concept", "argmax")])
def test_concept_loss_matches_hand_computation(query, targets):
    loss, accuracy = concept_loss(torch.tensor(PATCHES), torch.tensor(CONCEPTS), torch.tensor(LABELS), tau=0.5,
                                  scale=2.0, query=query, targets=targets)
    assert loss.item() == pytest.approx(_hand_loss(query, targets, 0.5, 2.0), rel=1e-5)
    assert 0.0 <= accuracy.item() <= 1.0


def test_concept_loss_differs_between_poster_and_public_code_variants():
    values = {(q, t): _hand_loss(q, t, 0.5, 2.0) for q in ("concept", "class") for t in ("caption", "argmax")}
    assert len({round(v, 6) for v in values.values()}) > 1  # the switches change the loss on this batch


def test_concept_loss_without_concepts_is_zero_and_in_the_graph():
    patches = torch.randn(2, 3, 4)
    concepts = torch.randn(2, 1, 4, requires_grad=True)
    loss, _ = concept_loss(patches, concepts, torch.full((2, 1), -1), tau=0.1, scale=10.0)
    assert loss.item() == 0.0
    loss.backward()
    assert concepts.grad is not None and not concepts.grad.any()


def test_span_means_average_the_span_tokens():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float).reshape(2, 5, 3)
    spans = torch.tensor([[[1, 2], [4, -1]], [[3, -1], [-1, -1]]])
    out = span_means(tokens, spans)
    assert torch.equal(out[0, 0], (tokens[0, 1] + tokens[0, 2]) / 2)
    assert torch.equal(out[0, 1], tokens[0, 4])
    assert torch.equal(out[1, 0], tokens[1, 3])
    assert torch.equal(out[1, 1], torch.zeros(3))


def test_global_loss_hand_computation_and_data_parallel_split():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = _norm([1.0, 1.0])
    rows = [[1.0, t[0]], [0.0, t[1]]]  # image i . text j, scale 1
    per_image = [-math.log(_softmax(rows[i])[i]) for i in range(2)]
    per_text = [-math.log(_softmax([rows[0][j], rows[1][j]])[j]) for j in range(2)]
    expected = (sum(per_image) / 2 + sum(per_text) / 2) / 2
    assert global_loss(image, text, torch.tensor(1.0)).item() == pytest.approx(expected, rel=1e-6)
    # open_clip's local loss: each process's rows against everything; their mean is the whole batch's loss
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    whole = global_loss(image, text, torch.tensor(5.0))
    parts = [global_loss(image[o:o + 3], text[o:o + 3], torch.tensor(5.0), image, text, offset=o) for o in (0, 3)]
    assert (sum(parts) / 2).item() == pytest.approx(whole.item(), rel=1e-6)


def test_text_tower_has_the_papers_size():
    assert count_parameters(SimZSSConfig(), 768) == pytest.approx(63e6, rel=0.02)  # ViT-B row of the poster
    assert count_parameters(SimZSSConfig.preset("small"), 384) == pytest.approx(40e6, rel=0.02)  # ViT-S row


@pytest.mark.parametrize("overrides,what", [(dict(tau=0), "tau"), (dict(concept_query="patch"), "concept_query"),
                                            (dict(text_width=30, text_heads=4), "text_heads"),
                                            (dict(concept_weight=-1), "concept_weight"),
                                            (dict(logit_scale_init=200.0), "logit_scale_max")])
def test_config_refuses_bad_values(overrides, what):
    with pytest.raises(OCZSSError, match=what):
        SimZSSConfig(**overrides)


def test_schedule_warms_up_then_decays_to_zero():
    s = SimZSSSchedule(batch_size=10, samples=1000, lr=1.0, warmup=0.1)
    assert s.steps == 100
    assert s.lr_at(0) == pytest.approx(0.1) and s.lr_at(9) == pytest.approx(1.0)
    assert s.lr_at(10) == pytest.approx(1.0) and s.lr_at(55) == pytest.approx(0.5)
    assert s.lr_at(99) < 1e-3
    with pytest.raises(OCZSSError, match="warmup"):
        SimZSSSchedule(warmup=1.0)


def test_pretrained_dinov2_fails_at_once_offline_naming_what_to_pass():
    with pytest.raises(OCZSSError, match=r"vit_base_patch14_dinov2.*HF_HUB_OFFLINE.*dinov2_vitb14_pretrain\.pth"):
        load_vision("vit_base_patch14_dinov2", "pretrained", 224)


@pytest.fixture(scope="module")
def tiny():
    cfg = SimZSSConfig.preset("tiny")
    vision = load_vision(cfg.vision, cfg.vision_weights, cfg.image_size)
    return cfg, vision, SimZSS(cfg, vision.width)


def test_vision_tokens_cls_and_patches_without_registers():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=28, patch_size=14, embed_dim=24, depth=1, num_heads=2, num_classes=0,
                            reg_tokens=4, dynamic_img_size=True).eval()
    tower, images = VisionTokens(vit), torch.randint(0, 256, (1, 42, 28, 3), dtype=torch.uint8)
    cls, patches = tower(images)
    full = vit.forward_features(tower.normalise(images))
    assert cls.shape == (1, 24) and patches.shape == (1, 3 * 2, 24)
    assert torch.allclose(cls, full[:, 0], atol=1e-5) and torch.allclose(patches, full[:, 5:], atol=1e-5)


def _batch() -> TextBatch:
    tokens = tokenizer()(["a dog on the grass", "a dog and a cat"])
    return TextBatch(tokens, torch.tensor([[[2], [5]], [[2], [5]]]), torch.tensor([[1, 2], [1, 3]]))


def test_cached_and_online_vision_tokens_give_the_same_loss(tiny):
    cfg, vision, model = tiny
    images = torch.randint(0, 256, (2, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8)
    batch = _batch()
    cls, patches = vision(images)  # what Stage 1 stores
    online = model.loss(batch, *vision(images))  # the tower run in the step
    online["loss"].backward()
    online_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    cached = model.loss(batch, cls.clone(), patches.clone())
    cached["loss"].backward()
    assert cached["loss"].item() == online["loss"].item()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), online_grads))
    model.zero_grad()
    half = model.loss(batch, cls.half(), patches.half())  # the cache's fp16
    assert half["loss"].item() == pytest.approx(online["loss"].item(), rel=1e-3)
    assert online["concept"].item() > 0 and online["global"].item() > 0


def test_dense_logits_project_patches_on_classes_and_upsample():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [0.0, 3.0], [4.0, 0.0]]])  # a 2 x 2 grid
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = dense_logits(patches, (2, 2), classes, (4, 6))
    assert logits.shape == (1, 2, 4, 6)
    assert logits.argmax(1)[0].tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0],
                                            [1, 1, 1, 0, 0, 0]]
    assert dense_logits(patches, (2, 2), classes, (2, 2))[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_segment_any_size_and_class_embeddings(tiny):
    _, vision, model = tiny
    classes = model.embed_classes(["dog", "grass", "sky"], ("a photo of a {}.", "a {}."))
    assert classes.shape == (3, vision.width)
    assert torch.allclose(classes.norm(dim=-1), torch.ones(3))
    out = segment(vision, torch.randn(2, 3, 45, 33), classes)
    assert out.shape == (2, 3, 45, 33)
    with pytest.raises(OCZSSError, match="smaller than one 14 x 14 patch"):
        segment(vision, torch.randn(1, 3, 10, 30), classes)
