"""Backbone names: the defaults, the tiny test backbones, and the check that a name exists, made before any work.

timm and open_clip are imported inside the checks only, so the command line parses its flags without them. A
name is checked against the library that builds it (timm for DINO, open_clip for CLIP); an unknown one is refused
in one line with the closest known names and the Python one-liner that lists them all.
"""

from __future__ import annotations

import difflib
import re

from oczss.errors import OCZSSError

DINO_B16 = "vit_base_patch16_224.dino"  # OC-ZSS's DINO ViT-B/16: Stage 1 and the online cluster mode
DINO_B8 = "vit_base_patch8_224.dino"  # CASS's DINO ViT-B/8
DINOV2_B14 = "vit_base_patch14_dinov2"  # SimZSS's frozen DINOv2 ViT-B/14 (Stage 1's dinov2-tokens)
CLIP_B16 = "ViT-B-16"  # OpenAI CLIP ViT-B/16, both methods
TINY = "tiny"  # the 2-layer test backbones (CLIP and DINO): same code paths, seconds on a CPU
TINY_P8 = "tiny-p8"  # the tiny DINO with patch 8 (CASS's tests)
TINY_P14 = "tiny-p14"  # the tiny DINO with DINOv2's patch 14 (SimZSS's tests)
_KNOWN = {"dino": (DINO_B16, DINO_B8, DINOV2_B14, TINY, TINY_P8, TINY_P14), "clip": (CLIP_B16, TINY)}
_LISTS = {"dino": "python -c \"import timm; print(timm.list_models('vit_*', pretrained=True))\" (DINO's end in "
                  ".dino, e.g. vit_base_patch16_224.dino)",
          "clip": "python -c \"import open_clip; print(open_clip.list_models())\" (e.g. ViT-B-16)"}


def check_name(kind: str, name: str, flag: str) -> str:
    """`name` if the library of `kind` ('dino': timm, 'clip': open_clip) knows it; else OCZSSError naming `flag`,
    the closest names and how to list them all."""
    if name in _KNOWN[kind]:
        return name
    if kind == "dino":
        import timm

        names = timm.list_pretrained() + timm.list_models()
        ok = name in names or ("." not in name and timm.is_model(name))
        library = "timm"
    else:
        import open_clip

        names = open_clip.list_models()
        ok, library = name in names, "open_clip"
    if ok:
        return name
    near = closest(name, names)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    tests = "tiny, tiny-p8 and tiny-p14 are" if kind == "dino" else "tiny is"
    raise OCZSSError(f"{flag} {name}: {library} has no such model{hint}. List the valid names with {_LISTS[kind]}; "
                     f"{tests} the random-weight test backbone{'s' if kind == 'dino' else ''}")


def closest(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """Up to n of `choices` spelled most like `name`, ignoring case and punctuation."""
    squeezed: dict[str, str] = {}
    for c in choices:
        squeezed.setdefault(re.sub(r"[^a-z0-9]", "", c.lower()), c)
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return [squeezed[c] for c in difflib.get_close_matches(key, list(squeezed), n=n, cutoff=0.6)]
