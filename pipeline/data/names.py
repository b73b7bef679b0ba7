"""Dataset names as people type them: any case, the variants that share a base dataset's images, and the closest
names when one is unknown. Imports nothing heavy, so the command line can parse with it before loading torch.

ZERO_SHOT: the OC-ZSS protocol's datasets (seen / unseen classes). The others are the training-free benchmarks;
each variant reads the same images as its base (IMAGES_OF), so one Stage 1 cache of the base serves them all.
"""

from __future__ import annotations

import re

from oczss.errors import OCZSSError
from oczss.model.names import closest

ZERO_SHOT = ("voc", "context", "coco", "demo")
DATASETS = ZERO_SHOT + ("voc20", "voc21", "context59", "context60", "coco-object", "ade", "cityscapes")
IMAGES_OF = {"voc20": "voc", "voc21": "voc", "context59": "context", "context60": "context", "coco-object": "coco"}
# what people call the benchmarks -> the names to suggest (the publishers' and papers' spellings)
_KNOWN_AS = {
    "pascal": ("voc", "context59"), "pascalvoc": ("voc", "voc21"), "voc2012": ("voc", "voc21"), "voc12": ("voc",),
    "pascalcontext": ("context", "context59"), "pc59": ("context59",), "pc60": ("context60",),
    "voc2010": ("context", "context59"), "cocostuff": ("coco",), "cocostuff164k": ("coco",), "mscoco": ("coco",),
    "cocoobject": ("coco-object",), "ade20k": ("ade",), "adechallengedata2016": ("ade",), "city": ("cityscapes",),
}


def canonical(name: str, choices: tuple[str, ...] = DATASETS, flag: str = "dataset") -> str:
    """`name` as the spelling in `choices`, whatever its case; raises OCZSSError naming the closest choices."""
    found = {c.lower(): c for c in choices}.get(name.strip().lower())
    if found is None:
        raise OCZSSError(unknown(name, choices, flag))
    return found


def unknown(name: str, choices: tuple[str, ...], flag: str = "dataset") -> str:
    """The message for an unknown name: the closest choices, then every choice."""
    near = suggest(name, choices)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"unknown {flag} {name!r}{hint} (choose one of {', '.join(choices)})"


def suggest(name: str, choices: tuple[str, ...]) -> list[str]:
    """Up to 3 choices close to `name`: what the benchmark is also called, else the closest spellings."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    known = [c for c in _KNOWN_AS.get(key, ()) if c in choices]
    if known:
        return known
    return closest(name, choices) or [c for c in choices if key and (c.startswith(key) or key.startswith(c))][:3]


def images_of(name: str) -> str:
    """The dataset whose images `name` reads (itself, or the base of a variant): the name its Stage 1 cache has."""
    return IMAGES_OF.get(name, name)
