"""The concept vocabulary: which concepts L_l learns, and their synonyms.

`benchmarks`: the class names of the benchmarks oczss evaluates on (VOC, PASCAL Context, COCO-Stuff and COCO-Object,
ADE20K, Cityscapes; pipeline/data/classes.py), as the public code uses the class names of its 7 evaluation datasets
(`7_dataset_eval_merged.txt`, 574 names). Names are lower-cased, COCO-Stuff's `-other` / `-stuff` / `-merged`
suffixes dropped and other punctuation made spaces ("building-other" -> "building"). Where the benchmarks name one
thing several ways, SYNONYMS (the stated list) makes them one concept, named by its first entry: two names of one
thing would otherwise be two classes of the batch's classifier, each the other's negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import regex

from oczss.errors import OCZSSError
from oczss.pipeline.data.classes import (ADE_CLASSES, CITYSCAPES_CLASSES, COCO_CLASSES, CONTEXT_CLASSES,
                                         VOC_CLASSES)

SYNONYMS = (
    ("person", "man", "woman", "boy", "girl", "child", "kid", "baby", "people", "guy", "lady"),
    ("aeroplane", "airplane", "plane", "jet"),
    ("motorbike", "motorcycle"),
    ("tv monitor", "tvmonitor", "tv", "television", "television receiver"),
    ("sofa", "couch"),
    ("dining table", "diningtable"),
    ("potted plant", "pottedplant", "houseplant"),
    ("bicycle", "bike"),
    ("cell phone", "cellphone", "phone"),
    ("refrigerator", "fridge"),
    ("hot dog", "hotdog"),
    ("donut", "doughnut"),
)
IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "person", "mice": "mouse",
             "feet": "foot", "teeth": "tooth", "geese": "goose"}
_SUFFIX = regex.compile(r"-(other|stuff|merged)$")
_NOT_LETTER = regex.compile(r"[^\p{L}\p{N}]+")


def normalise(name: str) -> tuple[str, ...]:
    """A class name as the words a caption would use: 'Building-other' -> ('building',)."""
    return tuple(_NOT_LETTER.sub(" ", _SUFFIX.sub("", name.strip().lower())).split())


def singulars(word: str) -> list[str]:
    """The word and the singulars it may be the plural of (regular English plurals and IRREGULAR)."""
    out = [word]
    if word in IRREGULAR:
        out.append(IRREGULAR[word])
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("ves"):
        out += [word[:-3] + "f", word[:-3] + "fe"]
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


@dataclass
class Vocabulary:
    """names: one per concept (its label is the row); table: every synonym's words -> its concept's row."""

    names: list[str]
    table: dict[tuple[str, ...], int] = field(default_factory=dict)

    @classmethod
    def from_groups(cls, groups) -> "Vocabulary":
        """Concepts from groups of names (first = the concept); a name already taken keeps its first concept."""
        vocab = cls([])
        for group in groups:
            keys = [k for k in map(normalise, group) if k]
            if not keys:
                continue
            row = next((vocab.table[k] for k in keys if k in vocab.table), None)
            if row is None:
                row = len(vocab.names)
                vocab.names.append(" ".join(keys[0]))
            for k in keys:
                vocab.table.setdefault(k, row)
        return vocab

    @property
    def longest(self) -> int:
        return max(map(len, self.table), default=0)

    def match(self, words: list[str], plural: bool = True) -> tuple[int, int] | None:
        """The longest leading phrase of `words` that names a concept: (its row, its word count), or None. With
        `plural`, the phrase's last word may be in a plural form."""
        for n in range(min(len(words), self.longest), 0, -1):
            head = tuple(words[: n - 1])
            for last in singulars(words[n - 1]) if plural else [words[n - 1]]:
                row = self.table.get(head + (last,))
                if row is not None:
                    return row, n
        return None


def load_vocabulary(spec: str) -> Vocabulary:
    """`benchmarks` (SYNONYMS, then every benchmark class name not among them) or a text file: one concept per line,
    its synonyms after it separated by ", "; blank lines and lines starting with # are skipped."""
    if spec == "benchmarks":
        names = VOC_CLASSES + CONTEXT_CLASSES + COCO_CLASSES + ADE_CLASSES + CITYSCAPES_CLASSES
        return Vocabulary.from_groups(list(SYNONYMS) + [(n,) for n in names])
    try:
        lines = Path(spec).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OCZSSError(f"concept vocabulary {spec}: cannot be read ({e})") from None
    vocab = Vocabulary.from_groups(line.split(",") for line in lines if line.strip() and not line.startswith("#"))
    if not vocab.names:
        raise OCZSSError(f"concept vocabulary {spec}: holds no concept (one per line, synonyms after ', ')")
    return vocab
