"""OCZSSConfig: every architectural switch of the paper's ablations, JSON-serialisable via dataclasses.asdict.

All switches off (`OCZSSConfig.otseg()`: no object prompts, no refiner, no granular attention) is the OTSeg
baseline. Each field names the table or equation it ablates; fields for choices the paper leaves open say so.
Frozen, and checked when made; `oczss.pipeline.configs.from_dict` builds one from JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oczss.errors import OCZSSError

MASK_SOURCES = ("dino", "clip", "region", "none")
REFINERS = ("ora", "slot_attention", "cross_attention", "none")


@dataclass(frozen=True)
class OCZSSConfig:
    """The OC-ZSS model. Defaults: the paper's VOC model (n_o = 6, S = 4, 10 VPT tokens, ORA + granular attention).

    backbone: open_clip model name (`ViT-B-16`) or `tiny` (2-layer, 64-wide ViT/16 with 32-d output, for tests and
        the demo; same code path). weights: `pretrained` (open_clip's `openai` tag), `random` (tests and the demo
        only, announced), a local checkpoint path, or `checkpoint` (the frozen image tower travels inside the
        model's oczss checkpoint, as in a converted OTSeg one). seed: seeds random weights, the prompt
        initialisation and the frozen random object prompts / object features.
    clip_image_size: the input size the frozen CLIP's position embeddings are laid out for, (size / patch)^2 + 1
        of them (0: the backbone's own, 224 for ViT-B-16). The encoder resizes them from this grid to the
        input's. OTSeg's checkpoints store them already resized to the training crop (512; 480 for Context).
    num_vpt: deep VPT tokens per layer (docs/protocol.md §4: 10; 100 for COCO).
    mask_source (§3.2, Tables 7 and 13): `dino` (cached DINO FPS-Voronoi clusters passed to forward), `clip` (the
        same clustering of the frozen CLIP's own last-layer patch features), `region` (fixed square grid, CLIP-RC)
        or `none` (no object prompts; ORA then starts from random object features, Table 6 row 2).
    num_objects: n_o, object prompts / object features (Table 14; 6 for VOC and COCO, 8 for Context).
    object_prompt_init (paper silent): frozen value of every object prompt, `cls` (CLIP's class token) or `random`.
    refiner (§3.3, Table 8): `ora`, `slot_attention` (Locatello et al.'s, model/slots.py), `cross_attention`
        (stacked plain cross-attention, PF attends to OF) or `none`.
    ora_iterations: S (Table 10; 4, 5 for Context); slot attention iterates as often (Table 8). ora_update: `gru` (eqs. 8, 10) or `residual` (Table 8 "ORA w/o
        GRU"). shared_gru (paper silent): one GRU for both stages. ora_space (paper silent): `width` (the
        transformer's last-layer tokens, 768-d) or `embed` (after the frozen output projection, 512-d).
    ora_head_dim: channels per attention head in the refiner (paper silent; CLIP's 64).
    granular (§3.4, Table 6): multi-scale K/V of object refinement and Q of patch refinement; dilations (App. A).
    cross_attention_layers: depth of the `cross_attention` refiner (Table 8: 1, 2, 4).
    ora_gate_init (paper silent): `keep` (default) biases the GRU's update gate towards keeping the previous state
        (b_z = ORA_GATE_BIAS), so the untrained refiner hands CLIP's own patch features on nearly unchanged (eqs. 8,
        10; "maintaining continuity"); `pytorch` keeps PyTorch's GRU initialisation, under which 4 iterations leave
        about 0.1 of PF_0 in PF_4 (cosine ~0.6).
    mps_on_refined: the MPS path reads the refined PF (True) or the encoder's H (False, default): §3.1 eq. 2 builds
        the auxiliary prediction "before the decoder and on H", and §3.3 changes only the decoder's K and V.
    decoder_layers, sinkhorn_eps, sinkhorn_iters: the OTSeg decoder (docs/protocol.md §5: 3, 0.05, 100).
    focal_weight, dice_weight, loss_exclude_ignore: the loss (docs/protocol.md §6: 100, 1, ignore pixels count as
        negatives).
    """

    backbone: str = "ViT-B-16"
    weights: str = "pretrained"
    seed: int = 0
    clip_image_size: int = 0
    num_vpt: int = 10
    mask_source: str = "dino"
    num_objects: int = 6
    object_prompt_init: str = "cls"
    refiner: str = "ora"
    ora_iterations: int = 4
    ora_update: str = "gru"
    shared_gru: bool = True
    ora_space: str = "width"
    ora_head_dim: int = 64
    granular: bool = True
    dilations: tuple[int, ...] = field(default=(1, 6, 12, 18))
    cross_attention_layers: int = 1
    ora_gate_init: str = "keep"
    mps_on_refined: bool = False
    decoder_layers: int = 3
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 100
    focal_weight: float = 100.0
    dice_weight: float = 1.0
    loss_exclude_ignore: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        choices = {"mask_source": MASK_SOURCES, "refiner": REFINERS, "object_prompt_init": ("cls", "random"),
                   "ora_update": ("gru", "residual"), "ora_space": ("width", "embed"),
                   "ora_gate_init": ("keep", "pytorch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise OCZSSError(f"model config: {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        positive = ["num_vpt", "decoder_layers", "sinkhorn_iters", "ora_head_dim"]
        if self.object_prompts or self.refiner != "none":
            positive.append("num_objects")
        if self.refiner in ("ora", "slot_attention"):
            positive.append("ora_iterations")  # Table 10's S = 0 is refiner="none"
        if self.refiner == "cross_attention":
            positive.append("cross_attention_layers")
        for name in positive:
            if getattr(self, name) < 1:
                raise OCZSSError(f"model config: {name} must be >= 1, got {getattr(self, name)}")
        if self.clip_image_size < 0:
            raise OCZSSError(f"model config: clip_image_size must be >= 0 (0: the backbone's own), got "
                             f"{self.clip_image_size}")
        if self.granular and self.refiner != "ora":
            raise OCZSSError("model config: granular attention is part of ORA; it needs refiner='ora'")
        if self.granular and not self.dilations:
            raise OCZSSError("model config: granular attention needs at least one dilation")

    @property
    def object_prompts(self) -> bool:
        """Whether object prompts enter the encoder (every mask source but `none`)."""
        return self.mask_source != "none"

    @classmethod
    def otseg(cls, **overrides) -> "OCZSSConfig":
        """The OTSeg baseline: every OC-ZSS switch off (Table 6 row 1)."""
        return cls(**{"mask_source": "none", "refiner": "none", "granular": False, **overrides})
