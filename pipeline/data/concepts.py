"""Concepts of a caption: the noun phrases L_l aligns to patches, each with its identity and where it lies.

Two sources, chosen by `ConceptConfig.source` (the run's config says which):
- `spacy` (the paper: a part-of-speech tagger; the public code: spaCy's `en_core_web_trf`): for each noun chunk
  of the caption, the concept is its root noun with the root's last `compound` child (public code
  `make_shards_spacy.py`): "a tennis player" -> "tennis player", lemmatised ("two rackets" -> "racket"); its words
  are the ones L_l averages. Needs `pip install 'oczss[simzss]'` and a spaCy model (`python -m spacy download
  en_core_web_trf`, or the smaller `en_core_web_sm`).
- `vocabulary` (no tagger model): the longest phrases of a concept vocabulary found in the caption, word by word,
  the last word also in its plural forms ("dining tables", "knives", "men").

Both keep only the concepts of the vocabulary (the public code filters spaCy's concepts by the class names of its
7 evaluation datasets); `vocabulary="none"` keeps every noun chunk (spacy only). A concept's label identifies it
across captions, batches and processes: its vocabulary row, or without a vocabulary a stable hash of its name.
Captions are handled in the form the text tower sees them (`caption_tokens.clean`: ftfy, HTML unescape, spaces,
lower case), so character spans map onto CLIP tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import regex

from oczss.errors import OCZSSError
from oczss.pipeline.data.concept_vocabulary import Vocabulary, load_vocabulary

SOURCES = ("spacy", "vocabulary")
WORD = regex.compile(r"\p{L}+")


@dataclass(frozen=True)
class ConceptConfig:
    """How concepts are found. source: `spacy` or `vocabulary`. vocabulary: `benchmarks` (the class names of the
    benchmarks oczss evaluates on, plus `concept_vocabulary.SYNONYMS`), a text file (one concept per line,
    synonyms after it separated by ", ") or `none` (spacy only: every noun chunk). spacy_model: the spaCy
    pipeline (the public code's `en_core_web_trf`). max_concepts, max_tokens: per caption and per concept (the
    public code's 32 and 16); a concept with more tokens, or past the 77-token context, is dropped."""

    source: str = "spacy"
    vocabulary: str = "benchmarks"
    spacy_model: str = "en_core_web_trf"
    max_concepts: int = 32
    max_tokens: int = 16

    def __post_init__(self):
        if self.source not in SOURCES:
            raise OCZSSError(f"concepts: source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.vocabulary == "none" and self.source == "vocabulary":
            raise OCZSSError("concepts: source 'vocabulary' needs a vocabulary ('benchmarks' or a file), not 'none'")
        if self.vocabulary not in ("benchmarks", "none") and not Path(self.vocabulary).is_file():
            raise OCZSSError(f"concepts: vocabulary {self.vocabulary}: no such file (expected 'benchmarks', 'none' "
                             f"or a text file of concepts)")
        for name in ("max_concepts", "max_tokens"):
            if getattr(self, name) < 1:
                raise OCZSSError(f"concepts: {name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Concept:
    """name: the concept ("tennis player"); label: its identity (vocabulary row, or hash); chars: the (start, end)
    character ranges of its words in the cleaned caption."""

    name: str
    label: int
    chars: tuple[tuple[int, int], ...]


def open_label(name: str) -> int:
    """The label of a concept outside any vocabulary: a stable 63-bit hash of its name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


def build(config: ConceptConfig, nlp=None):
    """The extractor `config` asks for: a callable, cleaned captions -> their concepts. nlp: a spaCy pipeline to use
    instead of loading `config.spacy_model` (tests)."""
    vocabulary = None if config.vocabulary == "none" else load_vocabulary(config.vocabulary)
    if config.source == "vocabulary":
        return VocabularyConcepts(vocabulary)
    return SpacyConcepts(nlp if nlp is not None else load_spacy(config.spacy_model), vocabulary)


def load_spacy(model: str, check_only: bool = False):
    """spaCy's pipeline `model` (check_only: whether it is installed, without loading it; None); a one-line error
    saying what to install when spaCy or the model is missing."""
    try:
        import spacy
    except ImportError:
        raise OCZSSError("concepts from spaCy need spaCy: pip install 'oczss[simzss]' (or use the concept source "
                         "'vocabulary', which needs no tagger)") from None
    missing = OCZSSError(f"spaCy model {model!r} is not installed: python -m spacy download {model} (or use the "
                         f"concept source 'vocabulary', which needs no tagger model)")
    if check_only:
        if not (spacy.util.is_package(model) or Path(model).is_dir()):
            raise missing
        return None
    try:
        return spacy.load(model, exclude=["ner"])
    except OSError:
        raise missing from None


class VocabularyConcepts:
    """Concepts as the longest vocabulary phrases in the caption, left to right, without overlaps."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary

    def __call__(self, texts: list[str]) -> list[list[Concept]]:
        return [self.one(t) for t in texts]

    def one(self, text: str) -> list[Concept]:
        words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]
        out, i = [], 0
        while i < len(words):
            found = self.vocabulary.match([w for w, _, _ in words[i: i + self.vocabulary.longest]])
            if found is None:
                i += 1
                continue
            row, n = found
            out.append(Concept(self.vocabulary.names[row], row, tuple((a, b) for _, a, b in words[i: i + n])))
            i += n
        return out


class SpacyConcepts:
    """Concepts from spaCy's noun chunks: the root's last compound child and the root, named with the root's
    lemma (public code `extract_nouns`), kept if the vocabulary has the name (any name without a vocabulary)."""

    def __init__(self, nlp, vocabulary: Vocabulary | None):
        self.nlp, self.vocabulary = nlp, vocabulary

    def __call__(self, texts: list[str]) -> list[list[Concept]]:
        return [self.concepts(doc) for doc in self.nlp.pipe(texts, batch_size=256)]

    def concepts(self, doc) -> list[Concept]:
        out = []
        for chunk in doc.noun_chunks:
            root = chunk.root
            words = [c for c in root.children if c.dep_ == "compound"][-1:] + [root]
            name = " ".join([w.text for w in words[:-1]] + [root.lemma_.lower()])
            if self.vocabulary is None:
                label = open_label(name)
            else:
                found = self.vocabulary.match(name.split(), plural=False)
                if found is None or found[1] != len(name.split()):
                    continue
                label, name = found[0], self.vocabulary.names[found[0]]
            out.append(Concept(name, label, tuple((w.idx, w.idx + len(w.text)) for w in words)))
        return out
