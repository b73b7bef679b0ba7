"""SplitMatching: the Mask2Former with seen, candidate and random queries, MFE, the loss hook and inference (Fig. 2).

Queries, in this order: K_s seen queries Q_s, K_u candidate queries Q_u (both trained: Mask2Former's query
embeddings, K_s + K_u of them), then at inference K_r random queries Q_r (§3.4 RQ): fixed N(0, 1) vectors drawn once
from the model's seed, as Mask2Former initialises its query embeddings, kept as buffers so a checkpoint reproduces
them. Every prediction (the initial queries' and each decoder layer's) projects its query features to CLIP's C by
one linear layer (paper: "the queries are projected into a C-dimensional semantic space"; silent on how): V.

Inference (paper silent on the combination): Mask2Former's semantic inference with sigmoid scores, over all queries,
the candidate and random ones included: P[n] = Σ_q σ(V_q · A_n) σ(M_q), with A every class's text embedding.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.model.sm.config import SMConfig
from oczss.model.sm.mfe import MFE
from oczss.model.sm.network import build_mask2former, decode
from oczss.model.sm.objective import Batch, class_embeddings, sm_loss
from oczss.model.weights import fingerprint


class SplitMatching(nn.Module):
    """Split Matching (§3). Everything is trained (the backbone at a lower rate, oczss.model.sm.optim), so the
    state dict is the checkpoint. `random_weights`: the backbone did not start from real weights (tests, demo);
    `weights_fingerprint`: the fingerprint of the backbone weights it started from."""

    def __init__(self, config: SMConfig, mask2former: nn.Module, random_weights: bool):
        super().__init__()
        self.config, self.random_weights = config, random_weights
        self.weights_fingerprint = fingerprint(mask2former.pixel_level_module.encoder)
        self.mask2former = mask2former
        d, c = config.hidden_dim, config.embed_dim
        self.class_projection = nn.Linear(d, c)
        self.mfe = MFE(d, c, config.mfe_norm) if config.mfe else None
        self.candidate_mlp = nn.Sequential(nn.Linear(c, c), nn.ReLU(inplace=True), nn.Linear(c, c)) \
            if config.candidate_embedding == "features_mlp" else None
        self.register_buffer("random_content", torch.randn(config.random_queries, d))
        self.register_buffer("random_position", torch.randn(config.random_queries, d))

    def forward(self, images: torch.Tensor, random_queries: bool | None = None) -> dict:
        """images [B, 3, H, W] ImageNet-normalised (H, W multiples of 32); random_queries: append Q_r (default: in
        eval mode only, as §3.4).

        Returns {"features": per prediction V [B, Q, C], "masks": per prediction mask logits [B, Q, H/4, W/4]
        (lists, initial queries first, the last layer last), "mfe": F_u's per-pixel embeddings [B, C, H/8, W/8]
        (training with MFE only), "size": (H, W)}. Q = K_s + K_u (+ K_r)."""
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of 32 (the backbone's stride)")
        pixels = self.mask2former.pixel_level_module(images)
        features, mask_features = pixels.decoder_hidden_states, pixels.decoder_last_hidden_state
        module = self.mask2former.transformer_module
        content, position = module.queries_features.weight, module.queries_embedder.weight
        if self.config.random_queries and (not self.training if random_queries is None else random_queries):
            content = torch.cat([content, self.random_content.to(content.dtype)])
            position = torch.cat([position, self.random_position.to(position.dtype)])
        hidden, masks = decode(module, features, mask_features, content, position)
        out = {"features": [self.class_projection(h) for h in hidden], "masks": masks,
               "size": tuple(images.shape[-2:])}
        if self.mfe is not None and self.training:
            out["mfe"] = self.mfe.embed(self.mfe(features))
        return out

    def loss(self, outputs: dict, batch: Batch) -> dict:
        """L = L_SM + L_MFE (§3.4) for a training batch; see objective.sm_loss."""
        return sm_loss(outputs, batch, self.config, self.candidate_mlp)

    @torch.no_grad()
    def probabilities(self, outputs: dict, text: torch.Tensor) -> torch.Tensor:
        """Semantic inference from the last prediction: text [N, C] (or [N, T, C], averaged over templates) ->
        P [B, N, H, W] = Σ_q σ(V_q · A_n) σ(M_q), masks upsampled bilinearly to the input size."""
        text = class_embeddings(text).to(outputs["features"][-1].dtype)
        scores = (outputs["features"][-1] @ text.T).sigmoid()
        masks = F.interpolate(outputs["masks"][-1], size=outputs["size"], mode="bilinear", align_corners=False)
        return torch.einsum("bqn,bqhw->bnhw", scores, masks.sigmoid())


def build_sm(config: SMConfig) -> SplitMatching:
    """The model for `config`: backbone weights per config.weights, everything else initialised under config.seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return SplitMatching(config, build_mask2former(config), config.weights == "random")


def restore_sm(config: SMConfig, state: dict, random_weights: bool, weights_fingerprint: str) -> SplitMatching:
    """A trained model from its checkpoint's state dict (every value; no backbone weights are fetched), in eval
    mode; `random_weights` / `weights_fingerprint`: what the checkpoint records of its starting weights. A state
    that does not fit `config` raises RuntimeError (load_state_dict's)."""
    model = SplitMatching(config, build_mask2former(config, load_weights=False), random_weights)
    model.load_state_dict(state)
    model.weights_fingerprint = weights_fingerprint
    return model.eval()
