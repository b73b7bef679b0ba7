"""Split Matching's Mask2Former (§3.1, §4): transformers' implementation with a timm ResNet backbone.

transformers' `Mask2FormerModel` (pinned in the `sm` extra) supplies the three parts of Mask2Former unchanged: the
backbone (timm through `TimmBackboneConfig`, stages res2-res5 at strides 4-32, BatchNorm frozen as in Mask2Former's
ResNets), the multi-scale deformable-attention pixel decoder (pure PyTorch) and the masked-attention transformer
decoder. Split Matching needs one thing its `forward` does not offer: decoding a query set other than the trained
one (the random queries Q_r of §3.4 join at inference), so `decode` runs the transformer module's own submodules
on the queries it is given, as `Mask2FormerTransformerModule.forward` does.

Backbone weights: `pretrained` asks timm's hub cache (checked first, one-line error when offline), a path loads a
local timm / torchvision checkpoint, `random` is for tests and the demo. The default `resnet101.tv_in1k` is
torchvision's ImageNet ResNet-101, the weights Mask2Former's R-101 model starts from.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from oczss.errors import OCZSSError
from oczss.model.sm.config import TINY, SMConfig
from oczss.model.weights import announce_random, timm_weights

try:
    from transformers import Mask2FormerConfig, Mask2FormerModel, TimmBackboneConfig
    from transformers.utils import logging as hf_logging
except ImportError as e:  # the `sm` extra is not installed
    raise OCZSSError("Split Matching needs transformers' Mask2Former: pip install 'oczss[sm]'") from e

OUT_INDICES = (1, 2, 3, 4)  # ResNet stages res2-res5, strides 4, 8, 16, 32 (Mask2Former's backbone outputs)
TINY_TIMM = "test_resnet"  # timm's own test ResNet: 4 stages at the same strides, 0.37M parameters


def timm_name(backbone: str) -> str:
    """The timm model name of an SMConfig backbone."""
    return TINY_TIMM if backbone == TINY else backbone


def mask2former_config(config: SMConfig) -> Mask2FormerConfig:
    """transformers' Mask2FormerConfig for `config`: its backbone through timm, Mask2Former's dimensions."""
    backbone = TimmBackboneConfig(backbone=timm_name(config.backbone), out_indices=list(OUT_INDICES))
    with _quiet():
        return Mask2FormerConfig(backbone_config=backbone, feature_size=config.hidden_dim,
                                 mask_feature_size=config.hidden_dim, hidden_dim=config.hidden_dim,
                                 encoder_layers=config.encoder_layers, decoder_layers=config.decoder_layers,
                                 num_attention_heads=config.num_heads, dim_feedforward=config.dim_feedforward,
                                 encoder_feedforward_dim=config.encoder_feedforward_dim, num_queries=config.queries)


def build_mask2former(config: SMConfig, load_weights: bool = True) -> Mask2FormerModel:
    """Mask2Former for `config` with its backbone weights loaded (config.weights) and BatchNorm frozen.

    Real weights are fetched (or their absence reported) before the network is built. The rest of the network is
    initialised by transformers' Mask2Former initialisation under the caller's RNG state. load_weights False: no
    backbone weights at all (a checkpoint's state dict fills every value next)."""
    pretrained = None
    if load_weights and config.weights == "random":
        announce_random(f"the Split Matching backbone ({config.backbone})")
    elif load_weights:
        pretrained = timm_weights(config.backbone, config.weights, "model weights", f"{config.backbone}.safetensors",
                                  features_only=True, out_indices=OUT_INDICES)
    with _quiet():
        model = Mask2FormerModel(mask2former_config(config))
    encoder = model.pixel_level_module.encoder
    if pretrained is not None:
        try:
            encoder._backbone.load_state_dict(pretrained.state_dict())
        except RuntimeError as e:
            raise OCZSSError(f"model weights {config.weights}: they do not fit {config.backbone}: "
                             f"{str(e)[:300]}") from e
    encoder.freeze_batch_norm_2d()
    return model


def decode(module: nn.Module, features: tuple[torch.Tensor, ...], mask_features: torch.Tensor,
           content: torch.Tensor, position: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The masked-attention transformer decoder on the given queries.

    module: the model's `transformer_module`; features: the pixel decoder's three scales [B, D, h_i, w_i], coarse
    to fine (the keys and values, one scale per layer in turn); mask_features [B, D, h, w] (stride 4); content and
    position [Q, D]: the queries' initial features and their positional embeddings.
    Returns (hidden, masks): per prediction (the initial queries', then each layer's, `decoder_layers` in all)
    the layer-normed query features [B, Q, D] and the mask logits [B, Q, h, w].
    """
    keys, positions, sizes = [], [], []
    for i, f in enumerate(features):
        sizes.append(f.shape[-2:])
        positions.append(module.position_embedder(f.shape, f.device, f.dtype, None).flatten(2).permute(2, 0, 1))
        keys.append((module.input_projections[i](f).flatten(2) + module.level_embed.weight[i][None, :, None])
                    .permute(2, 0, 1))
    b = features[0].shape[0]
    out = module.decoder(inputs_embeds=content.unsqueeze(1).expand(-1, b, -1),
                         multi_stage_positional_embeddings=positions, pixel_embeddings=mask_features,
                         encoder_hidden_states=keys, query_position_embeddings=position.unsqueeze(1).expand(-1, b, -1),
                         feature_size_list=sizes, return_dict=True)
    return [h.transpose(0, 1) for h in out.intermediate_hidden_states], list(out.masks_queries_logits)


@contextlib.contextmanager
def _quiet():
    """transformers' warning that Mask2Former was validated with Swin only: a timm ResNet is what the paper uses."""
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
