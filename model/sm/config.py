"""SMConfig: the Split Matching model (Chen et al., seeds/split-matching-paper.txt), every switch of Tables 2-4.

Frozen and checked when made. The defaults are the paper's full model (§4 "Implementation Details"): Mask2Former with
a ResNet-101 (ImageNet, torchvision weights through timm, as Mask2Former's R-101), SM + MFE (GroupNorm) + 50 random
queries at inference, candidate embeddings from CLIP's CLS. `ablation(name)` builds the rows of Tables 2-4 and
`resnet50()` the ResNet-50 setting of §4.2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from oczss.errors import OCZSSError

TINY = "tiny"  # timm's `test_resnet` (0.37M parameters) with a 32-wide Mask2Former: tests and the demo only
CANDIDATE_EMBEDDINGS = ("cls", "features", "features_mlp")
MFE_NORMS = ("group", "batch", "none")


@dataclass(frozen=True)
class SMConfig:
    """The Split Matching model.

    backbone: a timm ResNet name (`resnet101.tv_in1k`; `resnet50.tv_in1k` for §4.2) or `tiny`. weights:
        `pretrained` (timm's hub cache), a local checkpoint path, or `random` (tests and the demo only, announced).
        seed: seeds every initialisation, the random queries included.
    embed_dim: C, CLIP's text space the query features are projected to (512 for ViT-B/16; 32 for the tiny CLIP).
    clip / clip_weights: that CLIP (an open_clip name, or `tiny`) and its weights (`pretrained`, `random`, a path):
        its text tower embeds the class names (A) and its frozen image tower makes the candidates (C_u, Y_u).
    Mask2Former (paper: "all other hyperparameters unchanged"; its semantic R-101 config): hidden_dim 256 (queries,
        pixel decoder and mask features), encoder_layers 6 (deformable pixel decoder), decoder_layers 10 (9
        masked-attention layers + the prediction from the initial queries, each supervised), heads 8,
        dim_feedforward 2048, encoder_feedforward_dim 1024.
    Queries (paper silent on K_s and K_u; §4 "50 unseen and 50 random queries are added during inference"):
        seen_queries K_s = 100 (Mask2Former's own count), candidate_queries K_u = 50, random_queries K_r = 50,
        used at inference only (RQ, §3.4; 0: off). At most K_u candidates of an image are matched (the largest).
    split_matching (SM, §3.2, Table 2): off is the baseline: conventional Hungarian matching of all K_s queries to
        the seen ground truth, no candidates, no L_cos (candidate_queries must then be 0).
    mfe (§3.3, Table 2): the auxiliary MFE branch and L_MFE in training (never at inference). mfe_norm (Table 4):
        the dense blocks' normalisation, `group` (32 groups), `batch` or `none`.
    candidate_embedding (Table 3, C_u): `cls` (the frozen CLIP's CLS of each pseudo-masked region, from the
        candidate source), `features` (F_u average-pooled over each pseudo mask, projected to C) or
        `features_mlp` (that, through a 2-layer MLP). The last two need mfe (F_u is MFE's output).
    candidates_unannotated (paper: candidates are "latent classes in unannotated regions", §1, §3.1): a pseudo
        mask keeps only the pixels the ground truth ignores; min_candidate_fraction: a candidate keeping less than
        this fraction of the view's pixels is dropped (paper silent).
    Loss weights: class_weight 2 (L_cls, sigmoid focal with focal_alpha 0.25, focal_gamma 2), iou_weight 5 and
        dice_weight 5 (L_mask = IoU + Dice, §4), cos_weight 1 (L_SM = L_match + L_cos), mfe_ce_weight 1 and
        mfe_focal_weight 1 (L_MFE = CE + focal). Matching cost (Eq. 2, Mask2Former's matcher): class_weight x focal
        cost + bce_cost_weight 5 x BCE + dice_weight x Dice. deep_supervision: every decoder layer's prediction is
        matched and supervised (Mask2Former); off: the last only.
    """

    backbone: str = "resnet101.tv_in1k"
    weights: str = "pretrained"
    seed: int = 0
    embed_dim: int = 512
    clip: str = "ViT-B-16"
    clip_weights: str = "pretrained"
    hidden_dim: int = 256
    encoder_layers: int = 6
    decoder_layers: int = 10
    num_heads: int = 8
    dim_feedforward: int = 2048
    encoder_feedforward_dim: int = 1024
    seen_queries: int = 100
    candidate_queries: int = 50
    random_queries: int = 50
    split_matching: bool = True
    mfe: bool = True
    mfe_norm: str = "group"
    candidate_embedding: str = "cls"
    candidates_unannotated: bool = True
    min_candidate_fraction: float = 0.001
    class_weight: float = 2.0
    iou_weight: float = 5.0
    dice_weight: float = 5.0
    bce_cost_weight: float = 5.0
    cos_weight: float = 1.0
    mfe_ce_weight: float = 1.0
    mfe_focal_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    deep_supervision: bool = True

    def __post_init__(self):
        choices = {"candidate_embedding": CANDIDATE_EMBEDDINGS, "mfe_norm": MFE_NORMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise OCZSSError(f"SM config: {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("embed_dim", "hidden_dim", "encoder_layers", "decoder_layers", "num_heads", "dim_feedforward",
                     "encoder_feedforward_dim", "seen_queries"):
            if getattr(self, name) < 1:
                raise OCZSSError(f"SM config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("candidate_queries", "random_queries", "class_weight", "iou_weight", "dice_weight",
                     "bce_cost_weight", "cos_weight", "mfe_ce_weight", "mfe_focal_weight", "focal_gamma"):
            if getattr(self, name) < 0:
                raise OCZSSError(f"SM config: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("min_candidate_fraction", "focal_alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise OCZSSError(f"SM config: {name} must lie in [0, 1], got {getattr(self, name)}")
        if self.hidden_dim % 32 or self.hidden_dim % self.num_heads:
            raise OCZSSError(f"SM config: hidden_dim {self.hidden_dim} must be a multiple of 32 (GroupNorm) and of "
                             f"num_heads {self.num_heads}")
        if self.split_matching != (self.candidate_queries > 0):
            raise OCZSSError("SM config: split_matching needs candidate_queries >= 1, and the baseline (split_matching "
                             "off) has no candidate queries: set candidate_queries 0")
        if self.candidate_embedding != "cls" and not (self.mfe and self.split_matching):
            raise OCZSSError(f"SM config: candidate_embedding {self.candidate_embedding!r} pools MFE's F_u: it needs "
                             f"mfe and split_matching")
        if self.backbone == TINY and self.weights != "random":
            raise OCZSSError("SM config: the tiny backbone exists for tests with weights 'random' only")

    @property
    def queries(self) -> int:
        """Trained queries K_s + K_u: seen first, then candidates."""
        return self.seen_queries + self.candidate_queries

    @classmethod
    def tiny(cls, **overrides) -> "SMConfig":
        """The test model: timm's test_resnet, a 32-wide Mask2Former with 1 encoder and 2 + 1 decoder layers, the
        tiny CLIP's 32-d text space, 4 seen + 3 candidate (+ 2 random) queries, random weights."""
        base = dict(backbone=TINY, weights="random", embed_dim=32, clip=TINY, clip_weights="random", hidden_dim=32,
                    encoder_layers=1, decoder_layers=3, num_heads=2, dim_feedforward=64, encoder_feedforward_dim=64,
                    seen_queries=4, candidate_queries=3, random_queries=2)
        return cls(**{**base, **overrides})


ABLATIONS = {  # Tables 2-4 of the paper: the switches of each row (Table 3 and 4 rows are the full model otherwise)
    "baseline": dict(split_matching=False, candidate_queries=0, mfe=False, random_queries=0),
    "sm": dict(mfe=False, random_queries=0),
    "sm_mfe": dict(random_queries=0),
    "sm_mfe_rq": {},
    "cu_features": dict(candidate_embedding="features"),
    "cu_features_mlp": dict(candidate_embedding="features_mlp"),
    "cu_cls": {},
    "mfe_no_norm": dict(mfe_norm="none"),
    "mfe_bn": dict(mfe_norm="batch"),
    "mfe_gn": {},
}


def ablation(name: str, base: SMConfig | None = None) -> SMConfig:
    """The row `name` of Tables 2-4 (a key of ABLATIONS) on `base` (default: the ResNet-50 setting of §4.2,
    where the paper ran its ablations)."""
    if name not in ABLATIONS:
        raise OCZSSError(f"no SM ablation {name!r}: use one of {', '.join(ABLATIONS)}")
    return replace(base or resnet50(), **ABLATIONS[name])


def resnet50(**overrides) -> SMConfig:
    """§4.2's ablation setting: ResNet-50 backbone, all other hyperparameters unchanged (40k COCO-Stuff
    iterations, a training-schedule matter)."""
    return SMConfig(**{"backbone": "resnet50.tv_in1k", **overrides})
