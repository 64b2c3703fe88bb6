"""Words and sentences of a text exactly as spaCy's blank English tokenizer and sentencizer split them.

datatrove's Gopher, C4 and FineWeb filters (and so FineWeb) count words with `spacy.blank("en")`: every
punctuation mark is its own token. This module runs spaCy's tokenizer algorithm (whitespace chunks, special
cases, prefixes, suffixes, URL match, infixes, then the special-case matcher) over spaCy's own rule tables,
exported to `spacy_en_tables.py` by `scripts/export_spacy_tables.py`, so spaCy is not needed at run time.
Whitespace chunks are tokenized once and remembered, as spaCy's cache does; the loop over a text's chunks
is compiled (`_words.c`).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import compress, count, pairwise

from mmrecipe.text._words import chunk_words
from mmrecipe.text.spacy_en_tables import INFIX, PREFIX, SENTENCE_PUNCT, SPECIAL_CASES, SUFFIX, URL_MATCH

_PREFIX = re.compile(PREFIX).search
_SUFFIX = re.compile(SUFFIX).search
_INFIXES = re.compile(INFIX).finditer
_URL = re.compile(URL_MATCH).match
_PIECES = re.compile(r"\s+|\S+")  # \s is str.isspace, the test spaCy (and str.split) splits on
_SENTENCE_PUNCT = frozenset(SENTENCE_PUNCT)
MEMO_CHUNKS = 200_000  # whitespace chunks whose tokens are remembered (the memo is cleared when full)


class WordMemo(dict[str, bool]):
    """A test of a word or token, remembered per word (cleared when full): lookups of seen words stay in C."""

    def __init__(self, test: Callable[[str], bool]) -> None:
        super().__init__()
        self.test = test

    def __missing__(self, word: str) -> bool:
        if len(self) >= MEMO_CHUNKS:
            self.clear()
        found = self[word] = self.test(word)
        return found


class _ChunkMemo(dict[str, tuple[str, ...]]):
    """Whitespace chunk → its tokens; a missing chunk is tokenized on lookup, so lookups stay in C."""

    def __missing__(self, chunk: str) -> tuple[str, ...]:
        found = self[chunk] = _chunk_tokens(chunk)
        return found


_memo = _ChunkMemo()


def _affix_split(string: str, specials: bool) -> tuple[list[str], str, list[str]]:
    """(prefixes, the rest, suffixes in the order they were cut) of a chunk (spaCy's `_split_affixes`)."""
    prefixes: list[str] = []
    suffixes: list[str] = []
    last_size = 0
    while string and len(string) != last_size:
        if specials and string in SPECIAL_CASES:
            break
        last_size = len(string)
        match = _PREFIX(string)
        pre_len = match.end() - match.start() if match else 0
        if pre_len:
            prefix, minus_pre = string[:pre_len], string[pre_len:]
            if minus_pre and specials and minus_pre in SPECIAL_CASES:
                prefixes.append(prefix)
                string = minus_pre
                break
        match = _SUFFIX(string[pre_len:])
        suf_len = match.end() - match.start() if match else 0
        if suf_len:
            suffix, minus_suf = string[-suf_len:], string[:-suf_len]
            if minus_suf and specials and minus_suf in SPECIAL_CASES:
                suffixes.append(suffix)
                string = minus_suf
                break
        if pre_len and suf_len and pre_len + suf_len <= len(string):
            string = string[pre_len:-suf_len]
            prefixes.append(prefix)
            suffixes.append(suffix)
        elif pre_len:
            string = minus_pre
            prefixes.append(prefix)
        elif suf_len:
            string = minus_suf
            suffixes.append(suffix)
    return prefixes, string, suffixes


def _chunk_tokens(chunk: str, specials: bool = True) -> tuple[str, ...]:
    """The tokens of one whitespace-delimited chunk (spaCy's `_tokenize`: affixes, then `_attach_tokens`)."""
    if specials and chunk in SPECIAL_CASES:
        return SPECIAL_CASES[chunk]
    out, string, suffixes = _affix_split(chunk, specials)
    if string:
        if specials and string in SPECIAL_CASES:
            out.extend(SPECIAL_CASES[string])
        elif _URL(string):
            out.append(string)
        else:
            start = 0
            for match in _INFIXES(string):
                infix_start, infix_end = match.span()
                if infix_start == 0:
                    continue
                if infix_start != start:
                    out.append(string[start:infix_start])
                if infix_start != infix_end:
                    out.append(string[infix_start:infix_end])
                start = infix_end
            if start < len(string):
                out.append(string[start:])
    out.extend(reversed(suffixes))
    return tuple(out)


def _affix_tokens(text: str, specials: bool = True) -> tuple[list[str], set[int]]:
    """(tokens, indices of tokens followed by a space) before the special-case matcher (`_tokenize_affixes`).

    Like str.split, but a whitespace run is a token of its own, less the one space that follows a token.
    """
    tokens: list[str] = []
    spaced: set[int] = set()
    memo = _memo if specials else {}
    for piece in _PIECES.findall(text):
        if piece[0] == " " and tokens:
            spaced.add(len(tokens) - 1)
            piece = piece[1:]
            if not piece:
                continue
        if specials:
            found = memo[piece]
        elif (found := memo.get(piece)) is None:
            found = memo[piece] = _chunk_tokens(piece, specials)
        tokens.extend(found)
    if len(memo) >= MEMO_CHUNKS:
        memo.clear()
    return tokens, spaced


def _matcher_patterns() -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """Special cases that affix splitting can hide, as spaCy's `_special_matcher` holds them: first token → patterns.

    A pattern is the special case's tokens without special cases; one-token patterns change nothing and are left out.
    """
    patterns: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
    for text in SPECIAL_CASES:
        if _PREFIX(text) or _SUFFIX(text) or any(True for _ in _INFIXES(text)) or " " in text:
            tokens = tuple(_affix_tokens(text, specials=False)[0])
            if len(tokens) > 1:
                patterns[tokens[0]].append((tokens, text))
    return dict(patterns)


_PATTERNS = _matcher_patterns()
_BY_PAIR: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)  # first two tokens → patterns
for _patterns in _PATTERNS.values():
    for _pattern, _ in _patterns:
        _BY_PAIR[_pattern[:2]].append(_pattern)
_PATTERN_STARTS = frozenset(_BY_PAIR)
_seconds: dict[str, set[str]] = defaultdict(set)  # a pattern's first token → the second tokens that may follow
for _first, _second in _BY_PAIR:
    _seconds[_first].add(_second)
_SECONDS = {first: frozenset(seconds) for first, seconds in _seconds.items()}


def _spans(tokens: list[str], starts: Iterable[int]) -> list[tuple[int, int]]:
    """(start, end) of every special-case pattern of `tokens` that begins at one of `starts`."""
    return [
        (i, i + len(pattern))
        for i in starts
        for pattern in _BY_PAIR[tokens[i], tokens[i + 1]]
        if tuple(tokens[i : i + len(pattern)]) == pattern
    ]


def _matches(tokens: list[str]) -> list[tuple[int, int]]:
    """(start, end) of every span of `tokens` that is a special-case pattern (every pattern has two tokens or more)."""
    hits = _PATTERN_STARTS.intersection(pairwise(tokens))
    if not hits:
        return []
    return _spans(tokens, compress(count(), map(hits.__contains__, pairwise(tokens))))


def _apply_special_cases(tokens: list[str], spaced: set[int], matches: list[tuple[int, int]]) -> list[str]:
    """spaCy's `_apply_special_cases`: spans of tokens that spell a special case get the special case's tokens."""
    if not matches:
        return tokens
    seen: set[int] = set()
    kept = []
    for start, end in sorted(set(matches), key=lambda m: (m[0] - m[1], m[0])):  # longest first, then leftmost
        if start not in seen and end - 1 not in seen:
            kept.append((start, end))
        seen.update(range(start, end))
    out: list[str] = []
    at = 0
    for start, end in sorted(kept):
        text = "".join(t + " " if i in spaced else t for i, t in enumerate(tokens[start:end], start))
        text = text[:-1] if end - 1 in spaced else text
        if text in SPECIAL_CASES:
            out += tokens[at:start]
            out += SPECIAL_CASES[text]
            at = end
    return out + tokens[at:] if at else tokens


def tokens(text: str) -> list[str]:
    """The texts of the tokens of `spacy.blank("en")(text)`, whitespace tokens included."""
    found, spaced = _affix_tokens(text)
    return _apply_special_cases(found, spaced, _matches(found))


def words(text: str) -> list[str]:
    """datatrove's English words of a text: spaCy's tokens, stripped, without the empty ones.

    That is `tokens` without its whitespace tokens (the tokens of a whitespace chunk hold no whitespace, and
    no special case of two tokens or more does), computed from the chunks of `str.split`: a whitespace run
    between two chunks is a whitespace token (which no special case spans) unless it is one space.
    """
    found, starts, ends, one_space = chunk_words(text, _memo, _SECONDS)  # ends: one past each chunk's last token
    if len(_memo) >= MEMO_CHUNKS:
        _memo.clear()
    matches = _spans(found, starts) if starts else []
    if not matches:
        return found
    spaced: set[int] = set()
    kept = []
    for start, end in matches:
        first, last = bisect_right(ends, start), bisect_right(ends, end - 1)
        if first < last:  # crosses the gaps after chunks first..last-1: only single spaces make no token
            if 0 in one_space[first:last]:
                continue
            spaced.update(ends[k] - 1 for k in range(first, last))
        kept.append((start, end))
    return _apply_special_cases(found, spaced, kept)


_IS_PUNCT = WordMemo(lambda t: all(unicodedata.category(c).startswith("P") for c in t))  # spaCy's `is_punct`


def sentence_count(text: str) -> int:
    """How many sentences spaCy's sentencizer finds in a text (datatrove's `split_into_sentences` length; 1 if empty).

    A sentence ends after a token of sentence punctuation and the next token that is not punctuation starts one.
    """
    found = 1
    seen_period = False
    chunks = text.split()
    spaces = text.count(" ")  # one space between chunks and no other whitespace: no whitespace tokens
    one_space = spaces == len(chunks) - 1 == len(text) - sum(map(len, chunks))
    for token in words(text) if one_space else tokens(text):
        if token in _SENTENCE_PUNCT:
            seen_period = True
        elif seen_period and not _IS_PUNCT[token]:
            found += 1
            seen_period = False
    return found
