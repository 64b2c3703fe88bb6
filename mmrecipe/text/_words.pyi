"""A text's words from its whitespace chunks' remembered tokens (compiled: `_words.c`)."""

from collections.abc import Mapping

def chunk_words(
    text: str, memo: Mapping[str, tuple[str, ...]], pairs: dict[str, frozenset[str]], /
) -> tuple[list[str], list[int], list[int] | None, bytes | None]:
    """(tokens, special-case pattern starts, one past each chunk's last token, one-space gaps after chunks)."""
