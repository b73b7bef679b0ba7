"""Captions as the text tower's input: CLIP token ids, and each concept's token positions (the span S_l of the
poster's c_t^l = 1/|S_l| sum_{i in S_l} z_t^i), batched as `model.simzss.TextBatch`.

open_clip's tokenizer cleans a caption (ftfy, HTML unescape, spaces collapsed, lower case), splits it into pieces
with its regular expression and BPE-encodes each piece; ids = SOT, tokens, EOT, zeros to 77, cut to 77 with EOT
last. `TokenAligner` repeats the split to know which positions each character range of the cleaned caption covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from oczss.model.simzss import TextBatch
from oczss.model.simzss.text import tokenizer
from oczss.pipeline.data.concepts import Concept


@dataclass(frozen=True)
class EncodedCaption:
    """ids: int64 [L] token ids; spans: per kept concept, its token positions; labels: per kept concept, its label."""

    ids: torch.Tensor
    spans: tuple[tuple[int, ...], ...]
    labels: tuple[int, ...]


class TokenAligner:
    """The tokenizer, and character ranges of a cleaned caption -> token positions."""

    def __init__(self):
        self.tokenizer = tokenizer()

    def clean(self, text: str) -> str:
        """The caption as the tokenizer reads it (what concepts are found in)."""
        return self.tokenizer.clean_fn(text)

    def pieces(self, cleaned: str) -> list[tuple[int, int, int, int]]:
        """(char start, char end, first token position, end token position) of each piece; position 0 is SOT."""
        out, position = [], 1
        for m in self.tokenizer.pat.finditer(cleaned):
            n = len(self.tokenizer.encode(m.group()))
            out.append((m.start(), m.end(), position, position + n))
            position += n
        return out

    def encode(self, cleaned: str, concepts: list[Concept], max_concepts: int, max_tokens: int) -> EncodedCaption:
        """Token ids of a cleaned caption and the token positions of its concepts: every token of a piece that
        overlaps one of the concept's character ranges. A concept is dropped when it has no token, more than
        `max_tokens` or one past the context (cut off by truncation); at most `max_concepts` are kept, in order."""
        ids = self.tokenizer([cleaned])[0]
        last = self.tokenizer.context_length - 2  # the last content position of a truncated caption
        pieces = self.pieces(cleaned)
        spans, labels = [], []
        for concept in concepts:
            positions = sorted({p for start, end, first, stop in pieces for a, b in concept.chars
                                if start < b and a < end for p in range(first, stop)})
            if positions and len(positions) <= max_tokens and positions[-1] <= last and len(spans) < max_concepts:
                spans.append(tuple(positions))
                labels.append(concept.label)
        return EncodedCaption(ids, tuple(spans), tuple(labels))


def collate(captions: list[EncodedCaption]) -> TextBatch:
    """Encoded captions -> TextBatch: tokens [B, L], spans [B, M, T] and labels [B, M], padded with -1 (M, T: the
    batch's most concepts per caption and tokens per concept, at least 1)."""
    m = max([len(c.spans) for c in captions] + [1])
    t = max([len(s) for c in captions for s in c.spans] + [1])
    spans = torch.full((len(captions), m, t), -1, dtype=torch.long)
    labels = torch.full((len(captions), m), -1, dtype=torch.long)
    for i, c in enumerate(captions):
        for j, (span, label) in enumerate(zip(c.spans, c.labels)):
            spans[i, j, :len(span)] = torch.tensor(span)
            labels[i, j] = label
    return TextBatch(torch.stack([c.ids for c in captions]), spans, labels)
