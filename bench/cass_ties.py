"""How often CASS's Hungarian head matching ties (issue 25), on random and on structured keys.

    python bench/cass_ties.py [--windows 50] [--towers 2]      # --towers 0 skips the real-size random towers

A window ties at tolerance τ when its second-best head assignment costs at most τ more than the best (Eq. 5's cost
1 - W, summed over the 12 heads): Hungarian alone then picks between them by rounding noise. Real weights cannot be
fetched here, so the keys are built per window from a synthetic demo scene (pipeline/data/demo_scenes, 224², 14 x
14 patches): patch features F = one-hot(region) E + 8 Fourier fields of position + noise [196, 96]; head h's keys
K_h = F W_h + μ_h with W_h [96, 64] of singular values r^-α_h (its own spectral decay) and a mean key μ_h of norm
m_h ~ U(0, 3), as trained attention heads have. Families of α_h, DINO heads / CLIP heads:
    identical   α = 0 for all: every head sees the features' own spectrum (heads differ by their mean key)
    disjoint    DINO U(1.5, 2.5), CLIP U(0.5, 1.5): every DINO head decays faster than every CLIP head
    overlap     both U(0.5, 2.5)
    narrow      both U(1.0, 1.2): heads of one tower alike, as in shallow or untrained towers
`towers`: keys of the real-size towers with random weights (CLIP ViT-B/16, DINO ViT-B/8) on that many 224² scene
windows, through CASS itself. Prints, per family, the fraction of windows that tie at each τ, the median gap and
the fraction of heads whose partner is left to noise (tie_break_assignment decides them).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from scipy.optimize import linear_sum_assignment

from oczss.model.cass import CASSConfig, build_cass
from oczss.model.cass.attention import keys_values
from oczss.model.cass.matching import key_spectrum, normalise_spectrum, spectral_distances
from oczss.model.cass.towers import clip_last_input
from oczss.pipeline.data.demo_scenes import scene

TOLERANCES = (1e-12, 1e-9, 1e-6, 1e-4)
FAMILIES = {"identical": ((0, 0), (0, 0)), "disjoint": ((1.5, 2.5), (0.5, 1.5)), "overlap": ((0.5, 2.5), (0.5, 2.5)),
            "narrow": ((1.0, 1.2), (1.0, 1.2))}


def alternatives(cost: np.ndarray) -> np.ndarray:
    """cost [H, H] -> [H]: per row i, how much more the best assignment costs once row i may not keep its
    partner in the best one (0: row i's partner is left to rounding noise). Their minimum is the gap between the
    best and the second-best assignment."""
    h = len(cost)
    best = linear_sum_assignment(cost)[1]
    lowest = cost[np.arange(h), best].sum()
    out = np.empty(h)
    for i in range(h):
        forbidden = cost.copy()
        forbidden[i, best[i]] = 1e9
        out[i] = forbidden[np.arange(h), linear_sum_assignment(forbidden)[1]].sum() - lowest
    return out


def costs(vfm_keys: torch.Tensor, clip_keys: torch.Tensor) -> np.ndarray:
    """Keys [B, H, N, d] of both towers -> Eq. 5's cost 1 - W [B, H, H] (rows VFM heads), as distill.py builds it."""
    spectra = [normalise_spectrum(key_spectrum(k, 64 ** -0.5, 20)) for k in (vfm_keys, clip_keys)]
    return (1 - spectral_distances(*spectra)).numpy()


def scene_features(rng: np.random.Generator) -> torch.Tensor:
    """One synthetic 224² scene -> structured patch features [196, 96]: its regions, 8 random Fourier fields of
    the patch position (texture and shading at several scales) and noise."""
    _, label = scene(rng, (224, 224))
    patches = label[4::16, 4::16].reshape(-1)
    rows, cols = np.divmod(np.arange(196), 14)
    fields = np.cos(np.outer(rows, rng.uniform(0, 2, 8)) + np.outer(cols, rng.uniform(0, 2, 8)) + rng.uniform(0, 7, 8))
    mix = rng.standard_normal((8, 96)) * np.linspace(1, 0.2, 8)[:, None]
    regions = rng.standard_normal((256, 96))
    return torch.from_numpy(regions[patches] + fields @ mix + 0.2 * rng.standard_normal((196, 96)))


def heads(gen: torch.Generator, features: torch.Tensor, alpha: tuple[float, float], count: int) -> torch.Tensor:
    """Features [N, 96] -> keys [count, N, 64], each head with its own decay α ~ U(alpha) and mean key."""
    u = torch.linalg.qr(torch.randn(count, 96, 64, generator=gen, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(count, 64, 64, generator=gen, dtype=torch.float64)).Q
    a = alpha[0] + (alpha[1] - alpha[0]) * torch.rand(count, 1, generator=gen, dtype=torch.float64)
    decay = torch.arange(1, 65, dtype=torch.float64) ** -a
    mean = torch.nn.functional.normalize(torch.randn(count, 1, 64, generator=gen, dtype=torch.float64), dim=-1)
    mean = mean * 3 * torch.rand(count, 1, 1, generator=gen, dtype=torch.float64)
    return features @ (u * decay.unsqueeze(1)) @ v.transpose(1, 2) + mean


def structured(windows: int, heads_count: int = 12) -> dict:
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    out = {name: [] for name in FAMILIES}
    for _ in range(windows):
        features = scene_features(rng)
        for name, (dino_alpha, clip_alpha) in FAMILIES.items():
            vfm, clip = heads(gen, features, dino_alpha, heads_count), heads(gen, features, clip_alpha, heads_count)
            out[name].append(alternatives(costs(vfm[None], clip[None])[0]))
    return out


@torch.no_grad()
def towers(windows: int) -> list[float]:
    cass = build_cass(CASSConfig(), "random", "random")
    rng = np.random.default_rng(1)
    mean, std = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1), torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)
    out = []
    for _ in range(windows):
        image, _ = scene(rng, (224, 224))
        x = ((torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - mean) / std)[None]
        last_input, grid = clip_last_input(cass.visual, x)
        clip_keys, _ = keys_values(cass.visual.transformer.resblocks[-1], last_input)
        vfm_keys = cass._vfm_keys(x, clip_keys, grid)
        out.append(alternatives(costs(vfm_keys, clip_keys)[0]))
    return out


def summary(rows: list[np.ndarray]) -> dict:
    """Per window [H] alternatives -> the fraction of windows that tie at each τ, the median gap, and the mean
    fraction of heads whose partner is left to noise at τ = 1e-6."""
    values = np.stack(rows)
    gaps = values.min(1)
    return {"windows": len(values), "median_gap": float(f"{np.median(gaps):.3g}"),
            **{f"ties_at_{t:g}": round(float((gaps <= t).mean()), 3) for t in TOLERANCES},
            "heads_left_to_noise_at_1e-06": round(float((values <= 1e-6).mean()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=50, help="structured windows per family")
    ap.add_argument("--towers", type=int, default=2, help="windows through the real-size random towers (0: skip)")
    args = ap.parse_args()
    report = {name: summary(g) for name, g in structured(args.windows).items()}
    if args.towers:
        report["random ViT-B/16 + ViT-B/8"] = summary(towers(args.towers))
    print(json.dumps({"device": f"cpu ({torch.get_num_threads()} threads)", "date": time.strftime("%Y-%m-%d"),
                      **report}, indent=2))


if __name__ == "__main__":
    main()
