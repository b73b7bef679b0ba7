"""The object-prompt attention mask (§3.2 eqs. 5-6, Alg. 1), the region grid, and the encoder's isolation."""

import torch

from oczss.model import OCZSSConfig, attention_mask, build_model, region_labels

INF = float("-inf")


def spec_mask(labels: torch.Tensor, p: int, n: int) -> torch.Tensor:
    """§3.2 entry by entry: zeros, object rows and columns -inf, then eqs. 5-6 and the self-edge set back to 0."""
    b, m = labels.shape
    size = 1 + p + m + n
    out = torch.zeros(b, size, size)
    for x in range(b):
        for j in range(n):
            out[x, 1 + p + m + j, :] = INF
            out[x, :, 1 + p + m + j] = INF
        for j in range(n):
            out[x, 1 + p + m + j, 1 + p + m + j] = 0
            for i in range(m):
                if labels[x, i] == j:
                    out[x, 1 + p + m + j, 1 + p + i] = 0  # eq. 5
                    out[x, 1 + p + i, 1 + p + m + j] = 0  # eq. 6
    return out


def test_mask_matches_section_3_2_entry_by_entry():
    # image 0 leaves cluster 2 empty; image 1 has a patch labelled outside [0, n_o)
    labels = torch.tensor([[0, 1, 1, 0, 3, 3], [2, 2, 0, 1, 7, 1]])
    mask = attention_mask(labels, num_vpt=2, num_objects=4)
    assert mask.shape == (2, 13, 13) and mask.dtype == torch.float32
    assert torch.equal(mask, spec_mask(labels, 2, 4))
    assert mask.stride(-2) % 8 == 0  # rows padded in storage for SDPA's memory-efficient kernel
    assert torch.equal(attention_mask(labels, 2, 4, dtype=torch.bfloat16).float(), mask)


def test_region_grid_is_the_closest_to_square_factorisation():
    grid = region_labels(4, 6, 6).view(4, 6)
    expected = torch.tensor([[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2)
    assert torch.equal(grid, expected)
    # 5 = 1 x 5 cells across a grid 3 patches wide: cells 2 and 4 hold no patch
    assert torch.equal(region_labels(3, 3, 5).view(3, 3), torch.tensor([[0, 1, 3]] * 3))


def test_object_prompt_sees_only_its_cluster_in_the_first_layer():
    model = build_model(OCZSSConfig(backbone="tiny", weights="random", mask_source="dino", object_prompt_init="random",
                                    num_objects=3)).eval()
    encoder = model.encoder
    encoder.clip.transformer.resblocks = encoder.clip.transformer.resblocks[:1]  # the first layer's output
    torch.manual_seed(0)
    images = torch.randn(1, 3, 64, 64)  # 4 x 4 patches
    labels = torch.tensor([[0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]])
    changed = images.clone()
    changed[:, :, :, 32:] += torch.randn(1, 3, 64, 32)  # the right half: patches of clusters 1 and 2 only
    with torch.no_grad():
        before, after = encoder(images, labels).objects, encoder(changed, labels).objects
    assert torch.allclose(before[:, 0], after[:, 0], atol=1e-6)  # cluster 0 lies in the left half
    assert not torch.allclose(before[:, 1], after[:, 1], atol=1e-3)
    assert not torch.allclose(before[:, 2], after[:, 2], atol=1e-3)
