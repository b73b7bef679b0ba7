"""OCZSS: the prompted encoder, the refiner and the OTSeg decoder tied together (Fig. 1), and inference.

Trainable parameters with ViT-B/16 (checked in tests/test_model_params.py; Table 4: OTSeg 13.8M, OC-ZSS 27.2M):
  - all switches off (OTSeg): 8,039,168 = VPT 684,288 (prompts 92,160, prompt_proj 590,592, prompt_norm 1,536)
    + decoder 7,354,880 (q_proj 524,800, two MPSA layers 3,152,384 each, the last layer's Q and K 525,312).
    The reference also builds weights that never get a gradient: each layer's never-called self-attention and
    norm1 (3 x 1,051,648) and the last layer's V, output projection, norms and FFN (2,627,072, whose output
    feeds nothing); with them: 13,821,184, Table 4's 13.8M. COCO's 100 VPT tokens add 829,440.
  - full OC-ZSS (defaults: ORA in the 768-d width, one GRU for both stages, three granular projections):
    23,477,504, ORA being 15,438,336 (granular 3 x 2,980,608, five 768 x 768 linear projections 2,952,960,
    GRU 3,543,552); 29,259,520 counted the reference's way, against Table 4's 27.2M. Alternatives the paper
    leaves open: two GRUs 27,021,056 (32,803,072); ORA in the 512-d embedding space 14,923,520 (20,705,536).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.model.clip import load_tower
from oczss.model.clustering import fps_voronoi
from oczss.model.config import OCZSSConfig
from oczss.model.decoder import Decoder
from oczss.model.encoder import PromptedEncoder
from oczss.model.losses import segmentation_loss
from oczss.model.masking import region_labels
from oczss.model.refinement import ORA, ORA_GATE_BIAS, CrossAttentionStack
from oczss.model.slots import SlotAttention


class OCZSS(nn.Module):
    """OC-ZSS (§3): frozen CLIP + deep VPT + object prompts -> (ORA | cross-attention | nothing) -> OTSeg decoder.

    `random_weights` and `weights_fingerprint` describe the frozen CLIP so every output can record them.
    """

    def __init__(self, config: OCZSSConfig, visual: nn.Module, weights_fingerprint: str, random_weights: bool):
        super().__init__()
        self.config = config
        self.weights_fingerprint, self.random_weights = weights_fingerprint, random_weights
        c = config
        self.encoder = PromptedEncoder(visual, c.num_vpt, c.num_objects if c.object_prompts else 0,
                                       c.object_prompt_init)
        width, embed = visual.conv1.out_channels, visual.output_dim
        dim = width if c.ora_space == "width" else embed
        self.refiner = None
        if c.refiner == "ora":
            self.refiner = ORA(dim, c.ora_iterations, c.ora_head_dim, c.granular, c.dilations, c.ora_update,
                               c.shared_gru, ORA_GATE_BIAS if c.ora_gate_init == "keep" else None)
        elif c.refiner == "slot_attention":
            self.refiner = SlotAttention(dim, c.ora_iterations, ORA_GATE_BIAS if c.ora_gate_init == "keep" else None)
        elif c.refiner == "cross_attention":
            self.refiner = CrossAttentionStack(dim, c.cross_attention_layers, c.ora_head_dim)
        if self.refiner is not None and not c.object_prompts:
            # Table 6 row 2 / Table 7 "No Mask": ORA starts from random object features. A fixed seeded buffer
            # (not resampled per step) keeps inference deterministic; distinct vectors, so ORA can tell them apart.
            features = torch.randn(c.num_objects, dim)
            self.register_buffer("object_features", F.normalize(features, dim=-1) if c.ora_space == "embed"
                                 else features)
        self.decoder = Decoder(embed, c.decoder_layers, c.sinkhorn_eps, c.sinkhorn_iters)

    def forward(self, images: torch.Tensor, cluster_labels: torch.Tensor | None = None,
                text: torch.Tensor | None = None, first: torch.Tensor | None = None) -> dict:
        """images [B, 3, H, W] ImageNet-normalised, H and W multiples of 16; cluster_labels LongTensor[B, h*w] in
        [0, n_o) on the patch grid (mask source `dino` only); text [K, N, C] class x template embeddings; first
        LongTensor[B]: each image's first FPS centre (mask source `clip`; the caller draws it from its seeded
        generator, as Stage 1 and the `dino` source do; default: from a generator seeded by config.seed).

        Returns {"decoder": [B, K, H, W], "mps": [B, K, H, W]} logits, bilinearly upsampled (align_corners=False).
        """
        if text is None or text.dim() != 3:
            raise ValueError("text must be the class x template embeddings [K, N, C]")
        size = images.shape[-2:]
        patch = self.encoder.patch_size
        if size[0] % patch or size[1] % patch:
            raise ValueError(f"image size {tuple(size)} is not a multiple of the patch size {patch}")
        enc = self.encoder(images, self._labels(images, cluster_labels, first))
        g = self.encoder.project(enc.cls)
        if self.refiner is None:
            memory = mps_memory = self.encoder.project(enc.patches)
        else:
            memory, mps_memory = self._refine(enc, images.shape[0])
        decoder, mps = self.decoder(text, g, memory, mps_memory)
        return {"decoder": _upsample(decoder, enc.patch_grid, size), "mps": _upsample(mps, enc.patch_grid, size)}

    def _refine(self, enc, batch: int):
        """Refine PF with OF (§3.3) in the configured space; -> (MPSA memory, MPS memory), both [B, M, C] unit."""
        project, width_space = self.encoder.project, self.config.ora_space == "width"
        of = enc.objects if enc.objects is not None else self.object_features.expand(batch, -1, -1)
        h = None if width_space and self.config.mps_on_refined else project(enc.patches)
        if width_space:
            pf = enc.patches
        else:
            pf = h
            of = project(of) if enc.objects is not None else of
        _, pf = self.refiner(of, pf, enc.patch_grid)
        memory = project(pf) if width_space else F.normalize(pf, dim=-1)
        return memory, memory if self.config.mps_on_refined else h

    def _labels(self, images: torch.Tensor, cluster_labels: torch.Tensor | None,
                first: torch.Tensor | None) -> torch.Tensor | None:
        """Per-patch object assignment for the mask source: given (dino), CLIP clusters (clip) or a grid (region)."""
        source = self.config.mask_source
        if source == "none":
            return None
        if source == "dino":
            if cluster_labels is None:
                raise ValueError("mask source 'dino' needs cluster_labels [B, h*w]")
            return cluster_labels
        b = images.shape[0]
        h, w = (s // self.encoder.patch_size for s in images.shape[-2:])
        n = self.config.num_objects
        if source == "region":
            return region_labels(h, w, n, images.device).expand(b, -1)
        with torch.no_grad():
            features = self.encoder.clip_features(images).float()
        if first is None:  # Alg. 1: "pick c_1 uniformly", from a seeded generator
            g = torch.Generator().manual_seed(self.config.seed)
            first = torch.randint(h * w, (b,), generator=g)
        return fps_voronoi(features, [n], first.to(images.device))[n]

    def loss(self, outputs: dict, target: torch.Tensor) -> dict:
        """The §6 loss with this model's weights and ignore handling (see losses.segmentation_loss)."""
        c = self.config
        return segmentation_loss(outputs, target, focal_weight=c.focal_weight, dice_weight=c.dice_weight,
                                 exclude_ignore=c.loss_exclude_ignore)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything the optimiser gets: VPT, prompt_proj/norm, the refiner and the decoder; never the CLIP."""
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters by learning-rate group: `refiner` (ORA or its Table 8 replacement, new in
        OC-ZSS) and `reference` (OTSeg's: VPT, prompt_proj / prompt_norm and the decoder); empty groups left out."""
        refiner = [p for p in self.refiner.parameters() if p.requires_grad] if self.refiner is not None else []
        ids = {id(p) for p in refiner}
        groups = {"reference": [p for p in self.trainable_parameters() if id(p) not in ids], "refiner": refiner}
        return {name: params for name, params in groups.items() if params}

    def trainable_state_dict(self) -> dict:
        """The state dict without the frozen CLIP (which `build_model` reloads from `config.weights`, or takes from
        the checkpoint that carries it)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.clip.")}


def _upsample(logits: torch.Tensor, patch_grid: tuple[int, int], size) -> torch.Tensor:
    """[B, K, h*w] -> [B, K, H, W], bilinear, align_corners=False."""
    return F.interpolate(logits.reshape(*logits.shape[:2], *patch_grid), size=size, mode="bilinear", align_corners=False)


def probabilities(outputs: dict, seen_classes, calibration: float) -> torch.Tensor:
    """Inference ensemble (docs/protocol.md §5): sigmoid(0.5 * decoder + 0.5 * mps) [B, K, H, W], minus `calibration` on
    the seen-class channels (0.1 for an inductive model, 0 for a transductive one)."""
    p = torch.sigmoid(0.5 * outputs["decoder"].float() + 0.5 * outputs["mps"].float())
    if calibration:
        seen = torch.zeros(p.shape[1], device=p.device)
        seen[torch.as_tensor(seen_classes, device=p.device, dtype=torch.long)] = calibration
        p = p - seen[None, :, None, None]
    return p


def build_model(config: OCZSSConfig, clip_state: dict | None = None) -> OCZSS:
    """Load the frozen CLIP image tower (`config.weights`) and build OCZSS; initialisation seeded by config.seed.

    clip_state: the image tower's state dict (open_clip `visual` keys) when config.weights is `checkpoint`: the
    tower stored inside an oczss checkpoint (e.g. a converted OTSeg one), laid out for `config.clip_image_size`.
    """
    tower = load_tower(config.backbone, config.weights, "visual", seed=config.seed,
                       image_size=config.clip_image_size, state=clip_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return OCZSS(config, tower.module, tower.fingerprint, tower.random)
