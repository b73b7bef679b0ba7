"""Table 8's Slot Attention row (model/slots.py), the Table 7/13 No Mask and Table 8 recipes, and the refiner's own
learning rate."""

import dataclasses

import torch

from oczss.model import OCZSSConfig, build_model
from oczss.model.slots import SlotAttention
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.stage2.recipes import resolve
from oczss.pipeline.training.loop import train


def test_slots_compete_for_patches_and_are_a_set():
    torch.manual_seed(0)
    module = SlotAttention(16, iterations=3, gate_bias=None)
    of, pf = torch.randn(2, 4, 16), torch.randn(2, 10, 16)
    attn = module.assign(module.k(module.norm_inputs(pf)), of)
    assert attn.shape == (2, 10, 4) and torch.allclose(attn.sum(-1), torch.ones(2, 10))  # softmax over the slots
    slots, patches = module(of, pf, (2, 5))
    assert slots.shape == of.shape and patches.shape == pf.shape and not torch.allclose(patches, pf)
    perm = torch.tensor([2, 0, 3, 1])  # permuting the slots permutes the result and leaves the patches alone
    slots_p, patches_p = module(of[:, perm], pf, (2, 5))
    assert torch.allclose(slots_p, slots[:, perm], atol=1e-5) and torch.allclose(patches_p, patches, atol=1e-5)
    order = torch.randperm(10)  # the patches are a set for the slots
    slots_q, patches_q = module(of, pf[:, order], (2, 5))
    assert torch.allclose(slots_q, slots, atol=1e-5) and torch.allclose(patches_q, patches[:, order], atol=1e-5)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(SlotAttention(16, 1, None)) == count(module)  # one set of weights for every iteration
    once = SlotAttention(16, 1, None)
    once.load_state_dict(module.state_dict())
    assert not torch.allclose(once(of, pf, (2, 5))[0], slots)  # the same weights, iterated S times


def test_slot_attention_model_and_recipes():
    slot, ora = resolve("voc-t8-slot", None), resolve("voc-t8-ora", None)
    assert slot.model["refiner"] == "slot_attention" and not slot.model["granular"]
    assert OCZSSConfig(**slot.model).ora_iterations == OCZSSConfig(**ora.model).ora_iterations == 4
    assert resolve("voc-t7-none", None).model == resolve("voc-t6-ora", None).model  # 87.1 = Table 6 row 2
    assert resolve("coco-vpt10", None).model["num_vpt"] == 10
    assert resolve("coco-inductive", None).model["num_vpt"] == 100  # OTSeg's COCO config
    model = build_model(OCZSSConfig(**{**slot.model, "backbone": "tiny", "weights": "random"}))
    assert isinstance(model.refiner, SlotAttention)
    groups = model.parameter_groups()
    assert {id(p) for p in groups["refiner"]} == {id(p) for p in model.refiner.parameters()}
    assert sum(len(g) for g in groups.values()) == len(model.trainable_parameters())
    images = torch.randn(1, 3, 64, 64)
    out = model(images, torch.randint(0, 6, (1, 16)), torch.nn.functional.normalize(torch.randn(3, 2, 32), dim=-1))
    assert out["decoder"].shape == (1, 3, 64, 64)


def test_the_refiner_trains_at_its_own_rate(demo_stage1, tmp_path):
    cfg = resolve("demo", None)
    cfg = dataclasses.replace(cfg, model=dict(cfg.model), text=demo_stage1["text"], batch_size=2, workers=0, iters=1,
                              warmup_iters=0, refiner_lr_mult=1.0)
    train(cfg, out=tmp_path / "run", data_root=demo_stage1["root"], cache=demo_stage1["cache"], device="cpu",
          progress=False)
    groups = load(tmp_path / "run" / "last.pt")["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [cfg.lr * cfg.lr_mult, cfg.lr]
