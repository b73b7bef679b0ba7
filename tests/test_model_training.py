"""An optimiser step trains exactly the trainable parts; the §6 loss terms behave as the reference's."""

import torch
import torch.nn.functional as F

from oczss.model import OCZSSConfig, build_model
from oczss.model.losses import segmentation_loss


def test_step_leaves_clip_bit_identical_and_reaches_every_trainable_parameter():
    model = build_model(OCZSSConfig(backbone="tiny", weights="random", object_prompt_init="random", shared_gru=False))
    model.train()
    assert not model.encoder.clip.training  # the frozen CLIP stays in eval mode
    frozen = {k: v.clone() for k, v in model.encoder.clip.state_dict().items()}
    trainable = model.trainable_parameters()
    assert trainable and all(p.requires_grad for p in trainable)
    assert not any(p.requires_grad for p in model.encoder.clip.parameters())
    before = [p.detach().clone() for p in trainable]
    optimiser = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.01)

    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 96)
    labels = torch.randint(0, 6, (2, 24))
    text = F.normalize(torch.randn(4, 8, 32), dim=-1)
    target = torch.randint(0, 4, (2, 64, 96))
    target[:, :8] = 255
    loss = model.loss(model(images, labels, text), target)["total"]
    loss.backward()
    names = {id(p): n for n, p in model.named_parameters()}
    no_grad = [names[id(p)] for p in trainable if p.grad is None or not p.grad.any()]
    assert not no_grad, f"no gradient reached {no_grad}"
    optimiser.step()

    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.clip.state_dict().items())
    assert all(not torch.equal(p, b) for p, b in zip(trainable, before))
    assert all(p.grad is None for p in model.encoder.clip.parameters())
    assert not any(k.startswith("encoder.clip.") for k in model.trainable_state_dict())


def test_loss_terms_and_ignore_handling():
    torch.manual_seed(1)
    outputs = {"decoder": torch.randn(2, 3, 8, 8), "mps": torch.randn(2, 3, 8, 8)}
    target = torch.randint(0, 2, (2, 8, 8))  # class 2 absent from both images
    target[0, :2] = 255
    terms = segmentation_loss(outputs, target)
    assert set(terms) == {"decoder_focal", "decoder_dice", "mps_focal", "mps_dice", "total"}
    assert torch.allclose(terms["total"], sum(v for k, v in terms.items() if k != "total"))

    # focal: per-map pixel mean over all 2 x 3 maps, / num_masks (= 4 present (image, class) pairs), x 100
    x, t = outputs["decoder"], F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    t[0, :, :2] = 0  # ignore pixels: all-zero targets
    p = torch.sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    focal = F.binary_cross_entropy_with_logits(x, t, reduction="none") * (1 - p_t) ** 2 * (0.25 * t + 0.75 * (1 - t))
    assert torch.allclose(terms["decoder_focal"], 100 * focal.mean((2, 3)).sum() / 4, rtol=1e-5)

    # dice only on present classes: the absent class's logits do not move it; they do move the focal term
    moved = {k: v.clone() for k, v in outputs.items()}
    moved["decoder"][:, 2] += 3
    again = segmentation_loss(moved, target)
    assert torch.allclose(again["decoder_dice"], terms["decoder_dice"])
    assert not torch.allclose(again["decoder_focal"], terms["decoder_focal"])

    # ignore pixels count as negatives by default, and not at all when excluded
    at_ignore = {k: v.clone() for k, v in outputs.items()}
    at_ignore["mps"][0, :, :2] += 5
    assert not torch.allclose(segmentation_loss(at_ignore, target)["mps_focal"], terms["mps_focal"])
    excluded = segmentation_loss(outputs, target, exclude_ignore=True)
    assert torch.allclose(segmentation_loss(at_ignore, target, exclude_ignore=True)["total"], excluded["total"])
