"""CASS §3.2: graphs, spectral matching, low-rank eigenscaling and distillation, each against an independent
computation (numpy / scipy / brute force / hand values) on small random inputs."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import wasserstein_distance

from oczss.model.cass.attention import gaussian_window
from oczss.model.cass.config import CASSConfig
from oczss.model.cass.distill import distilled_graph
from oczss.model.cass.graphs import key_graph, match_range, resize_keys
from oczss.model.cass.lowrank import eigenscale, energy_rank, low_rank_graph, randomized_svd
from oczss.model.cass.matching import (hungarian, key_spectrum, normalise_spectrum, pair_heads, spectral_distances,
                                       tie_break_assignment, wasserstein)


def psd(n, rank, gen, batch=()):
    k = torch.randn(*batch, n, rank, generator=gen, dtype=torch.float64)
    return k @ k.transpose(-1, -2)


def lowrank(graphs, **kw):
    args = dict(rank=10, solver="exact", rank_search="fixed", energy_threshold=0.95, scaling=False, high=1.5,
                low=0.5, iterations=2, seed=0)
    return low_rank_graph(graphs, **{**args, **kw})


def test_hungarian_equals_brute_force_over_all_permutations_of_4_heads():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(6, 4, 4, generator=gen)
    sigma = hungarian(cost, 0.0)
    assert sigma.shape == (6, 4) and sigma.dtype == torch.long
    for b in range(6):
        totals = {p: sum(float(cost[b, i, p[i]]) for i in range(4)) for p in itertools.permutations(range(4))}
        best = min(totals, key=totals.get)
        assert tuple(sigma[b].tolist()) == best


def lexicographic_brute_force(cost, tolerance):
    totals = {p: sum(cost[i, p[i]] for i in range(len(cost))) for p in itertools.permutations(range(len(cost)))}
    return min(p for p, total in totals.items() if total <= min(totals.values()) + tolerance)


def test_head_matching_ties_go_to_the_lexicographically_smallest_order_whatever_the_noise():
    rng = np.random.default_rng(0)
    a, b = rng.random(8), rng.random(8)
    separable = 1 - (a[:, None] + b[None, :])  # W[i, j] = a_i + b_j: every order costs the same
    noise = rng.standard_normal((8, 8)) * 1e-12
    scipy_orders, ours = set(), set()
    for trial in range(8):  # the same noise values, permuted over the entries: far below the tolerance
        noisy = separable + rng.permutation(noise.ravel()).reshape(8, 8)
        scipy_orders.add(tuple(linear_sum_assignment(noisy)[1]))
        ours.add(tuple(tie_break_assignment(noisy, 1e-6)))
    assert len(scipy_orders) > 1 and ours == {tuple(range(8))}  # scipy follows the noise; the rule does not
    for trial in range(15):  # costs on a 1/4 grid: blocks of exact ties and unique pairs, 6 heads (720 orders)
        cost = rng.integers(0, 4, (6, 6)) / 4
        expected = lexicographic_brute_force(cost, 1e-6)
        for _ in range(3):
            noisy = cost + rng.standard_normal((6, 6)) * 1e-12
            assert tuple(tie_break_assignment(noisy, 1e-6)) == expected
    # the tolerance bounds the totals: the identity (total 1.5e-6 here) wins within 2e-6 of the best (0), not 1e-6
    cost = np.array([[1.5e-6, 0.0], [0.0, 0.0]])
    assert tie_break_assignment(cost, 2e-6).tolist() == [0, 1] and tie_break_assignment(cost, 1e-6).tolist() == [1, 0]
    assert hungarian(torch.from_numpy(separable + noise).float()[None], 1e-6).tolist() == [list(range(8))]


def test_spectrum_from_the_gram_matrix_equals_the_graphs_top_eigenvalues():
    gen = torch.Generator().manual_seed(1)
    for d, k in ((8, 20), (24, 20), (6, 40)):  # d < k pads zeros; k > N keeps N values
        keys = torch.randn(2, 3, 30, d, generator=gen)
        expected = np.linalg.eigvalsh(key_graph(keys.double(), 0.125).numpy())[..., ::-1][..., :min(k, 30)]
        got = key_spectrum(keys, 0.125, k)
        assert got.shape == (2, 3, min(k, 30)) and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-9)


def test_wasserstein_of_sorted_values_matches_the_closed_form():
    gen = torch.Generator().manual_seed(2)
    u = normalise_spectrum(torch.rand(5, 20, generator=gen, dtype=torch.float64))
    v = normalise_spectrum(torch.rand(5, 20, generator=gen, dtype=torch.float64))
    assert torch.allclose(u.sum(-1), torch.ones(5, dtype=torch.float64))
    for a, b, w in zip(u, v, wasserstein(u, v)):
        # W1 between the two 20-atom empirical distributions is the mean gap of the sorted atoms; ours is the sum
        assert float(w) == pytest.approx(20 * wasserstein_distance(a.numpy(), b.numpy()), rel=1e-12)
    vfm, clip = u.view(1, 5, 20), v.view(1, 5, 20)
    table = spectral_distances(vfm, clip)
    for i, j in itertools.product(range(5), range(5)):  # rows VFM heads, columns CLIP heads
        assert float(table[0, i, j]) == pytest.approx(float(wasserstein(u[i], v[j])))


def test_head_pairing_transposed_like_the_code_and_matched_like_the_paper():
    distances = torch.arange(9.0).view(1, 3, 3)  # W[vfm i, clip j] = 3 i + j
    sigma = torch.tensor([[1, 2, 0]])  # VFM 0 <-> CLIP 1, VFM 1 <-> CLIP 2, VFM 2 <-> CLIP 0 (not an involution)
    head, w = pair_heads(sigma, distances, "transposed")
    # code: CLIP head i is mixed with VFM head sigma(i), weighted by W[i, sigma(i)]
    assert head.tolist() == [[1, 2, 0]] and w.tolist() == [[1.0, 5.0, 6.0]]
    head, w = pair_heads(sigma, distances, "matched")
    # paper: CLIP head sigma(i) is mixed with VFM head i, weighted by W[i, sigma(i)]
    assert head.tolist() == [[2, 0, 1]] and w.tolist() == [[6.0, 1.0, 5.0]]


@pytest.mark.parametrize("solver", ["exact", "randomized"])
def test_low_rank_at_full_rank_returns_the_graph(solver):
    gen = torch.Generator().manual_seed(3)
    graphs = psd(12, 12, gen, (2, 3))
    assert torch.allclose(lowrank(graphs, rank=12, solver=solver), graphs, atol=1e-9)


def test_low_rank_keeps_the_top_eigenpairs():
    gen = torch.Generator().manual_seed(4)
    graph = psd(16, 16, gen)
    values, vectors = np.linalg.eigh(graph.numpy())
    top = vectors[:, -3:] @ np.diag(values[-3:]) @ vectors[:, -3:].T
    np.testing.assert_allclose(lowrank(graph, rank=3).numpy(), top, atol=1e-9)
    exact_rank_3 = psd(16, 3, gen)  # a graph of rank 3: the randomized range finder recovers it exactly
    assert torch.allclose(lowrank(exact_rank_3, rank=3, solver="randomized"), exact_rank_3, atol=1e-9)
    # energy search over the whole spectrum: the same top-r graph, r found per matrix
    r = int(energy_rank(torch.from_numpy(values[::-1].copy()), 0.8))
    keep = vectors[:, -r:] @ np.diag(values[-r:]) @ vectors[:, -r:].T
    got = lowrank(graph, rank_search="energy", energy_threshold=0.8)
    np.testing.assert_allclose(got.numpy(), keep, atol=1e-9)


def test_fresh_sketches_are_the_authors_svd_lowrank_calls_and_the_fixed_one_is_repeatable():
    gen = torch.Generator().manual_seed(7)
    graphs = psd(30, 20, gen, batch=(2, 3))
    torch.manual_seed(42)
    u, s, v = randomized_svd(graphs, 10, 2, seed=0, sketch="fresh")
    torch.manual_seed(42)  # the authors: one torch.svd_lowrank(A, q=10) per window, then per head, in that order
    for b, h in itertools.product(range(2), range(3)):
        cu, cs, cv = torch.svd_lowrank(graphs[b, h], q=10, niter=2)
        assert torch.allclose(s[b, h], cs, rtol=1e-10)
        assert torch.allclose(u[b, h] * s[b, h] @ v[b, h].T, cu * cs @ cv.T, atol=1e-9)
    again = randomized_svd(graphs, 10, 2, seed=0, sketch="fresh")[1]
    assert not torch.allclose(again, s, rtol=1e-9)  # the next windows draw other sketches
    fixed = randomized_svd(graphs, 10, 2, seed=0)[1]
    torch.manual_seed(0)
    assert torch.equal(randomized_svd(graphs, 10, 2, seed=0)[1], fixed)  # the global generator plays no part
    alone = randomized_svd(graphs[1, 2], 10, 2, seed=0)[1]
    assert torch.allclose(alone, fixed[1, 2], rtol=1e-12)  # nor the window's batch or position


def test_energy_rank_hand_example():
    values = torch.tensor([[6.0, 3.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    assert energy_rank(values, 0.9).tolist() == [2, 4]  # 6/10, 9/10 >= 0.9 | 1/4 ... 4/4
    assert energy_rank(values, 0.95).tolist() == [3, 4]


def test_eigenscaling_hand_example():
    s = torch.tensor([10.0, 5.0, 2.0, 1.0], dtype=torch.float64)
    got = eigenscale(s, torch.ones(4, dtype=torch.bool), 1.5, 0.5)
    # (s - 1) / 9 * (15 - 0.5) + 0.5: [s_min, s_max] = [1, 10] -> [0.5, 15]
    assert got.tolist() == pytest.approx([15.0, 5.0 + 35 / 18, 2.0 + 1 / 9, 0.5])
    kept = eigenscale(s, torch.tensor([True, True, False, False]), 1.5, 0.5)
    assert kept[:2].tolist() == pytest.approx([15.0, 2.5])  # min / max over the kept values only


def test_gaussian_window_values():
    g = gaussian_window((3, 4), 5.0)
    assert g.shape == (12, 12) and torch.equal(g, g.T) and torch.allclose(g.diagonal(), torch.ones(12))
    for p, q in itertools.product(range(12), range(12)):
        d2 = (p // 4 - q // 4) ** 2 + (p % 4 - q % 4) ** 2
        assert float(g[p, q]) == pytest.approx(np.exp(-d2 / 50.0), rel=1e-6)


def test_range_matching_and_key_resizing():
    gen = torch.Generator().manual_seed(5)
    x, like = torch.randn(2, 3, 5, 5, generator=gen), 4 * torch.randn(2, 3, 5, 5, generator=gen) + 1
    per_head = match_range(x, like, dims=2)
    assert torch.allclose(per_head.amin((-1, -2)), like.amin((-1, -2)), atol=1e-5)
    assert torch.allclose(per_head.amax((-1, -2)), like.amax((-1, -2)), atol=1e-5)
    per_window = match_range(x, like, dims=3)
    assert torch.allclose(per_window.flatten(1).amax(-1), like.flatten(1).amax(-1), atol=1e-5)
    keys = torch.randn(2, 3, 8 * 6, 4, generator=gen)  # an 8 x 6 grid of 4-channel keys
    resized = resize_keys(keys, (8, 6), (4, 3))
    grid = keys.view(2, 3, 8, 6, 4)
    assert resized.shape == (2, 3, 12, 4)  # an exact 2x bilinear downsample averages each 2 x 2 block
    assert torch.allclose(resized.view(2, 3, 4, 3, 4), grid.unflatten(2, (4, 2)).unflatten(4, (3, 2)).mean((3, 5)),
                          atol=1e-6)


def reference_distill(clip_keys, vfm_keys, scale, cfg):
    """The authors' per-window, per-head loop, in numpy (exact eigendecomposition, fixed rank)."""
    out = np.zeros(clip_keys.shape[:2] + (clip_keys.shape[2],) * 2)
    for b in range(clip_keys.shape[0]):
        clip = [scale * k @ k.T for k in clip_keys[b].double().numpy()]
        vfm = [scale * k @ k.T for k in vfm_keys[b].double().numpy()]
        spectra = []
        for graphs in (vfm, clip):
            vals = np.stack([np.sort(np.linalg.eigvalsh(a))[::-1][:cfg.num_eigenvalues] for a in graphs])
            spectra.append(vals / np.abs(vals).sum(1, keepdims=True))
        heads = len(clip)
        cost = np.array([[1 - np.abs(np.sort(spectra[0][i]) - np.sort(spectra[1][j])).sum() for j in range(heads)]
                         for i in range(heads)])
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows, cols):
            w = 1 - cost[i, j]
            vals, vecs = np.linalg.eigh(vfm[j])
            s, u = vals[::-1][:cfg.rank], vecs[:, ::-1][:, :cfg.rank]
            s = (s - s.min()) / (s.max() - s.min()) * (1.5 * s.max() - 0.5 * s.min()) + 0.5 * s.min()
            approx = u @ np.diag(s) @ u.T
            np.fill_diagonal(approx, 0)
            target = clip[i]
            approx = (approx - approx.min()) / (approx.max() - approx.min()) * (target.max() - target.min()) + \
                target.min()
            out[b, i] = (10 * w * approx + target) / (10 * w + 1)
    return out


def test_distilled_graph_equals_the_authors_loop():
    gen = torch.Generator().manual_seed(6)
    clip_keys = torch.randn(2, 4, 25, 16, generator=gen)
    vfm_keys = torch.randn(2, 4, 25, 12, generator=gen) * torch.linspace(0.2, 3, 4).view(1, 4, 1, 1)
    cfg = CASSConfig(lowrank_solver="exact", num_eigenvalues=8, rank=5)
    got = distilled_graph(clip_keys, vfm_keys, 0.25, cfg)
    assert got.shape == (2, 4, 25, 25) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), reference_distill(clip_keys, vfm_keys, 0.25, cfg), rtol=1e-4, atol=1e-4)
    # without graph matching: head i with head i, a plain average of the raw graphs (Exp.#3)
    plain = distilled_graph(clip_keys, vfm_keys, 0.25, CASSConfig(graph_matching=False, low_rank=False,
                                                                  eigenscaling=False))
    expected = (key_graph(clip_keys, 0.25) + key_graph(vfm_keys, 0.25)) / 2
    assert torch.allclose(plain, expected, atol=1e-5)
