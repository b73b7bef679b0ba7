"""The frozen DINO encoder: loading by name, by local path or with random weights, and its patch features.

Default model: timm `vit_base_patch16_224.dino` (DINO ViT-B/16), position embeddings resized to the R/16 grid
by timm when the weights load. `pretrained` asks timm's hub cache; a path loads a local checkpoint (timm or
original DINO key names); `random` builds seeded random weights for tests and the demo and announces them.
`tiny` and `tiny-p8` are 2-layer, 48-wide ViTs for fast tests (TINY_SHAPES).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model.names import DINO_B16 as DEFAULT_MODEL, TINY, TINY_P8, TINY_P14, check_name
from oczss.model.weights import announce_random, timm_weights

# 2-layer, 48-wide test ViTs: `tiny` (patch 16, 3 heads) for Stage 1; `tiny-p8` (patch 8, 2 heads: the tiny
# CLIP's head count, as CASS pairs heads one to one) for CASS; `tiny-p14` (DINOv2's patch 14) for SimZSS
TINY_SHAPES = {TINY: dict(patch_size=16, num_heads=3), TINY_P8: dict(patch_size=8, num_heads=2),
               TINY_P14: dict(patch_size=14, num_heads=3)}


def load_dino(name: str, weights: str, input_size: int, dynamic: bool = False) -> torch.nn.Module:
    """A frozen DINO ViT (eval mode, no grad) for R x R inputs, or any size (multiple of the patch) with
    `dynamic` (timm resizes its position embeddings per input). weights: 'pretrained' | 'random' | a file path."""
    from timm.models.vision_transformer import VisionTransformer

    check_name("dino", name, "--dino-model")
    kwargs = dict(img_size=input_size, num_classes=0, dynamic_img_size=dynamic)
    if weights == "random":
        announce_random(f"DINO ({name})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if name in TINY_SHAPES:
                model = VisionTransformer(**TINY_SHAPES[name], depth=2, embed_dim=48, **kwargs)
            else:
                model = _create(name, pretrained=False, **kwargs)
    elif name in TINY_SHAPES:
        raise OCZSSError(f"--dino-model {name} exists for tests with --dino-weights random only")
    else:
        example = "dinov2_vitb14_pretrain.pth" if "dinov2" in name else "dino_vitbase16_pretrain.pth"
        try:
            model = timm_weights(name, weights, "--dino-weights", example, **kwargs)
        except TypeError as e:  # timm passes img_size on to a model that takes none: not a ViT
            raise _not_vit(name, f" ({e})") from e
    if not isinstance(getattr(model, "patch_embed", None), torch.nn.Module) or not hasattr(model, "blocks"):
        raise _not_vit(name)
    patch = model.patch_embed.patch_size[0]
    if input_size % patch:
        raise OCZSSError(f"--input-size {input_size} is not a multiple of the patch size {patch} of {name}")
    model.eval().requires_grad_(False)
    return model


def _create(name: str, **kwargs) -> torch.nn.Module:
    """timm.create_model, refusing in one line a model that takes no ViT input size (not a ViT)."""
    import timm

    try:
        return timm.create_model(name, **kwargs)
    except TypeError as e:
        raise _not_vit(name, f" ({e})") from e


def _not_vit(name: str, why: str = "") -> OCZSSError:
    return OCZSSError(f"--dino-model {name} is not a ViT{why}; DINO's patch tokens need a timm ViT such as "
                      f"{DEFAULT_MODEL}")


class DinoFeatures(torch.nn.Module):
    """The frozen DINO's last-layer patch tokens (Alg. 1 steps 1-2), without autograd, bf16 autocast on CUDA.

    `token_grid`: ImageNet-normalised images [B, 3, H, W] (H, W multiples of the patch; the model must have been
    loaded with `dynamic=True` for sizes other than its input size) -> fp32 [B, C, H/p, W/p].
    `forward`: uint8 images [B, R, R, 3] -> the tokens resized (bilinear, `on_grid`) to the S x S grid, fp32
    [B, S*S, C].
    """

    def __init__(self, model: torch.nn.Module, grid: int):
        super().__init__()
        self.model, self.grid = model, grid
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1) * 255)

    @property
    def patch(self) -> int:
        return self.model.patch_embed.patch_size[0]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> ImageNet-normalised float [B, 3, H, W]."""
        return (images.permute(0, 3, 1, 2).float() - self.mean) / self.std

    @torch.inference_mode()
    def token_grid(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            tokens = self.model.forward_features(x)[:, self.model.num_prefix_tokens:]
        b, _, c = tokens.shape
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        return tokens.float().transpose(1, 2).reshape(b, c, h, w)

    def on_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grid [B, C, h, w] -> the tokens resized to the S x S grid, fp32 [B, S*S, C] (what FPS clusters)."""
        return resize_grid(tokens, (self.grid, self.grid)).flatten(2).transpose(1, 2)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.on_grid(self.token_grid(self.normalise(images)))


def resize_grid(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, *size], bilinear (align_corners False); unchanged when already that size."""
    if tuple(grid.shape[-2:]) == tuple(size):
        return grid
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
