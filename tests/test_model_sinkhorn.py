"""Sinkhorn (docs/protocol.md §5) against the reference iteration, its marginals, and the MPS / MPSA score formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from oczss.model import sinkhorn
from oczss.model.decoder import Decoder, prompt_scores


def reference_sinkhorn(cost, eps=0.05, max_iters=100, tol=1e-6):
    """The reference's loop as the protocol states it: potentials u, v, a host check of mean|du| every iteration."""
    m, n = cost.shape[-2:]
    kernel = lambda u, v: (-cost + u.unsqueeze(-1) + v.unsqueeze(-2)) / eps  # noqa: E731
    u = torch.zeros(cost.shape[:-1], dtype=cost.dtype)
    v = torch.zeros(cost.shape[:-2] + (n,), dtype=cost.dtype)
    for _ in range(max_iters):
        u_prev = u
        u = eps * (math.log(1 / m + 1e-8) - torch.logsumexp(kernel(u, v), dim=-1)) + u
        v = eps * (math.log(1 / n + 1e-8) - torch.logsumexp(kernel(u, v), dim=-2)) + v
        if (u - u_prev).abs().mean().item() < tol:
            break
    return torch.exp(kernel(u, v))


@pytest.mark.parametrize("max_iters", [1, 3, 100])
def test_plan_and_gradient_equal_the_reference_loop(max_iters):
    torch.manual_seed(0)
    cos = F.normalize(torch.randn(2, 3, 40, 6), dim=-1) @ F.normalize(torch.randn(2, 3, 6, 6), dim=-1)
    cost = (1 - cos).double().requires_grad_()
    weights = torch.randn(2, 3, 40, 6, dtype=torch.float64)
    ours = sinkhorn(cost, max_iters=max_iters)
    (grad,) = torch.autograd.grad((ours * weights).sum(), cost)
    ref = reference_sinkhorn(cost.float(), max_iters=max_iters)
    (ref_grad,) = torch.autograd.grad((ref * weights.float()).sum(), cost)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-7)
    assert torch.allclose(grad, ref_grad, rtol=1e-3, atol=1e-6)


def test_marginals_are_uniform():
    torch.manual_seed(1)
    cost = torch.rand(4, 5, 64, 8) * 2
    plan = sinkhorn(cost)
    assert plan.shape == cost.shape and torch.all(plan >= 0)
    assert torch.allclose(plan.sum(-2), torch.full((4, 5, 8), 1 / 8), rtol=1e-4)  # columns: 1/N
    assert torch.allclose(plan.sum(-1), torch.full((4, 5, 64), 1 / 64), rtol=1e-3)  # rows: 1/M
    # the entropic plan puts more mass where the cost is lower
    assert (plan * cost).sum() < (cost / (64 * 8)).sum()


def test_mps_score_equals_its_formula():
    torch.manual_seed(2)
    q, keys = torch.randn(1, 2, 3, 4), torch.randn(1, 5, 4)  # B=1, K=2 classes, N=3 prompts, M=5 patches, C=4
    plan, score = prompt_scores(q, keys, eps=0.05, max_iters=100)
    for k in range(2):
        cos = torch.tensor([[float(F.cosine_similarity(keys[0, m], q[0, k, n], dim=0)) for n in range(3)]
                            for m in range(5)])
        t = reference_sinkhorn(1 - cos)
        assert torch.allclose(plan[0, k], t, rtol=1e-3, atol=1e-6)
        expected = [sum(5 * 3 * float(t[m, n]) * float(cos[m, n]) for n in range(3)) for m in range(5)]
        assert torch.allclose(score[0, k], torch.tensor(expected), rtol=1e-3, atol=1e-5)


def test_decoder_outputs_follow_the_descriptor_mps_and_gating():
    torch.manual_seed(3)
    decoder = Decoder(dim=8, layers=3, eps=0.05, max_iters=100).eval()
    text, g, memory = torch.randn(4, 2, 8), torch.randn(3, 8), torch.randn(3, 6, 8)
    logits, mps = decoder(text, g, memory, memory)
    t = text.expand(3, -1, -1, -1)
    q = decoder.q_proj(torch.cat([g[:, None, None] * t, t], dim=-1))  # concat(g ⊙ t, t), product first
    assert torch.allclose(mps, prompt_scores(q, memory, 0.05, 100)[1], atol=1e-5)
    scores = []
    for layer in decoder.layers:
        q, score = layer(q, memory)
        scores.append(score)
    a3 = prompt_scores(decoder.last_q(q), decoder.last_k(memory), 0.05, 100)[1]
    expected = a3 * torch.sigmoid(scores[0]).sqrt() * torch.sigmoid(scores[1]).sqrt()
    assert torch.allclose(logits, expected, atol=1e-5)
