"""CASS (CVPR 2025): training-free open-vocabulary segmentation with a frozen CLIP and a frozen DINO, per window.

The pipeline owns resizing, sliding windows, synonyms -> class max, the logit scale, the background threshold and
evaluation; this module turns CLIP-normalised windows into patch-text similarities:

    cass.set_queries(cass.query_embeddings(names))          # once per vocabulary (the caller may cache [Q, C])
    prior = cass.prior(whole_image)                         # [Q], config.prior_source == "image"
    logits = cass.window_logits(windows, prior)             # [B, Q, h, w]; prior=None: each window's own [CLS]

Per window: CLIP's blocks 1..L-1; DINO's last-block keys from the same pixels (towers.dino_pixels), resized to
CLIP's grid and range-matched to CLIP's keys; the distilled graph (§3.2, Eqs. 5-7) replaces CLIP's key graph in
the modified last block (Eqs. 1-3); Eq. 4's normalised patch features meet the OTA-adjusted queries (Eq. 8),
mixed with the prior (Eq. 9), then are bilinearly upsampled to the window size (align_corners False).

Batched on the device: all windows of a call go through both towers, the batched eigendecompositions and the
low-rank step together; the Hungarian matching is the only host round trip (one per call, matching.py).
Precision: the weights stay fp32. Under a caller's CUDA autocast (bf16 / fp16; the authors ran CLIP in fp16)
CLIP's blocks 1..L-1 and its [CLS] pass run reduced; DINO and everything from the last block's keys on run in
fp32 with autocast off, the spectral steps in fp64. No autocast: fp32 throughout. The authors' DINO forward is
fp32 too, but their DINO call casts its last-block keys to fp16 (`.half()`), and their fp16 CLIP then resizes,
range-matches and multiplies them in fp16: `dino_keys_fp16` (on by default, as the code) rounds the keys to fp16
values right after the DINO forward and keeps the arithmetic after it in fp32.
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.cass.attention import attend, gaussian_window, keys_values
from oczss.model.cass.config import CASSConfig
from oczss.model.cass.distill import distilled_graph
from oczss.model.cass.graphs import key_graph, match_range, resize_keys
from oczss.model.cass.presence import adjust_text, cluster_members, object_perspective, presence_prior, ward_clusters
from oczss.model.cass.text import query_embeddings
from oczss.model.cass.towers import clip_cls, clip_last_input, dino_keys, dino_pixels
from oczss.model.clip import load_tower
from oczss.model.dino import load_dino
from oczss.model.names import CLIP_B16, DINO_B8, TINY
from oczss.model.weights import fingerprint

DINO_INPUT_SIZE = 224  # the DINO's own training size: its position grid stays as trained


class CASS(nn.Module):
    """Frozen open_clip image tower `visual`, CLIP `text_model` (encode_text) with its `tokenizer`, frozen timm
    `dino` (None only when config.vfm is off; its head count must equal CLIP's, as CASS pairs heads one to one).
    `fingerprints` ({'clip': ..., 'dino': ...}) and `random_weights` describe the weights for every output."""

    def __init__(self, config: CASSConfig, visual: nn.Module, text_model: nn.Module, tokenizer,
                 dino: nn.Module | None, fingerprints: dict[str, str], random_weights: bool):
        super().__init__()
        clip_heads = visual.transformer.resblocks[-1].attn.num_heads
        if config.vfm:
            if dino is None:
                raise OCZSSError("CASS with vfm on needs a DINO model")
            dino_heads = dino.blocks[-1].attn.num_heads
            if dino_heads != clip_heads:
                raise OCZSSError(f"CASS pairs attention heads one to one: the DINO has {dino_heads} heads in its last "
                                 f"block, CLIP {clip_heads}")
        self.config, self.visual, self.text_model, self.tokenizer = config, visual, text_model, tokenizer
        self.dino = dino if config.vfm else None
        self.fingerprints, self.random_weights = fingerprints, random_weights
        self.register_buffer("queries", torch.empty(0, visual.output_dim), persistent=False)
        self.register_buffer("members", torch.empty(0, 0, dtype=torch.bool), persistent=False)

    def query_embeddings(self, names: list[str]) -> torch.Tensor:
        """Q names -> fp32 [Q, C] unit vectors (80 ImageNet templates averaged per name), on this model's device."""
        if not names:
            raise OCZSSError("CASS needs at least one query name")
        return query_embeddings(self.text_model, self.tokenizer, list(names))

    def set_queries(self, embeddings: torch.Tensor) -> None:
        """Use `embeddings` [Q, C] as the queries (L2-normalised here) and cluster them once (Ward, §3.3)."""
        if embeddings.dim() != 2 or embeddings.shape[0] < 1 or embeddings.shape[1] != self.visual.output_dim:
            raise OCZSSError(f"CASS queries must be [Q, {self.visual.output_dim}], got {tuple(embeddings.shape)}")
        device = self.visual.conv1.weight.device
        self.queries = F.normalize(embeddings.detach().float(), dim=-1).to(device)
        self.members = cluster_members(ward_clusters(self.queries, self.config.ward_cut)).to(device)

    @torch.no_grad()
    def prior(self, image: torch.Tensor) -> torch.Tensor:
        """Object presence prior P [Q] (§3.3): cosine of the vanilla last block's projected [CLS] of one whole
        CLIP-normalised image [1, 3, H, W] with each unadjusted query."""
        self._check_queries()
        if image.dim() != 4 or image.shape[0] != 1:
            raise OCZSSError(f"CASS.prior takes one image [1, 3, H, W], got {tuple(image.shape)}")
        return self._cls_prior(clip_last_input(self.visual, image)[0])[0]

    @torch.no_grad()
    def window_logits(self, windows: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """CLIP-normalised windows [B, 3, h, w] (one size) and the prior ([Q] for all windows, [B, Q], or None:
        each window's own [CLS]) -> patch-text cosines after OTA and OPS, upsampled, fp32 [B, Q, h, w]."""
        self._check_queries()
        c = self.config
        b = windows.shape[0]
        last_input, grid = clip_last_input(self.visual, windows)
        if c.ops or c.ota:
            prior = self._window_prior(prior, last_input, b)
        block = self.visual.transformer.resblocks[-1]
        with torch.autocast(windows.device.type, enabled=False):
            keys, values = keys_values(block, last_input.float())
            scale = keys.shape[-1] ** -0.5
            if c.vfm:
                graph = distilled_graph(keys, self._vfm_keys(windows, keys, grid), scale, c)
            else:
                graph = key_graph(keys, scale)
            window = gaussian_window(grid, c.gaussian_std, keys.device) if c.gaussian_window else None
            tokens = attend(graph, values, block.attn.out_proj, window)
            features = F.normalize(self.visual.ln_post(tokens) @ self.visual.proj, dim=-1)  # Eq. 4's F̂ [B, N, C]
            texts = self.queries.expand(b, -1, -1)
            if c.ota:
                texts = adjust_text(features, self.queries, prior, self.members, c.ota_weight, c.top_k)
            logits = features @ texts.transpose(1, 2)  # [B, N, Q]
            if c.ops:
                logits = object_perspective(logits, prior, c.ops_weight)
        maps = logits.transpose(1, 2).reshape(b, -1, *grid)
        return F.interpolate(maps, size=windows.shape[-2:], mode="bilinear", align_corners=False)

    def _vfm_keys(self, windows: torch.Tensor, clip_keys: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """DINO's last-block keys for the windows, on CLIP's grid, fp32 [B, H, N, d'] (range-matched to CLIP's
        keys per window while key_range_match; rounded to fp16 values while dino_keys_fp16). Called with autocast off:
        DINO runs in fp32, as the authors'."""
        c = self.config
        pixels = dino_pixels(windows.float(), self.dino.patch_embed.patch_size[0], c.dino_input, c.dino_square)
        keys, dino_grid = dino_keys(self.dino, pixels)
        if c.dino_keys_fp16:
            keys = keys.half().float()
        keys = resize_keys(keys, dino_grid, grid)
        return match_range(keys, clip_keys, dims=3) if c.key_range_match else keys

    def _window_prior(self, prior: torch.Tensor | None, last_input: torch.Tensor, b: int) -> torch.Tensor:
        q = self.queries.shape[0]
        if prior is None:
            return self._cls_prior(last_input)
        if prior.shape not in ((q,), (b, q)):
            raise OCZSSError(f"CASS prior must be [{q}] or [{b}, {q}], got {tuple(prior.shape)}")
        return prior.float().to(self.queries.device).expand(b, q)

    def _cls_prior(self, last_input: torch.Tensor) -> torch.Tensor:
        """The last block's input [B, 1 + N, W] -> P [B, Q] fp32 (the cosine outside autocast)."""
        cls = clip_cls(self.visual, last_input)
        with torch.autocast(last_input.device.type, enabled=False):
            return presence_prior(cls.float(), self.queries)

    def _check_queries(self) -> None:
        if not self.queries.shape[0]:
            raise OCZSSError("CASS has no queries: call set_queries(query_embeddings(names)) first")


def build_cass(config: CASSConfig, clip_weights: str, dino_weights: str, backbone: str = CLIP_B16,
               dino_model: str = DINO_B8, seed: int = 0) -> CASS:
    """CASS with both frozen towers loaded by name, local path or `random` (load_tower, load_dino); the DINO is
    not loaded when config.vfm is off. `seed` seeds random CLIP weights."""
    visual = load_tower(backbone, clip_weights, "visual", seed)
    text = load_tower(backbone, clip_weights, "text", seed)
    fingerprints = {"clip": visual.fingerprint}
    dino = None
    if config.vfm:
        dino = load_dino(dino_model, dino_weights, DINO_INPUT_SIZE)
        fingerprints["dino"] = fingerprint(dino)
    tokenizer = open_clip.get_tokenizer(CLIP_B16 if backbone == TINY else backbone)
    random_weights = visual.random or (config.vfm and dino_weights == "random")
    return CASS(config, visual.module, text.module, tokenizer, dino, fingerprints, random_weights)
