"""Word error rate of transcripts against reference transcripts, after a Whisper-style normalisation.

Both sides are lower-cased, punctuation and hyphens become spaces, and common English
abbreviations are spelled out ("Mr." = "mister"), so WER counts wrong words, not house style.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_SPELLED = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miss",
    "dr": "doctor",
    "st": "saint",
    "jr": "junior",
    "sr": "senior",
    "prof": "professor",
    "vs": "versus",
}
_NON_WORD = re.compile(r"[^\w' ]+", re.UNICODE)


def normalize_for_wer(text: str) -> list[str]:
    """The words of `text` as WER compares them."""
    text = text.lower().replace("’", "'").replace("-", " ")
    words = _NON_WORD.sub(" ", text).split()
    words = [w.strip("'") for w in words]
    return [_SPELLED.get(w, w) for w in words if w]


def edit_distance(hyp: Sequence[str], ref: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[len(hyp)]


@dataclass(frozen=True)
class WerResult:
    """Corpus WER: word errors over reference words, and per-item errors."""

    errors: int
    reference_words: int
    per_item: tuple[tuple[str, int, int], ...]  # (item, errors, reference words)

    @property
    def wer(self) -> float:
        return self.errors / self.reference_words if self.reference_words else 0.0


def word_error_rate(hypotheses: dict[str, str], references: dict[str, str]) -> WerResult:
    """Corpus WER of `hypotheses` against `references`, keyed alike; a missing hypothesis counts as empty."""
    per_item = []
    for key in sorted(references):
        ref = normalize_for_wer(references[key])
        per_item.append((key, edit_distance(normalize_for_wer(hypotheses.get(key, "")), ref), len(ref)))
    return WerResult(sum(e for _, e, _ in per_item), sum(n for _, _, n in per_item), tuple(per_item))
