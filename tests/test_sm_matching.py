"""Split matching (Eq. 2): Hungarian against brute force, the groups kept apart, the costs and losses by hand."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from oczss.model.losses import IGNORE
from oczss.model.sm import losses
from oczss.model.sm.matching import bce_cost, dice_cost, focal_cost, hungarian, split_match
from oczss.model.sm.targets import image_targets

LOG2 = math.log(2)


def brute_force(cost: torch.Tensor) -> float:
    """The least total cost of matching every target (column) to its own query (row)."""
    k, t = cost.shape
    return min(sum(float(cost[q, j]) for j, q in enumerate(rows)) for rows in itertools.permutations(range(k), t))


@pytest.mark.parametrize("shape", [(3, 3), (5, 2), (6, 4), (4, 1)])
def test_hungarian_finds_the_brute_force_optimum(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for _ in range(5):
        cost = torch.rand(shape, generator=g)
        queries, targets = hungarian(cost)
        assert targets.tolist() == list(range(shape[1]))  # every target matched, in target order
        assert len(set(queries.tolist())) == shape[1]
        assert float(cost[queries, targets].sum()) == pytest.approx(brute_force(cost), abs=1e-6)


def test_split_match_keeps_each_group_to_its_own_targets():
    g = torch.Generator().manual_seed(0)
    seen_cost, cand_cost = torch.rand(4, 2, generator=g), torch.rand(3, 3, generator=g)
    queries, targets = split_match(seen_cost, cand_cost)
    seen = targets < 2
    assert (queries[seen] < 4).all() and (queries[~seen] >= 4).all()
    assert sorted(targets.tolist()) == list(range(5))
    # each group's part is its own optimum
    assert float(seen_cost[queries[seen], targets[seen]].sum()) == pytest.approx(brute_force(seen_cost), abs=1e-6)
    assert float(cand_cost[queries[~seen] - 4, targets[~seen] - 2].sum()) == pytest.approx(brute_force(cand_cost),
                                                                                          abs=1e-6)


def test_an_empty_group_matches_nothing():
    queries, targets = split_match(torch.rand(3, 2), torch.rand(2, 0))
    assert targets.tolist() == [0, 1] and (queries < 3).all()


def test_match_costs_by_hand():
    assert float(focal_cost(torch.zeros(1, 1), 0.25, 2.0)) == pytest.approx((0.25 - 0.75) * 0.25 * LOG2)
    masks = torch.tensor([[30.0, 30.0, -30.0, -30.0], [0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert dice_cost(masks, targets)[:, 0].tolist() == pytest.approx([1 - 3 / 4, 1 - 2 / 4])  # (2·1+1)/(2+1+1)
    expected = F.binary_cross_entropy_with_logits(masks, targets.expand(2, -1), reduction="none").mean(-1)
    assert bce_cost(masks, targets)[:, 0].tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_losses_by_hand():
    # focal, σ(0) = 0.5: positive α (1 - p)^γ log 2, negative (1 - α) p^γ log 2
    scores = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    expected = 0.25 * 0.25 * LOG2 + 3 * 0.75 * 0.25 * LOG2  # query 0 matched to column 1, query 1 unmatched
    assert float(losses.classification_loss(scores, torch.tensor([1, -1]), 0.25, 2.0)) == pytest.approx(expected)
    masks = torch.tensor([[30.0, 30.0, -30.0, -30.0]])
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert float(losses.iou_loss(masks, target)) == pytest.approx(1 - 2 / 3, abs=1e-6)  # (1+1)/(2+1-1+1)
    assert float(losses.dice_loss(masks, target)) == pytest.approx(1 - 3 / 4, abs=1e-6)
    v = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    assert losses.cosine_loss(v, torch.tensor([[0.0, 3.0], [1.0, 1.0]])).tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    pixel_scores = torch.tensor([[[2.0, 5.0]], [[0.0, 1.0]]])  # [N=2, 1, 2]
    ce, focal = losses.mfe_loss(pixel_scores, torch.tensor([[1, IGNORE]]), 0.25, 2.0)
    assert float(ce) == pytest.approx(-math.log(math.exp(0) / (math.exp(2) + math.exp(0))))
    p0, p1 = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(0.0))
    by_hand = 0.75 * p0 ** 2 * -torch.log(1 - p0) + 0.25 * (1 - p1) ** 2 * -torch.log(p1)
    assert float(focal) == pytest.approx(float(by_hand), rel=1e-5)


def test_targets_by_hand():
    target = torch.tensor([[0, 0, IGNORE, IGNORE],
                           [2, 2, IGNORE, IGNORE]])
    cands = torch.tensor([[5, 1, 1, 1],
                          [5, 5, 3, 4]])
    t = image_targets(target, cands, (2, 4), num_seen=3, limit=2, unannotated=True, min_fraction=0.0)
    assert t.classes.tolist() == [0, 2]
    assert t.seen_masks.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0]]
    # candidate 5 lies on annotated pixels only (dropped); 1 keeps 2 pixels, 3 and 4 one each: the 2 largest stay
    assert t.candidates.tolist() == [1, 3]
    assert t.candidate_masks.tolist() == [[0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 0]]
    assert t.pixel_labels.tolist() == [[0, 0, 3, 3], [2, 2, 4, IGNORE]]  # Y_p: columns of E = cat(A_s, C_u)
    everywhere = image_targets(target, cands, (2, 4), num_seen=3, limit=5, unannotated=False, min_fraction=0.2)
    assert everywhere.candidates.tolist() == [1, 5]  # 3 and 4 (1/8 of the pixels each) are below 0.2
    assert everywhere.pixel_labels.tolist() == [[0, 0, 3, 3], [2, 2, IGNORE, IGNORE]]  # seen labels win
    none = image_targets(target, None, (1, 2), num_seen=3, limit=2, unannotated=True, min_fraction=0.0)
    assert none.candidates.numel() == 0 and none.seen_masks.shape == (2, 2)
