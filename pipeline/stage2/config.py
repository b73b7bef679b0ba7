"""TrainConfig: everything `oczss train` does, checked when it is made.

Defaults (paper §4 / App. A; docs/protocol.md §7): AdamW, lr 2.5e-5 (the paper's) x 10 (the reference's
multiplier on every trainable module) = an effective 2.5e-4 for all trainable parameters, weight decay 0.01,
poly 0.9 to min_lr 1e-6 after a 1,500-iteration linear warmup from 1e-6 of the rate, batch 16. The refiner (ORA,
new in OC-ZSS) has its own multiplier, `refiner_lr_mult`, 10 as well by default (see TrainConfig).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oczss.errors import OCZSSError
from oczss.model.names import DINO_B16, check_name
from oczss.pipeline.data.datasets import SPECS
from oczss.pipeline.data.names import canonical


LABELLED = ("oczss", "sm")  # methods trained on a segmentation dataset (the others check theirs in their Task)


@dataclass(frozen=True)
class TrainConfig:
    """Everything `oczss train` does. method: the method trained (pipeline/training registers them); `model` holds
    its model config's fields (OC-ZSS: oczss.model.OCZSSConfig).

    micro_batch: per-process batch of one forward/backward (0: batch_size / processes); the rest is gradient
    accumulation. unseen: replaces the dataset's unseen classes (Tables 5 and 9). text: a .npy of class x
    template embeddings (e.g. OTSeg's shipped arrays) instead of computing them with the CLIP text tower.
    init_from: checkpoint whose trainable weights start the run (transductive: the inductive one at half its
    schedule). workers: data loader processes per training process (at most the CPU count; one augmented 512^2
    COCO sample costs a worker about 23 ms, so 8 feed about 20 iterations/s at batch 16). save_every:
    iterations between `last.pt` saves; milestone_every: between kept `iter_N.pt`.
    lr, lr_mult: the paper's rate (2.5e-5) and the reference's x10 on its backbone and head keys, which covers
    OTSeg's trainable parts here (VPT, prompt_proj / prompt_norm, decoder): effective_lr. refiner_lr_mult: the
    multiplier of ORA (or its Table 8 replacement), which OTSeg's config does not have; 10 (refiner_lr 2.5e-4)
    reads the paper's 2.5e-5 as the base rate of an mmseg config whose custom keys also match ORA (it would sit
    in the backbone or the head), 1 reads it literally (2.5e-5 for ORA). The object prompts are frozen.
    cluster_mode (pipeline/stage2/clusters.py): where the object prompts' clusters come from, `view` (default: the
    cache's compact DINO tokens clustered per view in the step), `whole` (the cache's whole-image cluster map) or
    `online` (DINO on each view in the step, no cache); dino_model / dino_weights: the DINO of the online mode.
    candidates (Split Matching): where the unseen candidates come from, `cache` (Stage 1's clip-kmeans source) or
    `online` (the frozen CLIP on each view in the step, no cache); other methods ignore it.
    """

    method: str = "oczss"
    dataset: str = "voc"
    setting: str = "inductive"
    iters: int = 20000
    batch_size: int = 16
    micro_batch: int = 0
    lr: float = 2.5e-5
    lr_mult: float = 10.0
    refiner_lr_mult: float = 10.0
    weight_decay: float = 0.01
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    poly_power: float = 0.9
    min_lr: float = 1e-6
    unseen: list[int] | None = None
    text: str | None = None
    init_from: str | None = None
    seed: int = 0
    workers: int = 8
    log_every: int = 20
    save_every: int = 500
    milestone_every: int = 10000
    description: str = ""
    cluster_mode: str = "view"
    dino_model: str = DINO_B16
    dino_weights: str = "pretrained"
    candidates: str = "cache"
    model: dict = field(default_factory=dict)

    @property
    def effective_lr(self) -> float:
        return self.lr * self.lr_mult

    @property
    def refiner_lr(self) -> float:
        return self.lr * self.refiner_lr_mult

    def __post_init__(self):
        if self.method in LABELLED:
            object.__setattr__(self, "dataset", canonical(self.dataset, tuple(SPECS)))  # any case
        if self.cluster_mode not in ("whole", "view", "online"):
            raise OCZSSError(f"--cluster-mode {self.cluster_mode!r}: choose whole, view or online")
        if self.candidates not in ("cache", "online"):
            raise OCZSSError(f"candidates {self.candidates!r}: choose cache or online")
        if self.cluster_mode == "online":
            check_name("dino", self.dino_model, "--dino-model")
        if self.setting not in ("inductive", "transductive"):
            raise OCZSSError(f"--setting {self.setting!r}: choose inductive or transductive")
        for name, least in (("iters", 1), ("batch_size", 1), ("micro_batch", 0), ("workers", 0), ("seed", 0),
                            ("warmup_iters", 0), ("log_every", 1), ("save_every", 1), ("milestone_every", 1)):
            if getattr(self, name) < least:
                raise OCZSSError(f"{_flag(name)} {getattr(self, name)}: must be at least {least}")
        for name in ("lr", "lr_mult", "refiner_lr_mult"):
            if not getattr(self, name) > 0:
                raise OCZSSError(f"{name} {getattr(self, name)}: must be positive")
        if self.unseen is not None:
            bad = [c for c in self.unseen if not 0 <= c < len(SPECS[self.dataset].classes)]
            if bad or not self.unseen:
                raise OCZSSError(f"unseen classes {self.unseen} are not a non-empty subset of the {self.dataset} "
                                 f"class indices")


def _flag(name: str) -> str:
    """The command-line spelling of a field (`micro_batch` -> `--micro-batch`)."""
    return "--" + name.replace("_", "-")
