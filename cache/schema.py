"""Cache parameters and metadata: what a cache was made with, and the check that refuses a mismatch.

Root group attributes (`oczss` key):
    schema_version, params (CacheParams), random_weights, created, oczss_version
Per (dataset, split) group attributes (`oczss` key):
    dataset, split, data_root, num_images, num_shards, created
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from oczss.errors import OCZSSError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CacheParams:
    """Everything that changes the cluster labels; two runs into one cache must agree on all of it.

    dino_model: timm model name; fingerprint: sha256 of the loaded DINO weights; input_size: R (whole image
    resized to R x R); grid: S (labels are S x S); ks: cluster counts; seed: first-FPS-centre seed;
    device: device type the features were computed on ("cpu"/"cuda"); dtype: DINO compute dtype;
    shard_size: images per shard object.
    """

    dino_model: str
    fingerprint: str
    input_size: int
    grid: int
    ks: tuple[int, ...]
    seed: int
    device: str
    dtype: str
    shard_size: int

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks"] = list(self.ks)
        return d

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(self.ks))  # a JSON list when read back from the metadata

    def differences(self, other: "CacheParams") -> list[str]:
        """Human-readable 'name: cache has X, this run has Y' lines for every differing field."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"{f.name}: cache has {_show(a)}, this run has {_show(b)}")
        return out


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    if isinstance(v, str) and len(v) > 16:
        return v[:12] + "…"
    return str(v)


def check_params(url: str, stored: CacheParams, wanted: CacheParams) -> None:
    """Refuse to add to a cache made with other parameters, naming each one that differs."""
    diff = stored.differences(wanted)
    if diff:
        raise OCZSSError(f"cache {url} was made with other parameters:\n  " + "\n  ".join(diff)
                         + "\nRun with the cache's parameters, or write to a new --cache.")
