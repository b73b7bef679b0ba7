"""FPS + Voronoi (Alg. 1 steps 4-5): prefix property, nearest-centre labels, determinism, batch invariance."""

import numpy as np
import pytest
import torch

from oczss.model.clustering import fps_voronoi
from oczss.model.clustering import first_centres


def _reference(x: np.ndarray, k: int, first: int) -> tuple[list[int], np.ndarray]:
    """Plain numpy FPS then argmin over centres, one point at a time."""
    centres = [first]
    for _ in range(k - 1):
        d = np.array([min(((p - x[c]) ** 2).sum() for c in centres) for p in x])
        centres.append(int(d.argmax()))
    labels = np.array([int(np.argmin([((p - x[c]) ** 2).sum() for c in centres])) for p in x])
    return centres, labels


def test_matches_reference_fps_and_voronoi():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 50, 7, generator=g, dtype=torch.float64)
    first = torch.tensor([0, 17, 49])
    out = fps_voronoi(x, [4], first)[4]
    for b in range(3):
        centres, labels = _reference(x[b].numpy(), 4, int(first[b]))
        assert out[b].tolist() == labels.tolist()
        assert [int(out[b, c]) for c in centres] == [0, 1, 2, 3]  # each centre lies in its own cluster


def test_prefix_property_one_run_serves_every_k():
    x = torch.randn(2, 200, 16, generator=torch.Generator().manual_seed(2))
    first = torch.tensor([5, 100])
    together = fps_voronoi(x, [3, 6, 8], first)
    for k in (3, 6, 8):
        assert torch.equal(together[k], fps_voronoi(x, [k], first)[k])
    assert together[8].max() == 7 and together[3].max() == 2


def test_voronoi_is_nearest_centre():
    x = torch.randn(1, 300, 5, generator=torch.Generator().manual_seed(3))
    labels = fps_voronoi(x, [6], torch.tensor([0]))[6][0]
    fps_centres, _ = _reference(x[0].double().numpy(), 6, 0)
    d = torch.cdist(x[0].double(), x[0, fps_centres].double())  # point-to-centre distances, [300, 6]
    assert torch.equal(d.argmin(1), labels)
    assert len(labels.unique()) == 6


def test_batch_invariant_and_deterministic():
    x = torch.randn(5, 128, 32, generator=torch.Generator().manual_seed(4))
    first = torch.tensor([1, 2, 3, 4, 5])
    whole = fps_voronoi(x, [6, 8], first)
    again = fps_voronoi(x, [6, 8], first)
    for k in (6, 8):
        assert torch.equal(whole[k], again[k])
        for b in range(5):
            assert torch.equal(whole[k][b], fps_voronoi(x[b:b + 1], [k], first[b:b + 1])[k][0])


def test_first_centres_seeded_by_seed_and_image_id():
    a = first_centres(["img1", "img2", "img3"], seed=0, n=4096)
    assert torch.equal(a, first_centres(["img1", "img2", "img3"], seed=0, n=4096))
    assert torch.equal(a[1:2], first_centres(["img2"], seed=0, n=4096))
    assert not torch.equal(a, first_centres(["img1", "img2", "img3"], seed=1, n=4096))
    assert len(set(first_centres([f"i{j}" for j in range(50)], 0, 4096).tolist())) > 40
    assert int(a.max()) < 4096 and int(a.min()) >= 0


@pytest.mark.parametrize("ks", [[0], [65], []])
def test_bad_k_refused(ks):
    with pytest.raises(ValueError):
        fps_voronoi(torch.randn(1, 64, 3), ks, torch.tensor([0]))
