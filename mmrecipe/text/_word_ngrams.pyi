"""Repeated word n-grams of a document: the counts of the Gopher repetition rules (compiled: `_word_ngrams.c`)."""

from collections.abc import Sequence

def repeated_chars(words: Sequence[str], /) -> tuple[int, int, int, int, int, int, int, int, int]:
    """Top 2-4-gram chars (space-joined, times the count), then duplicated 5-10-gram chars, as datatrove counts."""

def covered_chars(words: Sequence[str], /) -> tuple[int, int, int, int, int, int, int, int, int]:
    """Top 2-4-gram chars, then chars of the words covered by 5-10-grams (word tuples) seen before."""
