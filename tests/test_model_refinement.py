"""Granular attention (eqs. 11-12) against a literal per-projection implementation; ORA's structure (eqs. 7-10)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.model.granular import GranularProjections
from oczss.model.refinement import ORA, CrossAttentionStack


def literal_multiscale(module: GranularProjections, o: int, x: torch.Tensor, grid) -> torch.Tensor:
    """Eq. 11 then eq. 12 for projection o: concat(DW_Conv(3x3, r = d) for each d, GAP) -> Conv(1x1, 5D, D)."""
    b, m, d = x.shape
    image = x.transpose(1, 2).reshape(b, d, *grid)
    branches = []
    for conv in module.depthwise:
        r = conv.dilation[0]
        weight, bias = conv.weight[o * d:(o + 1) * d], conv.bias[o * d:(o + 1) * d]
        branches.append(F.conv2d(image, weight, bias, padding=r, dilation=r, groups=d))
    branches.append(image.mean((2, 3), keepdim=True).expand(-1, -1, *grid))  # GAP
    x_in = torch.cat(branches, dim=1)  # [B, 5D, h, w]
    weight = module.pointwise[o].reshape(-1, d).t()  # [D_out, 5D], input channels ordered branch by branch
    out = F.conv2d(x_in, weight[:, :, None, None], module.bias[o])
    return out.flatten(2).transpose(1, 2)


def test_fused_granular_projections_equal_eqs_11_12():
    torch.manual_seed(0)
    module = GranularProjections(dim=8, count=3, dilations=(1, 6, 12, 18))
    for grid in [(8, 8), (5, 13), (20, 20)]:
        x = torch.randn(2, grid[0] * grid[1], 8)
        outputs = module(x, grid)
        assert len(outputs) == 3
        for o, out in enumerate(outputs):
            assert torch.allclose(out, literal_multiscale(module, o, x, grid), atol=1e-5)
    assert sum(p.numel() for p in module.parameters()) == 3 * (4 * (9 * 8 + 8) + 5 * 8 * 8 + 8)


def test_ora_shares_its_modules_across_iterations_and_refines_both_streams():
    torch.manual_seed(1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    one = ORA(16, 1, 8, True, (1, 2), "gru", shared_gru=True)
    four = ORA(16, 4, 8, True, (1, 2), "gru", shared_gru=True)
    assert count(one) == count(four)  # S iterations reuse one set of modules (App. A)
    assert four.gru_objects is four.gru_patches
    separate = ORA(16, 4, 8, True, (1, 2), "gru", shared_gru=False)
    assert count(separate) == count(four) + count(nn.GRUCell(16, 16))
    assert ORA(16, 4, 8, True, (1, 2), "residual", shared_gru=True).gru_objects is None

    of, pf = torch.randn(2, 3, 16), torch.randn(2, 12, 16)
    new_of, new_pf = four(of, pf, (3, 4))
    assert new_of.shape == of.shape and new_pf.shape == pf.shape
    assert not torch.allclose(new_of, of) and not torch.allclose(new_pf, pf)
    # eq. 9 reads the refined OF: other object features change the refined patches
    assert not torch.allclose(four(of + 1, pf, (3, 4))[1], new_pf)


def test_cross_attention_stack_refines_patches_only():
    torch.manual_seed(2)
    stack = CrossAttentionStack(16, layers=2, head_dim=8)
    of, pf = torch.randn(2, 3, 16), torch.randn(2, 12, 16)
    new_of, new_pf = stack(of, pf, (3, 4))
    assert torch.equal(new_of, of) and not torch.allclose(new_pf, pf)
    assert len(stack.q) == 2


def test_ora_starts_from_clips_features_with_the_keep_gate_and_not_with_pytorchs_init():
    import torch.nn.functional as F

    from oczss.model.refinement import ORA_GATE_BIAS

    torch.manual_seed(0)
    pf, of = torch.randn(2, 64, 96), torch.randn(2, 4, 96)
    cosines = {}
    for name, bias in (("keep", ORA_GATE_BIAS), ("pytorch", None)):
        torch.manual_seed(1)
        ora = ORA(96, 4, 32, True, (1, 2), "gru", True, bias)
        with torch.no_grad():
            _, out = ora(of, pf, (8, 8))
        cosines[name] = F.cosine_similarity(out, pf, dim=-1)
        if bias is not None:
            assert torch.allclose(ora.gru_objects.bias_ih[96:192], torch.full((96,), bias))
    assert cosines["keep"].min() > 0.999  # the stated tolerance: PF_S equals CLIP's PF_0 up to cosine 0.999
    assert cosines["pytorch"].mean() < 0.9


def test_the_mps_path_reads_h_not_the_refined_features_by_default():
    from oczss.model import OCZSSConfig, build_model

    model = build_model(OCZSSConfig(backbone="tiny", weights="random", num_vpt=2, num_objects=3, ora_iterations=2,
                                    dilations=(1, 2), mask_source="region")).eval()
    assert model.config.mps_on_refined is False
    images = torch.randn(1, 3, 64, 64)
    text = torch.nn.functional.normalize(torch.randn(4, 2, 32), dim=-1)
    with torch.no_grad():
        before = model(images, None, text)
        for p in model.refiner.parameters():
            p.add_(torch.randn_like(p))
        after = model(images, None, text)
    assert torch.allclose(before["mps"], after["mps"]) and not torch.allclose(before["decoder"], after["decoder"])
