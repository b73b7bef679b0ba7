"""The candidates' source (§3.2): Eq. 1's seeds, K-Means, mask fusion, and the candidate function on a tiny CLIP."""

import pytest
import torch
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.clip import load_tower
from oczss.model.losses import IGNORE
from oczss.model.sm import CandidateParams, unseen_candidates
from oczss.model.sm.kmeans import fuse, multiscale_kmeans, spherical_kmeans, window_seeds

PARAMS = CandidateParams(grid=8, windows=(2, 4), iters=3, threshold=0.9, max_candidates=5)


@pytest.fixture(scope="module")
def visual():
    return load_tower("tiny", "random", "visual").module


def test_eq1_seeds_are_window_means_on_half_window_strides():
    grid = torch.arange(25.0).view(1, 1, 5, 5)
    # s = 4: I = J = {0, 1} (stride 2 stops at 0; the last start H - s = 1 is included)
    seeds = window_seeds(grid, 4)[0, :, 0]
    assert seeds.tolist() == [grid[0, 0, i:i + 4, j:j + 4].mean().item() for i in (0, 1) for j in (0, 1)]
    # s = 2: stride 1, I = J = {0, 1, 2, 3}
    assert window_seeds(grid, 2).shape == (1, 16, 1)
    assert window_seeds(grid, 9).shape == (1, 1, 1)  # a window larger than the grid is the whole grid


def test_kmeans_separates_two_directions_and_fusion_joins_what_is_alike():
    x = F.normalize(torch.tensor([[[1.0, 0.05], [1.0, -0.05], [0.05, 1.0], [-0.05, 1.0]]]), dim=-1)
    seeds = F.normalize(torch.tensor([[[1.0, 0.3], [0.3, 1.0]]]), dim=-1)
    centroids = spherical_kmeans(x, seeds, iters=3)
    assert torch.allclose(centroids, torch.eye(2)[None], atol=1e-6)
    c = F.normalize(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.99, 0.1], [0.1, 0.99], [-1.0, 0.0]]]), dim=-1)
    assert fuse(c, 0.9).tolist() == [[0, 1, 0, 1, 4]]


def test_multiscale_kmeans_finds_the_regions_of_a_two_region_grid():
    features = torch.zeros(1, 2, 8, 8)
    features[0, 0, :, :3] = 1.0  # left: one direction, right: the other
    features[0, 1, :, 3:] = 1.0
    labels = multiscale_kmeans(features + 0.01 * torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0)),
                               (2, 4), iters=5, threshold=0.9, limit=5)
    assert (labels[0, :, 3:] == 0).all() and (labels[0, :, :3] == 1).all()  # the larger region first
    assert multiscale_kmeans(features, (2, 4), 5, 0.9, limit=1)[0, :, :3].eq(IGNORE).all()  # past the limit


def test_candidates_are_deterministic_and_shaped(visual):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=g)
    first = unseen_candidates(images, visual, PARAMS)
    again = unseen_candidates(images, visual, PARAMS)
    assert torch.equal(first.labels, again.labels) and torch.equal(first.embeddings, again.embeddings)
    assert first.labels.dtype == torch.uint8 and first.labels.shape == (2, 8, 8)
    assert first.embeddings.shape == (2, 5, visual.output_dim)
    for b in range(2):
        count = int(first.counts[b])
        assert 1 <= count <= 5
        assert set(first.labels[b].unique().tolist()) - {IGNORE} == set(range(count))
        assert torch.allclose(first.embeddings[b, :count].norm(dim=-1), torch.ones(count), atol=1e-5)
        assert (first.embeddings[b, count:] == 0).all()
    alone = unseen_candidates(images[1:], visual, PARAMS)  # an image's candidates do not depend on its batch
    assert torch.equal(alone.labels[0], first.labels[1])
    assert torch.allclose(alone.embeddings[0], first.embeddings[1], atol=1e-5)
    other = unseen_candidates(torch.randn(1, 3, 64, 64, generator=g), visual, PARAMS)
    assert not torch.equal(other.labels[0], first.labels[0]) or not torch.allclose(other.embeddings[0],
                                                                                    first.embeddings[0])


def test_box_regions_differ_from_masked_images(visual):
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    masked = unseen_candidates(images, visual, PARAMS)
    boxed = unseen_candidates(images, visual, CandidateParams(**{**PARAMS.__dict__, "region": "box"}))
    assert torch.equal(masked.labels, boxed.labels)
    assert not torch.allclose(masked.embeddings, boxed.embeddings)


def test_bad_candidate_params_are_refused():
    with pytest.raises(OCZSSError, match="region"):
        CandidateParams(region="crop")
    with pytest.raises(OCZSSError, match="max_candidates"):
        CandidateParams(max_candidates=255)
    with pytest.raises(OCZSSError, match="windows"):
        CandidateParams(windows=())
