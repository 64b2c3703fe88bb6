"""Eval-set contamination of a mixture: which word n-grams (13 by default) of each eval set occur in it.

Text is lower-cased and split into Unicode word tokens (`\\w+`), as in the GPT-3 / Dolma decontamination
recipes, so punctuation and whitespace changes do not hide an overlap. An eval set's overlap is the share
of its distinct n-grams that occur anywhere in the mixture's documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """The normalised word tokens of a text."""
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[str]:
    """The distinct word n-grams of a text (empty when it has fewer than n words)."""
    w = words(text)
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


@dataclass
class EvalSetOverlap:
    """How much of one eval set occurs in the mixture."""

    name: str
    ngrams: int
    found: int
    docs_hit: int
    example_docs: list[str] = field(default_factory=list)

    @property
    def overlap(self) -> float:
        return self.found / self.ngrams if self.ngrams else 0.0


@dataclass
class ContaminationReport:
    """The overlap of every eval set with the mixture, against the recipe's threshold."""

    n: int
    max_overlap: float
    eval_sets: list[EvalSetOverlap]

    @property
    def worst(self) -> float:
        return max((e.overlap for e in self.eval_sets), default=0.0)

    @property
    def passed(self) -> bool:
        return self.worst <= self.max_overlap

    def rows(self) -> list[dict[str, object]]:
        return [
            {
                "eval_set": e.name,
                "ngrams": e.ngrams,
                "found_in_mixture": e.found,
                "overlap": round(e.overlap, 6),
                "docs_hit": e.docs_hit,
                "example_docs": ", ".join(e.example_docs) or "none",
            }
            for e in self.eval_sets
        ]


def contamination(
    docs: Iterable[tuple[str, str]], eval_sets: Mapping[str, str], n: int = 13, max_overlap: float = 0.01
) -> ContaminationReport:
    """The overlap between (doc_id, text) documents and named eval-set texts."""
    grams = {name: ngrams(text, n) for name, text in sorted(eval_sets.items())}
    found: dict[str, set[str]] = {name: set() for name in grams}
    hits: dict[str, list[str]] = {name: [] for name in grams}
    for doc_id, text in docs:
        doc_grams = ngrams(text, n)
        if not doc_grams:
            continue
        for name, eval_grams in grams.items():
            common = doc_grams & eval_grams if len(doc_grams) < len(eval_grams) else eval_grams & doc_grams
            if common:
                found[name] |= common
                hits[name].append(doc_id)
    results = [
        EvalSetOverlap(name, len(grams[name]), len(found[name]), len(hits[name]), sorted(hits[name])[:5])
        for name in grams
    ]
    return ContaminationReport(n, max_overlap, results)
